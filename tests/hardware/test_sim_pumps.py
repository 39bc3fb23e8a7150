"""Simulated peristaltic pumps: duty curve, seeded gain error, stuck-on and clogged faults."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.hardware.sim_pumps import DEFAULT_ML_PER_SECOND, PumpParams, SimPump

duties = st.floats(min_value=-50.0, max_value=150.0, allow_nan=False)
dts = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def test_full_duty_gives_the_calibrated_flow_times_the_gain():
    pump = SimPump("media", ml_per_second_at_100=0.1, gain_error=0.05)
    assert pump.relative_flow(100.0) == 1.0
    assert pump.flow_ml(100.0, 10.0) == pytest.approx(1.05)
    assert pump.actual_ml_per_second_at_100 == pytest.approx(0.105)


def test_default_is_pioreactors_default_calibration():
    assert SimPump("waste").ml_per_second_at_100 == DEFAULT_ML_PER_SECOND == 0.0911


def test_dead_below_the_dead_duty_then_linear():
    pump = SimPump("media", ml_per_second_at_100=1.0)
    for d in (0.0, 5.0, 10.0):
        assert pump.flow_ml(d, 1.0) == 0.0
    assert pump.relative_flow(55.0) == pytest.approx(0.5)
    assert pump.relative_flow(32.5) == pytest.approx(0.25)


@given(a=duties, b=duties)
def test_flow_is_monotone_in_duty_and_bounded(a, b):
    pump = SimPump("media", gain_error=-0.03)
    low, high = sorted((a, b))
    assert 0.0 <= pump.flow_ml_per_second(low) <= pump.flow_ml_per_second(high)
    assert pump.flow_ml_per_second(high) <= pump.actual_ml_per_second_at_100


@given(duty=duties, a=dts, b=dts)
def test_flow_is_additive_in_time(duty, a, b):
    pump = SimPump("alt_media", gain_error=0.07)
    assert pump.flow_ml(duty, a) + pump.flow_ml(duty, b) == pytest.approx(pump.flow_ml(duty, a + b))


@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_gain_error_is_drawn_from_the_seed_within_bounds(seed):
    params = PumpParams(max_gain_error=0.08)
    first = SimPump.from_rng("media", random.Random(seed), params)
    again = SimPump.from_rng("media", random.Random(seed), params)
    assert first.gain_error == again.gain_error
    assert -0.08 <= first.gain_error <= 0.08


def test_gain_errors_spread_across_the_range():
    rng = random.Random(0)
    gains = [SimPump.from_rng("p", rng).gain_error for _ in range(2000)]
    assert min(gains) < -0.07 and max(gains) > 0.07


@given(duty=duties)
def test_stuck_on_flows_at_full_rate_whatever_the_duty(duty):
    pump = SimPump("media", gain_error=0.02, stuck_on=True)
    assert pump.flow_ml(duty, 2.0) == pytest.approx(2.0 * pump.actual_ml_per_second_at_100)


@given(duty=duties)
def test_clogged_moves_nothing_and_beats_stuck_on(duty):
    assert SimPump("waste", clogged=True).flow_ml(duty, 10.0) == 0.0
    assert SimPump("waste", clogged=True, stuck_on=True).flow_ml(duty, 10.0) == 0.0


def test_bad_inputs_are_refused():
    pump = SimPump("media")
    with pytest.raises(ValueError):
        pump.flow_ml(float("nan"), 1.0)
    for dt in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            pump.flow_ml(50.0, dt)
    with pytest.raises(ValueError):
        SimPump("media", gain_error=-1.0)
    with pytest.raises(ValueError):
        SimPump("media", ml_per_second_at_100=0.0)
    with pytest.raises(ValueError):
        PumpParams(max_gain_error=1.0)
