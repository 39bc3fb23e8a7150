"""Node runtime figures: `pio status` latency, `/set` round trip, node memory with stirring running.

Starts its own Mosquitto on a free port and one simulated node, measures, and stops everything.
Run: .venv/bin/python bench/node_bench.py [--status-runs 30] [--set-runs 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.node import Node  # noqa: E402
from worker.processes import group_members  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def describe(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<34} n={len(ms):<4} median {statistics.median(ms):7.2f} ms   p90 {percentile(ms, 90):7.2f} ms   "
        f"p99 {percentile(ms, 99):7.2f} ms   max {max(ms):7.2f} ms"
    )


def memory(pids: list[int]) -> tuple[float, float]:
    """Total RSS and PSS in MB (PSS counts shared pages once across the node's processes)."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def set_round_trips(node: Node, broker: Mosquitto, runs: int, gap: float) -> list[float]:
    """Publish `target_rpm/set` and time until the new retained `target_rpm` value arrives.

    ``gap`` seconds pass between commands (0: back to back)."""
    topic = node.topic("stirring", "target_rpm")
    arrived = threading.Event()
    expected = {"value": ""}

    def on_message(_c, _u, msg):
        if msg.payload.decode() == expected["value"]:
            arrived.set()

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # measure the node, not Nagle
    client.subscribe(topic, qos=1)
    client.loop_start()
    samples = []
    try:
        for i in range(runs):
            value = 400 + (i % 200)
            expected["value"] = f"{float(value)}"
            arrived.clear()
            start = time.perf_counter()
            client.publish(topic + "/set", str(value), qos=1)
            if not arrived.wait(5):
                raise RuntimeError(f"no new target_rpm within 5 s (run {i})")
            samples.append(time.perf_counter() - start)
            if gap:
                time.sleep(gap)
    finally:
        client.loop_stop()
        client.disconnect()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--status-runs", type=int, default=30)
    parser.add_argument("--set-runs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto() as broker:
        broker.start()
        node = Node(Path(tmp), broker, time_scale=1.0)
        try:
            started = time.perf_counter()
            node.start()
            print(f"node start (pio node start, until up)   {1000 * (time.perf_counter() - started):7.1f} ms")
            started = time.perf_counter()
            node.pio("run", "stirring", "--target-rpm", "500")
            print(f"pio run stirring (until ready)          {1000 * (time.perf_counter() - started):7.1f} ms")

            status = []
            for _ in range(args.status_runs):
                t0 = time.perf_counter()
                node.pio("status")
                status.append(time.perf_counter() - t0)
            describe("pio status (whole CLI process)", status)
            python_start = []
            for _ in range(10):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                python_start.append(time.perf_counter() - t0)
            describe("  of which: bare python startup", python_start)

            describe("/set round trip, 20 ms apart", set_round_trips(node, broker, args.set_runs, 0.02))
            describe("/set round trip, back to back", set_round_trips(node, broker, args.set_runs, 0.0))

            pids = node.processes() + [node.daemon_pid]
            rss, pss = memory(pids)
            print(f"node memory, {len(pids)} processes (stirring running): RSS {rss:.1f} MB total, PSS {pss:.1f} MB total")
        finally:
            node.cleanup()
        assert not group_members(node.pgid) if node.pidfile() else True


if __name__ == "__main__":
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")
    main()
