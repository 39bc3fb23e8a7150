"""The generic PID: terms, limits, anti-windup, no setpoint kick, closed-loop convergence."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.pid import PID

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
gains = st.floats(min_value=0.0, max_value=100.0)
dts = st.floats(min_value=1e-3, max_value=10.0)


def test_pure_p_is_kp_times_error():
    pid = PID(2.5, 0.0, 0.0, setpoint=10.0)
    assert pid.update(4.0, 1.0) == pytest.approx(15.0)
    assert pid.update(12.0, 1.0) == pytest.approx(-5.0)


@given(
    kp=gains,
    ki=gains,
    kd=gains,
    setpoint=finite,
    low=st.floats(min_value=-100.0, max_value=0.0),
    span=st.floats(min_value=0.0, max_value=200.0),
    samples=st.lists(st.tuples(finite, dts), min_size=1, max_size=30),
)
def test_output_always_within_limits(kp, ki, kd, setpoint, low, span, samples):
    high = low + span
    pid = PID(kp, ki, kd, setpoint, output_limits=(low, high))
    for measurement, dt in samples:
        out = pid.update(measurement, dt)
        assert low <= out <= high


@given(
    ki=st.floats(min_value=0.01, max_value=10.0),
    limit=st.floats(min_value=0.1, max_value=50.0),
    samples=st.lists(st.tuples(finite, dts), min_size=1, max_size=30),
)
def test_integral_always_within_integral_limits(ki, limit, samples):
    pid = PID(0.0, ki, 0.0, 0.0, integral_limits=(-limit, limit))
    for measurement, dt in samples:
        pid.update(measurement, dt)
        assert -limit <= pid.integral <= limit


def test_integral_accumulates_then_clamps():
    pid = PID(0.0, 0.5, 0.0, setpoint=1.0, integral_limits=(-2.0, 2.0))
    assert pid.update(0.0, 1.0) == pytest.approx(0.5)
    assert pid.update(0.0, 2.0) == pytest.approx(1.5)
    assert pid.update(0.0, 2.0) == pytest.approx(2.0)  # clamped
    assert pid.update(0.0, 100.0) == pytest.approx(2.0)
    # No windup: the first opposite error pulls it down at once.
    assert pid.update(2.0, 1.0) == pytest.approx(1.5)


def test_setpoint_change_causes_no_derivative_kick():
    pid = PID(0.0, 0.0, 5.0, setpoint=0.0)
    pid.update(3.0, 1.0)
    pid.update(3.0, 1.0)
    pid.setpoint = 1000.0
    assert pid.update(3.0, 1.0) == 0.0
    # The derivative does react to the measurement moving.
    assert pid.update(4.0, 0.5) == pytest.approx(-10.0)


def test_reset_forgets_integral_and_previous_measurement():
    pid = PID(0.0, 1.0, 1.0, setpoint=1.0)
    pid.update(0.0, 1.0)
    pid.reset()
    assert pid.integral == 0.0
    assert pid.update(50.0, 1.0) == pytest.approx(-49.0)  # integral only; no derivative from 0 -> 50


def test_rejects_bad_dt_and_measurement_and_limits():
    pid = PID(1.0, 1.0, 1.0, 0.0)
    for dt in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            pid.update(1.0, dt)
    with pytest.raises(ValueError):
        pid.update(float("nan"), 1.0)
    with pytest.raises(ValueError):
        PID(1.0, 0.0, 0.0, 0.0, output_limits=(1.0, 0.0))


@given(
    gain=st.floats(min_value=0.5, max_value=5.0),
    tau=st.floats(min_value=0.5, max_value=5.0),
    setpoint=st.floats(min_value=-50.0, max_value=50.0),
)
def test_closed_loop_first_order_plant_converges(gain, tau, setpoint):
    # Plant tau*y' = gain*u - y, integrated exactly per step; a PI loop must settle at the setpoint.
    pid = PID(0.5 / gain, 0.5 / (gain * tau), 0.0, setpoint, output_limits=(-1000.0, 1000.0))
    y, dt = 0.0, 0.1
    for _ in range(2000):
        u = pid.update(y, dt)
        y = gain * u + (y - gain * u) * math.exp(-dt / tau)
    assert y == pytest.approx(setpoint, abs=1e-3)
