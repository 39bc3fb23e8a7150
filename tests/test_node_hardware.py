"""The hardware layer through real node processes on a simulated unit: drivers, safety, self-test.

A sim unit is a device: its drivers use the real pigpio client and the real chip drivers against the
simulated vessel, so these tests run the same driver code a Raspberry Pi runs.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support import MqttWatcher, wait_until


def dc(node) -> str:
    return f"pioreactor/{node.unit}/$experiment/pwms/dc"


def run_self_test(node, watcher: MqttWatcher, *args: str) -> dict:
    since = time.monotonic()
    node.pio("run", "self_test", *args)
    watcher.wait_for(node.topic("self_test", "all_tests_passed"), lambda p: p in ("true", "false"), timeout=60, since=since)
    return json.loads(watcher.retained(node.topic("self_test", "results")))


@pytest.fixture
def fast_node(node_factory):
    return node_factory(time_scale=20.0).start()


def test_self_test_passes_on_a_healthy_simulated_unit(fast_node, mqtt_watcher: MqttWatcher):
    results = run_self_test(fast_node, mqtt_watcher)
    assert results and all(r["passed"] for r in results.values()), results
    assert mqtt_watcher.retained(fast_node.topic("self_test", "all_tests_passed")) == "true"
    assert mqtt_watcher.retained(fast_node.topic("self_test", "stirring_follows_duty")) == "1"
    # It leaves nothing on, and goes away by itself.
    wait_until(lambda: fast_node.job("self_test") is None, 10, message="self_test disconnects when done")
    outputs = fast_node.pio_json("status")["outputs"]
    assert all(v == 0 for v in outputs["pwm"]["outputs"].values())
    assert all(v == 0 for v in outputs["led"]["outputs"].values())


@pytest.mark.parametrize(
    ("knob", "failing"),
    [
        ("stalled_motor", "stirring_follows_duty"),
        ("heater_disconnected", "heating_pcb_present"),
        ("missing_sensor:temperature", "heating_pcb_present"),
        ("i2c_errors", "hat_responds"),
        ("low_power", "aux_power_in_range"),
    ],
)
def test_self_test_names_the_failing_check_for_each_fault(fast_node, mqtt_watcher: MqttWatcher, knob, failing):
    fast_node.pio("sim", "fault", knob, "on")
    since = time.monotonic()
    results = run_self_test(fast_node, mqtt_watcher)
    assert results[failing]["passed"] is False, results
    assert mqtt_watcher.retained(fast_node.topic("self_test", "all_tests_passed")) == "false"
    error = mqtt_watcher.wait_for(f"pioreactor/{fast_node.unit}/demo/logs/app/error", lambda p: "self-test failed" in p, since=since)
    assert failing in error


def test_self_test_refuses_to_run_beside_stirring(node):
    node.pio("run", "stirring")
    result = node.pio("run", "self_test", check=False)
    assert result.returncode != 0
    assert "stirring is held by stirring" in result.stderr or "held by stirring" in result.stderr


HOLD = '''
from actors.job import Job, {priority}


class Holder(Job):
    name = "{name}"
    kill_priority = {priority}

    def start(self):
        self.ctx.acquire("pwm", "{channel}", self.granted)

    def granted(self, ok, error):
        if not ok:
            self.ctx.fail(error)
            return
        self.ctx.set_duty("{channel}", {duty}, {seconds})
        self.ctx.ready()
'''


@pytest.mark.parametrize(("channel", "pin", "priority"), [("heater", "18", "HEATING"), ("media", "13", "PUMPS")])
def test_sigkill_of_the_job_holding_the_heater_or_a_pump_turns_it_off(node, mqtt_watcher: MqttWatcher, channel, pin, priority):
    node.write_plugin("holder", HOLD.format(name="holder", priority=priority, channel=channel, duty=40.0, seconds=60.0))
    node.pio("run", "holder")
    mqtt_watcher.wait_for(dc(node), lambda p: json.loads(p).get(pin, 0) > 0)
    killed = time.monotonic()
    os.kill(node.job("holder")["pid"], signal.SIGKILL)
    mqtt_watcher.wait_for(dc(node), lambda p: pin not in json.loads(p), timeout=2.0, since=killed)
    assert time.monotonic() - killed < 2.0


def test_the_heater_goes_off_when_plate_readings_stop(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("holder", HOLD.format(name="holder", priority="HEATING", channel="heater", duty=50.0, seconds=None))
    node.pio("run", "holder")
    mqtt_watcher.wait_for(dc(node), lambda p: json.loads(p).get("18", 0) > 0)
    since = time.monotonic()
    node.pio("sim", "fault", "missing_sensor:temperature", "on")
    mqtt_watcher.wait_for(dc(node), lambda p: "18" not in json.loads(p), timeout=10, since=since)
    assert wait_until(lambda: "heater off" in node.log_text(), 5)
    # The job still holds the channel and still asks for heat: the driver keeps it off.
    assert node.job("holder")["state"] == "ready"


def test_the_heater_duty_is_capped(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("holder", HOLD.format(name="holder", priority="HEATING", channel="heater", duty=100.0, seconds=None))
    node.pio("run", "holder")
    payload = mqtt_watcher.wait_for(dc(node), lambda p: json.loads(p).get("18", 0) > 0)
    assert json.loads(payload)["18"] <= 60.0


def test_a_pump_command_stops_after_its_maximum_on_time(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("holder", HOLD.format(name="holder", priority="PUMPS", channel="media", duty=100.0, seconds=2.0))
    node.pio("run", "holder")
    mqtt_watcher.wait_for(dc(node), lambda p: json.loads(p).get("13", 0) > 0)
    mqtt_watcher.wait_for(dc(node), lambda p: "13" not in json.loads(p), timeout=5)  # 3 simulated s at 10x
    assert wait_until(lambda: "maximum on-time" in node.log_text(), 5)


LED = '''
from actors.job import Job


class Lights(Job):
    name = "lights"

    def start(self):
        self.ctx.set_led("A", 100.0, lambda ok, err: self.ctx.ready())
'''


def test_the_ir_led_is_capped_and_led_state_is_retained(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("lights", LED)
    node.pio("run", "lights")
    state = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/$experiment/leds/intensity", lambda p: json.loads(p)["A"] > 0)
    assert json.loads(state)["A"] == 90.0
    assert mqtt_watcher.retained(f"pioreactor/{node.unit}/$experiment/leds/intensity") == state


def test_simulated_truth_and_driver_status(node):
    node.pio("run", "stirring")
    truth = node.pio_json("sim", "truth")
    for key in ("od", "volume_ml", "liquid_c", "plate_c", "rpm", "growth_rate_per_h"):
        assert key in truth
    status = node.pio_json("status")
    assert status["driver_errors"] == {}
    assert status["model"] == "pioreactor_20ml_1.5"


OD_LIKE = '''
from actors.job import Job


class OdReading(Job):
    name = "od_reading"

    def start(self):
        self.ctx.set_led("A", 80.0, lambda ok, err: self.begin())

    def begin(self):
        self.ctx.ready()
        self.ctx.every(1.0, lambda: self.ctx.read_adc(("pd1", "pd2"), lambda volts, at, err: None), "sample")
'''


def test_photodiode_over_voltage_turns_leds_off_and_stops_od(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("od_reading", OD_LIKE)  # stands in for the OD job of the measurement issue
    node.pio("run", "od_reading")
    leds = f"pioreactor/{node.unit}/$experiment/leds/intensity"
    mqtt_watcher.wait_for(leds, lambda p: json.loads(p)["A"] == 80.0)
    since = time.monotonic()
    node.pio("sim", "fault", "overvoltage:pd2", "on")
    mqtt_watcher.wait_for(leds, lambda p: all(v == 0 for v in json.loads(p).values()), timeout=10, since=since)
    wait_until(lambda: node.job("od_reading") is None, 10, message="OD job stopped")
    assert wait_until(lambda: "above 3.2 V: LEDs off" in node.log_text(), 5)
    assert mqtt_watcher.retained(node.topic("od_reading", "$state")) == "disconnected"
