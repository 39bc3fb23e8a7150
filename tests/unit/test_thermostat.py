"""Thermostat and only_record_temperature policies, and the temperature job's cadence as data."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.automations.temperature import (
    NoEvent,
    OnlyRecordTemperature,
    TemperatureCycle,
    Thermostat,
    UpdatedHeaterDC,
)
from actors.hardware.safety import LIMITS_20ML_V1_0, LIMITS_DEFAULT


def test_first_step_is_kp_times_the_error_added_to_the_duty():
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    duty, event = thermostat.decide(33.0, 10.0)
    assert duty == pytest.approx(10.0 + 2.6 * 4.0)
    assert isinstance(event, UpdatedHeaterDC)
    assert event.event_name == "UpdatedHeaterDC"
    assert event.data == {"previous_duty": 10.0, "duty": duty, "liquid_c": 33.0, "target_c": 37.0}
    assert "37" in event.message


def test_derivative_acts_on_the_measurement_with_dt_one_per_inference():
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    thermostat.decide(36.0, 40.0)
    duty, _ = thermostat.decide(36.5, 40.0)
    # P: 2.6 * 0.5; D: -4.6 * (36.5 - 36.0) / 1
    assert duty == pytest.approx(40.0 + 2.6 * 0.5 - 4.6 * 0.5)


def test_each_step_is_clamped_to_25_percent():
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    assert thermostat.decide(20.0, 30.0)[0] == pytest.approx(55.0)
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    assert thermostat.decide(50.0, 30.0)[0] == pytest.approx(5.0)


def test_duty_stays_within_0_and_max_duty():
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    assert thermostat.decide(20.0, 90.0)[0] == 100.0
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    assert thermostat.decide(45.0, 3.0)[0] == 0.0
    capped = Thermostat(37.0, LIMITS_DEFAULT, max_duty=60.0)
    assert capped.decide(20.0, 50.0)[0] == 60.0


@settings(max_examples=200, deadline=None)
@given(
    target=st.floats(-20.0, 120.0),
    steps=st.lists(st.tuples(st.floats(0.0, 90.0), st.floats(-50.0, 150.0)), min_size=1, max_size=30),
    max_duty=st.floats(1.0, 100.0),
)
def test_duty_is_bounded_and_moves_at_most_25_per_step(target, steps, max_duty):
    thermostat = Thermostat(target, LIMITS_DEFAULT, max_duty=max_duty)
    assert 0.0 <= thermostat.target_temperature <= LIMITS_DEFAULT.reduce_c
    for liquid, current in steps:
        duty, event = thermostat.decide(liquid, current)
        assert 0.0 <= duty <= max_duty
        clamped_current = min(max_duty, max(0.0, current))
        assert abs(duty - clamped_current) <= 25.0 + 1e-9
        assert event.data["duty"] == duty


def test_target_is_clamped_to_the_models_reduce_limit_with_a_message():
    thermostat = Thermostat(90.0, LIMITS_DEFAULT)
    assert thermostat.target_temperature == 78.0
    assert "78" in thermostat.target_note and "reduce limit" in thermostat.target_note
    old = Thermostat.for_model(70.0, "pioreactor_20ml", "1.0")
    assert old.target_temperature == LIMITS_20ML_V1_0.reduce_c == 63.0
    assert Thermostat(37.0, LIMITS_DEFAULT).target_note is None
    assert Thermostat(-5.0, LIMITS_DEFAULT).target_temperature == 0.0


def test_changing_the_target_gives_no_derivative_kick():
    thermostat = Thermostat(30.0, LIMITS_DEFAULT)
    thermostat.decide(30.0, 20.0)
    assert thermostat.set_target_temperature(35.0) is None
    duty, _ = thermostat.decide(30.0, 20.0)
    assert duty == pytest.approx(20.0 + 2.6 * 5.0)
    note = thermostat.set_target_temperature(200.0)
    assert note is not None and thermostat.target_temperature == 78.0


def test_reset_forgets_the_previous_measurement():
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    thermostat.decide(30.0, 20.0)
    thermostat.reset()
    duty, _ = thermostat.decide(36.0, 20.0)
    assert duty == pytest.approx(20.0 + 2.6 * 1.0)  # no derivative across the pause


@pytest.mark.parametrize("bad", [math.nan, math.inf, "37", True])
def test_non_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        Thermostat(bad, LIMITS_DEFAULT)
    thermostat = Thermostat(37.0, LIMITS_DEFAULT)
    with pytest.raises(ValueError):
        thermostat.decide(bad, 10.0)
    with pytest.raises(ValueError):
        thermostat.decide(36.0, bad)


def test_bad_gains_and_limits_are_refused():
    with pytest.raises(ValueError):
        Thermostat(37.0, LIMITS_DEFAULT, kp=-1.0)
    with pytest.raises(ValueError):
        Thermostat(37.0, LIMITS_DEFAULT, max_step=0.0)
    with pytest.raises(ValueError):
        Thermostat(37.0, LIMITS_DEFAULT, max_duty=120.0)


def test_only_record_temperature_turns_the_heater_off():
    policy = OnlyRecordTemperature()
    duty, event = policy.decide(30.0, 40.0)
    assert duty == 0.0 and isinstance(event, UpdatedHeaterDC) and event.data["duty"] == 0.0
    duty, event = policy.decide(29.0, 0.0)
    assert duty == 0.0 and isinstance(event, NoEvent) and event.event_name == "NoEvent"
    assert "29.00" in event.message


def test_reference_cadence():
    cycle = TemperatureCycle()
    assert (cycle.period_s, cycle.n_samples, cycle.sample_interval_s) == (200.0, 21, 5.0)
    assert cycle.off_duration_s == 105.0
    assert cycle.on_duration_s == 95.0
    assert cycle.on_fraction == pytest.approx(0.475)
    steps = cycle.steps(1000.0)
    assert steps[0].action == "heater_off" and steps[0].at_s == 1000.0
    reads = [s for s in steps if s.action == "read_plate"]
    assert [s.at_s for s in reads] == [1000.0 + 5.0 * k for k in range(21)]
    assert [s.index for s in reads] == list(range(21))
    assert steps[-1].action == "infer_and_heat" and steps[-1].at_s == 1105.0
    assert [s.at_s for s in steps] == sorted(s.at_s for s in steps)


def test_cadence_per_model_and_phase_lookup():
    old = TemperatureCycle.for_model("pioreactor_20ml", "1.0")
    assert (old.period_s, old.n_samples, old.off_duration_s) == (225.0, 29, 145.0)
    assert TemperatureCycle.for_model("pioreactor_40ml", "1.0") == TemperatureCycle()
    cycle = TemperatureCycle()
    assert cycle.heater_is_off(0.0) and cycle.heater_is_off(104.9)
    assert not cycle.heater_is_off(105.0) and not cycle.heater_is_off(199.9)
    assert cycle.heater_is_off(200.0) and cycle.heater_is_off(2 * 200.0 + 50.0)


def test_cadences_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        TemperatureCycle(n_samples=40)  # 200 s of readings in a 200 s period
    with pytest.raises(ValueError):
        TemperatureCycle(n_samples=3)
    with pytest.raises(ValueError):
        TemperatureCycle(sample_interval_s=0.0)
