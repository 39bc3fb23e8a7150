"""The monitor on a simulated unit: the vial's books from dosing events (kept across a node restart,
corrected by hand), and the health checks (power rail, broker link, statistics, error codes)."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import MqttWatcher, wait_until

TIME_SCALE = 50.0


def books(node, field: str, experiment: str | None = None) -> str:
    return f"pioreactor/{node.unit}/{experiment or node.experiment}/bioreactor/{field}"


def dosing(watcher: MqttWatcher, node, event: str, ml: float, timestamp: str, source: str = "test",
           experiment: str | None = None) -> None:
    payload = {"volume_change": ml, "event": event, "source_of_event": source, "timestamp": timestamp}
    watcher.publish(f"pioreactor/{node.unit}/{experiment or node.experiment}/dosing_events", json.dumps(payload))


def near(expected: float):
    def check(payload: str) -> bool:
        return payload != "" and abs(float(payload) - expected) < 1e-9

    check.__name__ = f"near {expected}"
    return check


def monitor_setting(node, name: str):
    job = node.job("monitor")
    return job and job["settings"].get(name)


def test_books_follow_dosing_events_ignore_duplicates_and_survive_a_node_restart(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "monitor")
    volume, fraction = books(node, "current_volume_ml"), books(node, "alt_media_fraction")

    dosing(mqtt_watcher, node, "add_alt_media", 1.0, "2024-05-01T10:00:00.000Z")
    # The 20 ml v1.5 model starts at its efflux level, 15 ml; 1 ml of alt media in 16 ml.
    mqtt_watcher.wait_for(volume, near(16.0))
    mqtt_watcher.wait_for(fraction, near(1.0 / 16.0))

    since = time.monotonic()
    dosing(mqtt_watcher, node, "add_alt_media", 1.0, "2024-05-01T10:00:00.000Z")  # redelivered: not counted
    dosing(mqtt_watcher, node, "add_media", 1.0, "2024-05-01T10:00:01.000Z", source="pump_calibration")  # a beaker
    dosing(mqtt_watcher, node, "add_media", 1.0, "2024-05-01T10:00:00.500Z")  # the next sub-chunk
    mqtt_watcher.wait_for(volume, near(17.0), since=since)
    mqtt_watcher.wait_for(fraction, near(1.0 / 17.0), since=since)
    assert [float(v) for v in mqtt_watcher.values(volume, since=since)] == [17.0]

    dosing(mqtt_watcher, node, "remove_waste", 5.0, "2024-05-01T10:00:02.000Z")
    mqtt_watcher.wait_for(volume, near(15.0), since=since)  # drained to the efflux tube, not below
    assert float(mqtt_watcher.retained(books(node, "cumulative_waste_removed_ml"))) == pytest.approx(2.0)

    node.pio("node", "stop")
    node.start()
    node.pio("run", "monitor")
    since = time.monotonic()
    dosing(mqtt_watcher, node, "add_media", 0.5, "2024-05-01T11:00:00.000Z")
    mqtt_watcher.wait_for(volume, near(15.5), since=since)
    mqtt_watcher.wait_for(fraction, near((1.0 / 17.0) * 15.0 / 15.5), since=since)
    assert float(mqtt_watcher.retained(books(node, "cumulative_alt_media_added_ml"))) == 1.0

    # Another experiment on the same unit has its own books, from the vessel defaults.
    dosing(mqtt_watcher, node, "add_media", 1.0, "2024-05-01T11:00:00.000Z", experiment="other")
    mqtt_watcher.wait_for(books(node, "current_volume_ml", "other"), near(16.0))
    assert float(mqtt_watcher.retained(volume)) == 15.5


def test_a_manual_set_corrects_the_books_and_a_bad_value_changes_nothing(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "monitor")
    volume = books(node, "current_volume_ml")
    mqtt_watcher.wait_for(volume, near(15.0))

    mqtt_watcher.publish(volume + "/set", "10")  # "I emptied the vial down to 10 ml"
    mqtt_watcher.wait_for(volume, near(10.0))
    dosing(mqtt_watcher, node, "add_media", 1.0, "2024-05-01T10:00:00.000Z")
    mqtt_watcher.wait_for(volume, near(11.0))

    warnings = f"pioreactor/{node.unit}/{node.experiment}/logs/app/warning"
    for bad, says in (("25", "capacity"), ("lots", "number")):
        since = time.monotonic()
        mqtt_watcher.publish(volume + "/set", bad)
        line = json.loads(mqtt_watcher.wait_for(warnings, lambda p: "current_volume_ml" in p, since=since))
        assert says in line["message"]
    since = time.monotonic()
    mqtt_watcher.publish(books(node, "cumulative_media_added_ml") + "/set", "0")
    assert "editable" in json.loads(mqtt_watcher.wait_for(warnings, lambda p: "cumulative" in p, since=since))["message"]
    assert float(mqtt_watcher.retained(volume)) == 11.0
    assert float(mqtt_watcher.retained(books(node, "cumulative_media_added_ml"))) == 1.0
    assert mqtt_watcher.values(volume, since=since) == []


def test_low_power_gives_error_code_7_and_one_warning(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "monitor", "--self-check-interval-hours", "0.01")  # 36 simulated s
    code = node.topic("monitor", "error_code")
    mqtt_watcher.wait_for(code, "0")
    stats = json.loads(mqtt_watcher.wait_for(node.topic("monitor", "computer_statistics"), lambda p: p != ""))
    assert stats["disk_free_bytes"] > 0 and 0 <= stats["memory_usage_percent"] <= 100
    assert len(stats["load_average"]) == 3 and stats["timestamp"].endswith("Z")
    rail = json.loads(mqtt_watcher.wait_for(node.topic("monitor", "voltage_on_pwm_rail"), lambda p: p != ""))
    assert rail["voltage"] == pytest.approx(5.0, abs=0.01)
    versions = json.loads(mqtt_watcher.wait_for(node.topic("monitor", "versions"), lambda p: p != ""))
    assert versions["model"] == "pioreactor_20ml_1.5" and versions["app"]
    checks = json.loads(mqtt_watcher.wait_for(node.topic("monitor", "checks"), lambda p: "power" in p))
    assert checks["hat"]["ok"] is True and checks["power"]["ok"] is True
    assert checks["cpu_temperature"]["ok"] is not False  # skipped (said so) where there is no sensor
    # The status LED belongs to the monitor, through the PWM driver.
    assert node.pio_json("status")["outputs"]["pwm"]["owners"].get("status_led") == "monitor"

    since = time.monotonic()
    node.pio("sim", "fault", "low_power", "on")
    mqtt_watcher.wait_for(code, "7", timeout=15, since=since)
    warnings = f"pioreactor/{node.unit}/{node.experiment}/logs/app/warning"
    line = json.loads(mqtt_watcher.wait_for(warnings, lambda p: "supply rail" in p, since=since))
    assert "4.50 V" in line["message"]
    rail_values = node.topic("monitor", "voltage_on_pwm_rail")
    mqtt_watcher.wait_for(rail_values, lambda p: p != "" and json.loads(p)["voltage"] < 4.8, since=since)
    # Several more checks run while the fault lasts; the warning is said once.
    wait_until(lambda: len(mqtt_watcher.values(node.topic("monitor", "computer_statistics"), since=since)) >= 3, 15)
    assert len([v for v in mqtt_watcher.values(warnings, since=since) if "supply rail" in v]) == 1

    # The error blinks: the status LED is on for 2 s of every cycle.
    led = lambda: node.pio_json("status")["outputs"]["pwm"]["outputs"].get("status_led")  # noqa: E731
    wait_until(lambda: led() == 100.0, 15, message="status LED on while error 7 lasts")

    since = time.monotonic()
    node.pio("sim", "fault", "low_power", "off")
    mqtt_watcher.wait_for(code, "0", timeout=15, since=since)
    wait_until(lambda: led() == 0.0, 10, message="status LED dark once the error cleared")

    # Long-running: `pio kill --all` leaves the monitor alone.
    node.pio("kill", "--all")
    assert node.job("monitor")["state"] == "ready"


def test_losing_the_broker_gives_error_code_2_until_it_is_back(node_factory, broker, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "monitor")
    wait_until(lambda: monitor_setting(node, "checks") and monitor_setting(node, "checks").get("broker", {}).get("ok"), 15)
    assert monitor_setting(node, "error_code") == 0

    broker.stop()
    wait_until(lambda: monitor_setting(node, "error_code") == 2, 15, message="error code 2 with the broker down")
    assert "not connected" in monitor_setting(node, "checks")["broker"]["message"]

    broker.start()
    wait_until(lambda: monitor_setting(node, "error_code") == 0, 30, message="error code cleared on reconnect")
