"""Pump actions on a simulated unit: liquid moves, dosing events add up to what moved, refusals move
nothing, a stop turns the pump off at once, one pump per channel, circulation, continuous inflow."""

from __future__ import annotations

import json
import math
import time

import paho.mqtt.client as mqtt
import pytest

from actors.calibration_store import CalibrationStore
from actors.calibrations import DEFAULT_PUMP_ML_PER_SECOND, PumpCalibration
from tests.support import MqttWatcher, wait_until

SIM_GAIN_TOLERANCE = 0.15
"""The simulated pumps are off their nominal flow by up to 8 %; message latency adds a little more."""


def events(watcher: MqttWatcher, node, since: float | None = None) -> list[dict]:
    return [json.loads(p) for p in watcher.values(f"pioreactor/{node.unit}/{node.experiment}/dosing_events", since=since)]


def total(evs: list[dict], event: str) -> float:
    return math.fsum(e["volume_change"] for e in evs if e["event"] == event)


def pwm_mirror(node) -> str:
    """The PWM driver's retained ``{pin: duty}`` of every output that is on (``{}``: all off)."""
    return f"pioreactor/{node.unit}/$experiment/pwms/dc"


def truth(node) -> dict:
    return node.pio_json("sim", "truth")


def calibrate(node, device: str, rate: float, name: str = "cal1") -> PumpCalibration:
    """A calibration file as `pio calibrations run` would leave it, written straight into the node's folder."""
    xs = [5.0, 10.0, 20.0]
    cal = PumpCalibration.from_points(
        xs, [rate * x for x in xs], degree=1, name=name, device=device, created_at="2025-01-01T00:00:00+00:00",
        hz=250.0, dc=100.0,
    )
    CalibrationStore.for_node(str(node.state_dir / node.unit)).save(cal)
    return cal


def wait_gone(node, job: str, timeout: float = 20.0) -> None:
    wait_until(lambda: node.job(job) is None, timeout, 0.1, f"{job} finished")


def publish_retained(broker, topic: str, payload: str) -> None:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_add_media_by_duration_moves_liquid_and_publishes_the_calibrated_volume(node_factory, mqtt_watcher):
    node = node_factory(time_scale=20.0).start()
    before = truth(node)["volume_ml"]
    node.pio("run", "add_media", "--duration", "10")
    wait_gone(node, "add_media")
    expected = 10 * DEFAULT_PUMP_ML_PER_SECOND
    evs = wait_until(lambda: (e := events(mqtt_watcher, node)) and math.isclose(total(e, "add_media"), expected) and e, 10, 0.05, "events")
    assert len(evs) == 20  # one per 0.5 s of pumping
    assert {e["source_of_event"] for e in evs} == {"CLI"}
    assert set(evs[0]) == {"volume_change", "event", "source_of_event", "timestamp"} and evs[0]["timestamp"].endswith("Z")
    after = truth(node)
    assert after["pwm"]["media"] == 0
    assert after["volume_ml"] - before == pytest.approx(expected, rel=SIM_GAIN_TOLERANCE)
    # Dosing events are records, not state: never retained.
    assert not any(m.retain for m in mqtt_watcher.messages(f"pioreactor/{node.unit}/{node.experiment}/dosing_events"))


def test_ml_is_refused_without_a_calibration_and_accepted_with_one(node_factory, mqtt_watcher):
    node = node_factory(time_scale=20.0).start()
    before = truth(node)["volume_ml"]
    refused = node.pio("run", "add_media", "--ml", "0.5", check=False)
    assert refused.returncode != 0
    assert "no pump calibration" in refused.stderr and "pio calibrations run --device media_pump" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert node.job("add_media") is None and truth(node)["volume_ml"] == before

    calibrate(node, "media_pump", rate=0.1)
    node.pio("run", "add_media", "--ml", "0.5")
    wait_gone(node, "add_media")
    evs = wait_until(lambda: (e := events(mqtt_watcher, node)) and total(e, "add_media") >= 0.5 - 1e-9 and e, 10, 0.05, "events")
    assert total(evs, "add_media") == 0.5  # exactly what was asked
    assert len(evs) == 10  # 5 s at 0.1 ml/s, in 0.5 s chunks
    # 5 s of pumping; the simulated pump's true flow is near the nominal 0.0911 ml/s, not the 0.1 calibrated.
    assert truth(node)["volume_ml"] - before == pytest.approx(5 * DEFAULT_PUMP_ML_PER_SECOND, rel=SIM_GAIN_TOLERANCE)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "-1"], "duration: -1.0 is below the minimum"),
        (["--ml", "-0.5"], "ml: -0.5 is below the minimum"),
        (["--duration", "nan"], "is not a finite number"),
        (["--ml", "1", "--duration", "2"], "give exactly one of --ml"),
        ([], "give exactly one of --ml"),
        (["--duration", "500"], "more than the vial can take"),
    ],
)
def test_bad_requests_are_refused_and_move_nothing(node_factory, mqtt_watcher, args, message):
    node = node_factory(time_scale=20.0).start()
    before = truth(node)["volume_ml"]
    refused = node.pio("run", "add_media", *args, check=False)
    assert refused.returncode != 0 and message in refused.stderr
    assert node.job("add_media") is None
    after = truth(node)
    assert after["volume_ml"] == before and after["pwm"]["media"] == 0
    assert events(mqtt_watcher, node) == []


@pytest.mark.parametrize("how", ["disconnected", "sleeping", "kill"])
def test_a_pump_stopped_midway_is_off_at_once_and_published_what_it_moved(node_factory, broker, mqtt_watcher, how):
    node = node_factory(time_scale=10.0).start()
    before = truth(node)["volume_ml"]
    node.pio("run", "add_media", "--duration", "60")
    wait_until(lambda: len(events(mqtt_watcher, node)) >= 8, 10, 0.05, "pumping")
    assert truth(node)["pwm"]["media"] == 100
    asked = time.monotonic()
    if how != "kill":
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.publish(node.topic("add_media", "$state/set"), how, qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
    else:
        node.pio("kill", "add_media")
        assert truth(node)["pwm"]["media"] == 0  # off by the time `pio kill` returns
    mqtt_watcher.wait_for(pwm_mirror(node), "{}", timeout=5, since=asked)
    off = next(m for m in mqtt_watcher.messages(pwm_mirror(node), since=asked) if m.payload == "{}")
    assert off.time - asked < 1.0
    wait_gone(node, "add_media")
    moved = truth(node)["volume_ml"] - before
    published = total(events(mqtt_watcher, node), "add_media")
    assert 0 < published < 60 * DEFAULT_PUMP_ML_PER_SECOND
    # The books and the vial agree within the pump's gain error: the part-chunk up to the stop is included.
    assert published == pytest.approx(moved, rel=SIM_GAIN_TOLERANCE)


def test_one_pump_per_channel(node_factory, mqtt_watcher):
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "add_media", "--duration", "60")
    again = node.pio("run", "add_media", "--duration", "1", check=False)
    assert again.returncode != 0 and "add_media is already running" in again.stderr
    other = node.pio("run", "circulate_media", "--duration", "5", check=False)
    assert other.returncode != 0
    assert "PWM channel media is held by add_media" in other.stderr and "pio kill add_media" in other.stderr
    # The refused circulation left the waste pump (which it acquired first) off and free.
    assert truth(node)["pwm"]["waste"] == 0
    node.pio("kill", "add_media")
    node.pio("run", "remove_waste", "--duration", "1")
    wait_gone(node, "remove_waste")


def test_circulate_media_pulses_media_below_the_waste_rate_and_leaves_both_off(node_factory, mqtt_watcher):
    node = node_factory(time_scale=20.0).start()
    before = truth(node)["volume_ml"]
    started = time.monotonic()
    node.pio("run", "circulate_media", "--duration", "10")
    wait_gone(node, "circulate_media")
    rate = DEFAULT_PUMP_ML_PER_SECOND
    evs = wait_until(
        lambda: (e := events(mqtt_watcher, node)) and math.isclose(total(e, "remove_waste"), 10 * rate) and e, 10, 0.05, "events"
    )
    assert total(evs, "add_media") == pytest.approx(10 * 0.85 * rate)
    assert total(evs, "add_media") < total(evs, "remove_waste")
    assert {e["source_of_event"] for e in evs} == {"circulate_media"}
    # Both pumps ran together (waste continuously, media pulsed), and both are off at the end.
    mirror = [json.loads(p) for p in mqtt_watcher.values(pwm_mirror(node), since=started)]
    assert any(len(on) == 2 for on in mirror) and any(len(on) == 1 for on in mirror)
    assert mirror[-1] == {}
    after = truth(node)
    assert after["pwm"]["media"] == 0 and after["pwm"]["waste"] == 0
    # The waste needle holds the level: what came in went out.
    assert after["volume_ml"] == pytest.approx(before, abs=0.1)


def test_circulate_needs_a_duration(node_factory):
    node = node_factory(time_scale=20.0).start()
    refused = node.pio("run", "circulate_alt_media", check=False)
    assert refused.returncode != 0 and "circulate_alt_media needs --duration" in refused.stderr


def test_continuous_inflow_needs_books_and_a_calibration_and_stops_at_max_fill(node_factory, broker, mqtt_watcher):
    node = node_factory(time_scale=20.0).start()
    refused = node.pio("run", "add_media", "--continuously", check=False)
    assert refused.returncode != 0 and "continuous add_media needs a pump calibration" in refused.stderr

    calibrate(node, "media_pump", rate=0.1)
    refused = node.pio("run", "add_media", "--continuously", check=False)
    assert refused.returncode != 0 and "the vial's volume is unknown" in refused.stderr
    assert truth(node)["pwm"]["media"] == 0

    # The books (kept by the monitor) say 17.5 ml; max fill of the 20 ml model is 18 ml.
    publish_retained(broker, f"pioreactor/{node.unit}/{node.experiment}/bioreactor/current_volume_ml", "17.5")
    node.pio("run", "add_media", "--continuously")
    wait_gone(node, "add_media", timeout=20)
    evs = events(mqtt_watcher, node)
    assert total(evs, "add_media") == pytest.approx(0.5, abs=1e-9)
    assert truth(node)["pwm"]["media"] == 0


def test_continuous_waste_runs_until_stopped_on_the_default_calibration(node_factory, mqtt_watcher):
    node = node_factory(time_scale=20.0).start()
    node.pio("run", "remove_waste", "--continuously")
    wait_until(lambda: total(events(mqtt_watcher, node), "remove_waste") > 2.0, 20, 0.05, "waste keeps running")
    assert truth(node)["pwm"]["waste"] == 100  # past the driver's 1.5x cap of any single window: re-armed
    node.pio("kill", "remove_waste")
    assert truth(node)["pwm"]["waste"] == 0
