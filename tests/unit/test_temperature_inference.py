"""Liquid temperature inferred from the plate's heater-off decay, checked against the two-node simulator."""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.hardware.sim_thermal import Thermal, ThermalParams
from actors.temperature_inference import (
    DEFAULT_PLATE_MODEL,
    Heating,
    InferenceLimits,
    PlateModel,
    infer_liquid_temperature,
)

READINGS = 21
INTERVAL_S = 5.0


def model_for(params: ThermalParams) -> PlateModel:
    """The inference model built from the simulator's own constants (what a calibration would find)."""
    return PlateModel.from_constants(
        heater_max_w=params.heater_max_w,
        plate_capacity_j_per_k=params.plate_capacity_j_per_k,
        liquid_capacity_j_per_k=params.liquid_capacity_j_per_k,
        r_plate_liquid_k_per_w=params.r_plate_liquid_k_per_w,
        r_plate_ambient_k_per_w=params.r_plate_ambient_k_per_w,
        r_liquid_ambient_k_per_w=params.r_liquid_ambient_k_per_w,
    )


def record_window(thermal: Thermal, rng: random.Random) -> tuple[list[float], list[float]]:
    """Heater off; read the plate every 5 s, 21 times, as the temperature job does."""
    times, readings = [], []
    for k in range(READINGS):
        if k:
            thermal.advance(INTERVAL_S, 0.0)
        times.append(k * INTERVAL_S)
        readings.append(thermal.sensor_reading(rng))
    return times, readings


segments = st.lists(
    st.tuples(st.floats(5.0, 3000.0), st.one_of(st.just(0.0), st.just(100.0), st.floats(0.0, 100.0))),
    min_size=1,
    max_size=8,
)


def test_model_matches_the_simulators_time_constants():
    params = ThermalParams()
    fast, slow = params.eigenvalues()
    assert DEFAULT_PLATE_MODEL.fast_rate_per_s == pytest.approx(fast, rel=1e-12)
    assert DEFAULT_PLATE_MODEL.slow_rate_per_s == pytest.approx(slow, rel=1e-12)
    # hardware.md §4.2: per 5-s sample q = -0.115 (fast) and p = -0.0072 (slow).
    assert DEFAULT_PLATE_MODEL.fast_rate_per_s * 5 == pytest.approx(-0.115, abs=0.001)
    assert DEFAULT_PLATE_MODEL.slow_rate_per_s * 5 == pytest.approx(-0.0072, abs=0.0001)
    # The slow mode's liquid runs a little hotter than the plate; the fast mode barely moves the liquid.
    assert 1.0 < DEFAULT_PLATE_MODEL.slow_liquid_ratio < 1.3
    assert -0.5 < DEFAULT_PLATE_MODEL.fast_liquid_ratio < 0.0


@settings(max_examples=200, deadline=None)
@given(
    history=segments,
    ambient=st.floats(15.0, 30.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_estimate_within_0_3_c_of_the_true_liquid_for_any_heater_history(history, ambient, seed):
    params = ThermalParams(ambient_c=ambient)
    thermal = Thermal(params)
    for seconds, duty in history:
        thermal.advance(seconds, duty)
    times, readings = record_window(thermal, random.Random(seed))
    # The last segment is the heating the job knows about; the contact check must accept it.
    heating = Heating(duty_pct=history[-1][1], seconds=history[-1][0])
    estimate = infer_liquid_temperature(times, readings, model_for(params), heating=heating)
    assert estimate.quality == "ok", estimate.reason
    assert abs(estimate.liquid_c - thermal.liquid_c) < 0.3
    assert estimate.at_s == times[-1]


def test_without_sensor_noise_the_fit_is_exact():
    params = ThermalParams(sensor_noise_c=0.0, sensor_resolution_c=1e-9, ambient_c=19.0)
    thermal = Thermal(params)
    thermal.advance(1800, 80.0)
    thermal.advance(95, 45.0)
    times, readings = record_window(thermal, random.Random(0))
    estimate = infer_liquid_temperature(times, readings, model_for(params))
    assert estimate.liquid_c == pytest.approx(thermal.liquid_c, abs=1e-6)
    assert estimate.ambient_c == pytest.approx(19.0, abs=1e-6)
    assert estimate.residual_rms_c < 1e-6


def test_only_time_differences_matter():
    thermal = Thermal(ThermalParams())
    thermal.advance(600, 70.0)
    times, readings = record_window(thermal, random.Random(1))
    here = infer_liquid_temperature(times, readings)
    later = infer_liquid_temperature([t + 1.0e6 for t in times], readings)
    assert later.liquid_c == pytest.approx(here.liquid_c, abs=1e-6)
    assert later.at_s == times[-1] + 1.0e6


def test_the_fast_decay_after_heating_is_what_the_model_predicts():
    """The contact check rests on this: a seated vial's fast decay follows the recent duty."""
    params = ThermalParams()
    for duty in (20.0, 45.0, 80.0):
        thermal = Thermal(params)
        for _ in range(20):
            thermal.advance(105, 0.0)
            thermal.advance(95, duty)
        times, readings = record_window(thermal, random.Random(2))
        estimate = infer_liquid_temperature(times, readings, heating=Heating(duty_pct=duty, seconds=95))
        expected = DEFAULT_PLATE_MODEL.expected_fast_amplitude_c(Heating(duty_pct=duty, seconds=95))
        assert estimate.quality == "ok"
        assert estimate.fast_amplitude_c == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("duty", [30.0, 60.0, 100.0])
def test_a_vial_not_seated_is_flagged(duty):
    # Not seated: almost no thermal contact between the plate and the liquid.
    params = ThermalParams(r_plate_liquid_k_per_w=1.0e5)
    thermal = Thermal(params, liquid_c=30.0)
    for _ in range(20):
        thermal.advance(105, 0.0)
        thermal.advance(95, duty)
    times, readings = record_window(thermal, random.Random(3))
    estimate = infer_liquid_temperature(times, readings, heating=Heating(duty_pct=duty, seconds=95))
    assert estimate.quality == "poor"
    assert "seated" in estimate.reason


def test_a_window_with_the_heater_back_on_is_flagged():
    thermal = Thermal(ThermalParams())
    thermal.advance(1200, 50.0)
    rng = random.Random(4)
    times, readings = [], []
    for k in range(READINGS):
        if k:
            thermal.advance(INTERVAL_S, 100.0 if 8 <= k <= 12 else 0.0)
        times.append(k * INTERVAL_S)
        readings.append(thermal.sensor_reading(rng))
    estimate = infer_liquid_temperature(times, readings)
    assert estimate.quality == "poor"
    assert "residual" in estimate.reason


def test_after_a_long_heater_off_period_the_fit_still_works():
    thermal = Thermal(ThermalParams())
    thermal.advance(3000, 30.0)
    thermal.advance(3000, 0.0)  # long off: the fast mode has died out
    times, readings = record_window(thermal, random.Random(5))
    estimate = infer_liquid_temperature(times, readings, heating=Heating(duty_pct=0.0, seconds=3000))
    assert estimate.quality == "ok"
    assert abs(estimate.liquid_c - thermal.liquid_c) < 0.3


@pytest.mark.parametrize(
    ("times", "readings", "match"),
    [
        ([0, 5, 10], [30.0, 29.0], "times but"),
        ([0, 5, 10, 15, 20], [30.0] * 5, "at least"),
        ([0, 5, 10, 15, 20, 25], [30.0, 29.0, math.nan, 28.0, 27.5, 27.0], "not finite"),
        ([0, 5, 5, 15, 20, 25], [30.0, 29.0, 28.5, 28.0, 27.5, 27.0], "increasing"),
    ],
)
def test_malformed_windows_are_refused(times, readings, match):
    with pytest.raises(ValueError, match=match):
        infer_liquid_temperature(times, readings)


def test_model_and_limits_refuse_nonsense():
    with pytest.raises(ValueError):
        PlateModel.from_constants(r_plate_liquid_k_per_w=0.0)
    with pytest.raises(ValueError):
        attrs.evolve(DEFAULT_PLATE_MODEL, fast_rate_per_s=DEFAULT_PLATE_MODEL.slow_rate_per_s / 2)
    with pytest.raises(ValueError):
        InferenceLimits(min_contact_fraction=0.0)
    with pytest.raises(ValueError):
        InferenceLimits(ambient_range_c=(30.0, 10.0))
