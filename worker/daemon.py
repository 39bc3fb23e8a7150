"""The node daemon: starts one unit's actor system, boots its supervisor, watches it, stops it cleanly.

Run in the foreground (``pio node start --foreground``, or systemd ``Type=simple`` with
``KillMode=control-group``) or detached by ``pio node start``. It:
1. refuses to start twice for a unit, and cleans up orphan actor processes of a crashed earlier run;
2. starts the Thespian system on the unit's loopback admin port (no threads exist in this process
   before the system forks its actors);
3. boots the ``NodeSupervisor`` and writes ``node.json`` once the node is up;
4. pings the supervisor every 2 s; if the actor system stops answering it cleans up and exits 1 so
   that a service manager restarts it;
5. on SIGTERM or SIGINT stops the jobs in the safe order, shuts the system down, and makes sure no
   process of the group is left.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
import uuid

from actors import actor_system
from actors.messages import Boot, NodeConfig, NodeInfo, Ping, Pong, StopNode
from actors.topology import Topology, TopologyError, load
from worker import node_files
from worker.node_files import PidFile
from worker.processes import pid_alive, stop_group

PING_EVERY = 2.0
PING_TIMEOUT = 3.0
MISSES_BEFORE_EXIT = 3
NO_EXPERIMENT = "$no_experiment_present"


class NodeError(RuntimeError):
    """A reason the node cannot start, worded for the user."""


def node_config(topology: Topology, unit_name: str) -> NodeConfig:
    unit = topology.units[unit_name]
    ndir = node_files.node_dir(unit_name)
    return NodeConfig(
        unit=unit_name,
        experiment=topology.experiment_of(unit_name) or NO_EXPERIMENT,
        hardware=unit.hardware,
        broker_host=topology.broker.host,
        broker_port=topology.broker.port,
        broker_username=topology.broker.username,
        broker_password=topology.broker.password,
        admin_port=unit.admin_port,
        time_scale=unit.time_scale,
        clock_anchor=time.time(),
        state_dir=ndir,
        plugin_dir=node_files.plugin_dir(),
    )


def clear_leftovers(unit: str, admin_port: int) -> None:
    """Refuse if the node runs; otherwise remove what a crashed earlier run left behind."""
    previous = PidFile.read(unit)
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


def run(topology_path: str, unit: str) -> int:
    try:
        topology = load(topology_path)
    except TopologyError as e:
        print(str(e), file=sys.stderr)
        return 2
    if unit not in topology.units:
        print(f"unit {unit!r} is not in {topology_path}; units there: {', '.join(sorted(topology.units))}", file=sys.stderr)
        return 2
    config = node_config(topology, unit)
    os.makedirs(config.state_dir, exist_ok=True)
    try:
        clear_leftovers(unit, config.admin_port)
    except NodeError as e:
        print(str(e), file=sys.stderr)
        return 1

    os.environ.setdefault("THESPLOG_FILE", os.path.join(config.state_dir, "thespian.log"))
    os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")
    # Imported before the system forks so that every actor shares these pages copy-on-write.
    import paho.mqtt.client  # noqa: F401

    import actors.supervisor  # noqa: F401

    asys = actor_system.start(config.admin_port, {"pioactors.unit": unit}, os.path.join(config.state_dir, "node.log"))
    pgid = None
    try:
        supervisor = actor_system.supervisor(asys)
        info = asys.ask(supervisor, Boot(config=config), 15)
        if not isinstance(info, NodeInfo) or not info.booted:
            print(f"node {unit} did not boot: {info!r}; see {config.state_dir}/node.log", file=sys.stderr)
            return 1
        pgid = info.pgid
        PidFile(unit=unit, daemon_pid=os.getpid(), pgid=pgid, admin_port=config.admin_port, started_at=time.time()).write()
        print(f"node {unit} up: admin port {config.admin_port}, broker {config.broker_host}:{config.broker_port}", flush=True)
        code = _watch(asys, supervisor)
        if code == 0:
            try:
                asys.ask(supervisor, StopNode(request_id=uuid.uuid4().hex), 20)
            except Exception as e:  # the system may already be going; the group cleanup below still runs
                print(f"orderly stop of {unit} failed: {e}", file=sys.stderr)
        return code
    finally:
        try:
            asys.shutdown()
        except Exception:
            pass
        if pgid is not None:
            stop_group(pgid)
        PidFile.remove(unit)


def _watch(asys: object, supervisor: object) -> int:
    """Block until SIGTERM/SIGINT (return 0) or until the actor system stops answering (return 1)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    stop = {"requested": False}

    def request_stop(_signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    misses = 0
    while not stop["requested"]:
        ready, _, _ = select.select([read_fd], [], [], PING_EVERY)
        if ready:
            os.read(read_fd, 64)
            continue
        try:
            reply = asys.ask(supervisor, Ping(request_id=uuid.uuid4().hex), PING_TIMEOUT)  # type: ignore[attr-defined]
        except Exception:
            reply = None
        misses = 0 if isinstance(reply, Pong) else misses + 1
        if misses >= MISSES_BEFORE_EXIT:
            print("the actor system stopped answering; cleaning up and exiting", file=sys.stderr, flush=True)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.daemon")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--unit", required=True)
    args = parser.parse_args(argv)
    return run(args.topology, args.unit)


if __name__ == "__main__":
    sys.exit(main())
