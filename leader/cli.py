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


@pios.command("status")
@click.option("--topology", "topology_path", default="topology.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="stable JSON: one object per unit")
def status(topology_path: str, as_json: bool) -> None:
    """Desired against actual for every unit: reachable, desired jobs, actual jobs, in sync."""
    import json

    from actors import topics

    topology = _topology(topology_path)
    client = _connect(topology)
    try:
        held = client.retained([topics.node_topic("+", "+")])
    finally:
        client.close()
    rows = []
    for unit in sorted(topology.units):
        state = held.get(topics.node_topic(unit, topics.STATE))
        desired = _parse_json(held.get(topics.desired_topic(unit)))
        actual = _parse_json(held.get(topics.actual_topic(unit)))
        desired_jobs = sorted((desired or {}).get("jobs", {}))
        actual_jobs = sorted(j for j, v in (actual or {}).get("jobs", {}).items() if v.get("state") in ("init", "ready", "sleeping"))
        in_sync = bool(actual and desired and actual.get("generation") == desired.get("generation") and actual.get("in_sync"))
        rows.append({
            "unit": unit,
            "reachable": state == "ready",
            "state": state or "unknown",
            "desired_jobs": desired_jobs,
            "actual_jobs": actual_jobs,
            "in_sync": in_sync if desired else not actual_jobs,
            "errors": (actual or {}).get("errors", []),
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        sync = "in sync" if r["in_sync"] else "NOT in sync"
        click.echo(f"{r['unit']:<12} {r['state']:<13} {sync:<12} desired: {', '.join(r['desired_jobs']) or '-'}")
        click.echo(f"{'':<12} {'':<13} {'':<12} actual:  {', '.join(r['actual_jobs']) or '-'}")
        for error in r["errors"]:
            click.echo(f"{'':<12} error: {error}")


def _parse_json(text: str | None) -> Any:
    import json

    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


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
        click.echo(json.dumps({"running": pid is not None, "pid": pid, **view}, indent=2))
        return
    click.echo(f"leader: {'running (pid %d)' % pid if pid else 'not running'}")
    for unit in view.get("units", []) if pid else []:
        sync = {True: "in sync", False: "NOT in sync", None: "-"}[unit["in_sync"]]
        click.echo(f"  {unit['unit']:<12} {unit['state']:<13} since {unit['since'] or '-':<25} {sync}")
    if pid is None:
        sys.exit(1)


@pios.group("experiments")
def experiments_group() -> None:
    """The experiments the topology declares."""


@experiments_group.command("list")
@click.option("--topology", "topology_path", default="topology.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def experiments_list(topology_path: str, as_json: bool) -> None:
    """Each experiment with its units and jobs."""
    import json

    topology = _topology(topology_path)
    rows = [
        {"experiment": name, "units": list(exp.units), "jobs": sorted({j for u in exp.units for j in topology.jobs_for(u)})}
        for name, exp in sorted(topology.experiments.items())
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['experiment']:<16} units: {', '.join(r['units']) or '-'}   jobs: {', '.join(r['jobs']) or '-'}")


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
