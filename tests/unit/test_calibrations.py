"""Calibrations: fitting, solving, bounds, YAML round trips, refusals with file/line/key/hint."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actors.calibrations import (
    CalibrationError,
    CalibrationFileError,
    ODCalibration,
    PumpCalibration,
    StirringCalibration,
    default_pump_calibration,
    dumps,
    fit_linear,
    fit_poly,
    is_default,
    loads,
    poly_eval,
    pump_ml_to_seconds,
    pump_seconds_to_ml,
    real_roots,
)

CREATED = "2025-06-01T12:00:00+00:00"


def pump(**overrides) -> PumpCalibration:
    fields = dict(
        name="media-2025-06",
        device="media_pump",
        created_at=CREATED,
        curve=(0.1, 0.02),
        recorded_x=(5.0, 10.0, 20.0),
        recorded_y=(0.52, 1.02, 2.02),
        hz=250.0,
        dc=100.0,
    )
    fields.update(overrides)
    return PumpCalibration(**fields)


def od(**overrides) -> ODCalibration:
    fields = dict(
        name="od90-standards",
        device="od90",
        created_at=CREATED,
        curve=(-0.02, 0.5, 0.01),  # saturating: voltage peaks at OD 12.5
        recorded_x=(0.0, 0.5, 1.0, 2.0, 4.0),
        recorded_y=(0.01, 0.255, 0.49, 0.93, 1.69),
        ir_led_intensity=80.0,
        angle="90",
        pd_channel="2",
    )
    fields.update(overrides)
    return ODCalibration(**fields)


def stirring(**overrides) -> StirringCalibration:
    fields = dict(
        name="stir",
        device="stirring",
        created_at=CREATED,
        curve=(28.0, -336.0),
        recorded_x=(20.0, 30.0, 40.0),
        recorded_y=(224.0, 504.0, 784.0),
        pwm_hz=200.0,
        voltage=5.1,
        calibrated_on_unit="worker01",
    )
    fields.update(overrides)
    return StirringCalibration(**fields)


# -- fitting and roots ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    coefficients=st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=4),
    xs=st.lists(st.floats(-50.0, 300.0), min_size=6, max_size=20, unique=True),
)
def test_fit_poly_recovers_an_exact_polynomial(coefficients, xs):
    assume(coefficients[0] != 0 or len(coefficients) == 1)
    degree = len(coefficients) - 1
    lo, hi = min(xs), max(xs)
    assume(hi - lo > 1.0)
    # Well-spread points only: clustered x values make any fit ill-posed, not just this one.
    assume(len({round((x - lo) / (hi - lo) * 20) for x in xs}) >= degree + 3)
    ys = [poly_eval(coefficients, x) for x in xs]
    fitted = fit_poly(xs, ys, degree)
    scale = max(1.0, max(abs(y) for y in ys))
    for x, y in zip(xs, ys):
        assert abs(poly_eval(fitted, x) - y) <= 1e-6 * scale


def test_fit_linear_is_least_squares():
    slope, intercept = fit_linear([0.0, 1.0, 2.0, 3.0], [1.1, 2.9, 5.2, 6.8])
    # numpy.polyfit(..., 1) gives 1.94, 1.09
    assert slope == pytest.approx(1.94)
    assert intercept == pytest.approx(1.09)
    assert fit_linear([0.0, 1.0, 2.0], [3.0, 3.0, 3.0]) == pytest.approx((0.0, 3.0))


def test_fit_refuses_too_few_points():
    with pytest.raises(CalibrationError, match="distinct"):
        fit_poly([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError):
        fit_poly([1.0, 2.0], [1.0], 1)
    with pytest.raises(ValueError):
        fit_poly([1.0, 2.0], [1.0, 2.0], -1)


@settings(max_examples=150, deadline=None)
@given(roots=st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=5), scale=st.floats(0.1, 10.0))
def test_real_roots_finds_every_root(roots, scale):
    ordered = sorted(roots)
    assume(all(b - a > 0.05 for a, b in zip(ordered, ordered[1:])))
    coefficients = [scale]
    for r in ordered:  # multiply by (x - r)
        coefficients = [a - r * b for a, b in zip(coefficients + [0.0], [0.0] + coefficients)]
    found = real_roots(coefficients)
    assert len(found) == len(ordered)
    for f, r in zip(found, ordered):
        assert f == pytest.approx(r, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    roots=st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=4),
    scale=st.sampled_from([-2.5, -0.01, 0.01]),
)
def test_real_roots_finds_every_root_whatever_the_leading_sign(roots, scale):
    ordered = sorted(roots)
    assume(all(b - a > 0.05 for a, b in zip(ordered, ordered[1:])))
    coefficients = [scale]
    for r in ordered:  # multiply by (x - r)
        coefficients = [a - r * b for a, b in zip(coefficients + [0.0], [0.0] + coefficients)]
    assert real_roots(coefficients) == pytest.approx(ordered, abs=1e-6)


def test_real_roots_of_polynomials_without_any():
    assert real_roots([1.0, 0.0, 1.0]) == []
    assert real_roots([3.0]) == []
    assert real_roots([1.0, 0.0, -4.0]) == [pytest.approx(-2.0), pytest.approx(2.0)]


# -- x_to_y / y_to_x -----------------------------------------------------------------------------------


def test_y_to_x_picks_the_root_inside_the_recorded_range():
    cal = od()
    # 0.49 V is reached at OD 1.0 and again at OD 24 past the peak; only 1.0 was recorded.
    result = cal.y_to_x(0.49)
    assert result.value == pytest.approx(1.0, abs=1e-9)
    assert not result.clamped and result.message is None
    assert cal.x_to_y(result.value).value == pytest.approx(0.49)


def test_y_to_x_clamps_to_the_recorded_extremes_with_a_flag():
    cal = od()
    high = cal.y_to_x(2.5, enforce_bounds=True)
    assert high.clamped and "outside" in high.message
    assert high.value == pytest.approx(cal.y_to_x(1.69).value)
    low = cal.y_to_x(-0.3, enforce_bounds=True)
    assert low.clamped and low.value == pytest.approx(0.0, abs=1e-6)
    unclamped = cal.y_to_x(1.9)
    assert not unclamped.clamped and unclamped.value > 4.0 and "extrapolation" in unclamped.message


def test_y_to_x_without_a_solution_is_an_error():
    with pytest.raises(CalibrationError, match="beyond the curve"):
        od().y_to_x(5.0)  # above the parabola's peak of 3.14 V


def test_several_roots_inside_the_range_are_reported():
    cal = od(recorded_x=(0.0, 25.0), recorded_y=(0.01, 0.0))
    result = cal.y_to_x(0.49)
    assert result.value == pytest.approx(1.0)
    assert "several" in result.message


def test_x_to_y_clamps_only_when_asked():
    cal = stirring()
    assert cal.x_to_y(50.0).value == pytest.approx(28.0 * 50 - 336)
    clamped = cal.x_to_y(50.0, enforce_bounds=True)
    assert clamped.clamped and clamped.value == pytest.approx(784.0)
    assert cal.x_bounds == (20.0, 40.0) and cal.y_bounds == (224.0, 784.0)


# -- OD: voltage to OD600 ------------------------------------------------------------------------------

LINEAR = od(curve=(0.5, 0.01), recorded_x=(0.0, 2.0), recorded_y=(0.01, 1.01))
QUADRATIC = od(curve=(-0.1, 0.6, 0.01), recorded_x=(0.0, 2.0), recorded_y=(0.01, 0.81))  # rising on [0, 2]
PEAKED = od(curve=(-0.1, 0.6, 0.1), recorded_x=(0.0, 3.0, 6.0), recorded_y=(0.1, 1.0, 0.1))  # peak at OD 3


def test_voltage_to_od_on_a_linear_calibration():
    result = LINEAR.voltage_to_od(0.51)
    assert result.value == pytest.approx(1.0)
    assert result.clamped is False and result.message is None


@given(st.floats(min_value=0.0, max_value=2.0))
def test_voltage_to_od_round_trips_inside_the_recorded_range(x):
    back = QUADRATIC.voltage_to_od(QUADRATIC.x_to_y(x).value)
    assert back.value == pytest.approx(x, abs=1e-9)
    assert not back.clamped


def test_voltage_to_od_clamps_voltages_outside_the_recorded_range_with_a_flag():
    low = QUADRATIC.voltage_to_od(0.0)
    high = QUADRATIC.voltage_to_od(3.0)
    assert (low.value, low.clamped) == (pytest.approx(0.0), True)
    assert (high.value, high.clamped) == (pytest.approx(2.0), True)
    unclamped = QUADRATIC.voltage_to_od(0.0, enforce_bounds=False)
    assert unclamped.value < 0.0 and not unclamped.clamped and "extrapolation" in unclamped.message


def test_voltage_to_od_ignores_a_root_outside_the_recorded_range():
    # v = -0.1 x^2 + 0.6 x + 0.01 equals 0.5 at x ~ 1.13 (recorded) and ~ 4.87 (not recorded).
    result = QUADRATIC.voltage_to_od(0.5)
    assert 0.0 <= result.value <= 2.0 and result.message is None
    assert QUADRATIC.x_to_y(result.value).value == pytest.approx(0.5)


def test_voltage_to_od_picks_the_smallest_root_or_the_one_nearest_the_hint():
    assert real_roots([-0.1, 0.6, 0.1 - 0.9]) == [pytest.approx(2.0), pytest.approx(4.0)]
    smallest = PEAKED.voltage_to_od(0.9)
    assert smallest.value == pytest.approx(2.0) and "smallest" in smallest.message
    hinted = PEAKED.voltage_to_od(0.9, hint=3.9)
    assert hinted.value == pytest.approx(4.0) and "nearest 3.9" in hinted.message
    assert PEAKED.y_to_x(0.9, hint=2.1).value == pytest.approx(2.0)


def test_voltage_to_od_without_an_exact_solution_in_range_returns_the_closest_od_flagged():
    # The fit does not quite reach the recorded minimum voltage: its root is at OD -0.01.
    cal = od(curve=(0.5, 0.02), recorded_x=(0.0, 2.0), recorded_y=(0.01, 1.0))
    result = cal.voltage_to_od(0.015)
    assert result.value == 0.0 and result.clamped
    # Recorded up to 1.2 V, but the fitted curve peaks at 1.0 V: no OD at all gives 1.1 V.
    below_peak = od(curve=(-0.1, 0.6, 0.1), recorded_x=(0.0, 6.0), recorded_y=(0.1, 1.2))
    result = below_peak.voltage_to_od(1.1)
    assert result.value == pytest.approx(3.0) and result.clamped and "closest" in result.message
    with pytest.raises(CalibrationError, match="beyond the curve"):
        below_peak.voltage_to_od(1.1, enforce_bounds=False)


def test_voltage_to_od_refuses_another_ir_intensity_clearly():
    with pytest.raises(CalibrationError, match=r"IR intensity 80.0 % but the reading used 60"):
        LINEAR.voltage_to_od(0.5, 60.0)
    with pytest.raises(CalibrationError, match="IR intensity"):
        LINEAR.check_ir_led_intensity(79.0)
    LINEAR.check_ir_led_intensity(80.0)
    assert LINEAR.voltage_to_od(0.51, 80.0).value == pytest.approx(1.0)


def test_from_points_fits_a_known_cubic_and_records_the_points():
    ods = [0.0, 0.2, 0.5, 0.8, 1.0, 1.4, 2.0]
    truth = (0.02, -0.15, 0.6, 0.003)
    voltages = [poly_eval(truth, x) for x in ods]
    cal = ODCalibration.from_points(
        ods,
        voltages,
        degree=3,
        name="standards",
        device="od90",
        created_at=CREATED,
        ir_led_intensity=80,
        angle="90",
        pd_channel="2",
    )
    assert isinstance(cal, ODCalibration)
    assert cal.curve == pytest.approx(truth, abs=1e-9)
    assert cal.recorded_x == tuple(ods) and cal.x_bounds == (0.0, 2.0)
    assert cal.y_bounds[0] == pytest.approx(0.003)


def test_from_points_needs_enough_distinct_points():
    fields = dict(name="s", device="od90", created_at=CREATED, ir_led_intensity=80, angle="90", pd_channel="2")
    with pytest.raises(CalibrationError):
        ODCalibration.from_points([0.1, 0.2], [0.1, 0.2], degree=2, **fields)
    with pytest.raises(CalibrationError):
        ODCalibration.from_points([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], degree=1, **fields)


# -- pumps ----------------------------------------------------------------------------------------------


def test_ml_dosing_needs_a_real_pump_calibration():
    default = default_pump_calibration("waste_pump")
    assert is_default(default)
    assert (default.hz, default.dc, default.curve) == (250.0, 100.0, (0.0911, 0.0))
    with pytest.raises(CalibrationError) as refused:
        pump_ml_to_seconds(default, 1.0)
    message = str(refused.value)
    assert "waste_pump" in message and "pio calibrations run --device waste_pump" in message
    assert "duration" in message
    # Duration-based dosing may still use the default to estimate the volume moved.
    assert pump_seconds_to_ml(default, 10.0) == pytest.approx(0.911)


def test_pump_conversions_with_a_real_calibration():
    cal = pump()
    assert not is_default(cal)
    assert pump_ml_to_seconds(cal, 1.0) == pytest.approx(9.8)
    assert pump_ml_to_seconds(cal, 0.0) == 0.0
    assert pump_ml_to_seconds(cal, 0.3) == pytest.approx(2.8)  # below the recorded range: extrapolated
    assert pump_seconds_to_ml(cal, 9.8) == pytest.approx(1.0)
    with pytest.raises(CalibrationError, match="resolve"):
        pump_ml_to_seconds(cal, 0.01)  # the curve's intercept is 0.02 ml
    with pytest.raises(ValueError):
        pump_ml_to_seconds(cal, -1.0)
    with pytest.raises(TypeError):
        pump_ml_to_seconds(od(), 1.0)


# -- values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "overrides", "match"),
    [
        (pump, dict(device="od90"), "device"),
        (pump, dict(name="my pump!"), "name"),
        (pump, dict(created_at="yesterday"), "ISO 8601"),
        (pump, dict(curve=()), "no coefficients"),
        (pump, dict(curve=(0.0, 0.1, 0.0)), "leading"),
        (pump, dict(recorded_y=(1.0,)), "one y per x"),
        (pump, dict(dc=0.0), "dc"),
        (pump, dict(hz="250"), "number"),
        (od, dict(angle="60"), "angle"),
        (od, dict(angle="REF"), "angle"),
        (od, dict(ir_led_intensity=120.0), "ir_led_intensity"),
        (od, dict(ir_led_intensity=0.0), "ir_led_intensity"),
        (od, dict(curve=(0.0, 0.3)), "leading"),
        (od, dict(curve=(0.3,)), "constant"),
        (od, dict(curve=()), "no coefficients"),
        (od, dict(curve=(math.nan, 0.1)), "finite"),
        (od, dict(recorded_x=(0.0, math.inf), recorded_y=(0.0, 1.0)), "finite"),
        (stirring, dict(pwm_hz=-1.0), "pwm_hz"),
    ],
)
def test_values_refuse_bad_fields(factory, overrides, match):
    with pytest.raises(ValueError, match=match):
        factory(**overrides)


# -- YAML -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [pump, od, stirring])
def test_yaml_round_trip(factory):
    cal = factory()
    text = dumps(cal)
    assert loads(text, "x.yaml") == cal
    assert f"calibration_type: {cal.calibration_type}" in text


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    curve=st.lists(finite, min_size=1, max_size=5),
    points=st.lists(st.tuples(finite, finite), min_size=2, max_size=10, unique_by=lambda p: p[0]),
    hz=st.floats(0.001, 1e5),
    dc=st.floats(0.001, 100.0),
    voltage=st.one_of(st.none(), finite),
)
def test_yaml_round_trip_keeps_every_float(curve, points, hz, dc, voltage):
    assume(curve[0] != 0 or len(curve) == 1)
    cal = pump(
        curve=tuple(curve),
        recorded_x=tuple(p[0] for p in points),
        recorded_y=tuple(p[1] for p in points),
        hz=hz,
        dc=dc,
        voltage=voltage,
    )
    assert loads(dumps(cal)) == cal


GOOD_PUMP = """\
calibration_type: simple_peristaltic_pump
name: media-1
device: media_pump
created_at: 2025-06-01T12:00:00Z
curve:
  type: poly
  coefficients: [0.1, 1e-2]
recorded_data:
  x: [5, 10, 20]
  y: [0.52, 1.02, 2.02]
hz: 250
dc: 100
"""


def test_hand_written_file_is_read_leniently_where_it_is_unambiguous():
    cal = loads(GOOD_PUMP, "media-1.yaml")
    assert isinstance(cal, PumpCalibration)
    assert cal.created_at == "2025-06-01T12:00:00Z"  # an unquoted date stays as written
    assert cal.curve == (0.1, 0.01)  # 1e-2 is a number, even though YAML 1.1 reads it as text
    assert cal.voltage is None


MALFORMED = """\
calibration_type: simple_peristaltic_pump
name: my pump!
device: media
created_at: yesterday
curve:
  type: spline
  coefficients: [0.1, fast]
recorded_data:
  x: [1, 2]
  y: [1]
hz: -5
dc: 150
colour: red
"""


def test_a_malformed_file_is_refused_with_every_problem_located():
    path = "storage/calibrations/media_pump/my-pump.yaml"
    with pytest.raises(CalibrationFileError) as refused:
        loads(MALFORMED, path)
    errors = refused.value.errors
    expected = [
        (2, "name", "file name"),
        (3, "device", "media_pump"),
        (4, "created_at", "2025-06-01T12:00:00Z"),
        (6, "curve.type", "refit the points as `poly`"),
        (7, "curve.coefficients[1]", "not a number"),
        (9, "recorded_data", "one y per x"),
        (11, "hz", "above 0"),
        (12, "dc", "(0, 100]"),
        (13, "colour", "allowed keys are"),
    ]
    assert len(errors) == len(expected), errors
    for error, (line, key, hint) in zip(errors, expected):
        assert error.startswith(f"{path}:{line}: {key}: "), error
        assert hint in error, error
    assert str(refused.value) == "\n".join(errors)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "x.yaml:1: the file is empty"),
        ("calibration_type: [od\n", "x.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "x.yaml:1: calibration: expected a mapping"),
        ("calibration_type: od600\n", "x.yaml:1: calibration_type: unknown type 'od600'; use one of od,"),
        ("calibration_type: od\nname: a\n", "x.yaml:1: pd_channel: missing; add `pd_channel: ...`"),
        (GOOD_PUMP.replace("name: media-1", "name: default"), "x.yaml:2: name: the name 'default' is reserved"),
        (
            GOOD_PUMP.replace("x: [5, 10, 20]\n  y: [0.52, 1.02, 2.02]", "x: [5]\n  y: [0.52]"),
            "at least two recorded points",
        ),
        (GOOD_PUMP.replace("hz: 250", "hz: 250\nhz: 200"), "x.yaml:12: hz: 'hz' appears twice"),
        (GOOD_PUMP.replace("dc: 100", "dc: .nan"), "x.yaml:12: dc: '.nan' is not a finite number"),
        (GOOD_PUMP.replace("dc: 100", "ir_led_intensity: 80\ndc: 100"), "unknown key 'ir_led_intensity'"),
        (GOOD_PUMP.replace("  coefficients: [0.1, 1e-2]\n", ""), "curve.coefficients: missing"),
    ],
)
def test_refusals_name_file_line_and_key(text, fragment):
    with pytest.raises(CalibrationFileError) as refused:
        loads(text, "x.yaml")
    assert any(fragment in error for error in refused.value.errors), refused.value.errors


def test_od_file_reads_unquoted_angle_and_channel_as_text():
    text = dumps(od()).replace("angle: '90'", "angle: 90").replace("pd_channel: '2'", "pd_channel: 2")
    cal = loads(text)
    assert cal == od()
    assert math.isclose(cal.ir_led_intensity, 80.0)
