"""``topology.yaml``: the declared cluster, parsed once at the edge into frozen values.

Every error names the file, the line, the key path, what is wrong and what to write instead; all of
them are collected before failing. Sections: ``cluster`` (a name), ``broker``, ``leader``, ``units``
and ``experiments`` (their units, the jobs every unit of the experiment runs with their settings, and
per-unit ``overrides``). docs/topology.md is the reference.

Job settings are kept as TEXT, exactly what ``pio run <job> --<setting> <value>`` takes (``37``,
``true``, ``turbidostat``), because that is what a desired state carries to a node. With
``check_jobs`` (the default), every job and setting is checked against the job's own declaration
(``settings_for``), as ``pio run`` would check it, but without anything node-local (calibrations).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from typing import Any

import attrs
import yaml

DEFAULT_BROKER_PORT = 1883
DEFAULT_CLUSTER = "pioreactor"
DEFAULT_LEADER_UNIT = "leader"
DEFAULT_LEADER_ADMIN_PORT = 1899  # next to the units' default 1900, so a leader that is also a unit does not clash
DEFAULT_WEB_PORT = 8080


class TopologyError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@attrs.frozen(kw_only=True)
class Broker:
    host: str = "127.0.0.1"
    port: int = DEFAULT_BROKER_PORT
    username: str | None = None
    password: str | None = None


@attrs.frozen(kw_only=True)
class Leader:
    unit: str = DEFAULT_LEADER_UNIT  # a declared unit (the leader is also a worker) or a name of its own
    address: str = "127.0.0.1"  # default: the unit's address if it is a unit, else the broker's host
    admin_port: int = DEFAULT_LEADER_ADMIN_PORT  # the leader daemon's actor-system port
    web_port: int = DEFAULT_WEB_PORT  # the dashboard and HTTP API


@attrs.frozen(kw_only=True)
class Unit:
    name: str
    hardware: str = "sim"
    admin_port: int = 1900
    time_scale: float = 1.0
    address: str = "127.0.0.1"
    model: str = "pioreactor_20ml_1.5"  # the one default vessel model for units that name none
    simulation: tuple[tuple[str, float], ...] = ()  # sim units: culture and room overrides (SIMULATION_KEYS)


SIMULATION_KEYS: dict[str, str] = {
    "seed": "random seed of the vessel's noise (default: from the unit's name)",
    "ambient_c": "room temperature, C (default 22)",
    "initial_od": "OD600 of the culture at start (default 0.05)",
    "mu_max": "the organism's maximum growth rate, 1/h (default 1.2)",
    "lag_hours": "lag phase, h (default 1)",
    "carrying_capacity": "the OD the culture saturates at (default 3)",
    "heater_w": "heater power at 100 % duty, W (default 5)",
}

JobSettings = dict[str, str]  # setting -> text value, as `pio run` takes it


@attrs.frozen(kw_only=True)
class Experiment:
    name: str
    units: tuple[str, ...]
    jobs: dict[str, JobSettings] = attrs.field(factory=dict)  # what every unit of the experiment runs
    # unit -> job -> settings merged over the experiment's (a job the experiment lacks is added),
    # or None: this unit does not run that job.
    overrides: dict[str, dict[str, JobSettings | None]] = attrs.field(factory=dict)
    description: str = ""

    def jobs_for(self, unit: str) -> dict[str, JobSettings]:
        """The jobs ``unit`` runs in this experiment, with their settings: the experiment's, then its overrides."""
        jobs = {job: dict(settings) for job, settings in self.jobs.items()}
        for job, settings in self.overrides.get(unit, {}).items():
            if settings is None:
                jobs.pop(job, None)
            else:
                jobs[job] = {**jobs.get(job, {}), **settings}
        return jobs


@attrs.frozen(kw_only=True)
class Topology:
    path: str
    broker: Broker
    units: dict[str, Unit]
    experiments: dict[str, Experiment]
    cluster: str = DEFAULT_CLUSTER
    leader: Leader = Leader()

    def experiment_of(self, unit: str) -> str | None:
        for exp in self.experiments.values():
            if unit in exp.units:
                return exp.name
        return None

    def jobs_for(self, unit: str) -> dict[str, JobSettings]:
        """The jobs ``unit`` should run (none when it is in no experiment)."""
        name = self.experiment_of(unit)
        return self.experiments[name].jobs_for(unit) if name is not None else {}


_HARDWARE = ("sim", "1.0", "1.1", "1.2")
# Names end up as MQTT topic levels (pioreactor/<unit>/<experiment>/...): no separators or wildcards.
_UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")
# What a node accepts in a desired state (actors/reconcile.py); a leading '_' is reserved (the leader's
# name for "in no experiment", the calibration runs' _testing_ experiments).
_EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def setting_text(value: Any) -> str:
    """A YAML or JSON value as the text ``pio run --<setting>`` takes: ``true``/``false``, ``37`` for 37.0,
    JSON for lists and mappings. One spelling per value, so equal settings compare (and hash) equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []

    def err(self, node: yaml.Node | None, where: str, message: str) -> None:
        line = f"{node.start_mark.line + 1}" if node is not None else "1"
        self.errors.append(f"{self.path}:{line}: {where}: {message}")

    def mapping(self, node: yaml.Node, where: str, allowed: dict[str, str] | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.err(node, where, "expected a mapping of keys to values")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                self.err(key_node, f"{where}.{key}", f"{key!r} appears twice; keep one")
                continue
            if allowed is not None and key not in allowed:
                keys = ", ".join(sorted(allowed))
                self.err(key_node, f"{where}.{key}", f"unknown key {key!r}; allowed keys are: {keys}")
                continue
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node, where: str, kind: type, hint: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, where, f"expected {hint}")
            return None
        value = yaml.safe_load(yaml.serialize(node))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and value is not None and not isinstance(value, str):
            value = str(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.err(node, where, f"{value!r} is not {hint}")
            return None
        return value

    def port(self, node: yaml.Node, where: str, low: int) -> int | None:
        port = self.scalar(node, where, int, "a port number")
        if port is not None and not low <= port < 65536:
            self.err(node, where, f"{port} is not usable; use a port from {low} to 65535")
            return None
        return port

    def name(self, node: yaml.Node, where: str, what: str) -> str | None:
        name = self.scalar(node, where, str, f"a {what} name")
        if name is not None and not _UNIT_NAME.match(name):
            self.err(node, where, f"{name!r} is not a usable {what} name; use letters, digits, '-' and '_', starting with a letter or digit")
            return None
        return name


def load(path: str, *, plugin_dir: str | None = None, check_jobs: bool = True) -> Topology:
    """Read and validate ``path``. ``plugin_dir``: drop-in jobs and automations known besides the
    built-ins and installed plugins. ``check_jobs=False`` skips importing the jobs to check their
    settings (a node, which only needs its own unit, loads faster without)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TopologyError([f"{path}: cannot read the topology file: {e.strerror}"]) from None
    return parse(text, path, plugin_dir=plugin_dir, check_jobs=check_jobs)


def parse(text: str, path: str = "topology.yaml", *, plugin_dir: str | None = None, check_jobs: bool = True) -> Topology:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise TopologyError([f"{path}:{line}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
    r = _Reader(path)
    if root is None:
        raise TopologyError([f"{path}:1: the file is empty; declare at least `units:`"])
    top = r.mapping(root, "topology", {"broker": "", "units": "", "experiments": "", "leader": "", "cluster": "", "version": ""})

    cluster = DEFAULT_CLUSTER
    if "cluster" in top:
        value = r.scalar(top["cluster"][1], "cluster", str, "a cluster name")
        if value is not None and (not value.strip() or _TOPIC_UNSAFE.search(value)):
            r.err(top["cluster"][1], "cluster", f"{value!r} is not a usable cluster name; use a word without '/', '+' or '#', e.g. `cluster: lab3`")
        elif value is not None:
            cluster = value

    broker = Broker()
    if "broker" in top:
        b = r.mapping(top["broker"][1], "broker", {"host": "", "port": "", "username": "", "password": ""})
        kwargs: dict[str, Any] = {}
        for key, kind, hint in (("host", str, "a host name or address"), ("port", int, "a port number"),
                                ("username", str, "a user name"), ("password", str, "a password")):
            if key in b:
                kwargs[key] = r.scalar(b[key][1], f"broker.{key}", kind, hint)
        if isinstance(kwargs.get("port"), int) and not 0 < kwargs["port"] < 65536:
            r.err(b["port"][1], "broker.port", f"{kwargs['port']} is not a TCP port; use 1-65535")
            kwargs["port"] = None
        broker = Broker(**{k: v for k, v in kwargs.items() if v is not None})

    units, unit_nodes = _units(r, top)
    leader, leader_nodes = _leader(r, top, units, broker)
    experiments = _experiments(r, top, units, plugin_dir, check_jobs, broker)
    _check_ports(r, top, broker, units, unit_nodes, leader, leader_nodes)

    if r.errors:
        # In file order; a setting that is wrong for several units is reported once.
        raise TopologyError(sorted(dict.fromkeys(r.errors), key=lambda e: _line_of(e, path)))
    return Topology(path=path, broker=broker, units=units, experiments=experiments, cluster=cluster, leader=leader)


# --- units ----------------------------------------------------------------------------------------


def _units(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> tuple[dict[str, Unit], dict[str, dict[str, yaml.Node]]]:
    """The units, and for each the nodes of its key and fields (for the lines of later errors)."""
    units: dict[str, Unit] = {}
    nodes: dict[str, dict[str, yaml.Node]] = {}
    if "units" not in top:
        r.errors.append(f"{r.path}:1: topology: missing `units:`; declare each unit, e.g. `units: {{sim01: {{hardware: sim, admin_port: 1901}}}}`")
        return units, nodes
    allowed = {"hardware": "", "admin_port": "", "time_scale": "", "address": "", "model": "", "simulation": ""}
    for name, (key_node, value_node) in r.mapping(top["units"][1], "units", None).items():
        where = f"units.{name}"
        if not _UNIT_NAME.match(name):
            r.err(key_node, where, f"{name!r} is not a usable unit name; use letters, digits, '-' and '_', starting with a letter or digit (e.g. sim01)")
        fields = r.mapping(value_node, where, allowed) if not _is_null(value_node) else {}
        nodes[name] = {"": key_node, **{k: v for k, (_, v) in fields.items()}}
        kw: dict[str, Any] = {"name": name}
        if "hardware" in fields:
            hw = r.scalar(fields["hardware"][1], f"{where}.hardware", str, "a hardware kind")
            if hw is not None and hw not in _HARDWARE:
                r.err(fields["hardware"][1], f"{where}.hardware", f"unknown hardware {hw!r}; use one of {', '.join(_HARDWARE)}")
            elif hw is not None:
                kw["hardware"] = hw
        if "admin_port" in fields:
            port = r.port(fields["admin_port"][1], f"{where}.admin_port", 1024)
            if port is not None:
                kw["admin_port"] = port
        if "time_scale" in fields:
            scale = r.scalar(fields["time_scale"][1], f"{where}.time_scale", float, "a number")
            if scale is not None and not scale > 0:
                r.err(fields["time_scale"][1], f"{where}.time_scale", f"{scale} must be above 0 (1 is real time)")
            elif scale is not None:
                kw["time_scale"] = scale
        if "model" in fields:
            model = r.scalar(fields["model"][1], f"{where}.model", str, "a vessel model name")
            if model is not None:
                from actors.hardware.description import available_models

                models = available_models()
                if model not in models:
                    r.err(fields["model"][1], f"{where}.model", f"unknown model {model!r}; models are: {', '.join(models)}")
                else:
                    kw["model"] = model
        if "simulation" in fields:
            sim_fields = r.mapping(fields["simulation"][1], f"{where}.simulation", dict.fromkeys(SIMULATION_KEYS, ""))
            sim: list[tuple[str, float]] = []
            for key, (_, sim_node) in sim_fields.items():
                value = r.scalar(sim_node, f"{where}.simulation.{key}", float, f"a number ({SIMULATION_KEYS[key]})")
                if value is not None:
                    sim.append((key, value))
            kw["simulation"] = tuple(sim)
        if "address" in fields:
            address = r.scalar(fields["address"][1], f"{where}.address", str, "a host name or address")
            if address is not None:
                kw["address"] = address
        units[name] = Unit(**kw)
    return units, nodes


# --- leader ---------------------------------------------------------------------------------------


def _leader(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]], units: dict[str, Unit], broker: Broker) -> tuple[Leader, dict[str, yaml.Node]]:
    if "leader" not in top:
        unit = units.get(DEFAULT_LEADER_UNIT)
        return Leader(address=unit.address if unit is not None else broker.host), {}
    fields = r.mapping(top["leader"][1], "leader", {"unit": "", "address": "", "admin_port": "", "web_port": ""})
    nodes = {"": top["leader"][0], **{k: v for k, (_, v) in fields.items()}}
    kw: dict[str, Any] = {}
    if "unit" in fields:
        name = r.name(fields["unit"][1], "leader.unit", "unit")
        if name is not None:
            kw["unit"] = name
    unit = units.get(kw.get("unit", DEFAULT_LEADER_UNIT))
    kw["address"] = unit.address if unit is not None else broker.host
    if "address" in fields:
        address = r.scalar(fields["address"][1], "leader.address", str, "a host name or address")
        if address is not None and unit is not None and _host(address) != _host(unit.address):
            r.err(fields["address"][1], "leader.address", f"{address!r} is not the address of unit {unit.name} ({unit.address}), which the leader is; "
                  f"remove leader.address or make the two the same")
        elif address is not None:
            kw["address"] = address
    if "admin_port" in fields:
        port = r.port(fields["admin_port"][1], "leader.admin_port", 1024)
        if port is not None:
            kw["admin_port"] = port
    if "web_port" in fields:
        port = r.port(fields["web_port"][1], "leader.web_port", 1)
        if port is not None:
            kw["web_port"] = port
    return Leader(**kw), nodes


def _host(address: str) -> str:
    """One spelling for this machine, so that `localhost` and `127.0.0.1` are seen as the same place."""
    low = address.strip().lower()
    return "127.0.0.1" if low in ("localhost", "::1") or low.startswith("127.") else low


def _check_ports(
    r: _Reader,
    top: dict[str, tuple[yaml.Node, yaml.Node]],
    broker: Broker,
    units: dict[str, Unit],
    unit_nodes: dict[str, dict[str, yaml.Node]],
    leader: Leader,
    leader_nodes: dict[str, yaml.Node],
) -> None:
    """Every listening port on one address has one owner: the broker, the leader's two, each unit's admin port."""
    claims: list[tuple[str, int, str, str, yaml.Node | None, str]] = []  # address, port, owner, key, node, fix
    broker_node = top["broker"][1] if "broker" in top else None
    claims.append((broker.host, broker.port, "the broker (broker.port)", "broker.port", broker_node, "give the broker another port"))
    declared = bool(leader_nodes)
    for key, port in (("admin_port", leader.admin_port), ("web_port", leader.web_port)):
        node = leader_nodes.get(key, leader_nodes.get(""))
        given = key in leader_nodes
        owner = f"the leader (leader.{key}{'' if given else ', by default'})"
        fix = f"set leader.{key} to a free port" if declared else f"declare `leader: {{{key}: <a free port>}}`"
        claims.append((leader.address, port, owner, f"leader.{key}", node, fix))
    for name, unit in units.items():
        node = unit_nodes.get(name, {}).get("admin_port", unit_nodes.get(name, {}).get(""))
        claims.append((unit.address, unit.admin_port, f"{name} (units.{name}.admin_port)", f"units.{name}.admin_port", node,
                       f"give each unit its own admin port, one nothing else on {unit.address} listens on"))
    seen: dict[tuple[str, int], str] = {}
    for address, port, owner, where, node, fix in claims:
        key = (_host(address), port)
        if key in seen:
            r.err(node, where, f"port {port} on {address} is also used by {seen[key]}; {fix}")
        else:
            seen[key] = owner


# --- experiments ----------------------------------------------------------------------------------


@attrs.frozen
class _Value:
    """One declared setting: its text, and where it was written (for errors)."""

    text: str
    key_node: yaml.Node
    value_node: yaml.Node
    where: str


@attrs.frozen
class _JobDecl:
    name: str
    key_node: yaml.Node
    where: str
    settings: dict[str, _Value]


def _experiments(
    r: _Reader,
    top: dict[str, tuple[yaml.Node, yaml.Node]],
    units: dict[str, Unit],
    plugin_dir: str | None,
    check_jobs: bool,
    broker: Broker,
) -> dict[str, Experiment]:
    experiments: dict[str, Experiment] = {}
    if "experiments" not in top:
        return experiments
    checker = _JobChecker(r, plugin_dir) if check_jobs else None
    owner: dict[str, str] = {}
    for name, (exp_key, value_node) in r.mapping(top["experiments"][1], "experiments", None).items():
        where = f"experiments.{name}"
        if not _EXPERIMENT_NAME.match(name):
            r.err(exp_key, where, f"{name!r} is not a usable experiment name; it becomes an MQTT topic level: use letters, digits, '_', '-' and '.', "
                  f"starting with a letter or digit (e.g. growth_2025-01)")
        fields = r.mapping(value_node, where, {"units": "", "jobs": "", "overrides": "", "description": ""})
        members: list[str] = []
        if "units" in fields:
            node = fields["units"][1]
            if not isinstance(node, yaml.SequenceNode):
                r.err(node, f"{where}.units", "expected a list of unit names, e.g. [sim01, sim02]")
            else:
                for item in node.value:
                    unit_name = str(item.value)
                    if unit_name not in units:
                        r.err(item, f"{where}.units", f"unknown unit {unit_name!r}; declared units are: {', '.join(sorted(units))}")
                    elif unit_name in members:
                        r.err(item, f"{where}.units", f"{unit_name} is listed twice; list each unit once")
                        continue
                    elif unit_name in owner and owner[unit_name] != name:
                        r.err(item, f"{where}.units", f"{unit_name} is already in {owner[unit_name]}; a unit belongs to one experiment at a time")
                    owner.setdefault(unit_name, name)
                    members.append(unit_name)
        description = ""
        if "description" in fields:
            description = r.scalar(fields["description"][1], f"{where}.description", str, "a line of text") or ""
        jobs: dict[str, _JobDecl] = {}
        if "jobs" in fields and not _is_null(fields["jobs"][1]):
            for job, (job_key, job_node) in r.mapping(fields["jobs"][1], f"{where}.jobs", None).items():
                settings = _settings(r, job_node, f"{where}.jobs.{job}")
                if settings is not None:
                    jobs[job] = _JobDecl(job, job_key, f"{where}.jobs.{job}", settings)
        overrides: dict[str, dict[str, _JobDecl | None]] = {}
        if "overrides" in fields and not _is_null(fields["overrides"][1]):
            for unit_name, (unit_key, unit_node) in r.mapping(fields["overrides"][1], f"{where}.overrides", None).items():
                uwhere = f"{where}.overrides.{unit_name}"
                if unit_name not in units:
                    r.err(unit_key, uwhere, f"unknown unit {unit_name!r}; the units of {name} are: {', '.join(members) or 'none'}")
                elif unit_name not in members:
                    r.err(unit_key, uwhere, f"{unit_name} is not in experiment {name}; add it to {where}.units or override one of: {', '.join(members) or 'none'}")
                per_job: dict[str, _JobDecl | None] = {}
                job_fields = r.mapping(unit_node, uwhere, None) if not _is_null(unit_node) else {}
                for job, (job_key, job_node) in job_fields.items():
                    jwhere = f"{uwhere}.{job}"
                    if _is_null(job_node):
                        if job not in jobs:
                            ran = ", ".join(sorted(jobs)) or "none"
                            r.err(job_key, jwhere, f"null stops a job the experiment runs, but {name} does not run {job}; its jobs are: {ran} (remove this line)")
                        per_job[job] = None
                        continue
                    settings = _settings(r, job_node, jwhere)
                    if settings is not None:
                        per_job[job] = _JobDecl(job, job_key, jwhere, settings)
                overrides[unit_name] = per_job
        if checker is not None:
            checker.check_experiment(name, members, jobs, overrides, units, broker)
        experiments[name] = Experiment(
            name=name,
            units=tuple(members),
            jobs={job: {k: v.text for k, v in decl.settings.items()} for job, decl in jobs.items()},
            overrides={
                unit: {job: None if decl is None else {k: v.text for k, v in decl.settings.items()} for job, decl in per_job.items()}
                for unit, per_job in overrides.items()
            },
            description=description,
        )
    return experiments


def _settings(r: _Reader, node: yaml.Node, where: str) -> dict[str, _Value] | None:
    """A job's ``{setting: value}`` as text values; a bare ``job:`` (null) runs it with its defaults."""
    if _is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        r.err(node, where, "expected the job's settings as a mapping, e.g. `{target_rpm: 500}`, or nothing to run it with its defaults")
        return None
    out: dict[str, _Value] = {}
    for key, (key_node, value_node) in r.mapping(node, where, None).items():
        swhere = f"{where}.{key}"
        if _is_null(value_node):
            r.err(value_node, swhere, "no value; write a value, or remove the line to keep the job's default")
            continue
        value = yaml.safe_load(yaml.serialize(value_node))
        if isinstance(value_node, yaml.ScalarNode) and isinstance(value, str):
            text = value_node.value
        elif isinstance(value, (bool, int, float, dict, list)):
            text = setting_text(value)
        else:  # dates and the like: what was written
            text = str(value_node.value)
        out[key] = _Value(text, key_node, value_node, swhere)
    return out


class _JobChecker:
    """Checks jobs and their settings against the jobs' own declarations, as `pio run` would."""

    def __init__(self, r: _Reader, plugin_dir: str | None) -> None:
        from actors.registry import available_jobs

        self.r = r
        self.plugin_dir = plugin_dir
        self.available = available_jobs(plugin_dir)
        self.classes: dict[str, Any] = {}

    def check_experiment(
        self,
        name: str,
        members: list[str],
        jobs: dict[str, _JobDecl],
        overrides: dict[str, dict[str, _JobDecl | None]],
        units: dict[str, Unit],
        broker: Broker,
    ) -> None:
        first = units.get(members[0]) if members else None
        flagged: set[int] = set()
        for decl in jobs.values():
            flagged |= self._check(decl, decl.settings, _stand_in(first, name, broker, self.plugin_dir), None)
        for unit_name, per_job in overrides.items():
            unit = units.get(unit_name)
            for job, over in per_job.items():
                if over is None:  # stopping a job: checked against the experiment's jobs already
                    continue
                base = jobs.get(job)
                merged = {**(base.settings if base is not None else {}), **over.settings}
                # What the experiment declared was checked above; here what the override makes of it.
                self._check(over, merged, _stand_in(unit, name, broker, self.plugin_dir), flagged, note=f" (for {unit_name}, with its override)")


    def _job_class(self, job: str) -> Any:
        if job not in self.classes:
            self.classes[job] = _import_job(self.available[job], job)
        return self.classes[job]

    def _check(self, decl: _JobDecl, settings: dict[str, _Value], node: Any, flagged: set[int] | None, note: str = "") -> set[int]:
        """Report what is wrong with ``decl`` run with ``settings``; returns the ids of the bad values."""
        from actors.settings import SettingError, index

        r, bad = self.r, set()
        if decl.name not in self.available:
            r.err(decl.key_node, decl.where, f"unknown job {decl.name!r}; jobs are: {', '.join(sorted(self.available))}")
            return bad
        try:
            cls = self._job_class(decl.name)
        except Exception as e:  # a broken plugin: say which and why, the rest is still checked
            r.err(decl.key_node, decl.where, f"cannot load job {decl.name} from {self.available[decl.name]}: {e}; fix the plugin or remove the job")
            return bad

        def report(value: _Value | None, message: str) -> None:
            if value is None:
                r.err(decl.key_node, decl.where, message + note)
            elif flagged is None or id(value) not in flagged:
                bad.add(id(value))
                # A value the experiment declared, wrong only with this unit's override: say so.
                r.err(value.value_node, value.where, message + ("" if value.where.startswith(decl.where + ".") else note))

        options = {key: value.text for key, value in settings.items()}
        policy = None
        from actors.automations.base import AutomationJob

        if isinstance(cls, type) and issubclass(cls, AutomationJob):
            policy = self._automation(cls, decl, settings, node, report)
            if policy is None:
                return bad
        try:
            specs = index(cls.settings_for(options, node))
        except SettingError as e:
            report(None, str(e))
            return bad
        except Exception as e:  # plugin code failing: one line, the rest still checked
            report(None, f"{decl.name}.settings_for failed: {type(e).__name__}: {e}")
            return bad
        givable = sorted(s.name for s in specs.values() if s.settable or s.startup)
        for key, value in settings.items():
            spec = specs.get(key) or specs.get(key.lower())
            if spec is None:
                report(value, f"unknown setting {key!r} of {decl.name}; its settings are: {', '.join(givable) or 'none'}")
            elif not (spec.settable or spec.startup):
                report(value, f"{key} is published by {decl.name}, not set; settings you can give are: {', '.join(givable) or 'none'}")
            else:
                try:
                    spec.parse(value.text)
                except SettingError as e:
                    report(value, str(e))
        if policy is not None:
            missing = [p.name for p in policy.PARAMETERS if p.required and p.name not in settings]
            if missing:
                add = ", ".join(f"{m}: <value>" for m in missing)
                report(None, f"automation {policy.name} needs {', '.join(missing)}; add {add}")
        return bad

    def _automation(self, cls: Any, decl: _JobDecl, settings: dict[str, _Value], node: Any, report: Any) -> Any:
        from actors.automations.registry import UnknownAutomation, available, find

        chosen = settings.get("automation_name")
        if chosen is None:
            known = ", ".join(sorted(available(cls.family, self.plugin_dir)))
            report(None, f"{decl.name} needs automation_name; add e.g. `automation_name: {_EXAMPLE_AUTOMATION.get(cls.family, 'silent')}` ({cls.family} automations are: {known})")
            return None
        try:
            return find(cls.family, chosen.text, self.plugin_dir)
        except UnknownAutomation as e:
            report(chosen, str(e))
            return None


_EXAMPLE_AUTOMATION = {"dosing": "turbidostat", "temperature": "thermostat", "led": "light_dark_cycle"}


def _stand_in(unit: Unit | None, experiment: str, broker: Broker, plugin_dir: str | None) -> Any:
    """The NodeConfig a job's ``settings_for`` sees, built from the declaration alone (no node files)."""
    from actors.messages import NodeConfig

    unit = unit or Unit(name="unit")
    return NodeConfig(
        unit=unit.name,
        experiment=experiment,
        hardware=unit.hardware,
        broker_host=broker.host,
        broker_port=broker.port,
        admin_port=unit.admin_port,
        time_scale=unit.time_scale,
        clock_anchor=0.0,
        state_dir="",
        plugin_dir=plugin_dir or "",
        model=unit.model,
        simulation=unit.simulation,
    )


def _import_job(source: str, job: str) -> Any:
    """The Job class at ``source`` (``module:Class`` or ``file:/path.py``), imported once in this process."""
    from actors.job import Job

    if source.startswith("file:"):
        path = source[len("file:"):]
        spec = importlib.util.spec_from_file_location(f"pioactors_topology_check_{job}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Job) and v is not Job and v.name == job]
        if not found:
            raise ImportError(f"{path} defines no Job subclass with name = {job!r}")
        return found[0]
    module_name, _, class_name = source.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _line_of(error: str, path: str) -> int:
    line = error[len(path) + 1:].partition(":")[0]
    return int(line) if line.isdigit() else 0


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
