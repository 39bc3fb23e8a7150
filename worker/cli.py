"""``pio``: the command line of one node. It talks to the node's local actor system over loopback.

Every command takes ``--topology`` and ``--unit`` (defaults: ``$PIO_TOPOLOGY`` / ``$PIO_UNIT``, then
``./topology.yaml`` and the host name). Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, NoReturn

import click

import actors
from actors import actor_system
from actors.topology import Topology, TopologyError, load
from worker import node_files
from worker.node_files import PidFile
from worker.processes import pid_alive, stop_group

START_TIMEOUT = 60.0
ASK_TIMEOUT = 10.0
RUN_TIMEOUT = 45.0


class Target:
    """The unit a command acts on, resolved from options, environment and the topology file."""

    def __init__(self, topology_path: str | None, unit: str | None) -> None:
        self.topology_path = topology_path or os.environ.get("PIO_TOPOLOGY") or "topology.yaml"
        self.unit = unit or os.environ.get("PIO_UNIT") or socket.gethostname()
        self._topology: Topology | None = None

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            try:
                # The jobs section is the leader's to check (`pios apply`); a node only needs its unit.
                self._topology = load(self.topology_path, check_jobs=False)
            except TopologyError as e:
                fail(str(e), code=2)
            if self.unit not in self._topology.units:
                units = ", ".join(sorted(self._topology.units))
                fail(f"unit {self.unit!r} is not in {self.topology_path}; units there: {units} (choose one with --unit)", code=2)
        return self._topology

    @property
    def admin_port(self) -> int:
        return self.topology.units[self.unit].admin_port


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def new_id() -> str:
    return uuid.uuid4().hex


class Node:
    """A CLI's connection to a running node. Probes first: attaching never starts a system."""

    def __init__(self, target: Target) -> None:
        self.target = target
        port = target.admin_port
        if not actor_system.admin_answers(port):
            fail(f"no node running for unit {target.unit} (start one with `pio node start --unit {target.unit}`)")
        from actors.messages import Hello, NodeInfo

        self.asys = actor_system.attach(port)
        self.supervisor = actor_system.supervisor(self.asys)
        info = self.ask(Hello(request_id=new_id()), 5.0)
        if not isinstance(info, NodeInfo):
            fail(f"admin port {port} answers, but not as a pioactors node; check admin_port of {target.unit}")
        if info.unit != target.unit:
            if info.unit is None:
                fail(f"node {target.unit} is still starting; try again in a moment")
            fail(f"admin port {port} belongs to node {info.unit}, not {target.unit}; check the topology")

    def ask(self, message: Any, timeout: float = ASK_TIMEOUT) -> Any:
        request_id = getattr(message, "request_id", None)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"node {self.target.unit} did not answer within {timeout:.0f} s; see `pio logs`")
            reply = self.asys.ask(self.supervisor, message, left) if message is not None else self.asys.listen(left)
            if reply is None:
                fail(f"node {self.target.unit} did not answer within {timeout:.0f} s; see `pio logs`")
            if getattr(reply, "request_id", None) == request_id:
                return reply
            message = None  # a late reply to something else: keep listening for ours

    def request(self, message: Any, timeout: float = ASK_TIMEOUT) -> Any:
        """Ask and return the result, or fail with the node's error sentence."""
        reply = self.ask(message, timeout)
        if not reply.ok:
            fail(reply.error)
        return reply.result


def _target_options(f: Any) -> Any:
    f = click.option("--unit", "unit", default=None, help="unit name (default: $PIO_UNIT, then the host name)")(f)
    f = click.option("--topology", "topology", default=None, type=click.Path(), help="topology file (default: $PIO_TOPOLOGY, then ./topology.yaml)")(f)
    return f


def pass_target(f: Any) -> Any:
    """Give a command the resolved :class:`Target`; ``--unit``/``--topology`` work before or after it."""

    @_target_options
    @click.pass_context
    @functools.wraps(f)
    def wrapper(ctx: click.Context, *args: Any, topology: str | None = None, unit: str | None = None, **kwargs: Any) -> Any:
        return f(_subtarget(ctx, topology, unit), *args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_target_options
@click.pass_context
def pio(ctx: click.Context, topology: str | None, unit: str | None) -> None:
    """Run and inspect the jobs of one bioreactor node."""
    ctx.obj = Target(topology, unit)


def _subtarget(ctx: click.Context, topology: str | None, unit: str | None) -> Target:
    """Options given after the subcommand win over those given before it."""
    base: Target = ctx.find_object(Target)
    if topology is None and unit is None:
        return base
    return Target(topology or base.topology_path, unit or base.unit)


# --- node ---------------------------------------------------------------------------------------------


@pio.group()
def node() -> None:
    """Start, stop and inspect this unit's node daemon."""


@node.command("start")
@click.option("--foreground", is_flag=True, help="run in the foreground (for systemd)")
@pass_target
def node_start(target: Target, foreground: bool) -> None:
    """Start the node daemon; returns when the node is up."""
    _ = target.topology  # validate before spawning anything
    argv = [sys.executable, "-m", "worker.daemon", "--topology", os.path.abspath(target.topology_path), "--unit", target.unit]
    if foreground:
        os.execv(sys.executable, argv)
    previous = PidFile.read(target.unit)
    if previous is not None and pid_alive(previous.daemon_pid):
        fail(f"node {target.unit} is already running (pid {previous.daemon_pid}); stop it with `pio node stop --unit {target.unit}`")
    ndir = node_files.node_dir(target.unit)
    os.makedirs(ndir, exist_ok=True)
    log_path = os.path.join(ndir, "daemon.log")
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = PidFile.read(target.unit)
        if info is not None and info.daemon_pid == proc.pid:
            click.echo(f"node {target.unit} started (pid {proc.pid}, admin port {info.admin_port})")
            return
        if proc.poll() is not None:
            fail(f"node {target.unit} failed to start: {_last_line(log_path)}")
        time.sleep(0.05)
    proc.terminate()
    fail(f"node {target.unit} did not come up within {START_TIMEOUT:.0f} s; see {log_path}")


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1] if lines else "(no output)"
    except OSError:
        return "(no log)"


@node.command("stop")
@pass_target
def node_stop(target: Target) -> None:
    """Stop the node: jobs in the safe order, then every actor process."""
    info = PidFile.read(target.unit)
    if info is None:
        fail(f"no node running for unit {target.unit} (start one with `pio node start --unit {target.unit}`)")
    if pid_alive(info.daemon_pid):
        os.kill(info.daemon_pid, 15)
        deadline = time.monotonic() + 40.0
        while pid_alive(info.daemon_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(info.daemon_pid):
            os.kill(info.daemon_pid, 9)
    leftovers = stop_group(info.pgid)
    PidFile.remove(target.unit)
    suffix = f" (cleaned up {leftovers} leftover process(es))" if leftovers else ""
    click.echo(f"node {target.unit} stopped{suffix}")


@node.command("zero-outputs")
@click.option("--force", is_flag=True, help="even while the node runs")
@pass_target
def node_zero_outputs(target: Target, force: bool) -> None:
    """Turn every PWM output and LED off, straight at the hardware (systemd ExecStartPre/ExecStopPost).

    pigpiod keeps PWM running after its client dies, so a unit should zero its outputs whenever the
    node starts or stops, however it stopped."""
    unit = target.topology.units[target.unit]
    if unit.hardware == "sim":
        click.echo(f"{target.unit} is simulated: its outputs stop with the node; nothing to do")
        return
    info = PidFile.read(target.unit)
    if not force and info is not None and pid_alive(info.daemon_pid):
        fail(f"node {target.unit} is running and owns its outputs; stop it first (or use --force)")
    from actors.hardware import hardware_access
    from actors.messages import HardwareConfig

    hw = HardwareConfig(hat=unit.hardware, model=unit.model)
    desc = hardware_access.description(hw)
    problems = []
    try:
        hardware_access.open_pwm(hw, desc).close()  # opening zeroes every pin; closing zeroes again
    except Exception as e:
        problems.append(f"PWM: {e}")
    try:
        led = hardware_access.led_chip(hardware_access.open_i2c(hw), desc)
        for pocket in desc.leds.channels:
            led.set_intensity(hardware_access.led_output(desc, pocket), 0.0)
    except Exception as e:
        problems.append(f"LEDs: {e}")
    if problems:
        fail("; ".join(problems))
    click.echo(f"{target.unit}: every PWM output and LED is off")


@node.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_target
def node_status(target: Target, as_json: bool) -> None:
    """Is this unit's node running?"""
    info = PidFile.read(target.unit)
    running = info is not None and pid_alive(info.daemon_pid) and actor_system.admin_answers(info.admin_port)
    if as_json:
        click.echo(json.dumps({"unit": target.unit, "running": running, "pid": info.daemon_pid if info else None}))
    elif running:
        assert info is not None
        click.echo(f"node {target.unit}: running (pid {info.daemon_pid}, admin port {info.admin_port}, up {time.time() - info.started_at:.0f} s)")
    else:
        click.echo(f"node {target.unit}: not running")
    if not running:
        sys.exit(3)


# --- jobs ---------------------------------------------------------------------------------------------


def _parse_job_options(args: list[str]) -> dict[str, str]:
    """``--target-rpm 500 --use-rpm`` -> {"target_rpm": "500", "use_rpm": "true"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            fail(f"unexpected argument {arg!r}; job options look like --target-rpm 500")
        key, eq, value = arg[2:].partition("=")
        name = key.replace("-", "_")
        if eq:
            out[name] = value
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[name] = args[i + 1]
            i += 2
        else:
            out[name] = "true"
            i += 1
    return out


@pio.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("job")
@click.pass_context
def run_job(ctx: click.Context, job: str) -> None:
    """Start JOB with --<setting> VALUE options; returns when the job is ready."""
    from actors.messages import RunJob

    settings = _parse_job_options(list(ctx.args))
    # --unit and --topology are never job settings: they choose the node.
    target = _subtarget(ctx, settings.pop("topology", None), settings.pop("unit", None))
    node = Node(target)
    info = node.request(RunJob(request_id=new_id(), job=job, settings=settings), RUN_TIMEOUT)
    click.echo(f"{info.name} is {info.state} on {node.target.unit} (pid {info.pid}, experiment {info.experiment})")


@pio.command("kill")
@click.argument("job", required=False)
@click.option("--all", "all_jobs", is_flag=True, help="stop every job (pumps first, LEDs last)")
@pass_target
def kill(target: Target, job: str | None, all_jobs: bool) -> None:
    """Stop JOB, or every job with --all."""
    from actors.messages import KillJobs

    if bool(job) == all_jobs:
        fail("name one job (`pio kill stirring`) or use --all")
    node = Node(target)
    stopped = node.request(KillJobs(request_id=new_id(), job=job), RUN_TIMEOUT)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@pio.group()
def jobs() -> None:
    """List jobs and change their settings."""


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (see docs/cli.md)")
@pass_target
def jobs_list(target: Target, as_json: bool) -> None:
    from actors.messages import ListJobs

    infos = Node(target).request(ListJobs(request_id=new_id()))
    if as_json:
        rows = [
            {"name": i.name, "state": i.state, "experiment": i.experiment, "pid": i.pid, "settings": i.settings, "restarts": i.restarts}
            for i in infos
        ]
        click.echo(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    if not infos:
        click.echo("no jobs running")
        return
    click.echo(f"{'JOB':<24} {'STATE':<13} {'PID':>7}  EXPERIMENT")
    for i in infos:
        click.echo(f"{i.name:<24} {i.state:<13} {i.pid or '-':>7}  {i.experiment}")


@jobs.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("job")
@click.argument("setting")
@click.argument("value")
@pass_target
def jobs_set(target: Target, job: str, setting: str, value: str) -> None:
    """Change SETTING of a running JOB to VALUE."""
    from actors.messages import SetJobSetting

    result = Node(target).request(SetJobSetting(request_id=new_id(), job=job, setting=setting, value=value))
    click.echo(f"{job}: {setting} = {result}")


@pio.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (see docs/cli.md)")
@pass_target
def status(target: Target, as_json: bool) -> None:
    """The node's health, broker link, jobs and outputs."""
    from actors.messages import GetStatus

    st = Node(target).request(GetStatus(request_id=new_id()))
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    broker = st["broker"]
    link = "connected" if broker["connected"] else f"DISCONNECTED ({broker['last_error'] or 'connecting'})"
    click.echo(f"unit {st['unit']}  version {st['version']}  hardware {st['hardware']}  time_scale {st['time_scale']}")
    click.echo(f"experiment {st['experiment']}  up {st['uptime_seconds']:.0f} s")
    click.echo(f"broker {broker['address']}: {link}")
    jobs_text = ", ".join(f"{k} ({v})" for k, v in sorted(st["jobs"].items())) or "none"
    click.echo(f"jobs: {jobs_text}")
    pwm = st["outputs"].get("pwm", {})
    on = {k: v for k, v in pwm.get("outputs", {}).items() if v}
    click.echo("pwm outputs: " + (", ".join(f"{k} {v:.1f}%" for k, v in on.items()) or "all off"))


# --- simulator ---------------------------------------------------------------------------------------


@pio.group()
def sim() -> None:
    """Simulated hardware controls (sim units only)."""


@sim.command("fault")
@click.argument("knob")
@click.argument("state", type=click.Choice(["on", "off"]))
@pass_target
def sim_fault(target: Target, knob: str, state: str) -> None:
    """Switch a simulator fault KNOB on or off (e.g. stalled_motor)."""
    from actors.messages import SimFault

    Node(target).request(SimFault(request_id=new_id(), knob=knob, on=state == "on"))
    click.echo(f"{knob}: {state}")


@sim.command("truth")
@click.option("--json", "as_json", is_flag=True)
@pass_target
def sim_truth(target: Target, as_json: bool) -> None:
    """What the simulated vessel really holds (OD, growth rate, volume, temperatures, RPM)."""
    from actors.messages import GetSimTruth

    truth = Node(target).request(GetSimTruth(request_id=new_id()))
    if as_json:
        click.echo(json.dumps(truth, indent=2, sort_keys=True))
    else:
        for key, value in sorted(truth.items()):
            click.echo(f"{key:<22} {value}")


# --- other --------------------------------------------------------------------------------------------


@pio.command("mqtt")
@click.option("-t", "--topic", "topic_filter", default="pioreactor/#", show_default=True)
@click.option("--count", type=int, default=None, help="exit after this many messages")
@click.option("--timeout", type=float, default=None, help="exit after this many seconds")
@pass_target
def mqtt_tail(target: Target, topic_filter: str, count: int | None, timeout: float | None) -> None:
    """Print messages from the cluster's broker as they arrive."""
    import paho.mqtt.client as mqtt

    from worker.daemon import NodeError, broker_credentials

    broker = target.topology.broker
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        own = broker_credentials(node_files.node_dir(target.unit))  # the unit's login on a secured broker
    except NodeError as e:
        fail(str(e))
    if own is not None:
        client.username_pw_set(*own)
    elif broker.username:
        client.username_pw_set(broker.username, broker.password)
    seen = {"n": 0}

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        click.echo(f"{msg.topic} {msg.payload.decode('utf-8', errors='replace')}")
        seen["n"] += 1

    client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
    client.on_message = on_message
    try:
        client.connect(broker.host, broker.port, 30)
    except OSError as e:
        fail(f"cannot reach the broker at {broker.host}:{broker.port}: {e.strerror or e}")
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while (count is None or seen["n"] < count) and (deadline is None or time.monotonic() < deadline):
            client.loop(timeout=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()


@pio.command("logs")
@click.option("-n", "lines", default=50, show_default=True, help="how many recent lines")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@pass_target
def logs(target: Target, lines: int, follow: bool) -> None:
    """Show this node's log."""
    path = os.path.join(node_files.node_dir(target.unit), "node.log")
    if not os.path.exists(path):
        fail(f"no log yet for unit {target.unit} at {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.readlines()[-lines:]:
            click.echo(line.rstrip("\n"))
        while follow:
            line = f.readline()
            if line:
                click.echo(line.rstrip("\n"))
            else:
                time.sleep(0.2)


@pio.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"pioactors {actors.__version__}")


from worker import calibrations_cli  # noqa: E402  (after `pio` exists: it attaches `pio calibrations`)

calibrations_cli.register(pio)


def main() -> None:
    pio(prog_name="pio")


if __name__ == "__main__":
    main()
