"""od_reading with calibrations, blanks and a noisy REF, and od_blank, on a simulated unit (real processes)."""

from __future__ import annotations

import json
import time

import pytest

from actors.calibration_store import CalibrationStore
from actors.calibrations import ODCalibration
from tests.support import MqttWatcher, wait_until

FAST = 30.0  # simulated seconds per real second: a 5 s OD interval is 1/6 s


def store_of(node) -> CalibrationStore:
    return CalibrationStore.for_node(str(node.state_dir / node.unit))


def od_calibration(name: str = "od90-standards", ir_led_intensity: float = 80.0) -> ODCalibration:
    # OD600 = (V - 0.001) / 0.5 over a range wide enough for the simulated culture's volts.
    xs = [0.0, 0.5, 1.0, 2.0, 4.0]
    return ODCalibration.from_points(
        xs,
        [0.001 + 0.5 * x for x in xs],
        degree=1,
        name=name,
        device="od90",
        created_at="2025-06-01T12:00:00Z",
        ir_led_intensity=ir_led_intensity,
        angle="90",
        pd_channel="2",
    )


def leds(node) -> str:
    return f"pioreactor/{node.unit}/$experiment/leds/intensity"


def test_a_calibration_publishes_raw_and_calibrated_od(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    store_of(node).save(od_calibration())
    node.pio("run", "od_reading")

    calibrated = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "calibrated_od2"), lambda p: p != ""))
    assert calibrated["calibrated"] == 1 and calibrated["calibration_name"] == "od90-standards"
    stamp = calibrated["timestamp"]
    raw = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "raw_od2"), lambda p: p and json.loads(p)["timestamp"] == stamp))
    assert raw["calibrated"] == 0 and "calibration_name" not in raw
    # The curve maps volts to OD600: the calibrated value is the raw one through it.
    assert calibrated["od"] == pytest.approx((raw["od"] - 0.001) / 0.5, rel=1e-6)
    od2 = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "od2"), lambda p: p and json.loads(p)["timestamp"] == stamp))
    assert od2 == calibrated
    ods = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "ods"), lambda p: p and json.loads(p)["timestamp"] == stamp))
    assert ods["ods"]["2"] == calibrated
    assert "channel 2 uses OD calibration 'od90-standards'" in node.pio("logs", "-n", "200").stdout


def test_without_a_calibration_only_od_and_ods_are_published(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    node.pio("run", "od_reading")
    od2 = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "od2"), lambda p: p != ""))
    assert od2["calibrated"] == 0 and od2["channel"] == "2" and od2["angle"] == "90"
    ods = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "ods"), lambda p: p and json.loads(p)["timestamp"] == od2["timestamp"]))
    assert ods["ods"]["2"] == od2
    assert mqtt_watcher.messages(node.topic("od_reading", "calibrated_od2")) == []
    assert mqtt_watcher.messages(node.topic("od_reading", "raw_od2")) == []


def test_a_calibration_at_another_ir_intensity_is_refused_and_nothing_starts(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    store_of(node).save(od_calibration(ir_led_intensity=60.0))
    result = node.pio("run", "od_reading", check=False)
    assert result.returncode != 0
    assert "recorded at IR intensity 60.0 %" in result.stderr and "--ir-led-intensity 60" in result.stderr
    assert node.job("od_reading") is None
    assert all(json.loads(p)["A"] == 0 for p in mqtt_watcher.values(leds(node)) if p)
    # At the calibration's intensity it runs.
    node.pio("run", "od_reading", "--ir-led-intensity", "60")
    calibrated = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "calibrated_od2"), lambda p: p != ""))
    assert calibrated["ir_led_intensity"] == 60.0
    # ... and refuses a /set that would leave the calibration's intensity, changing nothing.
    refused = node.pio("jobs", "set", "od_reading", "ir_led_intensity", "80", check=False)
    assert refused.returncode != 0 and "IR intensity" in refused.stderr
    assert node.job("od_reading")["settings"]["ir_led_intensity"] == 60.0


def test_a_malformed_calibration_file_is_refused_with_file_and_line(node_factory):
    node = node_factory(time_scale=FAST).start()
    store = store_of(node)
    path = store.save(od_calibration(name="broken"))
    text = open(path).read().replace("angle: '90'", "angle: '91'")
    assert "'91'" in text
    with open(path, "w") as f:
        f.write(text)
    result = node.pio("run", "od_reading", check=False)
    assert result.returncode != 0
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("angle"))
    assert f"broken.yaml:{line}: angle:" in result.stderr and "is not one of" in result.stderr
    assert node.job("od_reading") is None


def test_od_blank_records_means_and_od_reading_subtracts_them(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    node.pio("run", "od_reading")
    before = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "od2"), lambda p: p != ""))["od"]
    node.pio("kill", "od_reading")

    node.pio("run", "od_blank", "--n-samples", "5")
    means = json.loads(mqtt_watcher.wait_for(node.topic("od_blank", "means"), lambda p: p != "", timeout=15))
    assert set(means) == {"2"} and means["2"] == pytest.approx(before, rel=0.1)  # the same vial, read the same way
    wait_until(lambda: node.job("od_blank") is None, 10, message="od_blank stops by itself")
    assert mqtt_watcher.retained(node.topic("od_blank", "means")) == json.dumps(means, separators=(",", ":"))
    stored = json.loads((node.state_dir / node.unit / "od_blanks" / f"{node.experiment}.json").read_text())
    assert stored["means"] == means and stored["n_samples"] == 5 and stored["ir_led_intensity"] == 80.0

    since = time.monotonic()
    node.pio("run", "od_reading")
    after = json.loads(mqtt_watcher.wait_for(node.topic("od_reading", "od2"), lambda p: p != "", since=since))["od"]
    # Blank and culture are the same vial here: what is left is the noise around zero (floored at 0).
    assert 0 <= after < 0.1 * before
    assert "subtracting the blank" in node.pio("logs", "-n", "200").stdout

    # A blank and a calibration together are refused.
    node.pio("kill", "od_reading")
    store_of(node).save(od_calibration())
    result = node.pio("run", "od_reading", check=False)
    assert result.returncode != 0 and "has a blank and an active OD calibration" in result.stderr
    assert "od_blank --delete true" in result.stderr

    # Deleting the blank clears it; od_reading then starts with the calibration.
    node.pio("run", "od_blank", "--delete", "true")
    mqtt_watcher.wait_for(node.topic("od_blank", "means"), "", since=since)
    assert not (node.state_dir / node.unit / "od_blanks" / f"{node.experiment}.json").exists()
    node.pio("run", "od_reading")
    mqtt_watcher.wait_for(node.topic("od_reading", "calibrated_od2"), lambda p: p != "")


def test_od_blank_is_refused_while_od_reading_runs(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    node.pio("run", "od_reading")
    mqtt_watcher.wait_for(node.topic("od_reading", "ods"), lambda p: p != "")
    result = node.pio("run", "od_blank", check=False)
    assert result.returncode != 0
    assert "od_reading is running" in result.stderr and "pio kill od_reading" in result.stderr
    assert node.job("od_blank") is None
    assert not (node.state_dir / node.unit / "od_blanks").exists()
    # od_reading goes on undisturbed, its IR LED still on.
    assert node.job("od_reading")["state"] == "ready"
    assert json.loads(mqtt_watcher.last(leds(node)))["A"] == 80.0


FLICKER = '''
from actors.job import Job


class IrFlicker(Job):
    """A failing IR LED driver: the LED's output jumps between readings."""

    name = "ir_flicker"

    def start(self):
        self.high = True
        self.ctx.ready()
        self.ctx.every(3.1, self.flick, "flick")  # not a multiple of the 5 s readings: they see both levels

    def flick(self):
        self.high = not self.high
        self.ctx.set_led("A", 80.0 if self.high else 40.0)
'''


def test_a_noisy_ref_pauses_the_dosing_automation(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=FAST).start()
    node.write_plugin("ir_flicker", FLICKER)
    node.pio("run", "od_reading")
    mqtt_watcher.wait_for(node.topic("od_reading", "ods"), lambda p: p != "")
    assert mqtt_watcher.messages(node.topic("dosing_automation", "$state/set")) == []  # a steady REF is quiet
    node.pio("run", "ir_flicker")
    mqtt_watcher.wait_for(node.topic("dosing_automation", "$state/set"), "sleeping", timeout=15)
    warning = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/{node.experiment}/logs/app/warning", lambda p: "REF photodiode is noisy" in p)
    assert "pausing the dosing automation" in json.loads(warning)["message"]
