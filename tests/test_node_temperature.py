"""temperature_automation on a simulated unit with an accelerated clock: the reference cadence, the
liquid inferred from the plate, the thermostat driving the heater through the PWM driver's safety.

The simulated unit has a 5 W heater in a 22 C room; under the reference cadence (heater off 105 s of
every 200 s) and the driver's 60 % cap it settles the liquid near 31.7 C (tests/scenarios/
test_thermostat_scenario.py), so these tests ask for targets it can reach, or only for progress toward 37.
"""

from __future__ import annotations

import json
import time

from actors.hardware.description import load
from actors.hardware.safety import HEATER_MAX_DUTY
from tests.support import MqttWatcher, wait_until

SCALE = 100.0  # a 200 s cycle is 2 s of wall time
HEATER_PIN = str(load("1.2", "pioreactor_20ml_1.5").pwm.pins()["heater"])


def truth(node) -> dict:
    return node.pio_json("sim", "truth")


def heater_duties(mqtt_watcher: MqttWatcher, node, since: float | None = None) -> list[float]:
    """Every heater duty the PWM driver's retained mirror reported (0 when the heater is not listed)."""
    topic = f"pioreactor/{node.unit}/$experiment/pwms/dc"
    return [float(json.loads(p).get(HEATER_PIN, 0.0)) for p in mqtt_watcher.values(topic, since=since) if p]


def warnings(mqtt_watcher: MqttWatcher, node, since: float | None = None) -> list[str]:
    topic = f"pioreactor/{node.unit}/{node.experiment}/logs/app/warning"
    return [json.loads(p)["message"] for p in mqtt_watcher.values(topic, since=since)]


def test_thermostat_heats_the_liquid_toward_its_target_within_the_driver_cap(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=SCALE).start()
    start_c = truth(node)["liquid_c"]
    node.pio("run", "temperature_automation", "--automation-name", "thermostat", "--target-temperature", "37")
    temperature = node.topic("temperature_automation", "temperature")
    first = json.loads(mqtt_watcher.wait_for(temperature, lambda p: p != "", timeout=10))
    assert set(first) == {"temperature", "timestamp"} and first["timestamp"].endswith("Z")
    assert abs(first["temperature"] - start_c) < 0.5  # nothing heated yet: the liquid is at room temperature

    # The thermostat adds its PID output each inference until the driver's cap; the liquid warms.
    samples: list[tuple[float, float, float]] = []  # (when, true liquid, heater duty)

    def warmed() -> bool:
        state = truth(node)
        samples.append((time.monotonic(), state["liquid_c"], state["pwm"]["heater"]))
        return state["liquid_c"] > start_c + 4.0

    wait_until(warmed, 25, 0.1, "liquid 4 C warmer")
    # Each estimate is the liquid at the end of a heater-off window, where it barely moves: compare it
    # with the simulator's truth sampled in the window just before the estimate was published.
    checked = 0
    for message in mqtt_watcher.messages(temperature):
        if not message.payload:
            continue
        window = [liquid for when, liquid, heater in samples if heater == 0 and message.time - 1.0 < when < message.time]
        if window:
            checked += 1
            assert abs(json.loads(message.payload)["temperature"] - window[-1]) < 0.5
    assert checked >= 2
    latest = json.loads(mqtt_watcher.last(temperature))
    assert latest["temperature"] > first["temperature"] + 2.0

    duties = heater_duties(mqtt_watcher, node)
    assert max(duties) > 0 and max(duties) <= HEATER_MAX_DUTY
    asked = [float(p) for p in mqtt_watcher.values(node.topic("temperature_automation", "heater_duty_cycle")) if p]
    assert max(asked) <= HEATER_MAX_DUTY
    assert any("stirring is not running" in w for w in warnings(mqtt_watcher, node))

    # heater_duty_cycle is the automation's to decide: a /set of it is refused and changes nothing.
    refused = node.pio("jobs", "set", "temperature_automation", "heater_duty_cycle", "50", check=False)
    assert refused.returncode != 0 and "read-only" in refused.stderr
    assert all(float(p) <= HEATER_MAX_DUTY for p in mqtt_watcher.values(node.topic("temperature_automation", "heater_duty_cycle")) if p)

    # A target above the model's reduce limit (78 C on the 20 ml v1.5) is clamped, with a message.
    since = time.monotonic()
    node.pio("jobs", "set", "temperature_automation", "target_temperature", "95")
    mqtt_watcher.wait_for(node.topic("temperature_automation", "target_temperature"), "78.0", since=since)
    assert any("reduce limit of 78 C" in w for w in warnings(mqtt_watcher, node, since))


def test_sleep_turns_the_heater_off_and_the_next_inference_does_not_restore_it(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=SCALE).start()
    node.pio("run", "temperature_automation", "--automation-name", "thermostat", "--target-temperature", "37")
    duty = node.topic("temperature_automation", "heater_duty_cycle")
    mqtt_watcher.wait_for(duty, lambda p: p and float(p) > 0, timeout=10)
    wait_until(lambda: truth(node)["pwm"]["heater"] > 0, 10, 0.2, "heater on")

    mqtt_watcher.publish(node.topic("temperature_automation", "$state/set"), "sleeping")
    node.wait_job_state("temperature_automation", "sleeping")
    wait_until(lambda: truth(node)["pwm"]["heater"] == 0, 5, 0.2, "heater off")
    assert mqtt_watcher.last(duty) == "0.0"

    # Across more than one whole cycle (so past the next inference moment) the heater stays off.
    since = time.monotonic()
    asleep_at = truth(node)["elapsed_s"]
    period = 200.0

    def past_next_inference() -> bool:
        state = truth(node)
        assert state["pwm"]["heater"] == 0, f"heater back on while sleeping: {state['pwm']}"
        return state["elapsed_s"] > asleep_at + 1.5 * period

    wait_until(past_next_inference, 10, 0.2, "a cycle and a half asleep")
    assert all(d == 0 for d in heater_duties(mqtt_watcher, node, since))
    assert node.job("temperature_automation")["state"] == "sleeping"

    # Waking resumes the cycle: a fresh window, then the thermostat heats again.
    since = time.monotonic()
    mqtt_watcher.publish(node.topic("temperature_automation", "$state/set"), "ready")
    mqtt_watcher.wait_for(node.topic("temperature_automation", "temperature"), lambda p: p != "", timeout=10, since=since)
    mqtt_watcher.wait_for(duty, lambda p: p and float(p) > 0, timeout=10, since=since)


def test_only_record_temperature_reports_and_keeps_the_heater_off(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=SCALE).start()
    node.pio("run", "temperature_automation", "--automation-name", "only_record_temperature")
    temperature = node.topic("temperature_automation", "temperature")
    mqtt_watcher.wait_for_sequence(temperature, [lambda p: p != "", lambda p: p != ""], timeout=15)
    readings = [json.loads(p)["temperature"] for p in mqtt_watcher.values(temperature) if p]
    assert all(abs(t - 22.0) < 0.5 for t in readings)  # a 22 C room, never heated
    assert truth(node)["pwm"]["heater"] == 0
    assert all(d == 0 for d in heater_duties(mqtt_watcher, node))
    assert all(float(p) == 0 for p in mqtt_watcher.values(node.topic("temperature_automation", "heater_duty_cycle")) if p)
    event = json.loads(mqtt_watcher.last(node.topic("temperature_automation", "latest_event")))
    assert event["event_name"] == "NoEvent"
    assert not any("stirring" in w for w in warnings(mqtt_watcher, node))  # it does not heat: no need to stir


def test_unknown_automation_and_missing_parameter_are_refused_with_the_fix(node):
    unknown = node.pio("run", "temperature_automation", "--automation-name", "sauna", check=False)
    assert unknown.returncode != 0
    assert "unknown temperature automation 'sauna'" in unknown.stderr and "thermostat" in unknown.stderr
    missing = node.pio("run", "temperature_automation", "--automation-name", "thermostat", check=False)
    assert missing.returncode != 0 and "--target-temperature" in missing.stderr
    assert node.job("temperature_automation") is None
    assert truth(node)["pwm"]["heater"] == 0
