"""`pio calibrations` on a unit's files and on a simulated node: list, display, set-active, delete, the
malformed-file refusal, and the pump and stirring recording protocols."""

from __future__ import annotations

import math
import subprocess
import threading

import pytest

from actors.calibration_store import CalibrationStore
from actors.calibrations import PumpCalibration
from tests.support import MqttWatcher, wait_until
from tests.support.node import PIO
from tests.test_node_pumps import events, total, truth, wait_gone


def store(node) -> CalibrationStore:
    return CalibrationStore.for_node(str(node.state_dir / node.unit))


def pump_cal(name: str, rate: float, device: str = "media_pump") -> PumpCalibration:
    xs = [5.0, 10.0, 20.0]
    return PumpCalibration.from_points(
        xs, [rate * x for x in xs], degree=1, name=name, device=device, created_at="2025-01-01T00:00:00+00:00",
        hz=250.0, dc=100.0,
    )


def refused(node, *args: str) -> str:
    result = node.pio(*args, check=False)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_list_display_set_active_and_delete(node_factory):
    node = node_factory()  # the file commands need no running node
    assert "no calibrations" in node.pio("calibrations", "list").stdout
    store(node).save(pump_cal("slow", 0.08))
    store(node).save(pump_cal("fast", 0.12))

    table = node.pio("calibrations", "list").stdout
    assert "slow" in table and "fast" in table
    rows = {r["name"]: r for r in node.pio_json("calibrations", "list")}
    assert rows["fast"]["active"] and not rows["slow"]["active"]
    assert rows["slow"]["calibration_type"] == "simple_peristaltic_pump" and rows["slow"]["error"] is None

    shown = node.pio("calibrations", "display", "--device", "media_pump", "--name", "slow").stdout
    assert "calibration_type: simple_peristaltic_pump" in shown
    assert "fitted curve: volume = 0.08*duration" in shown

    node.pio("calibrations", "set-active", "--device", "media_pump", "--name", "slow")
    assert {r["name"]: r["active"] for r in node.pio_json("calibrations", "list")} == {"slow": True, "fast": False}

    # Delete asks first; with no answer nothing is deleted.
    asked = node.pio("calibrations", "delete", "--device", "media_pump", "--name", "slow", check=False)
    assert asked.returncode != 0 and store(node).names("media_pump") == ["fast", "slow"]
    node.pio("calibrations", "delete", "--device", "media_pump", "--name", "slow", "-y")
    assert store(node).names("media_pump") == ["fast"] and store(node).active_names() == {}


def test_bad_requests_are_one_line_errors_that_change_nothing(node_factory):
    node = node_factory()
    store(node).save(pump_cal("cal1", 0.1))
    before = store(node).active_names()
    assert "unknown device 'pump9'" in refused(node, "calibrations", "list", "--device", "pump9")
    assert "no calibration 'nope' for media_pump; calibrations for media_pump: cal1" in refused(
        node, "calibrations", "set-active", "--device", "media_pump", "--name", "nope"
    )
    assert "not a usable calibration name" in refused(node, "calibrations", "display", "--device", "media_pump", "--name", "../x")
    assert "no calibration 'nope'" in refused(node, "calibrations", "delete", "--device", "media_pump", "--name", "nope", "-y")
    assert store(node).active_names() == before and store(node).names("media_pump") == ["cal1"]


def test_a_malformed_file_is_refused_with_file_line_and_fix_everywhere(node_factory):
    node = node_factory(time_scale=20.0).start()
    st = store(node)
    st.save(pump_cal("good", 0.1))
    bad = st.path("media_pump", "bad")
    with open(bad, "w") as f:
        f.write(open(st.path("media_pump", "good")).read().replace("name: good", "name: bad").replace("dc: 100.0", "dc: 250"))
    where = f"{bad}:"
    fix = "dc 250.0 is out of range; use a number in (0, 100]"

    rows = {r["name"]: r for r in node.pio_json("calibrations", "list")}
    assert where in rows["bad"]["error"] and fix in rows["bad"]["error"]
    assert "MALFORMED" in node.pio("calibrations", "list").stdout
    for command in ("display", "set-active"):
        line = refused(node, "calibrations", command, "--device", "media_pump", "--name", "bad")
        assert where in line and fix in line
    assert st.active_names() == {"media_pump": "good"}

    # The pump job refuses it too, before anything moves.
    with open(st.path("media_pump", "good"), "w") as f:
        f.write(open(bad).read().replace("name: bad", "name: good"))
    before = truth(node)["volume_ml"]
    line = refused(node, "run", "add_media", "--ml", "0.5")
    assert "good.yaml:" in line and fix in line
    assert truth(node)["volume_ml"] == before


class Interactive:
    """`pio` with a live stdin: answers prompts as they appear."""

    def __init__(self, node, *args: str) -> None:
        self.proc = subprocess.Popen(
            [PIO, *args], env=node.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=0
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(1):
            self.output += chunk

    def wait_for(self, text: str, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: self.output.count(text) >= count or self.proc.poll() is not None, timeout, 0.05, f"prompt {count}")
        assert self.output.count(text) >= count, self.output

    def answer(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


def test_pump_calibration_run_learns_the_pump_and_then_ml_doses_are_true(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=20.0).start()
    session = Interactive(node, "calibrations", "run", "--device", "media_pump", "--name", "bench", "--durations", "4,8,12", "-y")
    volume = truth(node)["volume_ml"]
    for k in range(1, 4):
        session.wait_for("How many ml did it move", k)
        now = truth(node)["volume_ml"]
        session.answer(f"{now - volume:.4f}")  # what a scale under the beaker would say
        volume = now
    assert session.finish() == 0, session.output
    assert "saved" in session.output and "fitted curve: volume =" in session.output

    cal = store(node).active("media_pump")
    assert cal is not None and cal.name == "bench" and cal.recorded_x == (4.0, 8.0, 12.0)
    assert cal.calibrated_on_unit == node.unit and cal.dc == 100.0
    cal_events = events(mqtt_watcher, node)
    assert cal_events and {e["source_of_event"] for e in cal_events} == {"pump_calibration"}
    assert total(cal_events, "add_media") == math.fsum(0.0911 * d for d in (4, 8, 12))  # the default booking

    # With the pump calibrated, an ml dose is accepted and moves what was asked (within the scale's rounding).
    before = truth(node)["volume_ml"]
    node.pio("run", "add_media", "--ml", "0.5")
    wait_gone(node, "add_media")
    assert truth(node)["volume_ml"] - before == pytest.approx(0.5, rel=0.03)


def test_stirring_calibration_run_reads_rpm_from_the_node(node_factory):
    node = node_factory(time_scale=40.0).start()
    result = node.pio("calibrations", "run", "--device", "stirring", "--name", "stir1", "--duties", "30,45,60", "-y", timeout=90)
    assert "saved" in result.stdout
    cal = store(node).active("stirring")
    assert cal is not None and cal.recorded_x == (30.0, 45.0, 60.0)
    assert cal.recorded_y[0] < cal.recorded_y[1] < cal.recorded_y[2]
    assert cal.curve[0] > 0  # RPM rises with duty
    wait_until(lambda: node.job("stirring") is None, 10, 0.1, "stirring stopped after the calibration")
    assert truth(node)["pwm"]["stirring"] == 0


def test_run_refuses_while_the_device_is_busy_and_for_unknown_devices(node_factory):
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "add_media", "--duration", "30")
    line = refused(node, "calibrations", "run", "--device", "media_pump", "-y")
    assert "add_media is running" in line
    assert "unknown device 'pump9'" in refused(node, "calibrations", "run", "--device", "pump9", "-y")
    node.pio("kill", "add_media")
    assert store(node).names("media_pump") == []
