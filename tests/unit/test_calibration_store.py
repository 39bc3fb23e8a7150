"""The calibration files of a unit: one per calibration, one active per device, refusals that change nothing."""

from __future__ import annotations

import json

import pytest

from actors.calibration_store import CalibrationStore, CalibrationStoreError
from actors.calibrations import CalibrationFileError, PumpCalibration, is_default


def pump_cal(name: str = "cal1", device: str = "media_pump", rate: float = 0.1) -> PumpCalibration:
    xs = [5.0, 10.0, 20.0]
    return PumpCalibration.from_points(
        xs, [rate * x for x in xs], degree=1, name=name, device=device,
        created_at="2025-01-01T00:00:00+00:00", hz=250.0, dc=100.0,
    )


@pytest.fixture
def store(tmp_path) -> CalibrationStore:
    return CalibrationStore.for_node(str(tmp_path))


def test_without_a_calibration_a_pump_gets_the_default_stand_in(store):
    cal = store.pump("media_pump")
    assert is_default(cal) and cal.device == "media_pump"


def test_save_activates_and_the_pump_uses_it(store):
    path = store.save(pump_cal())
    assert path.endswith("calibrations/media_pump/cal1.yaml")
    assert store.pump("media_pump") == pump_cal()
    assert store.active_names() == {"media_pump": "cal1"}


def test_set_active_switches_between_saved_calibrations(store):
    store.save(pump_cal("a", rate=0.1))
    store.save(pump_cal("b", rate=0.2))
    assert store.pump("media_pump").name == "b"
    store.set_active("media_pump", "a")
    assert store.pump("media_pump").name == "a"
    assert store.names("media_pump") == ["a", "b"]


def test_set_active_refuses_an_unknown_name_and_changes_nothing(store):
    store.save(pump_cal("a"))
    with pytest.raises(CalibrationStoreError, match="no calibration 'zzz' for media_pump; calibrations for media_pump: a"):
        store.set_active("media_pump", "zzz")
    assert store.active_names() == {"media_pump": "a"}


def test_a_malformed_file_is_refused_with_file_line_and_fix_and_not_activated(store):
    store.save(pump_cal("good"))
    bad = store.path("media_pump", "bad")
    with open(bad, "w") as f:
        f.write(open(store.path("media_pump", "good")).read().replace("dc: 100.0", "dc: 250"))
    with pytest.raises(CalibrationFileError) as e:
        store.set_active("media_pump", "bad")
    message = str(e.value)
    assert bad in message and ":" in message.split(bad)[1][:6]  # file:line
    assert "dc 250.0 is out of range; use a number in (0, 100]" in message
    assert store.active_names() == {"media_pump": "good"}


def test_a_malformed_active_file_reaches_the_pump_user(store):
    store.save(pump_cal("cal1"))
    path = store.path("media_pump", "cal1")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text.replace("hz: 250.0", "hz: fast"))
    with pytest.raises(CalibrationFileError, match=r"cal1\.yaml:\d+: hz: 'fast' is not a number"):
        store.pump("media_pump")


def test_delete_clears_the_active_pointer(store):
    store.save(pump_cal("cal1"))
    store.delete("media_pump", "cal1")
    assert store.names("media_pump") == [] and store.active_names() == {}
    assert is_default(store.pump("media_pump"))
    with pytest.raises(CalibrationStoreError, match="no calibration 'cal1'"):
        store.delete("media_pump", "cal1")


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "", ".hidden"])
def test_names_that_are_not_plain_file_names_are_refused(store, name):
    with pytest.raises(CalibrationStoreError, match="not a usable calibration name"):
        store.path("media_pump", name)


def test_unknown_devices_are_refused_with_the_list(store):
    with pytest.raises(CalibrationStoreError, match="unknown device 'pump9'; devices are: od, od45"):
        store.names("pump9")


def test_an_active_pointer_to_a_missing_file_is_reported(store, tmp_path):
    store.save(pump_cal("cal1"))
    with open(tmp_path / "calibrations" / "active.json", "w") as f:
        json.dump({"media_pump": "gone"}, f)
    with pytest.raises(CalibrationStoreError, match="no calibration 'gone' for media_pump"):
        store.pump("media_pump")


def test_a_calibration_for_another_device_in_the_wrong_folder_is_refused(store):
    store.save(pump_cal("w", device="waste_pump"))
    misplaced = store.path("media_pump", "w")
    import os

    os.makedirs(os.path.dirname(misplaced), exist_ok=True)
    os.replace(store.path("waste_pump", "w"), misplaced)
    with pytest.raises(CalibrationStoreError, match="is for device 'waste_pump', not 'media_pump'"):
        store.load("media_pump", "w")
