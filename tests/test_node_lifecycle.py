"""Job lifecycle as a plain MQTT subscriber sees it, on a real node against a real broker."""

from __future__ import annotations

import json
import time

from tests.support import MqttWatcher, wait_until


def test_state_goes_init_ready_disconnected_and_settings_are_cleared(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    state = node.topic("stirring", "$state")
    mqtt_watcher.wait_for_sequence(state, ["init", "ready"])

    # While running, settings are retained: a newcomer sees them at once.
    assert mqtt_watcher.retained(node.topic("stirring", "target_rpm")) == "500.0"
    assert mqtt_watcher.retained(node.topic("stirring", "duty_cycle")) is not None
    assert mqtt_watcher.retained(state) == "ready"

    node.pio("kill", "stirring")
    mqtt_watcher.wait_for_sequence(state, ["init", "ready", "disconnected"])
    # Non-persistent settings are cleared (empty retained payload); the final state stays.
    wait_until(lambda: mqtt_watcher.retained(node.topic("stirring", "target_rpm")) is None, 5, message="target_rpm cleared")
    assert mqtt_watcher.retained(node.topic("stirring", "duty_cycle")) is None
    assert mqtt_watcher.retained(state) == "disconnected"
    assert node.job("stirring") is None


def test_disconnected_is_terminal_even_with_back_to_back_commands(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring")
    state_set = node.topic("stirring", "$state/set")
    mqtt_watcher.publish(state_set, "disconnected")
    mqtt_watcher.publish(state_set, "ready")  # queued behind: must not bring the job back
    mqtt_watcher.wait_for(node.topic("stirring", "$state"), "disconnected")
    wait_until(lambda: node.job("stirring") is None, 10, message="job gone after $state/set disconnected")
    assert mqtt_watcher.retained(node.topic("stirring", "$state")) == "disconnected"
    # And the job can be started again afterwards, as a new run.
    node.pio("run", "stirring")
    assert node.job("stirring")["state"] == "ready"


def test_sleeping_stops_the_motor_and_ready_resumes_it(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    dc = f"pioreactor/{node.unit}/$experiment/pwms/dc"
    mqtt_watcher.wait_for(dc, lambda p: json.loads(p).get("17", 0) > 0)

    since = time.monotonic()
    mqtt_watcher.publish(node.topic("stirring", "$state/set"), "sleeping")
    mqtt_watcher.wait_for(node.topic("stirring", "$state"), "sleeping", since=since)
    mqtt_watcher.wait_for(dc, "{}", since=since)

    since = time.monotonic()
    mqtt_watcher.publish(node.topic("stirring", "$state/set"), "ready")
    mqtt_watcher.wait_for(node.topic("stirring", "$state"), "ready", since=since)
    mqtt_watcher.wait_for(dc, lambda p: json.loads(p).get("17", 0) > 0, since=since)


def test_an_unknown_state_request_is_refused_with_a_log_line(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring")
    mqtt_watcher.publish(node.topic("stirring", "$state/set"), "dancing")
    line = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/app/warning", lambda p: "dancing" in p)
    assert "send one of" in json.loads(line)["message"]
    assert node.job("stirring")["state"] == "ready"


def test_one_instance_per_job(node):
    node.pio("run", "stirring")
    second = node.pio("run", "stirring", check=False)
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
