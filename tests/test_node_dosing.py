"""dosing_automation on a simulated unit: refusals with nothing started, and exchanges as dosing events."""

from __future__ import annotations

import json

import pytest

from actors.calibration_store import CalibrationStore
from actors.calibrations import PumpCalibration
from tests.support import MqttWatcher, wait_until

ML_PER_S = 0.0911


def calibrate_pumps(node, devices=("media_pump", "alt_media_pump", "waste_pump"), rates: dict[str, float] | None = None) -> None:
    """Measured pump calibrations in the node's store, as `pio calibrations run` would leave them:
    ``rates`` (ml/s by device) are what the user measured; by default the nominal 0.0911 ml/s."""
    store = CalibrationStore.for_node(str(node.state_dir / node.unit))
    for device in devices:
        xs = [2.0, 5.0, 10.0, 20.0]
        rate = (rates or {}).get(device, ML_PER_S)
        cal = PumpCalibration.from_points(
            xs, [rate * x for x in xs], degree=1, name="bench", device=device,
            created_at="2026-11-28T00:00:00+00:00", hz=250.0, dc=100.0,
        )
        store.save(cal)


def refused(node, *args: str) -> str:
    result = node.pio("run", "dosing_automation", *args, check=False)
    assert result.returncode != 0, result.stdout
    assert node.job("dosing_automation") is None, "a refused automation must not be left running"
    return result.stderr.strip()


def test_bad_automation_requests_are_refused_with_a_message_and_start_nothing(node_factory):
    node = node_factory(time_scale=10.0).start()
    assert "unknown dosing automation 'turbidostatt'" in refused(node, "--automation-name", "turbidostatt")
    assert "turbidostat" in refused(node, "--automation-name", "turbidostatt")  # the list of known ones
    assert "--automation-name is required" in refused(node)
    assert "needs --target-biomass" in refused(node, "--automation-name", "turbidostat", "--exchange-volume-ml", "1")
    # Without pump calibrations, volumes cannot be dosed: the message says how to calibrate.
    no_cal = refused(node, "--automation-name", "chemostat", "--exchange-volume-ml", "1")
    assert "pio calibrations run --device media_pump" in no_cal
    calibrate_pumps(node)
    assert "exchange_volume_ml" in refused(node, "--automation-name", "chemostat", "--exchange-volume-ml", "-1")
    past_max = refused(node, "--automation-name", "chemostat", "--exchange-volume-ml", "50")
    assert "exchange_volume_ml" in past_max and "18" in past_max  # the 20 ml vial's max fill
    assert "not a number" in refused(node, "--automation-name", "chemostat", "--exchange-volume-ml", "abc")
    assert "choices" in refused(node, "--automation-name", "turbidostat", "--target-biomass", "1",
                                "--exchange-volume-ml", "1", "--biomass-signal", "colour")
    truth = node.pio_json("sim", "truth")
    assert all(duty == 0 for duty in truth["pwm"].values())


def publish_books(watcher: MqttWatcher, node, volume: float = 15.0) -> None:
    for field, value in (("current_volume_ml", volume), ("efflux_tube_volume_ml", 15.0), ("alt_media_fraction", 0.0)):
        watcher.publish(f"pioreactor/{node.unit}/{node.experiment}/bioreactor/{field}", str(value), retain=True)


def test_chemostat_exchanges_on_its_period_as_media_then_waste_dosing_events(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=60.0).start()
    calibrate_pumps(node)
    publish_books(mqtt_watcher, node)
    events = f"pioreactor/{node.unit}/{node.experiment}/dosing_events"
    node.pio("run", "dosing_automation", "--automation-name", "chemostat", "--exchange-volume-ml", "0.5", "--duration", "1")
    job = node.wait_job_state("dosing_automation", "ready")
    assert job["settings"]["duration"] == "1.0" or float(job["settings"]["duration"]) == 1.0

    # First run 2 s after start, then one a minute: media 0.5, waste 0.5, extra waste 1.0 each time.
    wait_until(lambda: len(mqtt_watcher.values(events)) >= 6, 30, message="two exchanges")
    payloads = [json.loads(p) for p in mqtt_watcher.values(events)[:6]]
    assert [p["event"] for p in payloads] == ["add_media", "remove_waste", "remove_waste"] * 2
    assert [p["volume_change"] for p in payloads[:3]] == pytest.approx([0.5, 0.5, 1.0])
    assert all(p["source_of_event"] == "dosing_automation" and p["timestamp"].endswith("Z") for p in payloads)
    latest = json.loads(mqtt_watcher.last(node.topic("dosing_automation", "latest_event")))
    assert latest["event_name"] in ("DilutionEvent", "NoEvent")

    # A settings change is applied in place and published.
    node.pio("jobs", "set", "dosing_automation", "duration", "2")
    mqtt_watcher.wait_for(node.topic("dosing_automation", "duration"), lambda p: float(p) == 2.0)
    refusal = node.pio("jobs", "set", "dosing_automation", "duration", "-3", check=False)
    assert refusal.returncode != 0 and "duration" in refusal.stderr

    # Sleeping turns every pump off at once, and no exchange happens while asleep.
    node.pio("jobs", "set", "dosing_automation", "$state", "sleeping")
    node.wait_job_state("dosing_automation", "sleeping")
    wait_until(lambda: all(d == 0 for d in node.pio_json("sim", "truth")["pwm"].values()), 5, message="pumps off")


def test_the_automation_sleeps_instead_of_dosing_past_the_max_fill(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=60.0).start()
    calibrate_pumps(node)
    publish_books(mqtt_watcher, node, volume=17.8)  # 18 ml is the 20 ml vial's max fill
    events = f"pioreactor/{node.unit}/{node.experiment}/dosing_events"
    node.pio("run", "dosing_automation", "--automation-name", "chemostat", "--exchange-volume-ml", "0.5", "--duration", "1")
    node.wait_job_state("dosing_automation", "sleeping", timeout=20)
    latest = json.loads(mqtt_watcher.wait_for(node.topic("dosing_automation", "latest_event"), lambda p: "DosingStopped" in p))
    assert "max fill" in latest["message"]
    assert not [p for p in mqtt_watcher.values(events) if json.loads(p)["event"] == "add_media"]
