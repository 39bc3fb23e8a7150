"""The demo: the repository's topology on this machine, with live values, until Ctrl-C.

It starts Mosquitto on the topology's broker port (unless a broker already answers there), one node
daemon per simulated unit, and stirring on each; then prints each unit's measured RPM as it arrives.
Ctrl-C (or SIGTERM) stops the jobs, the nodes and the broker, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from actors.topology import Topology, TopologyError, load


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """A Mosquitto child process on loopback, with its files in a temporary directory."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="pio-demo-broker-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if binary is None:
            raise SystemExit("error: mosquitto is not installed; run ./scripts/demo.sh, which installs it")
        conf = os.path.join(self.dir, "mosquitto.conf")
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false", f"log_dest file {self.dir}/mosquitto.log"]
        if os.geteuid() == 0:
            lines.append("user root")
        with open(conf, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: mosquitto did not start on port {self.port}; see {self.dir}/mosquitto.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def pio(topology: Topology, unit: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "worker.cli", "--topology", topology.path, "--unit", unit, *args]
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument("--topology", default=os.environ.get("PIO_TOPOLOGY", "topology.yaml"))
    parser.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    args = parser.parse_args(argv)
    try:
        topology = load(os.path.abspath(args.topology))
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

    broker = None
    started: list[str] = []
    try:
        if not _port_open(topology.broker.host, topology.broker.port):
            broker = Broker(topology.broker.port)
            broker.start()
            print(f"broker: mosquitto on {topology.broker.host}:{topology.broker.port}")
        for unit in units:
            result = pio(topology, unit.name, "node", "start")
            if result.returncode != 0:
                print(result.stderr.strip(), file=sys.stderr)
                return 1
            started.append(unit.name)
            result = pio(topology, unit.name, "run", "stirring")
            print((result.stdout or result.stderr).strip())
        print()
        print("Live values below. In another terminal, from this directory:")
        first = units[0].name
        print(f"  pio --unit {first} status          pio --unit {first} jobs set stirring target_rpm 650")
        print(f"  pio --unit {first} mqtt            pio --unit {first} kill stirring")
        print("Ctrl-C stops everything.\n")
        _live_view(topology, stop, args.duration)
        return 0
    finally:
        for name in reversed(started):
            result = pio(topology, name, "node", "stop")
            print((result.stdout or result.stderr).strip())
        if broker is not None:
            broker.stop()
            print("broker stopped")


def _live_view(topology: Topology, stop: dict[str, bool], duration: float | None) -> None:
    import paho.mqtt.client as mqtt

    latest: dict[str, Any] = {}

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        unit = msg.topic.split("/")[1]
        try:
            latest[unit] = json.loads(msg.payload)["measured_rpm"]
        except (ValueError, KeyError, TypeError):
            pass

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe("pioreactor/+/+/stirring/measured_rpm")
    client.on_message = on_message
    client.connect(topology.broker.host, topology.broker.port, 30)
    deadline = time.monotonic() + duration if duration else None
    last_print = 0.0
    try:
        while not stop["requested"] and (deadline is None or time.monotonic() < deadline):
            client.loop(timeout=0.2)
            if latest and time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print("  ".join(f"{u}: {rpm:6.1f} RPM" for u, rpm in sorted(latest.items())), flush=True)
    finally:
        client.disconnect()


if __name__ == "__main__":
    sys.exit(main())
