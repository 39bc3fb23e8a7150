"""``pios``: the leader's command line, acting on units over MQTT.

The leader (broker management, deployment from topology.yaml, per-unit commands) is built on top of the
node runtime; until then `pios` answers `version` and says plainly what it cannot do yet.
"""

from __future__ import annotations

import sys
from typing import Any

import click

import actors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pios() -> None:
    """Operate the cluster from the leader."""


@pios.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"pioactors {actors.__version__}")


@pios.group("broker")
def broker_group() -> None:
    """The leader's MQTT broker: identities and credentials."""


@broker_group.command("credentials")
@click.argument("identity")
@click.option("--json", "as_json", is_flag=True, help='print {"username": ..., "password": ...}, the unit\'s broker_credentials.json')
def broker_credentials(identity: str, as_json: bool) -> None:
    """Print the broker user name and password of IDENTITY (a unit, or `leader`), for scripts.

    Output: one line `<username> <password>`; with --json the content of a unit's
    broker_credentials.json. The credentials come from the leader's state dir ($PIO_STATE_DIR/leader).
    """
    import json

    from leader import credentials

    try:
        username, password = credentials.lookup(credentials.default_leader_dir(), identity)
    except credentials.CredentialsError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"username": username, "password": password}))
    else:
        click.echo(f"{username} {password}")


# --- the cluster over MQTT ----------------------------------------------------------------------------


def _topology(path: str) -> Any:
    from actors.topology import TopologyError, load

    try:
        return load(path)
    except TopologyError as e:
        raise click.ClickException(str(e)) from None


def _connect(topology: Any) -> Any:
    """A leader-identity connection to the topology's broker (credentials from the leader's state dir
    when the leader generated them, else the topology's)."""
    from leader import credentials
    from leader.cluster_client import ClusterClient

    username, password = topology.broker.username, topology.broker.password
    try:
        stored = credentials.load(credentials.default_leader_dir())
    except credentials.CredentialsError as e:
        raise click.ClickException(str(e)) from None
    if credentials.LEADER in stored:
        username, password = credentials.LEADER, stored[credentials.LEADER]
    client = ClusterClient(topology.broker.host, topology.broker.port, username, password)
    try:
        return client.__enter__()
    except ConnectionError as e:
        raise click.ClickException(str(e)) from None


def _held_desired(client: Any, units: Any) -> dict[str, Any]:
    from actors import topics
    from leader.deployer import DesiredState, DesiredStateError

    held = client.retained([topics.desired_topic("+")])
    out: dict[str, Any] = {}
    for unit in units:
        text = held.get(topics.desired_topic(unit))
        try:
            out[unit] = DesiredState.parse(text) if text else None
        except DesiredStateError:
            out[unit] = None  # unreadable: replaced by the new one
    for topic, text in held.items():  # units that left the topology but still hold a desired state
        unit = topic.split("/")[1]
        if unit not in out and text:
            out[unit] = DesiredState.parse(text)
    return out


@pios.command("apply")
@click.argument("topology_path", metavar="TOPOLOGY", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="print what would change, change nothing")
@click.option("--json", "as_json", is_flag=True, help="print the changes as JSON")
def apply(topology_path: str, dry_run: bool, as_json: bool) -> None:
    """Make every unit's desired state what TOPOLOGY says; each node then drives its jobs toward it."""
    import json

    from actors import topics
    from leader.deployer import desired_states, plan, render, to_json

    topology = _topology(topology_path)
    new = desired_states(topology, issued_at=utc_now())
    client = _connect(topology)
    try:
        current = _held_desired(client, topology.units)
        changes = plan(current, new)
        if not dry_run:
            touched = {c.unit for c in changes}
            for unit in sorted(touched):
                payload = new[unit].payload() if unit in new else ""
                client.publish_retained(topics.desired_topic(unit), payload)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "changes": to_json(changes)}, indent=2))
    else:
        click.echo(render(changes))
        if changes and not dry_run:
            click.echo(f"applied to {len({c.unit for c in changes})} unit(s); `pios status` shows when they are in sync")
    if not dry_run:
        _record_experiments(topology, quiet=as_json)


def _record_experiments(topology: Any, quiet: bool) -> None:
    """The leader's database learns the applied topology's experiments and assignments (if it has one)."""
    import os

    from leader import credentials, database, experiments

    path = database.default_path(credentials.default_leader_dir())
    if not os.path.exists(path):
        return
    conn = database.connect(path)
    try:
        for line in experiments.sync_topology(conn, topology, utc_now()):
            if not quiet:
                click.echo(line)
    except experiments.ExperimentError as e:
        raise click.ClickException(f"the units were updated, but the database could not record it: {e}") from None
    finally:
        conn.close()


@pios.command("status")
@click.option("--topology", "topology_path", default="topology.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="stable JSON: one object per unit")
def status(topology_path: str, as_json: bool) -> None:
    """Desired against actual for every unit: reachable, desired jobs, actual jobs, in sync; and how
    its data reaches the leader's database (rows per minute, lag, errors, gaps, clock skew)."""
    import json

    from actors import topics

    topology = _topology(topology_path)
    ingest = _ingest_health()
    client = _connect(topology)
    try:
        held = client.retained([topics.node_topic("+", "+")])
    finally:
        client.close()
    from leader.cluster_view import unit_view

    keys = ("unit", "reachable", "state", "desired_jobs", "actual_jobs", "in_sync", "errors", "ingest")
    rows = [{k: view[k] for k in keys} for view in (unit_view(u, held, ingest) for u in sorted(topology.units))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        sync = "in sync" if r["in_sync"] else "NOT in sync"
        click.echo(f"{r['unit']:<12} {r['state']:<13} {sync:<12} desired: {', '.join(r['desired_jobs']) or '-'}")
        click.echo(f"{'':<12} {'':<13} {'':<12} actual:  {', '.join(r['actual_jobs']) or '-'}")
        for error in r["errors"]:
            click.echo(f"{'':<12} error: {error}")
        click.echo(f"{'':<12} data:    {_ingest_line(r['ingest'], ingest)}")


def _ingest_health() -> dict[str, Any] | None:
    """The leader daemon's ingest figures (``ingest.json``, rewritten every second), if it runs here."""
    import json
    import os
    import time

    from leader import credentials
    from leader.daemon import INGEST_FILE

    path = os.path.join(credentials.default_leader_dir(), INGEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            health = json.load(f)
        health["stale"] = time.time() - os.path.getmtime(path) > 10
        return health
    except (OSError, ValueError):
        return None


def _ingest_line(unit: dict[str, Any] | None, ingest: dict[str, Any] | None) -> str:
    if ingest is None:
        return "no ingest figures (is the leader running here? pios leader start)"
    if unit is None:
        return "nothing received yet"
    lag = f"lag {unit['lag_sent_s']:.1f} s" if unit.get("lag_sent_s") is not None else "lag -"
    line = (f"{unit['rows_per_minute']} rows/min, {lag}, last at {unit['last_received_at'] or '-'}, "
            f"errors {unit['errors']}, gaps {unit['gaps_recorded']}")
    if unit.get("skew_flag"):
        line += f", CLOCK SKEW {unit['skew_s']:+.1f} s (check chrony/NTP on the unit)"
    return line + (" (figures stale: the leader daemon is not updating them)" if ingest.get("stale") else "")


def _targets(topology: Any, units: tuple[str, ...], experiment: str | None) -> list[str]:
    if units and experiment:
        raise click.UsageError("give --units or --experiment, not both")
    if experiment:
        exp = topology.experiments.get(experiment)
        if exp is None:
            raise click.UsageError(f"unknown experiment {experiment!r}; experiments: {', '.join(sorted(topology.experiments)) or 'none'}")
        return list(exp.units)
    if units:
        unknown = [u for u in units if u not in topology.units]
        if unknown:
            raise click.UsageError(f"unknown unit {unknown[0]!r}; units: {', '.join(sorted(topology.units))}")
        return list(units)
    return sorted(topology.units)


def _fan_out(topology_path: str, units: tuple[str, ...], experiment: str | None, action: dict[str, Any], as_json: bool, timeout: float) -> None:
    import json

    topology = _topology(topology_path)
    targets = _targets(topology, units, experiment)
    client = _connect(topology)
    try:
        results = client.command(targets, action, timeout=timeout)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            click.echo(f"{r.unit:<12} {'ok' if r.ok else 'FAILED: ' + (r.error or '')}")
    if not all(r.ok for r in results):
        sys.exit(1)


def _unit_options(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="one {unit, ok, error} per unit")(f)
    f = click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(min=0.5), help="seconds to wait for each unit's answer")(f)
    f = click.option("--experiment", default=None, help="every unit of this experiment")(f)
    f = click.option("--units", "units", multiple=True, help="a unit (repeat for several; default: all)")(f)
    f = click.option("--topology", "topology_path", default="topology.yaml", show_default=True, type=click.Path(dir_okay=False))(f)
    return f


@pios.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("job")
@_unit_options
@click.pass_context
def run(ctx: click.Context, job: str, topology_path: str, units: tuple[str, ...], experiment: str | None, as_json: bool, timeout: float) -> None:
    """Start JOB on units (`--<setting> value` options as `pio run` takes them)."""
    from worker.cli import _parse_job_options

    options = _parse_job_options(list(ctx.args))
    _fan_out(topology_path, units, experiment, {"action": "run", "job": job, "options": options}, as_json, timeout)


@pios.command("kill")
@click.argument("job")
@_unit_options
def kill(job: str, topology_path: str, units: tuple[str, ...], experiment: str | None, as_json: bool, timeout: float) -> None:
    """Stop JOB on units."""
    _fan_out(topology_path, units, experiment, {"action": "kill", "job": job}, as_json, timeout)


@pios.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("job")
@click.argument("setting")
@click.argument("value")
@_unit_options
def set_setting(job: str, setting: str, value: str, topology_path: str, units: tuple[str, ...], experiment: str | None, as_json: bool, timeout: float) -> None:
    """Change SETTING of JOB on units, in place."""
    _fan_out(topology_path, units, experiment, {"action": "set", "job": job, "setting": setting, "value": value}, as_json, timeout)


@pios.group("leader")
def leader_group() -> None:
    """The leader daemon: the secured broker, the units' desired states, ClusterWatch."""


def _leader_dir() -> str:
    from leader import credentials

    return credentials.default_leader_dir()


def _leader_pid() -> int | None:
    import json
    import os

    from leader.daemon import PID_FILE
    from worker.processes import pid_alive

    try:
        with open(os.path.join(_leader_dir(), PID_FILE), encoding="utf-8") as f:
            pid = int(json.load(f)["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


@leader_group.command("start")
@click.option("--topology", "topology_path", default="topology.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--unit-credentials", is_flag=True, help="write each unit's broker login into its state dir (units on this machine)")
@click.option("--foreground", is_flag=True, help="stay in the foreground (systemd)")
def leader_start(topology_path: str, unit_credentials: bool, foreground: bool) -> None:
    """Start the broker and the leader; returns once both are up."""
    import os
    import subprocess
    import time

    from leader.daemon import PID_FILE

    _topology(topology_path)  # refuse a bad file here, with its line, before anything starts
    if _leader_pid() is not None:
        raise click.ClickException("the leader is already running (`pios leader stop` first)")
    args = [sys.executable, "-m", "leader.daemon", "--topology", os.path.abspath(topology_path), "--leader-dir", _leader_dir()]
    if unit_credentials:
        args.append("--unit-credentials")
    if foreground:
        os.execv(sys.executable, args)
    os.makedirs(_leader_dir(), exist_ok=True)
    log = open(os.path.join(_leader_dir(), "daemon.log"), "ab")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    pid_file = os.path.join(_leader_dir(), PID_FILE)
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file):
        if proc.poll() is not None:
            with open(os.path.join(_leader_dir(), "daemon.log"), encoding="utf-8", errors="replace") as f:
                last = [line for line in f.read().splitlines() if line.strip()][-1:] or ["see daemon.log"]
            raise click.ClickException(f"the leader did not start: {last[0]}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"the leader did not come up within 30 s; see {_leader_dir()}/daemon.log")
        time.sleep(0.05)
    topology = _topology(topology_path)
    click.echo(f"leader started (pid {proc.pid}); broker on {topology.broker.host}:{topology.broker.port}")


@leader_group.command("stop")
def leader_stop() -> None:
    """Stop the leader and its broker."""
    import os
    import signal
    import time

    from worker.processes import pid_alive

    pid = _leader_pid()
    if pid is None:
        click.echo("the leader is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    click.echo("leader stopped")


@leader_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def leader_status(as_json: bool) -> None:
    """Whether the leader runs, and its last view of every unit (from ClusterWatch)."""
    import json
    import os

    from leader.daemon import CLUSTER_FILE

    pid = _leader_pid()
    view: dict[str, Any] = {}
    try:
        with open(os.path.join(_leader_dir(), CLUSTER_FILE), encoding="utf-8") as f:
            view = json.load(f)
    except (OSError, ValueError):
        pass
    if as_json:
        web = {"web_url": _leader_info().get("web_url")} if pid else {"web_url": None}
        click.echo(json.dumps({"running": pid is not None, "pid": pid, **web, **view}, indent=2))
        return
    click.echo(f"leader: {'running (pid %d)' % pid if pid else 'not running'}")
    web_url = _leader_info().get("web_url") if pid else None
    if pid:
        click.echo(f"dashboard: {web_url or 'not serving (see leader.log)'}")
    for unit in view.get("units", []) if pid else []:
        sync = {True: "in sync", False: "NOT in sync", None: "-"}[unit["in_sync"]]
        click.echo(f"  {unit['unit']:<12} {unit['state']:<13} since {unit['since'] or '-':<25} {sync}")
    if pid is None:
        sys.exit(1)


# --- the leader's database: experiments, export, backup, logs ---------------------------------------


def _db_option(f: Any) -> Any:
    return click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False),
                        help="the leader's database (default: $PIO_STATE_DIR/leader/pioreactor.sqlite)")(f)


def _db(db_path: str | None, readonly: bool = False, create: bool = False) -> Any:
    """The leader's database; a missing or too-new one is one line on stderr. Only `create` may make
    a new database file (a typo in --db must not leave an empty database behind)."""
    import os

    from leader import credentials, database

    path = db_path or database.default_path(credentials.default_leader_dir())
    if not create and not os.path.exists(path):
        raise click.ClickException(f"no leader database at {path}; start the leader first (pios leader start) or create an experiment")
    try:
        return database.connect(path, readonly=readonly)
    except (database.DatabaseError, OSError) as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # sqlite3.Error: not a database, locked past the busy timeout, ...
        raise click.ClickException(f"cannot open the leader database {path}: {e}") from None


def _split_units(units: tuple[str, ...]) -> list[str]:
    return [u.strip() for item in units for u in item.split(",") if u.strip()]


def _data_errors() -> tuple[type[Exception], ...]:
    from leader.backup import BackupError
    from leader.datasets import DatasetError
    from leader.experiments import ExperimentError
    from leader.export import ExportError

    return (ExperimentError, DatasetError, ExportError, BackupError)


@pios.group("experiments")
def experiments_group() -> None:
    """Experiments in the leader's database: create, list, assign units, label, end, delete."""


@experiments_group.command("list")
@click.option("--topology", "topology_path", default=None, type=click.Path(dir_okay=False),
              help="say which experiments this topology declares (default: ./topology.yaml if it exists)")
@click.option("--counts", is_flag=True, help="rows per table for each experiment")
@click.option("--json", "as_json", is_flag=True, help="stable JSON: one object per experiment")
@_db_option
def experiments_list(topology_path: str | None, counts: bool, as_json: bool, db_path: str | None) -> None:
    """Every experiment in the database (oldest first) with its units, and whether the topology
    declares it. Experiments the topology declares but the database does not hold are listed too."""
    import json
    import os

    from actors.topology import TopologyError, load
    from leader import credentials, database
    from leader import experiments as ex

    declared: set[str] | None = None
    path = topology_path or ("topology.yaml" if os.path.exists("topology.yaml") else None)
    if path is not None:
        try:
            declared = set(load(path, check_jobs=False).experiments)
        except TopologyError as e:
            raise click.ClickException(str(e)) from None
    rows: list[dict[str, Any]] = []
    if db_path or os.path.exists(database.default_path(credentials.default_leader_dir())):
        conn = _db(db_path, readonly=True)
        try:
            rows = ex.list_experiments(conn, counts=counts)
        finally:
            conn.close()
    for r in rows:
        r["in_database"] = True
        r["in_topology"] = None if declared is None else r["experiment"] in declared
    for name in sorted((declared or set()) - {r["experiment"] for r in rows}):
        rows.append({"experiment": name, "created_at": None, "ended_at": None, "description": "", "origin": None,
                     "units": [], "labels": {}, "in_database": False, "in_topology": True})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no experiments yet; create one with `pios experiments create NAME`")
        return
    click.echo(f"{'EXPERIMENT':<20} {'CREATED':<25} {'ENDED':<25} {'TOPOLOGY':<9} {'UNITS':<24} DESCRIPTION")
    for r in rows:
        topo = {None: "-", True: "yes", False: "no"}[r["in_topology"]]
        created = r["created_at"] or "(not in database)"
        units = ", ".join(f"{u} ({r['labels'][u]})" if u in r["labels"] else u for u in r["units"]) or "-"
        click.echo(f"{r['experiment']:<20} {created:<25} {r['ended_at'] or '-':<25} {topo:<9} {units:<24} {r['description']}")
        if counts and r["in_database"]:
            click.echo("    rows: " + (", ".join(f"{t} {n}" for t, n in r["rows"].items() if n) or "none"))


@experiments_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="one line saying what the experiment is")
@_db_option
def experiments_create(name: str, description: str, db_path: str | None) -> None:
    """Create experiment NAME."""
    from leader import experiments as ex

    conn = _db(db_path, create=True)
    try:
        exp = ex.create(conn, name, description, utc_now())
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"created experiment {exp['experiment']} at {exp['created_at']}")


@experiments_group.command("assign")
@click.argument("name")
@click.option("--units", "units", multiple=True, required=True, help="units, comma-separated (or repeat the option)")
@_db_option
def experiments_assign(name: str, units: tuple[str, ...], db_path: str | None) -> None:
    """Make units work for experiment NAME (a unit in another experiment moves)."""
    from leader import experiments as ex

    wanted = _split_units(units)
    conn = _db(db_path)
    try:
        moves = ex.assign(conn, name, wanted, utc_now())
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    moved = {m["unit"]: m["from"] for m in moves}
    for unit in wanted:
        if unit not in moved:
            click.echo(f"{unit}: already in {name}")
        elif moved[unit] is None:
            click.echo(f"{unit}: assigned to {name}")
        else:
            click.echo(f"{unit}: moved from {moved[unit]} to {name}")


@experiments_group.command("unassign")
@click.argument("name")
@click.option("--units", "units", multiple=True, required=True, help="units, comma-separated (or repeat the option)")
@_db_option
def experiments_unassign(name: str, units: tuple[str, ...], db_path: str | None) -> None:
    """Take units out of experiment NAME."""
    from leader import experiments as ex

    conn = _db(db_path)
    try:
        done = ex.unassign(conn, name, _split_units(units), utc_now())
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"unassigned from {name}: {', '.join(done)}")


@experiments_group.command("end")
@click.argument("name")
@_db_option
def experiments_end(name: str, db_path: str | None) -> None:
    """Mark experiment NAME ended and take its units out of it (its data stays)."""
    from leader import experiments as ex

    now = utc_now()
    conn = _db(db_path)
    try:
        units = ex.end(conn, name, now)
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"ended {name} at {now}; units unassigned: {', '.join(units) or 'none'}")


@experiments_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@_db_option
def experiments_delete(name: str, yes: bool, db_path: str | None) -> None:
    """Delete experiment NAME and every row of its data (asks first; export it before)."""
    from leader import experiments as ex

    conn = _db(db_path)
    try:
        try:
            ex.get(conn, name)
            if not yes:
                total = sum(ex.row_counts(conn, name).values())
                click.confirm(f"Delete experiment {name} and its {total} data rows? This cannot be undone", abort=True, err=True)
            deleted = ex.delete(conn, name)
        except _data_errors() as e:
            raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"deleted experiment {name}; rows deleted: {sum(deleted.values())}")
    for table, n in deleted.items():
        if n:
            click.echo(f"  {table}: {n}")


@experiments_group.command("label")
@click.argument("name")
@click.argument("unit")
@click.argument("label")
@_db_option
def experiments_label(name: str, unit: str, label: str, db_path: str | None) -> None:
    """Give UNIT the label LABEL in experiment NAME (labels are unique within an experiment)."""
    from leader import experiments as ex

    conn = _db(db_path)
    try:
        ex.set_label(conn, name, unit, label, utc_now())
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"{unit} is {label.strip()!r} in {name}")


@pios.command("export")
@click.option("--experiment", required=True, help="the experiment to export (one per export)")
@click.option("--dataset", "datasets", multiple=True, help="a dataset to export (repeat for several; default: all)")
@click.option("--start", default=None, help="only rows at or after this UTC time, with Z or an offset (2025-01-31T14:00:00Z)")
@click.option("--end", default=None, help="only rows before this time, with Z or an offset")
@click.option("--partition-by-unit", is_flag=True, help="one CSV per unit: <dataset>/<unit>.csv")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="the zip file to write")
@click.option("--force", is_flag=True, help="replace the output file if it exists")
@_db_option
def export_cmd(experiment: str, datasets: tuple[str, ...], start: str | None, end: str | None, partition_by_unit: bool,
               output: str, force: bool, db_path: str | None) -> None:
    """Export an experiment's data: a zip of CSV files with a manifest.json (docs/data.md)."""
    from leader.export import export

    bar: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(click.progressbar(length=max(total, 1), label="exporting", file=sys.stderr, show_pos=True))
            bar[0].__enter__()
            bar.append(0)
        bar[0].update(done - bar[1])
        bar[1] = done

    conn = _db(db_path, readonly=True)  # read-only: never blocks the ingest writer
    try:
        result = export(conn, experiment, output, datasets=list(datasets) or None, start=start, end=end,
                        partition_by_unit=partition_by_unit, progress=progress, overwrite=force)
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
        conn.close()
    click.echo(f"exported {result.rows} rows of {experiment} ({len(result.datasets)} datasets) to {result.path}")


@pios.command("backup")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="the backup file to write")
@click.option("--force", is_flag=True, help="replace the output file if it exists")
@_db_option
def backup_cmd(output: str, force: bool, db_path: str | None) -> None:
    """Copy the leader's database while it runs (the ingest keeps writing), checked for integrity."""
    from leader import credentials, database
    from leader.backup import backup

    src = db_path or database.default_path(credentials.default_leader_dir())
    try:
        result = backup(src, output, force=force)
    except _data_errors() as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"backed up {src} to {result.path}: {result.bytes} bytes, integrity ok, {result.seconds:.1f} s")


@pios.command("logs")
@click.option("--experiment", default=None, help="only this experiment's logs")
@click.option("--units", "units", multiple=True, help="only these units, comma-separated (or repeat the option)")
@click.option("--level", default=None, help="this level and more severe: debug, info, notice, warning, error, critical")
@click.option("-n", "lines", default=50, show_default=True, type=click.IntRange(min=0), help="how many of the latest lines")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines as they arrive (Ctrl-C to stop)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@_db_option
def logs_cmd(experiment: str | None, units: tuple[str, ...], level: str | None, lines: int, follow: bool, as_json: bool,
             db_path: str | None) -> None:
    """The units' log lines stored in the leader's database, oldest first."""
    import json
    import time

    from leader.datasets import levels_from, read_logs

    if level is not None:
        try:
            levels_from(level)
        except _data_errors() as e:
            raise click.ClickException(str(e)) from None
    conn = _db(db_path, readonly=True)
    wanted = _split_units(units)

    def show(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if as_json:
                click.echo(json.dumps({k: v for k, v in r.items() if k != "rowid"}))
            else:
                click.echo(f"{r['timestamp']} {r['pioreactor_unit']} [{r['experiment']}] {str(r['level']).upper():<8} {r['task']}: {r['message']}")

    try:
        rows = read_logs(conn, experiment=experiment, units=wanted, level=level, limit=lines)
        show(rows)
        if not follow:
            return
        last = rows[-1]["rowid"] if rows else (conn.execute("SELECT MAX(rowid) FROM logs").fetchone()[0] or 0)
        while True:  # poll by rowid: new rows only, in arrival order
            time.sleep(0.5)
            new = read_logs(conn, experiment=experiment, units=wanted, level=level, after_rowid=last)
            if new:
                show(new)
                last = new[-1]["rowid"]
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


# --- dashboard users and API tokens --------------------------------------------------------------------


def _leader_info() -> dict[str, Any]:
    """The running leader's leader.json (pid, web_url), or {}."""
    import json
    import os

    from leader.daemon import PID_FILE

    try:
        with open(os.path.join(_leader_dir(), PID_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\r\n")


def _audit_cli(conn: Any, action: str, details: dict[str, Any]) -> None:
    """Admin changes made on the leader's command line are audited too (user `cli:<login>`)."""
    import getpass
    import time

    from leader.web import auth

    auth.audit(conn, now=time.time(), username=f"cli:{getpass.getuser()}", role="admin", method="CLI",
               path="pios " + action.replace("_", " "), action=action, details=details)


def _auth_call(db_path: str | None, action: str, details: dict[str, Any], fn: Any, *args: Any, create: bool = False) -> Any:
    from leader.web import auth

    conn = _db(db_path, create=create)
    try:
        try:
            result = fn(conn, *args)
        except auth.AuthError as e:
            raise click.ClickException(str(e)) from None
        _audit_cli(conn, action, details)
        return result
    finally:
        conn.close()


@pios.group("users")
def users_group() -> None:
    """Dashboard users: viewer (reads), operator (runs jobs, doses), admin (users, deletes)."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["viewer", "operator", "admin"]), help="what the user may do")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin (else one is generated and printed)")
@_db_option
def users_add(name: str, role: str, password_stdin: bool, db_path: str | None) -> None:
    """Add dashboard user NAME."""
    import time

    from leader.web import auth

    password = _read_password(password_stdin)
    generated = password is None
    password = password if password is not None else auth.generate_password()
    _auth_call(db_path, "user_add", {"username": name, "role": role}, auth.create_user, name, role, password, time.time(), create=True)
    click.echo(f"added {name} ({role})" + (f"; password: {password}" if generated else ""))


@users_group.command("remove")
@click.argument("name")
@_db_option
def users_remove(name: str, db_path: str | None) -> None:
    """Remove dashboard user NAME with their sessions and API tokens."""
    from leader.web import auth

    _auth_call(db_path, "user_remove", {"username": name}, auth.remove_user, name)
    click.echo(f"removed {name}")


@users_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the new password from the first line of stdin (else one is generated and printed)")
@_db_option
def users_passwd(name: str, password_stdin: bool, db_path: str | None) -> None:
    """Set NAME's password (their open sessions end)."""
    from leader.web import auth

    password = _read_password(password_stdin)
    generated = password is None
    password = password if password is not None else auth.generate_password()
    _auth_call(db_path, "user_passwd", {"username": name}, auth.set_password, name, password)
    auth.forget_initial_password(_leader_dir(), name)
    click.echo(f"password of {name} changed" + (f"; new password: {password}" if generated else ""))


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one object per user")
@_db_option
def users_list(as_json: bool, db_path: str | None) -> None:
    """Dashboard users and their roles."""
    import json

    from leader.web import auth

    conn = _db(db_path, readonly=True)
    try:
        users = auth.list_users(conn)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(users, indent=2))
        return
    for u in users:
        click.echo(f"{u['username']:<20} {u['role']:<9} created {u['created_at']}{'  (disabled)' if u['disabled'] else ''}")


@pios.group("tokens")
def tokens_group() -> None:
    """API tokens for scripts (sent as `Authorization: Bearer <token>`)."""


@tokens_group.command("create")
@click.argument("name")
@click.option("--user", "username", required=True, help="the user the token acts as (with their role)")
@_db_option
def tokens_create(name: str, username: str, db_path: str | None) -> None:
    """Create API token NAME for --user; the token is printed once and never stored."""
    import time

    from leader.web import auth

    token = _auth_call(db_path, "token_create", {"name": name, "username": username}, auth.create_token, username, name, time.time())
    click.echo(token)


@tokens_group.command("revoke")
@click.argument("name")
@_db_option
def tokens_revoke(name: str, db_path: str | None) -> None:
    """Revoke API token NAME."""
    from leader.web import auth

    _auth_call(db_path, "token_revoke", {"name": name}, auth.revoke_token, name)
    click.echo(f"revoked {name}")


@pios.command("demo", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run the demo cluster of topology.yaml on this machine until Ctrl-C (as ./scripts/demo.sh)."""
    from worker.demo import main as demo_main

    sys.exit(demo_main(list(ctx.args)))


def utc_now() -> str:
    import time

    from actors.clock import utc_iso

    return utc_iso(time.time())


def main() -> None:
    pios(prog_name="pios")


if __name__ == "__main__":
    main()
