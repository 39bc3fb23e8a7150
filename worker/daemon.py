"""The node daemon: starts one unit's actor system, boots its supervisor, watches it, stops it cleanly.

Run in the foreground (``pio node start --foreground``, or systemd ``Type=simple`` with
``KillMode=control-group``) or detached by ``pio node start``. It:
1. refuses to start twice for a unit, and cleans up orphan actor processes of a crashed earlier run;
2. starts the Thespian system on the unit's loopback admin port (no threads exist in this process
   before the system forks its actors);
3. boots the ``NodeSupervisor`` and writes ``node.json`` once the node is up;
4. watches the admin port and pings the supervisor every 2 s; if the actor system is lost it stops
   what is left of it and starts it again, resuming the jobs that ran (after repeated losses it exits
   1 so that a service manager takes over);
5. on SIGTERM or SIGINT stops the jobs in the safe order, shuts the system down, and makes sure no
   process of the group is left.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
import uuid

from typing import Any

from actors import actor_system
from actors.messages import Boot, NodeConfig, NodeInfo, Ping, Pong, StopNode
from actors.supervision import CrashHistory, RestartPolicy, decide_restart, record_start
from actors.topology import Topology, TopologyError, load
from worker import node_files
from worker.node_files import PidFile
from worker.processes import admin_pid, pid_alive, stop_group

PING_EVERY = 2.0
PING_TIMEOUT = 3.0
MISSES_BEFORE_EXIT = 3
NO_EXPERIMENT = "$no_experiment_present"


class NodeError(RuntimeError):
    """A reason the node cannot start, worded for the user."""


BROKER_CREDENTIALS_FILE = "broker_credentials.json"


def broker_credentials(ndir: str) -> tuple[str, str] | None:
    """The unit's own broker identity from ``<node_dir>/broker_credentials.json``, None when it has none.

    The leader issues one per unit (`pios broker credentials <unit> --json`); without the file the node uses
    the topology's broker username/password (an open test broker needs none).
    """
    path = os.path.join(ndir, BROKER_CREDENTIALS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NodeError(f"{path}: cannot read the broker credentials ({e}); write it as {{\"username\": ..., \"password\": ...}} "
                        f"(`pios broker credentials <unit> --json` on the leader prints it)") from None
    if not (isinstance(data, dict) and isinstance(data.get("username"), str) and data["username"]
            and isinstance(data.get("password"), str) and data["password"]):
        raise NodeError(f"{path}: expected {{\"username\": \"<unit>\", \"password\": \"...\"}} with non-empty strings; "
                        f"`pios broker credentials <unit> --json` on the leader prints it")
    return data["username"], data["password"]


def node_config(topology: Topology, unit_name: str) -> NodeConfig:
    """The node's configuration; raises NodeError when its broker credentials file is unusable."""
    unit = topology.units[unit_name]
    ndir = node_files.node_dir(unit_name)
    own = broker_credentials(ndir)
    username, password = own if own is not None else (topology.broker.username, topology.broker.password)
    return NodeConfig(
        unit=unit_name,
        experiment=topology.experiment_of(unit_name) or NO_EXPERIMENT,
        hardware=unit.hardware,
        broker_host=topology.broker.host,
        broker_port=topology.broker.port,
        broker_username=username,
        broker_password=password,
        admin_port=unit.admin_port,
        time_scale=unit.time_scale,
        model=unit.model,
        simulation=unit.simulation,
        clock_anchor=time.time(),
        state_dir=ndir,
        plugin_dir=node_files.plugin_dir(),
    )


def clear_leftovers(unit: str, admin_port: int) -> bool:
    """Refuse if the node runs; otherwise remove what a crashed earlier run left behind.

    Returns True when an earlier run ended without a clean stop (its jobs should be resumed).
    """
    previous = PidFile.read(unit)
    crashed = previous is not None
    if previous is not None:
        if previous.daemon_pid != os.getpid() and pid_alive(previous.daemon_pid):
            raise NodeError(f"node {unit} is already running (pid {previous.daemon_pid}); stop it with `pio node stop --unit {unit}`")
        stopped = stop_group(previous.pgid)
        if stopped:
            print(f"cleaned up {stopped} orphan actor process(es) of an earlier run of {unit}", file=sys.stderr)
        PidFile.remove(unit)
    if actor_system.admin_answers(admin_port):
        raise NodeError(
            f"admin port {admin_port} of unit {unit} is already in use by another process; "
            f"stop that process or give {unit} another admin_port in the topology"
        )
    return crashed


def run(topology_path: str, unit: str) -> int:
    try:
        topology = load(topology_path, check_jobs=False)  # jobs are checked by the leader and by each job
    except TopologyError as e:
        print(str(e), file=sys.stderr)
        return 2
    if unit not in topology.units:
        print(f"unit {unit!r} is not in {topology_path}; units there: {', '.join(sorted(topology.units))}", file=sys.stderr)
        return 2
    try:
        config = node_config(topology, unit)
    except NodeError as e:
        print(str(e), file=sys.stderr)
        return 2
    os.makedirs(config.state_dir, exist_ok=True)
    try:
        resume = clear_leftovers(unit, config.admin_port)
    except NodeError as e:
        print(str(e), file=sys.stderr)
        return 1

    os.environ.setdefault("THESPLOG_FILE", os.path.join(config.state_dir, "thespian.log"))
    os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")
    # Imported before the system forks so that every actor shares these pages copy-on-write.
    import paho.mqtt.client  # noqa: F401

    import actors.supervisor  # noqa: F401

    stopper = _Stopper()
    history = CrashHistory()
    while True:
        history = record_start(history, time.monotonic())
        outcome = _run_system(config, resume, stopper)
        if outcome != LOST:
            return 0 if outcome == STOPPED else 1
        decision = decide_restart(SYSTEM_RESTARTS, history, time.monotonic())
        history = decision.history
        if not decision.restart:
            print(f"node {unit}: the actor system keeps failing ({decision.reason}); exiting", file=sys.stderr, flush=True)
            return 1
        print(f"node {unit}: the actor system was lost; {decision.reason}", file=sys.stderr, flush=True)
        if stopper.wait(decision.delay):
            return 0
        resume = True


STOPPED, LOST, FAILED = "stopped", "lost", "failed"
# The daemon restarts a lost actor system itself; past this it exits non-zero for a service manager.
SYSTEM_RESTARTS = RestartPolicy(max_restarts=5, window_seconds=600.0, base_delay=1.0, max_delay=30.0)


def _run_system(config: NodeConfig, resume: bool, stopper: "_Stopper") -> str:
    unit = config.unit
    asys = actor_system.start(config.admin_port, {"pioactors.unit": unit}, os.path.join(config.state_dir, "node.log"))
    pgid = None
    outcome = FAILED
    try:
        supervisor = actor_system.supervisor(asys)
        info = asys.ask(supervisor, Boot(config=config, resume=resume), 15)
        if not isinstance(info, NodeInfo) or not info.booted:
            print(f"node {unit} did not boot: {info!r}; see {config.state_dir}/node.log", file=sys.stderr)
            return FAILED
        pgid = info.pgid
        PidFile(unit=unit, daemon_pid=os.getpid(), pgid=pgid, admin_port=config.admin_port, started_at=time.time()).write()
        print(f"node {unit} up: admin port {config.admin_port}, broker {config.broker_host}:{config.broker_port}", flush=True)
        admin = admin_pid(pgid)
        if admin is None:
            print(f"node {unit}: cannot find the actor system's admin process", file=sys.stderr)
            return FAILED
        outcome = _watch(asys, supervisor, admin, stopper)
        if outcome == STOPPED:
            try:
                asys.ask(supervisor, StopNode(request_id=uuid.uuid4().hex), 20)
            except Exception as e:  # the system may already be going; the group cleanup below still runs
                print(f"orderly stop of {unit} failed: {e}", file=sys.stderr)
        return outcome
    finally:
        if outcome != LOST:
            try:
                asys.shutdown()
            except Exception:
                pass
        if pgid is not None:
            stop_group(pgid)
        if outcome != LOST:
            PidFile.remove(unit)


class _Stopper:
    """SIGTERM/SIGINT, seen through a self-pipe so that waiting for them needs no thread."""

    def __init__(self) -> None:
        self.requested = False
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd)
        signal.signal(signal.SIGTERM, self._request)
        signal.signal(signal.SIGINT, self._request)

    def _request(self, _signum: int, _frame: object) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True if a stop was requested."""
        if not self.requested:
            ready, _, _ = select.select([self.read_fd], [], [], seconds)
            if ready:
                os.read(self.read_fd, 64)
        return self.requested


def _watch(asys: Any, supervisor: Any, admin: int, stopper: _Stopper) -> str:
    """Block until a stop is requested (STOPPED) or the actor system is lost (LOST).

    The admin is checked by its pid: actors orphaned by a dead admin still answer pings themselves,
    and its listening socket, inherited by other actor processes, still accepts connections.
    """
    misses = 0
    while not stopper.wait(PING_EVERY):
        if not pid_alive(admin):
            print("the actor system's admin is gone", file=sys.stderr, flush=True)
            return LOST
        try:
            reply = asys.ask(supervisor, Ping(request_id=uuid.uuid4().hex), PING_TIMEOUT)
        except Exception:
            reply = None
        misses = 0 if isinstance(reply, Pong) else misses + 1
        if misses >= MISSES_BEFORE_EXIT:
            print("the node supervisor stopped answering", file=sys.stderr, flush=True)
            return LOST
    return STOPPED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.daemon")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--unit", required=True)
    args = parser.parse_args(argv)
    return run(args.topology, args.unit)


if __name__ == "__main__":
    sys.exit(main())
