"""`/set` requests from a plain MQTT client: applied when valid, refused with a reason otherwise."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import MqttWatcher, wait_until


def measured(payload: str) -> float:
    return float(json.loads(payload)["measured_rpm"])


def test_set_target_rpm_moves_measured_rpm_toward_it(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "400")
    rpm_topic = node.topic("stirring", "measured_rpm")
    mqtt_watcher.wait_for(rpm_topic, lambda p: abs(measured(p) - 400) < 40, timeout=15)

    since = time.monotonic()
    mqtt_watcher.publish(node.topic("stirring", "target_rpm/set"), "650")
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "650.0", since=since)
    mqtt_watcher.wait_for(rpm_topic, lambda p: abs(measured(p) - 650) < 50, timeout=15, since=since)


@pytest.mark.parametrize(
    ("attr", "payload", "reason"),
    [
        ("target_rpm", "abc", "not a number"),
        ("target_rpm", "-5", "below the minimum"),
        ("measured_rpm", "100", "read-only"),
    ],
)
def test_bad_set_is_refused_and_changes_nothing(node, mqtt_watcher: MqttWatcher, attr, payload, reason):
    node.pio("run", "stirring", "--target-rpm", "500")
    target = node.topic("stirring", "target_rpm")
    assert mqtt_watcher.wait_for(target, "500.0")
    since = time.monotonic()
    mqtt_watcher.publish(node.topic("stirring", f"{attr}/set"), payload)
    warning = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/app/warning", lambda p: reason in p, since=since)
    message = json.loads(warning)["message"]
    assert attr in message and reason in message

    # Nothing changed: the retained target is the same, the job still runs at it.
    assert mqtt_watcher.retained(target) == "500.0"
    job = node.job("stirring")
    assert job["state"] == "ready" and job["settings"]["target_rpm"] == 500.0
    assert mqtt_watcher.values(target, since=since) == []


def test_set_from_the_cli_and_broadcast(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring")
    out = node.pio("jobs", "set", "stirring", "target_rpm", "610").stdout
    assert "610" in out
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "610.0")

    # `$broadcast` reaches every unit's job of that name.
    mqtt_watcher.publish("pioreactor/$broadcast/demo/stirring/target_rpm/set", "620")
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "620.0")
    wait_until(lambda: node.job("stirring")["settings"]["target_rpm"] == 620.0, 5, message="broadcast applied")


def test_a_retained_set_is_never_applied(node, mqtt_watcher: MqttWatcher):
    # A stale retained command sitting on the broker must not act on a job that starts later.
    mqtt_watcher.publish(node.topic("stirring", "target_rpm/set"), "900", retain=True)
    node.pio("run", "stirring", "--target-rpm", "450")
    mqtt_watcher.wait_for(node.topic("stirring", "measured_rpm"), lambda p: True)
    assert node.job("stirring")["settings"]["target_rpm"] == 450.0
    mqtt_watcher.publish(node.topic("stirring", "target_rpm/set"), "", retain=True)
