"""OD and growth rate as jobs on a simulated unit: reference payloads, and local data flow."""

from __future__ import annotations

import json
import time

from tests.support import MqttWatcher, wait_until


def test_od_reading_publishes_reference_payloads_and_drives_the_ir_led(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=30.0).start()
    node.pio("run", "od_reading", "--interval", "5")
    leds = f"pioreactor/{node.unit}/$experiment/leds/intensity"
    mqtt_watcher.wait_for(leds, lambda p: json.loads(p)["A"] == 80.0)
    payload = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "ods"), lambda p: p != ""))
    reading = payload["ods"]["2"]
    assert set(reading) == {"od", "angle", "channel", "ir_led_intensity", "timestamp", "calibrated"}
    assert reading["angle"] == "90" and reading["channel"] == "2" and reading["calibrated"] == 0
    assert reading["od"] > 0 and payload["timestamp"].endswith("Z")
    since = time.monotonic()
    node.pio("kill", "od_reading")
    mqtt_watcher.wait_for(leds, lambda p: json.loads(p)["A"] == 0.0, since=since)


def test_growth_rate_flows_from_local_od_readings_even_without_the_broker(node_factory, broker, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=30.0).start()
    node.pio("run", "od_reading")
    node.pio("run", "growth_rate_calculating")
    rate = node.topic("growth_rate_calculating", "growth_rate")
    first = json.loads(mqtt_watcher.wait_for(rate, lambda p: p != "", timeout=30))
    assert set(first) == {"growth_rate", "timestamp"}
    assert json.loads(mqtt_watcher.wait_for(node.topic("growth_rate_calculating", "od_filtered"), lambda p: p != ""))["od_filtered"] > 0

    broker.stop()
    wait_until(lambda: not node.pio_json("status")["broker"]["connected"], 10, message="broker gone")

    def latest():
        job = node.job("growth_rate_calculating")
        return job["settings"].get("growth_rate", {}).get("timestamp")

    before = latest()
    # New estimates keep coming from the node's own OD readings while the broker is down.
    wait_until(lambda: (t := latest()) is not None and t != before, 15, message="growth rate updates with the broker down")
