"""``topology.yaml``: the declared cluster, parsed once at the edge into frozen values.

Every error names the file, the line, the key path, what is wrong and what to write instead; all of
them are collected before failing. This module covers the keys a node needs (broker, units,
experiments); the leader's deployment keys extend it.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

DEFAULT_BROKER_PORT = 1883


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


@attrs.frozen(kw_only=True)
class Experiment:
    name: str
    units: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Topology:
    path: str
    broker: Broker
    units: dict[str, Unit]
    experiments: dict[str, Experiment]

    def experiment_of(self, unit: str) -> str | None:
        for exp in self.experiments.values():
            if unit in exp.units:
                return exp.name
        return None


_HARDWARE = ("sim", "1.0", "1.1", "1.2")


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []

    def err(self, node: yaml.Node, where: str, message: str) -> None:
        self.errors.append(f"{self.path}:{node.start_mark.line + 1}: {where}: {message}")

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


def load(path: str) -> Topology:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TopologyError([f"{path}: cannot read the topology file: {e.strerror}"]) from None
    return parse(text, path)


def parse(text: str, path: str = "topology.yaml") -> Topology:
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
        broker = Broker(**{k: v for k, v in kwargs.items() if v is not None})

    units: dict[str, Unit] = {}
    if "units" not in top:
        r.errors.append(f"{path}:1: topology: missing `units:`; declare each unit, e.g. `units: {{sim01: {{hardware: sim, admin_port: 1901}}}}`")
    else:
        allowed = {"hardware": "", "admin_port": "", "time_scale": "", "address": "", "model": "", "simulation": ""}
        for name, (key_node, value_node) in r.mapping(top["units"][1], "units", None).items():
            where = f"units.{name}"
            fields = r.mapping(value_node, where, allowed) if not _is_null(value_node) else {}
            kw: dict[str, Any] = {"name": name}
            if "hardware" in fields:
                hw = r.scalar(fields["hardware"][1], f"{where}.hardware", str, "a hardware kind")
                if hw is not None and hw not in _HARDWARE:
                    r.err(fields["hardware"][1], f"{where}.hardware", f"unknown hardware {hw!r}; use one of {', '.join(_HARDWARE)}")
                elif hw is not None:
                    kw["hardware"] = hw
            if "admin_port" in fields:
                port = r.scalar(fields["admin_port"][1], f"{where}.admin_port", int, "a port number")
                if port is not None and not 1024 <= port < 65536:
                    r.err(fields["admin_port"][1], f"{where}.admin_port", f"{port} is not usable; use a port from 1024 to 65535")
                elif port is not None:
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
        seen: dict[int, str] = {}
        for unit in units.values():
            if unit.admin_port in seen:
                r.errors.append(f"{path}: units.{unit.name}.admin_port: {unit.admin_port} is also used by {seen[unit.admin_port]}; give each unit its own admin port")
            seen[unit.admin_port] = unit.name

    experiments: dict[str, Experiment] = {}
    if "experiments" in top:
        for name, (_, value_node) in r.mapping(top["experiments"][1], "experiments", None).items():
            where = f"experiments.{name}"
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
                        members.append(unit_name)
            experiments[name] = Experiment(name=name, units=tuple(members))
        owner: dict[str, str] = {}
        for exp in experiments.values():
            for unit_name in exp.units:
                if unit_name in owner and owner[unit_name] != exp.name:
                    r.errors.append(f"{path}: experiments.{exp.name}.units: {unit_name} is already in {owner[unit_name]}; a unit belongs to one experiment at a time")
                owner[unit_name] = exp.name

    if r.errors:
        raise TopologyError(r.errors)
    return Topology(path=path, broker=broker, units=units, experiments=experiments)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
