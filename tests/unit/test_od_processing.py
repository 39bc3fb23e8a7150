"""OD transforms: trimmed mean, REF normalisation and noise, blank, applying a calibration, payloads."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.calibrations import CalibrationError, ODCalibration
from actors.od_processing import (
    ODReading,
    RefNoise,
    RefNormalizer,
    ReferenceSignalError,
    calibrated_reading,
    check_transforms,
    ods_payload,
    ref_noise_threshold,
    subtract_blank,
    trimmed_mean,
)

volts = st.floats(min_value=1e-4, max_value=5.0)
signal = st.floats(min_value=0.0, max_value=5.0)

# -- trimmed mean --------------------------------------------------------------------------------------


def test_trimmed_mean_drops_the_extremes():
    samples = [1.0] * 8 + [100.0, -100.0]
    assert trimmed_mean(samples, 0.1) == 1.0
    assert trimmed_mean(samples, 0.0) == pytest.approx(1.0 * 8 / 10)


def test_trimmed_mean_of_few_samples_keeps_them_all():
    assert trimmed_mean([1.0, 2.0, 6.0]) == 3.0  # floor(0.3) = 0 dropped


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_trimmed_mean_refuses_empty_or_non_finite(bad):
    with pytest.raises(ValueError):
        trimmed_mean(bad)


@pytest.mark.parametrize("trim", [-0.1, 0.5, 1.0, math.nan])
def test_trimmed_mean_refuses_bad_trim(trim):
    with pytest.raises(ValueError):
        trimmed_mean([1.0, 2.0], trim)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=60))
def test_trimmed_mean_lies_within_the_samples(samples):
    m = trimmed_mean(samples)
    assert min(samples) - 1e-6 <= m <= max(samples) + 1e-6


# -- REF normalisation ---------------------------------------------------------------------------------


def test_first_ref_reading_is_ref0_so_output_equals_input():
    norm = RefNormalizer()
    assert norm.normalize({"2": 0.3, "3": 0.1}, 0.1) == {"2": 0.3, "3": 0.1}
    assert norm.ref0 == 0.1 and norm.ema == 1.0


def test_ema_keeps_pd_reference_ema_on_the_previous_value():
    # Reference convention: ema = (1 - 0.75) * x + 0.75 * ema.
    norm = RefNormalizer(0.75)
    norm.update(0.1)
    assert norm.update(0.2) == pytest.approx(0.25 * 2.0 + 0.75 * 1.0)


@given(ref=volts, pd=signal, k=st.floats(min_value=0.2, max_value=5.0))
def test_a_change_in_led_output_cancels_once_the_ema_settles(ref, pd, k):
    """Scattered light and REF both scale with the LED, so pd/EMA(REF/REF0) returns to its old value."""
    norm = RefNormalizer()
    before = norm.normalize({"2": pd}, ref)["2"]
    for _ in range(200):
        after = norm.normalize({"2": pd * k}, ref * k)["2"]
    assert after == pytest.approx(before, rel=1e-6, abs=1e-12)


def test_ref0_restored_from_the_cache_keeps_the_scale():
    norm = RefNormalizer(ref0=0.1)
    assert norm.normalize({"2": 0.3}, 0.05)["2"] == pytest.approx(0.6)  # the LED is at half its old output


def test_holding_the_ema_ignores_a_bad_ref_reading():
    norm = RefNormalizer()
    norm.normalize({"2": 1.0}, 0.1)
    held = norm.normalize({"2": 1.0}, 0.5, update=False)
    assert held == {"2": 1.0} and norm.ema == 1.0


@pytest.mark.parametrize("ref", [0.0, -0.01, math.nan, math.inf])
def test_a_dead_ref_is_an_error_not_a_division_by_zero(ref):
    with pytest.raises(ReferenceSignalError, match="REF"):
        RefNormalizer().normalize({"2": 0.3}, ref)


def test_non_finite_pd_is_refused():
    with pytest.raises(ValueError):
        RefNormalizer().normalize({"2": math.nan}, 0.1)


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan])
def test_pd_reference_ema_must_be_a_fraction(alpha):
    with pytest.raises(ValueError):
        RefNormalizer(alpha)


# -- REF noise -----------------------------------------------------------------------------------------


def test_ref_noise_threshold_is_0025_at_5_seconds_and_scales_with_sqrt_interval():
    assert ref_noise_threshold(5.0) == pytest.approx(0.025)
    assert ref_noise_threshold(20.0) == pytest.approx(0.05)
    assert ref_noise_threshold(1.25) == pytest.approx(0.0125)
    assert RefNoise(20.0).threshold == pytest.approx(0.05)


@given(a=st.floats(min_value=0.1, max_value=3600), b=st.floats(min_value=0.1, max_value=3600))
def test_ref_noise_threshold_ratio_is_the_sqrt_of_the_interval_ratio(a, b):
    assert ref_noise_threshold(a) / ref_noise_threshold(b) == pytest.approx(math.sqrt(a / b))


@pytest.mark.parametrize("interval", [0.0, -5.0, math.nan, math.inf])
def test_ref_noise_interval_must_be_positive(interval):
    with pytest.raises(ValueError):
        ref_noise_threshold(interval)


def _noisy_ref(relative_std: float, n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [0.1 * (1.0 + rng.gauss(0.0, relative_std)) for _ in range(n)]


def test_the_same_noisy_ref_is_flagged_at_5_s_but_not_at_20_s():
    series = _noisy_ref(0.035, 200)
    fast, slow = RefNoise(5.0), RefNoise(20.0)
    fast_flags = [fast.is_noisy(r) for r in series]
    slow_flags = [slow.is_noisy(r) for r in series]
    assert sum(fast_flags[50:]) > 100
    assert not any(slow_flags)


def test_a_quiet_ref_is_never_flagged():
    noise = RefNoise(5.0)
    assert not any(noise.is_noisy(r) for r in _noisy_ref(0.005, 500))


def test_the_flag_clears_once_the_ref_settles():
    noise = RefNoise(5.0)
    flags = [noise.is_noisy(r) for r in _noisy_ref(0.05, 100)]
    assert flags[-1]
    quiet = [noise.is_noisy(r) for r in _noisy_ref(0.002, 300, seed=1)]
    assert quiet[-1] is False


def test_one_or_two_readings_never_flag_and_reset_forgets():
    noise = RefNoise(5.0)
    assert noise.is_noisy(0.1) is False
    assert noise.is_noisy(0.2) is False  # a big step, but only two readings
    assert noise.is_noisy(0.05) is True
    noise.reset()
    assert noise.std == 0.0
    assert noise.is_noisy(0.05) is False


# -- blank ---------------------------------------------------------------------------------------------


def test_blank_is_subtracted_per_channel_and_floored_at_zero():
    assert subtract_blank({"2": 0.30, "3": 0.01}, {"2": 0.05, "3": 0.02}) == {"2": pytest.approx(0.25), "3": 0.0}


def test_missing_blank_leaves_values_unchanged():
    assert subtract_blank({"2": 0.3}, None) == {"2": 0.3}
    assert subtract_blank({"2": 0.3, "3": 0.2}, {"2": 0.1}) == {"2": pytest.approx(0.2), "3": 0.2}


@given(
    values=st.dictionaries(st.sampled_from("1234"), st.floats(min_value=-1.0, max_value=5.0), min_size=1),
    blank=st.dictionaries(st.sampled_from("1234"), st.floats(min_value=0.0, max_value=1.0)),
)
def test_blank_subtraction_never_goes_below_zero(values, blank):
    out = subtract_blank(values, blank)
    assert set(out) == set(values)
    assert all(v >= 0 for v in out.values())
    for c, v in values.items():
        assert out[c] == pytest.approx(max(0.0, v - blank.get(c, 0.0)))


def test_non_finite_blank_is_refused():
    with pytest.raises(ValueError):
        subtract_blank({"2": 0.3}, {"2": math.nan})


def test_a_blank_and_a_calibration_on_the_same_channel_are_rejected():
    check_transforms({"2": 0.01}, ["3"])
    check_transforms(None, ["2"])
    with pytest.raises(CalibrationError, match="both a blank and a calibration"):
        check_transforms({"2": 0.01}, ["2"])


# -- calibration ---------------------------------------------------------------------------------------
# The curve maths (solving, clamping, fitting) is tested with its owner in test_calibrations.py; here only
# what od_processing adds: applying a calibration to a reading.


def _cal(curve, recorded_x, recorded_y, **kw):
    fields = dict(
        name="calibration",
        device="od90",
        created_at="2026-01-01T00:00:00+00:00",
        ir_led_intensity=80.0,
        angle="90",
        pd_channel="2",
    )
    fields.update(kw)
    return ODCalibration(curve=curve, recorded_x=recorded_x, recorded_y=recorded_y, **fields)


# -- payloads ------------------------------------------------------------------------------------------

TS = "2026-01-02T03:04:05.000000Z"


def test_ods_payload_has_the_reference_structure():
    raw = ODReading(channel="2", angle="90", od=0.123, ir_led_intensity=80.0, timestamp=TS)
    assert ods_payload(TS, [raw]) == {
        "timestamp": TS,
        "ods": {
            "2": {
                "od": 0.123,
                "angle": "90",
                "channel": "2",
                "ir_led_intensity": 80.0,
                "timestamp": TS,
                "calibrated": 0,
            }
        },
    }


def test_calibrated_reading_carries_the_calibration_name_and_flag():
    raw = ODReading(channel="2", angle="90", od=0.51, ir_led_intensity=80.0, timestamp=TS)
    cal = _cal((0.5, 0.01), (0.0, 2.0), (0.01, 1.01), name="standards-2026")
    reading, conversion = calibrated_reading(raw, cal)
    assert reading.od == pytest.approx(1.0) and conversion.value == reading.od and not conversion.clamped
    payload = reading.payload()
    assert payload["calibrated"] == 1 and payload["calibration_name"] == "standards-2026"


def test_calibrated_reading_clamps_to_the_recorded_range_with_a_flag():
    cal = _cal((0.5, 0.01), (0.0, 2.0), (0.01, 1.01))
    raw = ODReading(channel="2", angle="90", od=1.5, ir_led_intensity=80.0, timestamp=TS)
    reading, conversion = calibrated_reading(raw, cal)
    assert reading.od == pytest.approx(2.0) and conversion.clamped and "outside" in conversion.message


def test_calibrated_reading_uses_the_hint_on_a_curve_that_bends_back():
    cal = _cal((-0.1, 0.6, 0.1), (0.0, 3.0, 6.0), (0.1, 1.0, 0.1))  # peaks at OD 3
    raw = ODReading(channel="2", angle="90", od=0.9, ir_led_intensity=80.0, timestamp=TS)
    assert calibrated_reading(raw, cal)[0].od == pytest.approx(2.0)
    assert calibrated_reading(raw, cal, hint=3.9)[0].od == pytest.approx(4.0)


def test_calibrated_reading_checks_angle_and_intensity():
    cal = _cal((0.5, 0.01), (0.0, 2.0), (0.01, 1.01))
    with pytest.raises(CalibrationError, match="angle"):
        calibrated_reading(ODReading(channel="2", angle="135", od=0.5, ir_led_intensity=80.0, timestamp=TS), cal)
    with pytest.raises(CalibrationError, match="IR intensity"):
        calibrated_reading(ODReading(channel="2", angle="90", od=0.5, ir_led_intensity=70.0, timestamp=TS), cal)


def test_payload_validation():
    with pytest.raises(ValueError):
        ODReading(channel="2", angle="91", od=0.1, ir_led_intensity=80.0, timestamp=TS)
    with pytest.raises(ValueError):
        ODReading(channel="2", angle="90", od=math.nan, ir_led_intensity=80.0, timestamp=TS)
    r = ODReading(channel="2", angle="90", od=0.1, ir_led_intensity=80.0, timestamp=TS)
    with pytest.raises(ValueError, match="twice"):
        ods_payload(TS, [r, r])


# -- normalising one reading, blanks, calibration per channel, warning gate -----------------------------

from actors.od_processing import (  # noqa: E402
    Blank,
    WarningGate,
    blank_means,
    channel_od,
    choose_calibration,
    normalise_volts,
    od_device_for_angle,
)


def _od_cal(name: str = "c", angle: str = "90", device: str = "od90", intensity: float = 80.0) -> ODCalibration:
    xs = [0.0, 1.0, 2.0]
    return ODCalibration.from_points(
        xs, [0.01 + 0.5 * x for x in xs], degree=1, name=name, device=device,
        created_at="2025-06-01T12:00:00Z", ir_led_intensity=intensity, angle=angle, pd_channel="2",
    )


def _raw_reading(od: float, intensity: float = 80.0, angle: str = "90") -> ODReading:
    return ODReading(channel="2", angle=angle, od=od, ir_led_intensity=intensity, timestamp="2025-06-01T12:00:00.000Z")


def test_normalise_volts_labels_channels_and_holds_the_ref_average_when_noisy():
    normalizer, noise = RefNormalizer(), RefNoise(5.0)
    first = normalise_volts({"pd1": 0.1, "pd2": 0.05}, "pd1", {"pd2": "2"}, normalizer, noise)
    assert first.values == {"2": pytest.approx(0.05)} and not first.ref_noisy
    for ref in (0.2, 0.05, 0.2, 0.05):
        last = normalise_volts({"pd1": ref, "pd2": 0.05}, "pd1", {"pd2": "2"}, normalizer, noise)
    assert last.ref_noisy
    ema = normalizer.ema
    normalise_volts({"pd1": 0.3, "pd2": 0.05}, "pd1", {"pd2": "2"}, normalizer, noise)
    assert normalizer.ema == ema  # a noisy REF is not folded into the average


def test_normalise_volts_refuses_a_dead_ref():
    with pytest.raises(ReferenceSignalError):
        normalise_volts({"pd1": 0.0, "pd2": 0.05}, "pd1", {"pd2": "2"}, RefNormalizer(), RefNoise(5.0))


def test_blank_round_trips_and_refuses_bad_fields():
    blank = Blank(means={"2": 0.012}, ir_led_intensity=80, n_samples=30, created_at="2025-06-01T12:00:00.000Z")
    assert Blank.from_dict(blank.to_dict()) == blank
    for bad, word in [
        ({"means": {"2": -1.0}, "ir_led_intensity": 80, "n_samples": 3}, "means"),
        ({"means": {}, "ir_led_intensity": 80, "n_samples": 3}, "means"),
        ({"means": {"2": 0.1}, "ir_led_intensity": 0, "n_samples": 3}, "ir_led_intensity"),
        ({"means": {"2": 0.1}, "ir_led_intensity": "80", "n_samples": 3}, "ir_led_intensity"),
        ({"means": {"2": 0.1}, "ir_led_intensity": 80, "n_samples": 0}, "n_samples"),
        ({"means": {"2": 0.1}, "ir_led_intensity": 80}, "missing n_samples"),
        ([1, 2], "JSON object"),
    ]:
        with pytest.raises(ValueError, match=word):
            Blank.from_dict(bad)


def test_blank_holds_only_at_its_ir_intensity():
    blank = Blank(means={"2": 0.01}, ir_led_intensity=80, n_samples=5)
    blank.check_ir_led_intensity(80.0)
    with pytest.raises(CalibrationError, match="--ir-led-intensity 80"):
        blank.check_ir_led_intensity(60.0)


def test_blank_means_are_trimmed_per_channel():
    samples = [{"2": 0.01, "3": 0.02}] * 9 + [{"2": 5.0, "3": 0.02}]
    means = blank_means(samples)
    assert means == {"2": pytest.approx(0.01), "3": pytest.approx(0.02)}
    with pytest.raises(ValueError):
        blank_means([])
    with pytest.raises(ValueError, match="changed channels"):
        blank_means([{"2": 0.1}, {"3": 0.1}])


@given(st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=40))
def test_blank_means_lie_within_the_readings(values):
    mean = blank_means([{"2": v} for v in values])["2"]
    assert min(values) - 1e-12 <= mean <= max(values) + 1e-12


def test_od_device_for_angle():
    assert od_device_for_angle("90") == "od90"
    assert od_device_for_angle("180") == "od"
    with pytest.raises(ValueError):
        od_device_for_angle("91")


def test_choose_calibration_prefers_the_angle_device_then_the_generic_one():
    specific, generic = _od_cal("specific"), _od_cal("generic", device="od")
    assert choose_calibration("90", {"od90": specific, "od": generic}) is specific
    assert choose_calibration("90", {"od90": None, "od": generic}) is generic
    assert choose_calibration("90", {}) is None
    with pytest.raises(CalibrationError, match="angle 45"):
        choose_calibration("90", {"od": _od_cal("other", angle="45", device="od")})


def test_channel_od_without_calibration_is_the_raw_reading():
    result = channel_od(_raw_reading(0.2), None)
    assert result.reading == result.raw and result.calibrated is None and result.error is None


def test_channel_od_calibrates_and_flags_clamping():
    result = channel_od(_raw_reading(0.51), _od_cal())
    assert result.reading is result.calibrated
    assert result.calibrated.od == pytest.approx(1.0) and result.calibrated.calibrated
    clamped = channel_od(_raw_reading(5.0), _od_cal())
    assert clamped.clamped and clamped.calibrated.od == pytest.approx(2.0) and "outside" in clamped.note


def test_channel_od_reports_a_calibration_error_and_publishes_no_od():
    result = channel_od(_raw_reading(0.51, intensity=60.0), _od_cal())
    assert result.reading is None and "IR intensity" in result.error
    assert result.raw.od == 0.51  # the raw reading is still there to publish


def test_warning_gate_allows_one_warning_per_key_and_interval():
    gate = WarningGate(600.0)
    assert gate.allow("clamp2", 0.0)
    assert not gate.allow("clamp2", 599.0)
    assert gate.allow("clamp3", 1.0)
    assert gate.allow("clamp2", 600.0)
    with pytest.raises(ValueError):
        WarningGate(-1.0)
