"""Control loops end to end on a simulated unit: the figures behind tests/test_acceptance_control.py.

Each scenario starts its own Mosquitto on a free port and one simulated node, runs the real jobs through
every actor at an accelerated clock, prints what it measured, and stops everything.

Run: .venv/bin/python bench/control_loops.py [--only turbidostat|chemostat|thermostat] [--hours H]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.mqtt import MqttWatcher  # noqa: E402
from tests.support.node import Node  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402
from tests.test_acceptance_control import (  # noqa: E402
    WARM_ROOM,
    calibrate_od,
    calibrate_pumps_truly,
    dosing_events,
    epoch,
    growth_rates,
)
from tests.test_node_dosing import calibrate_pumps  # noqa: E402


def run(scale: float, simulation: dict, body) -> None:
    broker = Mosquitto()
    broker.start()
    node = Node(Path(tempfile.mkdtemp(prefix="bench-control-")), broker, time_scale=scale, simulation=simulation)
    watcher = MqttWatcher(broker.host, broker.port)
    try:
        node.start()
        body(node, watcher)
    finally:
        watcher.close()
        node.cleanup()
        broker.cleanup()


def sim_hours(node: Node) -> float:
    return node.pio_json("sim", "truth")["elapsed_s"] / 3600.0


def turbidostat(hours: float) -> None:
    def body(node: Node, watcher: MqttWatcher) -> None:
        calibrate_pumps(node)
        for job in (("monitor",), ("od_reading", "--interval", "60"), ("growth_rate_calculating",)):
            node.pio("run", *job)
        node.pio("run", "dosing_automation", "--automation-name", "turbidostat", "--target-biomass", "2.0", "--exchange-volume-ml", "0.5")
        wait_until(lambda: dosing_events(watcher, node), 60, message="the first dilution")
        start_wall, start = time.monotonic(), sim_hours(node)
        ods, volumes = [], []
        while sim_hours(node) < start + hours:
            truth = node.pio_json("sim", "truth")
            if truth["elapsed_s"] / 3600.0 > start + 1.0:
                ods.append(truth["od"])
            volumes.append(truth["volume_ml"])
            time.sleep(0.2)
        wall = time.monotonic() - start_wall
        held = statistics.median(ods)
        media = [e for e in dosing_events(watcher, node) if e["event"] == "add_media"]
        print(f"turbidostat: {hours:g} simulated h in {wall:.1f} s wall ({hours * 3600 / wall:.0f}x achieved of 2000x)")
        print(f"  true OD held {held:.3f}: min {min(ods) / held - 1:+.1%}, max {max(ods) / held - 1:+.1%} (bound +-10 %)")
        print(f"  volume {min(volumes):.2f}-{max(volumes):.2f} ml (max fill 18); {len(media)} exchanges of 0.5 ml")

    run(2000.0, WARM_ROOM, body)


def chemostat(hours: float) -> None:
    def body(node: Node, watcher: MqttWatcher) -> None:
        calibrate_pumps_truly(node)
        calibrate_od(node)
        for job in (("monitor",), ("od_reading", "--interval", "60"), ("growth_rate_calculating",)):
            node.pio("run", *job)
        node.pio("run", "dosing_automation", "--automation-name", "chemostat", "--exchange-volume-ml", "0.75", "--duration", "6")
        start_wall = time.monotonic()
        wait_until(lambda: sim_hours(node) > hours, hours * 3600 / 500, 0.5, f"{hours} simulated hours")
        wall = time.monotonic() - start_wall
        rates = growth_rates(watcher, node)
        end = rates[-1][0]
        window = [r for t, r in rates if t > end - 8 * 3600]
        doses = [e for e in dosing_events(watcher, node) if e["event"] == "add_media" and epoch(e["timestamp"]) > end - 8 * 3600]
        d = sum(math.log((15.0 + e["volume_change"]) / 15.0) for e in doses) / 8.0
        print(f"chemostat: {hours:g} simulated h in {wall:.1f} s wall")
        print(f"  growth rate estimate over the last 8 h: mean {statistics.mean(window):.3f}/h, sd {statistics.pstdev(window):.3f}")
        print(f"  dilution rate realised {d:.3f}/h (nominal 0.500): estimate/D = {statistics.mean(window) / d:.3f} (bound 0.9-1.1)")

    run(1000.0, {**WARM_ROOM, "mu_max": 1.0, "carrying_capacity": 1.0}, body)


def thermostat(hours: float) -> None:
    def body(node: Node, watcher: MqttWatcher) -> None:
        node.pio("run", "stirring")
        node.pio("run", "temperature_automation", "--automation-name", "thermostat", "--target-temperature", "37")
        samples = []
        while sim_hours(node) < hours:
            t = node.pio_json("sim", "truth")
            samples.append((t["elapsed_s"], t["liquid_c"], t["plate_c"], t["pwm"]["heater"]))
            time.sleep(0.2)
        late = [s for s in samples if s[0] > samples[-1][0] - 3600]
        topic = node.topic("temperature_automation", "temperature")
        estimates = [json.loads(v)["temperature"] for v in watcher.values(topic) if v][-12:]
        print(f"thermostat (10 W heater): last hour liquid mean {statistics.mean(s[1] for s in late):.2f} C, "
              f"range {min(s[1] for s in late):.2f}-{max(s[1] for s in late):.2f} C")
        print(f"  inferred temperatures, last 12: {min(estimates):.2f}-{max(estimates):.2f} C; "
              f"heater max {max(s[3] for s in samples):.0f} %, plate max {max(s[2] for s in samples):.1f} C")

    run(150.0, {"heater_w": 10.0}, body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("turbidostat", "chemostat", "thermostat"))
    parser.add_argument("--hours", type=float, default=None, help="simulated hours (defaults: 48, 16, 2.5)")
    args = parser.parse_args()
    for name, default in (("turbidostat", 48.0), ("chemostat", 16.0), ("thermostat", 2.5)):
        if args.only in (None, name):
            globals()[name](args.hours or default)


if __name__ == "__main__":
    main()
