"""The demo: the repository's topology on this machine, with live values, until Ctrl-C.

It starts the leader (its own secured Mosquitto on the topology's broker port, every unit's desired state
from the topology, ClusterWatch), then one node daemon per simulated unit, each logging in to the broker
with its own credentials and starting the jobs its experiment declares. A simulated unit's pumps are
calibrated first, as a user would with `pio calibrations run`, so the dosing automations can dose by
volume. It prints each unit's live values. Ctrl-C (or SIGTERM) stops the nodes and the leader, and leaves
no process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from actors.topology import Topology, TopologyError, load


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def pio(topology: Topology, unit: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("worker.cli", "--topology", topology.path, "--unit", unit, *args)


def pios(*args: str) -> subprocess.CompletedProcess[str]:
    return run("leader.cli", *args)


def calibrate_sim_pumps(topology: Topology, unit: str) -> None:
    """Give a simulated unit's pumps the calibration a user would measure (their true, seeded flow),
    unless it already has its own."""
    from actors.calibration_store import CalibrationStore
    from actors.calibrations import PUMP_DEVICES, PumpCalibration
    from actors.clock import utc_iso
    from actors.hardware.sim_vessel import sim_seed
    from actors.hardware.vessel import Vessel, VesselParams
    from worker import node_files

    store = CalibrationStore.for_node(node_files.node_dir(unit))
    pumps = Vessel(VesselParams(seed=sim_seed(unit, dict(topology.units[unit].simulation)))).pumps
    for device in PUMP_DEVICES:
        if store.active(device) is not None:
            continue
        rate = pumps[device.removesuffix("_pump")].actual_ml_per_second_at_100
        xs = [5.0, 10.0, 20.0]
        store.save(PumpCalibration.from_points(
            xs, [rate * x for x in xs], degree=1, name="demo", device=device, created_at=utc_iso(time.time()),
            calibrated_on_unit=unit, hz=250.0, dc=100.0,
        ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument("--topology", default=os.environ.get("PIO_TOPOLOGY", "topology.yaml"))
    parser.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    args = parser.parse_args(argv)
    path = os.path.abspath(args.topology)
    try:
        topology = load(path)
    except TopologyError as e:
        print(str(e), file=sys.stderr)
        return 2
    units = [u for u in topology.units.values() if u.hardware == "sim"]
    if not units:
        print(f"error: {args.topology} has no `hardware: sim` units to run here", file=sys.stderr)
        return 2

    stop = {"requested": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))

    leader_up = False
    started: list[str] = []
    try:
        began = time.time()
        result = pios("leader", "start", "--topology", path, "--unit-credentials")
        print((result.stdout or result.stderr).strip())
        if result.returncode != 0:
            return 1
        leader_up = True
        _print_dashboard(began)
        for unit in units:
            calibrate_sim_pumps(topology, unit.name)
            result = pio(topology, unit.name, "node", "start")
            print((result.stdout or result.stderr).strip())
            if result.returncode != 0:
                return 1
            started.append(unit.name)
        print()
        print("Each unit starts the jobs of its experiment. Live values below. In another terminal, from this directory:")
        first = units[0].name
        print(f"  pios status                    pios leader status          pios apply topology.yaml --dry-run")
        print(f"  pio --unit {first} jobs list      pio --unit {first} jobs set stirring target_rpm 650")
        print("Ctrl-C stops everything.\n")
        _live_view(topology, stop, args.duration)
        return 0
    finally:
        for name in reversed(started):
            result = pio(topology, name, "node", "stop")
            print((result.stdout or result.stderr).strip())
        if leader_up:
            print(pios("leader", "stop").stdout.strip())


def _print_dashboard(began: float) -> None:
    """The dashboard's address and, the first time, the generated password of user admin."""
    from leader import credentials
    from leader.daemon import PID_FILE
    from leader.web.auth import INITIAL_PASSWORD_FILE

    leader_dir = credentials.default_leader_dir()
    try:
        with open(os.path.join(leader_dir, PID_FILE), encoding="utf-8") as f:
            url = json.load(f).get("web_url")
    except (OSError, ValueError):
        url = None
    if not url:
        print(f"dashboard: not serving (see {os.path.join(leader_dir, 'leader.log')})")
        return
    print(f"dashboard: {url.replace('://0.0.0.0:', '://127.0.0.1:')}")
    path = os.path.join(leader_dir, INITIAL_PASSWORD_FILE)
    try:
        fresh = os.path.getmtime(path) >= began - 1
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except OSError:
        print("login: the users you made (`pios users list`)")
        return
    print(f"login: admin / {password}" if fresh else f"login: admin, password: see {path}")


def _live_view(topology: Topology, stop: dict[str, bool], duration: float | None) -> None:
    import paho.mqtt.client as mqtt

    from leader import credentials

    fields = {
        "stirring/measured_rpm": ("measured_rpm", "{:5.0f} RPM"),
        "growth_rate_calculating/od_filtered": ("od_filtered", "nOD {:5.2f}"),
        "growth_rate_calculating/growth_rate": ("growth_rate", "{:+.2f}/h"),
        "temperature_automation/temperature": ("temperature", "{:4.1f} C"),
    }
    latest: dict[str, dict[str, str]] = {}

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        key = "/".join(parts[3:5])
        if key not in fields:
            return
        name, fmt = fields[key]
        try:
            latest.setdefault(parts[1], {})[key] = fmt.format(json.loads(msg.payload)[name])
        except (ValueError, KeyError, TypeError):
            pass

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    secrets = credentials.load(credentials.default_leader_dir())
    client.username_pw_set(credentials.LEADER, secrets.get(credentials.LEADER))
    client.on_connect = lambda c, *_: c.subscribe([(f"pioreactor/+/+/{k}", 0) for k in fields])
    client.on_message = on_message
    client.connect(topology.broker.host, topology.broker.port, 30)
    deadline = time.monotonic() + duration if duration else None
    last_print = 0.0
    try:
        while not stop["requested"] and (deadline is None or time.monotonic() < deadline):
            client.loop(timeout=0.2)
            if latest and time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                for unit, values in sorted(latest.items()):
                    print(f"{unit}: " + "  ".join(values[k] for k in fields if k in values), flush=True)
                print(flush=True)
    finally:
        client.disconnect()


if __name__ == "__main__":
    sys.exit(main())
