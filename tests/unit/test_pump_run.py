"""The pump arithmetic: which run a request means, refusals, chunks that add up exactly, circulation."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from actors.calibrations import PumpCalibration, default_pump_calibration, pump_seconds_to_ml
from actors.pump_run import (
    CHUNK_SECONDS,
    DEFAULT_MEDIA_FRACTION,
    CirculationPlan,
    Ledger,
    PumpPlan,
    choose_mode,
    inflow_seconds_left,
    media_fraction,
    ml_per_second,
    plan_pump_action,
    projected_volume,
)

MAX_FILL = 18.0


def calibrated(device: str = "media_pump", rate: float = 0.1, intercept: float = 0.0, dc: float = 80.0) -> PumpCalibration:
    xs = [5.0, 10.0, 15.0, 20.0]
    return PumpCalibration.from_points(
        xs, [rate * x + intercept for x in xs], degree=1, name="cal1", device=device,
        created_at="2025-01-01T00:00:00+00:00", hz=250.0, dc=dc,
    )


def plan(**kw):
    base = dict(device="media_pump", event="add_media", cal=calibrated(), max_fill_ml=MAX_FILL)
    base.update(kw)
    return plan_pump_action(**base)


# --- options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ml, duration, continuously, fragment",
    [
        (None, None, False, "none was given"),
        (1.0, 2.0, False, "got --ml and --duration"),
        (1.0, None, True, "got --ml and --continuously"),
        (1.0, 2.0, True, "got --ml and --duration and --continuously"),
    ],
)
def test_exactly_one_way_to_run_a_pump(ml, duration, continuously, fragment):
    with pytest.raises(ValueError, match="give exactly one of --ml") as e:
        choose_mode(ml, duration, continuously)
    assert fragment in str(e.value)


@pytest.mark.parametrize("value", [-1.0, -1e-9, math.inf, math.nan])
def test_negative_or_non_finite_amounts_are_refused(value):
    with pytest.raises(ValueError, match="--ml"):
        plan(ml=value)
    with pytest.raises(ValueError, match="--duration"):
        plan(duration=value)


def test_ml_on_the_default_calibration_is_refused_with_how_to_calibrate():
    with pytest.raises(ValueError, match="pio calibrations run --device media_pump"):
        plan(cal=default_pump_calibration("media_pump"), ml=1.0)


def test_duration_on_the_default_calibration_is_allowed_and_books_the_default_rate():
    p = plan(cal=default_pump_calibration("media_pump"), duration=10.0)
    assert p.seconds == 10.0 and p.ml == pytest.approx(0.911) and p.duty == 100.0


def test_continuous_inflow_needs_a_real_calibration_but_continuous_waste_does_not():
    with pytest.raises(ValueError, match="continuous add_media needs a pump calibration"):
        plan(cal=default_pump_calibration("media_pump"), continuously=True)
    p = plan(device="waste_pump", event="remove_waste", cal=default_pump_calibration("waste_pump"), continuously=True)
    assert p.seconds is None and p.rate == pytest.approx(0.0911)


def test_more_than_the_vial_can_take_is_refused_but_a_calibration_beaker_is_not_the_vial():
    with pytest.raises(ValueError, match="more than the vial can take"):
        plan(ml=MAX_FILL + 0.5)
    with pytest.raises(ValueError, match="more than the vial can take"):
        plan(duration=500.0)
    assert plan(duration=500.0, source_of_event="pump_calibration").ml == pytest.approx(50.0)
    # Removing is never limited by the fill level.
    assert plan(device="waste_pump", event="remove_waste", cal=calibrated("waste_pump"), duration=500.0).seconds == 500.0


def test_ml_runs_for_the_calibrated_time_at_the_calibrated_duty():
    p = plan(ml=1.0)
    assert p.seconds == pytest.approx(10.0) and p.ml == 1.0 and p.duty == 80.0


def test_duty_override_only_with_duration():
    assert plan(duration=5.0, duty_cycle=60.0).duty == 60.0
    with pytest.raises(ValueError, match="cannot be combined with --ml"):
        plan(ml=1.0, duty_cycle=60.0)


def test_a_zero_volume_request_is_a_zero_second_run():
    p = plan(ml=0.0)
    assert p.seconds == 0.0 and Ledger(p).finish() == []


# --- chunks ---------------------------------------------------------------------------------------------


def fixed(ml: float, seconds: float) -> PumpPlan:
    return PumpPlan(mode="ml", seconds=seconds, ml=ml, rate=ml / seconds if seconds else 1.0, duty=100.0, source_of_event="CLI")


def test_a_run_publishes_one_chunk_per_half_second_and_the_remainder():
    ledger = Ledger(fixed(1.25, 1.25))
    assert ledger.due(0.49) == []
    assert ledger.due(0.5) == [0.5]
    assert ledger.due(1.1) == [0.5]
    assert ledger.finish() == [0.25]
    assert ledger.finish() == []  # closed


def test_late_ticks_publish_every_missed_chunk_separately():
    ledger = Ledger(fixed(2.0, 2.0))
    assert ledger.due(1.7) == [0.5, 0.5, 0.5]


amounts = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=1e-3, max_value=600.0, allow_nan=False, allow_infinity=False)


@given(ml=amounts, seconds=durations, ticks=st.lists(st.floats(min_value=0.0, max_value=700.0), max_size=30))
def test_chunks_of_a_finished_run_sum_exactly_to_the_requested_volume(ml, seconds, ticks):
    ledger = Ledger(fixed(ml, seconds))
    published = []
    for t in sorted(ticks):
        published += ledger.due(t)
    published += ledger.finish()
    assert math.fsum(published) == ml
    assert all(c > 0 for c in published)


@given(ml=amounts, seconds=durations, stop=st.floats(min_value=0.0, max_value=1.0), ticks=st.integers(0, 40))
def test_a_stop_at_any_time_publishes_exactly_the_moved_volume(ml, seconds, stop, ticks):
    p = fixed(ml, seconds)
    ledger = Ledger(p)
    stop_at = stop * seconds
    published = []
    for k in range(ticks):
        t = k * CHUNK_SECONDS * 0.73  # ticks that do not line up with the chunk grid
        if t >= stop_at:
            break
        published += ledger.due(t)
    published += ledger.stop(stop_at)
    assert math.fsum(published) == p.volume_at(stop_at)
    assert p.volume_at(stop_at) <= ml


@given(rate=st.floats(min_value=1e-3, max_value=10.0), stop=st.floats(min_value=0.0, max_value=500.0))
def test_a_continuous_run_stopped_at_any_time_publishes_rate_times_time(rate, stop):
    p = PumpPlan(mode="continuously", seconds=None, ml=None, rate=rate, duty=100.0, source_of_event="CLI")
    ledger = Ledger(p)
    published = ledger.due(stop * 0.6) + ledger.stop(stop)
    assert math.fsum(published) == p.volume_at(stop)
    assert p.volume_at(stop) == pytest.approx(rate * stop, rel=1e-12, abs=1e-300)


@given(ml=amounts, seconds=durations)
def test_duration_runs_book_the_calibrated_volume(ml, seconds):
    cal = calibrated(rate=0.0937, intercept=0.01)
    p = plan(cal=cal, duration=seconds, source_of_event="pump_calibration")
    ledger = Ledger(p)
    assert math.fsum(ledger.finish()) == pump_seconds_to_ml(cal, seconds)


# --- continuous inflow --------------------------------------------------------------------------------


def test_continuous_inflow_runs_until_the_books_reach_max_fill():
    assert inflow_seconds_left(17.0, 18.0, 0.1) == pytest.approx(10.0)
    assert inflow_seconds_left(18.5, 18.0, 0.1) == 0.0


def test_the_projection_trusts_the_books_or_its_own_events_whichever_is_fuller():
    assert projected_volume(15.0, None, 1.0) == 16.0
    assert projected_volume(15.0, 15.0, 1.0) == 16.0  # the monitor has not caught up yet
    assert projected_volume(15.0, 17.0, 1.0) == 17.0  # someone else added too


# --- circulation ----------------------------------------------------------------------------------------


def test_circulation_pulses_media_85_percent_of_each_second_on_default_calibrations():
    frac = media_fraction(default_pump_calibration("media_pump"), default_pump_calibration("waste_pump"))
    assert frac == DEFAULT_MEDIA_FRACTION
    c = CirculationPlan(duration=3.0, fraction=frac)
    assert c.edges() == [(0.0, True), (0.85, False), (1.0, True), (1.85, False), (2.0, True), (2.85, False)]
    assert c.media_seconds == pytest.approx(2.55)
    assert c.media_on_seconds(1.5) == pytest.approx(1.35)


def test_circulation_adjusts_to_calibrations_so_waste_stays_ahead():
    media = calibrated("media_pump", rate=0.12)
    waste = calibrated("waste_pump", rate=0.09)
    frac = media_fraction(media, waste)
    assert frac * ml_per_second(media) < ml_per_second(waste)
    fast_waste = calibrated("waste_pump", rate=0.5)
    assert media_fraction(media, fast_waste) == 0.95  # capped


@given(
    media_rate=st.floats(min_value=0.01, max_value=1.0),
    waste_rate=st.floats(min_value=0.01, max_value=1.0),
    duration=st.floats(min_value=0.1, max_value=300.0),
)
def test_circulation_never_adds_more_than_it_removes(media_rate, waste_rate, duration):
    media, waste = calibrated("media_pump", rate=media_rate), calibrated("waste_pump", rate=waste_rate)
    c = CirculationPlan(duration=duration, fraction=media_fraction(media, waste))
    assume(c.media_seconds > 0)
    assert c.media_seconds * ml_per_second(media) < duration * ml_per_second(waste)


@given(duration=st.floats(min_value=0.01, max_value=100.0), stop=st.floats(min_value=0.0, max_value=1.0))
def test_media_on_time_is_monotone_and_bounded(duration, stop):
    c = CirculationPlan(duration=duration, fraction=0.85)
    t = stop * duration
    assert 0.0 <= c.media_on_seconds(t) <= min(t, c.media_seconds) + 1e-12
    assert c.media_on_seconds(t) <= c.media_on_seconds(min(duration, t + 0.1)) + 1e-12


def test_circulation_refuses_a_negative_duration():
    with pytest.raises(ValueError, match="--duration"):
        CirculationPlan(duration=-1.0, fraction=0.85)
