"""`pio calibrations` on a unit's files and on a simulated node: list, display, set-active, delete, the
malformed-file refusal, and the pump, stirring and OD standards recording protocols."""

from __future__ import annotations

import math
import signal
import subprocess
import threading

import pytest
from hypothesis import given
from hypothesis import strategies

from actors.calibration_store import CalibrationStore
from actors.calibrations import ODCalibration, PumpCalibration
from tests.support import MqttWatcher, wait_until
from tests.support.node import PIO
from tests.test_node_pumps import events, total, truth, wait_gone
from worker.calibrations_cli import (
    OD_EXPERIMENT,
    STANDARD_PROMPT,
    fit_degree,
    od_channel_for,
    od_curve_warning,
    parse_standard,
)


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


@pytest.mark.serial  # timed pump runs at 20x judged to 3 %: ms of scheduling delay under load are tenths of a ml
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


# --- OD: the standards protocol ----------------------------------------------------------------------

SIGNALS_90 = {"pd2": ("2", "90")}


def od_cal(name: str, device: str = "od90", intensity: float = 80.0, angle: str = "90") -> ODCalibration:
    ods = [0.0, 0.5, 1.0]
    return ODCalibration.from_points(
        ods, [0.01 + 0.3 * x for x in ods], degree=1, name=name, device=device, created_at="2025-01-01T00:00:00+00:00",
        ir_led_intensity=intensity, angle=angle, pd_channel="2",
    )


def test_standard_entries_are_parsed_or_refused_with_what_to_type():
    assert parse_standard(" 0.5 ", []) == 0.5
    assert parse_standard("0", [0.5]) == 0.0  # a blank is a standard
    assert parse_standard("", [0.1]) is None and parse_standard("  ", []) is None  # finish
    for text, reason in (("abc", "is not a number"), ("-0.2", "is not possible"), ("nan", "is not possible"),
                         ("inf", "is not possible"), ("0.50", "already recorded")):
        with pytest.raises(ValueError, match=reason) as e:
            parse_standard(text, [0.5])
        assert "\n" not in str(e.value)


@given(strategies.floats(min_value=0, max_value=1e6), strategies.lists(strategies.floats(min_value=0, max_value=1e6), max_size=5))
def test_any_new_non_negative_od_is_taken_as_typed(od, recorded):
    if od in recorded:
        with pytest.raises(ValueError, match="already recorded"):
            parse_standard(repr(od), recorded)
    else:
        assert parse_standard(repr(od), recorded) == od


def test_od_devices_map_to_this_units_photodiodes():
    assert od_channel_for("od90", SIGNALS_90) == ("2", "90")
    assert od_channel_for("od", SIGNALS_90) == ("2", "90")  # the generic device means the one photodiode
    with pytest.raises(ValueError, match="no photodiode for od45; OD devices it can calibrate: od, od90"):
        od_channel_for("od45", SIGNALS_90)
    two = {"pd2": ("2", "90"), "pd3": ("3", "45")}
    with pytest.raises(ValueError, match="od is ambiguous"):
        od_channel_for("od", two)
    assert od_channel_for("od45", two) == ("3", "45")


def test_fit_degree_and_the_turning_curve_warning():
    assert [fit_degree(n) for n in (2, 3, 4, 5, 9)] == [1, 2, 3, 3, 3]
    assert od_curve_warning(od_cal("line")) is None
    # Volts that rise then fall across the standards: the fitted parabola turns inside the range.
    bent = ODCalibration.from_points(
        [0.0, 1.0, 2.0], [0.1, 0.5, 0.1], degree=2, name="bent", device="od90", created_at="2025-01-01T00:00:00+00:00",
        ir_led_intensity=80.0, angle="90", pd_channel="2",
    )
    warning = od_curve_warning(bent)
    assert warning is not None and "turns at OD600 1" in warning


def dilute(node) -> None:
    """Add 3 ml of media to the 15 ml culture (OD x 15/18), then pump the vial back down to the efflux tube."""
    node.pio("run", "add_media", "--duration", f"{3.0 / 0.0911:.1f}")
    wait_gone(node, "add_media")
    node.pio("run", "remove_waste", "--duration", "45")
    wait_gone(node, "remove_waste")


def od_settings(node) -> dict:
    job = node.job("od_reading")
    return job["settings"] if job else {}


def test_od_standards_protocol_learns_the_photodiode_and_od_reading_then_reports_true_od(node_factory):
    # No growth: the vial's OD only changes when the test dilutes it, like swapping in the next standard.
    node = node_factory(time_scale=60.0, simulation={"mu_max": 0, "initial_od": 1.6}).start()
    st = store(node)
    st.save(od_cal("generic", device="od", intensity=50.0))  # active, at another intensity: set aside meanwhile
    session = Interactive(node, "calibrations", "run", "--device", "od90", "--name", "stds", "-y")

    session.wait_for(STANDARD_PROMPT, 1)
    assert "calibration generic of od is set aside" in session.output
    job = node.job("od_reading")
    assert job is not None and job["experiment"] == OD_EXPERIMENT  # the user's experiment sees nothing
    session.answer("abc")  # a typo re-prompts
    session.wait_for(STANDARD_PROMPT, 2)
    assert "'abc' is not a number" in session.output

    asked = 2  # prompts shown so far
    entered = []
    for k in range(3):
        if k:
            dilute(node)
            dilute(node)
        od = round(truth(node)["od"], 4)  # the standard's label
        entered.append(od)
        session.answer(f"{od}")
        asked += 1
        session.wait_for(STANDARD_PROMPT, asked)
        assert f"OD600 {od:g} -> " in session.output
        if k == 0:
            session.answer(f"{od}")  # the same standard twice
            asked += 1
            session.wait_for(STANDARD_PROMPT, asked)
            assert f"OD600 {od:g} was already recorded" in session.output
        if k == 1:
            session.answer("")  # two standards are not enough
            asked += 1
            session.wait_for(STANDARD_PROMPT, asked)
            assert "at least 3 standards are needed (2 so far)" in session.output
    session.answer("")
    assert session.finish(60) == 0, session.output
    assert "saved" in session.output and "fitted curve: voltage = " in session.output and "residual" in session.output
    assert entered[0] > 1.5 and entered[2] < 0.8  # the standards span a range

    cal = st.active("od90")
    assert isinstance(cal, ODCalibration) and cal.name == "stds" and cal.recorded_x == tuple(entered)
    assert (cal.ir_led_intensity, cal.angle, cal.pd_channel, cal.calibrated_on_unit) == (80.0, "90", "2", node.unit)
    assert len(cal.curve) == 3  # a parabola through three standards
    assert cal.recorded_y[0] > cal.recorded_y[1] > cal.recorded_y[2] > 0  # more culture, more scatter
    assert st.active_names() == {"od90": "stds", "od": "generic"}  # what was set aside is back
    wait_until(lambda: node.job("od_reading") is None, 10, 0.1, "od_reading stopped after the calibration")

    # od_reading now applies it: its calibrated OD is the vial's true OD (here the last standard's: dilution
    # only lowers the OD, so the vial ends at the low end of the recorded range).
    node.pio("run", "od_reading", "--interval", "2")
    calibrated = wait_until(lambda: od_settings(node).get("calibrated_od2"), 20, 0.1, "calibrated_od2")
    assert calibrated["calibration_name"] == "stds" and calibrated["calibrated"] == 1
    assert calibrated["od"] == pytest.approx(truth(node)["od"], rel=0.10)
    raw = od_settings(node)["raw_od2"]
    assert cal.voltage_to_od(raw["od"]).value == pytest.approx(truth(node)["od"], rel=0.10)
    node.pio("kill", "od_reading")


@pytest.mark.parametrize("how", ["eof", "ctrl-c", "sigterm"])
def test_od_protocol_interrupted_saves_nothing_and_puts_everything_back(node_factory, how):
    node = node_factory(time_scale=60.0, simulation={"mu_max": 0, "initial_od": 0.8}).start()
    st = store(node)
    st.save(od_cal("old"))
    session = Interactive(node, "calibrations", "run", "--device", "od90", "-y")
    session.wait_for(STANDARD_PROMPT, 1)
    assert st.active_names() == {}  # set aside while reading volts
    session.answer("0.8")
    session.wait_for(STANDARD_PROMPT, 2)
    assert session.proc.stdin is not None
    if how == "eof":
        session.proc.stdin.close()
    else:
        session.proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    assert session.finish() != 0
    assert "Aborted" in session.output
    assert st.names("od90") == ["old"] and st.active_names() == {"od90": "old"}
    wait_until(lambda: node.job("od_reading") is None, 10, 0.1, "od_reading stopped")


def test_od_protocol_refuses_missing_photodiodes_and_a_running_od_reading(node_factory):
    node = node_factory(time_scale=20.0).start()
    line = refused(node, "calibrations", "run", "--device", "od45", "-y")
    assert "no photodiode for od45; OD devices it can calibrate: od, od90" in line
    node.pio("run", "od_reading")
    line = refused(node, "calibrations", "run", "--device", "od90", "-y")
    assert "od_reading is running" in line and "pio kill od_reading" in line
    assert node.job("od_reading")["experiment"] == node.experiment  # left alone
    node.pio("kill", "od_reading")
    bad = node.pio("calibrations", "run", "--device", "od90", "--ir-led-intensity", "95", "-y", check=False)
    assert bad.returncode != 0 and "--ir-led-intensity" in bad.stderr and "0<x<=90" in bad.stderr
    assert all(store(node).names(d) == [] for d in ("od", "od45", "od90", "od135"))
