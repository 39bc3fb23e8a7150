"""Safety decisions: heater tiers and headroom, pump guard, IR cap, ADC trip; the heater-plate property."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from actors.hardware.safety import (
    HEATER_MAX_DUTY,
    LIMITS_20ML_V1_0,
    LIMITS_DEFAULT,
    PLATE_MAX_RISE_C_PER_S,
    HeaterLimits,
    PumpGuard,
    adc_trip,
    cap_ir_intensity,
    heater_decision,
    heater_limits_for,
)
from actors.hardware.sim_thermal import PlateSensorError, Thermal, ThermalParams

# -- heater tiers -----------------------------------------------------------------------------------------


def test_limits_match_pioreactor_models():
    assert LIMITS_20ML_V1_0 == HeaterLimits(63.0, 65.0, 66.0)
    assert LIMITS_DEFAULT == HeaterLimits(78.0, 80.0, 85.0)
    assert heater_limits_for("pioreactor_20ml", "1.0") is LIMITS_20ML_V1_0
    assert heater_limits_for("pioreactor_20ml", "1.1") is LIMITS_DEFAULT
    assert heater_limits_for("pioreactor_40ml", "1.0") is LIMITS_DEFAULT
    with pytest.raises(ValueError):
        HeaterLimits(65.0, 63.0, 66.0)


@pytest.mark.parametrize("reading", [None, float("nan"), float("inf")])
def test_a_failed_read_turns_the_heater_off(reading):
    decision = heater_decision(reading, 50.0, LIMITS_DEFAULT)
    assert (decision.duty, decision.tier) == (0.0, "sensor_failed")


def test_tiers_from_the_top_with_strict_comparisons():
    limits = LIMITS_20ML_V1_0
    # horizon_s=0 switches off the look-ahead cap, leaving Pioreactor's own three tiers.
    pure = dict(max_duty=100.0, horizon_s=0.0)
    assert heater_decision(66.5, 50.0, limits, **pure).tier == "shutdown"
    assert heater_decision(66.0, 50.0, limits, **pure).tier == "disable"
    assert heater_decision(65.5, 50.0, limits, **pure).duty == 0.0
    assert heater_decision(65.0, 50.0, limits, **pure).tier == "reduce"
    reduced = heater_decision(64.0, 50.0, limits, **pure)
    assert (reduced.duty, reduced.tier) == (pytest.approx(45.0), "reduce")
    assert heater_decision(63.0, 50.0, limits, **pure).tier == "ok"
    ok = heater_decision(40.0, 50.0, limits, **pure)
    assert (ok.duty, ok.tier) == (50.0, "ok")
    for decision in (heater_decision(70.0, 50.0, limits), heater_decision(65.5, 50.0, limits)):
        assert decision.duty == 0.0 and "limit" in decision.message


def test_duty_is_clamped_and_capped_at_the_hard_maximum():
    assert heater_decision(30.0, 150.0, LIMITS_DEFAULT, max_duty=100.0).duty == 100.0
    assert heater_decision(30.0, -10.0, LIMITS_DEFAULT).duty == 0.0
    capped = heater_decision(30.0, 90.0, LIMITS_DEFAULT)
    assert capped.duty == HEATER_MAX_DUTY == 60.0
    assert capped.tier == "ok" and "maximum" in capped.message
    with pytest.raises(ValueError):
        heater_decision(30.0, float("nan"), LIMITS_DEFAULT)
    with pytest.raises(ValueError):
        heater_decision(30.0, 10.0, LIMITS_DEFAULT, max_duty=120.0)


def test_headroom_cap_leaves_a_37_c_thermostat_alone_and_binds_near_the_limit():
    # Holding 37 C needs ~45 % with the plate near 42 C: untouched even on the 20 ml v1.0 with a 53 s horizon.
    assert heater_decision(42.0, 45.0, LIMITS_20ML_V1_0).duty == 45.0
    near = heater_decision(60.0, 100.0, LIMITS_20ML_V1_0, max_duty=100.0)
    assert near.tier == "reduce" and "cannot reach 65" in near.message
    assert near.duty == pytest.approx(100 * (65.0 - 0.25 - 60.0) / (PLATE_MAX_RISE_C_PER_S * 53.0))
    # A 5 s watchdog is throttled only within ~2 C of the disable limit.
    assert heater_decision(60.0, 100.0, LIMITS_20ML_V1_0, max_duty=100.0, horizon_s=5.0).duty == 100.0
    assert heater_decision(64.0, 100.0, LIMITS_20ML_V1_0, max_duty=100.0, horizon_s=5.0).duty < 90.0
    assert heater_decision(64.9, 100.0, LIMITS_20ML_V1_0, max_duty=100.0, horizon_s=5.0).duty == 0.0


@given(
    plate=st.floats(min_value=-20.0, max_value=120.0),
    requested=st.floats(min_value=-50.0, max_value=200.0),
    horizon=st.floats(min_value=0.0, max_value=120.0),
)
def test_decision_never_exceeds_request_or_max_and_is_zero_past_disable(plate, requested, horizon):
    decision = heater_decision(plate, requested, LIMITS_DEFAULT, max_duty=80.0, horizon_s=horizon)
    assert 0.0 <= decision.duty <= min(80.0, max(0.0, requested))
    if plate > LIMITS_DEFAULT.disable_c:
        assert decision.duty == 0.0 and decision.tier in ("disable", "shutdown")


# -- the heater-plate property ----------------------------------------------------------------------------

SAFETY_READ_S = 53.0


def drive_heater(
    thermal: Thermal,
    steps: list[tuple[float, float]],
    rng: random.Random,
    *,
    read_every_s: float,
    disconnect_at: set[int] = frozenset(),  # type: ignore[assignment]
) -> float:
    """Run (requested duty, hold) steps; read the plate and re-decide every ``read_every_s`` within a hold.

    Returns the highest true plate temperature, checked every 0.5 s (the trajectory is smooth).
    """
    peak = thermal.plate_c
    for index, (requested, hold) in enumerate(steps):
        thermal.plate_disconnected = index in disconnect_at
        left = hold
        while left > 0:
            span = min(read_every_s, left)
            left -= span
            try:
                reading: float | None = thermal.sensor_reading(rng)
            except PlateSensorError:
                reading = None
            duty = heater_decision(
                reading, requested, LIMITS_20ML_V1_0, max_duty=100.0, horizon_s=read_every_s
            ).duty
            pieces = max(1, math.ceil(span / 0.5))
            for _ in range(pieces):
                thermal.advance(span / pieces, duty)
                peak = max(peak, thermal.plate_c)
    return peak


heater_steps = st.lists(
    st.tuples(
        st.one_of(st.just(100.0), st.floats(min_value=0.0, max_value=100.0)),
        st.floats(min_value=0.01, max_value=SAFETY_READ_S),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=heater_steps,
    ambient=st.floats(min_value=5.0, max_value=45.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    disconnect_at=st.sets(st.integers(min_value=0, max_value=79), max_size=5),
)
def test_plate_never_passes_the_disable_limit_with_53_s_reads(steps, ambient, seed, disconnect_at):
    """Every command goes through heater_decision with the plate read at that moment; 100 % reaches 66 C."""
    thermal = Thermal(ThermalParams(ambient_c=ambient))
    rng = random.Random(seed)
    peak = drive_heater(thermal, steps, rng, read_every_s=SAFETY_READ_S, disconnect_at=disconnect_at)
    target(peak, label="peak plate (C)")
    assert peak <= LIMITS_20ML_V1_0.disable_c


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=heater_steps, ambient=st.floats(min_value=5.0, max_value=45.0), seed=st.integers(0, 2**32 - 1))
def test_plate_never_passes_the_disable_limit_with_a_5_s_watchdog(steps, ambient, seed):
    thermal = Thermal(ThermalParams(ambient_c=ambient))
    peak = drive_heater(thermal, steps, random.Random(seed), read_every_s=5.0)
    target(peak, label="peak plate (C)")
    assert peak <= LIMITS_20ML_V1_0.disable_c


@pytest.mark.parametrize("ambient", [22.0, 30.0, 40.0, 55.0, 64.0])
@pytest.mark.parametrize("read_every_s", [SAFETY_READ_S, 5.0])
def test_soak_at_full_request_for_ten_hours_stays_below_disable(ambient, read_every_s):
    """The adversary that hypothesis cannot easily build: 100 % requested, all day, in a warm room."""
    thermal = Thermal(ThermalParams(ambient_c=ambient))
    steps = [(100.0, SAFETY_READ_S)] * int(10 * 3600 / SAFETY_READ_S)
    peak = drive_heater(thermal, steps, random.Random(1), read_every_s=read_every_s)
    assert peak <= LIMITS_20ML_V1_0.disable_c


def test_reference_tiers_alone_overshoot_in_a_warm_room():
    """Why the headroom cap exists: the tiers alone, read every 53 s, let the plate pass 65 C in a 30 C room."""
    thermal = Thermal(ThermalParams(ambient_c=30.0))
    rng = random.Random(1)
    peak = thermal.plate_c
    for _ in range(int(10 * 3600 / SAFETY_READ_S)):
        reading = thermal.sensor_reading(rng)
        duty = heater_decision(reading, 100.0, LIMITS_20ML_V1_0, max_duty=100.0, horizon_s=0.0).duty
        for _ in range(53):
            thermal.advance(1.0, duty)
            peak = max(peak, thermal.plate_c)
    assert peak > LIMITS_20ML_V1_0.disable_c


def test_thermostat_still_reaches_37_c_through_the_guard():
    """The guard must not make normal use impossible: 45 % requested holds the liquid at 37 C."""
    thermal = Thermal()
    peak = drive_heater(thermal, [(45.0, SAFETY_READ_S)] * 400, random.Random(0), read_every_s=SAFETY_READ_S)
    assert thermal.liquid_c == pytest.approx(37.0, abs=0.2)
    assert peak < 45.0


# -- pumps ------------------------------------------------------------------------------------------------


def test_pump_guard_accepts_safe_doses_and_refuses_overfill():
    guard = PumpGuard(18.0)
    guard.check_dose(15.0, 1.0, 2.0)
    guard.check_dose(15.0, 2.7, 0.0)  # 15 + 2.7 * 1.1 = 17.97
    with pytest.raises(ValueError, match="max fill"):
        guard.check_dose(15.0, 2.8, 0.0)  # 18.08 with the 10 % margin
    with pytest.raises(ValueError, match="max fill"):
        guard.check_dose(17.5, 1.0, 5.0)  # waste runs after media: it does not lower the peak
    guard.check_dose(19.0, 0.0, 3.0)  # removing waste is always allowed
    exact = PumpGuard(18.0, calibration_margin=0.0)
    exact.check_dose(15.0, 3.0, 0.0)


@pytest.mark.parametrize(
    "args", [(-1.0, 1.0, 1.0), (15.0, -0.5, 0.0), (15.0, 0.0, -2.0), (15.0, float("nan"), 0.0)]
)
def test_pump_guard_refuses_negative_and_non_finite_volumes(args):
    with pytest.raises(ValueError, match="refusing dose"):
        PumpGuard(18.0).check_dose(*args)


@given(
    current=st.floats(min_value=0.0, max_value=25.0),
    media=st.floats(min_value=0.0, max_value=10.0),
    waste=st.floats(min_value=0.0, max_value=10.0),
)
def test_accepted_doses_cannot_pass_max_fill_even_with_pump_error(current, media, waste):
    guard = PumpGuard(18.0)
    try:
        guard.check_dose(current, media, waste)
    except ValueError:
        return
    assert media == 0.0 or current + media * 1.1 <= 18.0


def test_max_on_seconds_is_one_and_a_half_times_the_request_under_a_ceiling():
    guard = PumpGuard(18.0)
    assert guard.max_on_seconds(10.0) == 15.0
    assert guard.max_on_seconds(50.0) == 60.0
    assert PumpGuard(36.0, max_on_seconds_ceiling=120.0).max_on_seconds(100.0) == 120.0
    with pytest.raises(ValueError):
        guard.max_on_seconds(-1.0)


# -- LED and ADC ------------------------------------------------------------------------------------------


def test_ir_intensity_is_capped_with_a_warning():
    assert cap_ir_intensity(80.0) == (80.0, None)
    assert cap_ir_intensity(90.0) == (90.0, None)
    pct, warning = cap_ir_intensity(95.0)
    assert pct == 90.0 and warning is not None and "90" in warning
    assert cap_ir_intensity(70.0, cap=50.0)[0] == 50.0
    with pytest.raises(ValueError):
        cap_ir_intensity(-1.0)


@pytest.mark.parametrize(
    ("volts", "status"),
    [(0.0, "ok"), (2.99, "ok"), (3.0, "ok"), (3.01, "warn"), (3.2, "warn"), (3.21, "trip"), (5.0, "trip")],
)
def test_adc_over_voltage(volts, status):
    assert adc_trip(volts) == status


def test_adc_nan_trips():
    assert adc_trip(float("nan")) == "trip"
