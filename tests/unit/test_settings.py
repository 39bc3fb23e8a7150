"""Setting specs: casting and refusing `/set` values with a reason."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.settings import Setting, SettingError, check_settable, index

RPM = Setting(name="target_rpm", datatype="float", settable=True, unit="RPM", minimum=0, maximum=5000)


@pytest.mark.parametrize(("raw", "value"), [("500", 500.0), (" 12.5 ", 12.5), (b"0", 0.0), ("5000", 5000.0)])
def test_float_parsing(raw, value):
    assert RPM.parse(raw) == value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("abc", "not a number"), ("-5", "below the minimum"), ("9000", "above the maximum"), ("nan", "not a finite number"), ("inf", "not a finite number")],
)
def test_float_refusals_say_what_to_send(raw, reason):
    with pytest.raises(SettingError, match=reason) as e:
        RPM.parse(raw)
    assert "send a value from 0 to 5000 RPM" in str(e.value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_is_accepted_iff_within_bounds(x):
    if 0 <= x <= 5000:
        assert RPM.parse(repr(x)) == x
    else:
        with pytest.raises(SettingError):
            RPM.parse(repr(x))


@given(st.text())
def test_parse_never_raises_anything_but_a_setting_error(text):
    for spec in (RPM, Setting(name="n", datatype="integer"), Setting(name="b", datatype="boolean"), Setting(name="j", datatype="json")):
        try:
            value = spec.parse(text)
        except SettingError:
            continue
        if spec.datatype == "float":
            assert math.isfinite(value)


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("1", True), ("On", True), ("no", False), ("0", False), ("f", False)])
def test_boolean(raw, value):
    assert Setting(name="flag", datatype="boolean").parse(raw) is value


def test_integer_json_and_string():
    assert Setting(name="n", datatype="integer").parse("7") == 7
    with pytest.raises(SettingError, match="whole number"):
        Setting(name="n", datatype="integer").parse("7.5")
    assert Setting(name="j", datatype="json").parse('{"a": 1}') == {"a": 1}
    with pytest.raises(SettingError, match="not valid JSON"):
        Setting(name="j", datatype="json").parse("{")
    assert Setting(name="s", datatype="string").parse(" hi ") == "hi"


def test_bad_specs_are_refused_at_declaration():
    with pytest.raises(ValueError, match="lowercase words"):
        Setting(name="Target-RPM", datatype="float")
    with pytest.raises(ValueError, match="datatype"):
        Setting(name="x", datatype="decimal")
    with pytest.raises(ValueError, match="declared twice"):
        index((RPM, RPM))
    with pytest.raises(ValueError, match="reserved"):
        index((Setting(name="state", datatype="string"),))


def test_check_settable_names_the_settable_ones():
    specs = index((RPM, Setting(name="measured_rpm", datatype="json")))
    assert check_settable(specs, "target_rpm") is RPM
    with pytest.raises(SettingError, match="read-only; settable settings are: target_rpm"):
        check_settable(specs, "measured_rpm")
    with pytest.raises(SettingError, match="unknown setting 'speed'"):
        check_settable(specs, "speed")
    assert RPM.option == "--target-rpm"
