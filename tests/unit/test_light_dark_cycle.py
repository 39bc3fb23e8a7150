"""light_dark_cycle: exact alternating boundaries, phase/boundary consistency, immediate retiming."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.automations.led import ChangedLedIntensity, LightDarkCycle

durations = st.floats(0.01, 600.0)  # fractions of a minute up to 10 hours
times = st.floats(0.0, 50_000.0)
EXACT = 1e-9  # minutes


def walk(cycle: LightDarkCycle, start: float, count: int) -> list[float]:
    """The next ``count`` boundaries after ``start``, by chaining next_boundary."""
    out = []
    t = start
    for _ in range(count):
        nxt = cycle.next_boundary(t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


def test_starts_in_light_on_channels_c_and_d():
    cycle = LightDarkCycle(60.0, 1.5, 0.5)
    assert cycle.state_at(0.0) == (True, 60.0)
    assert cycle.channels == ("C", "D")
    assert cycle.intensities_at(0.0) == (("C", 60.0), ("D", 60.0))
    assert cycle.state_at(1.5) == (False, 0.0)  # a boundary belongs to the phase it starts
    assert cycle.state_at(1.4999) == (True, 60.0)
    assert cycle.next_boundary(0.0) == 1.5
    assert cycle.next_boundary(1.5) == 2.0
    decision = cycle.decide(1.5)
    assert not decision.lit and decision.next_boundary_minutes == 2.0
    assert isinstance(decision.event, ChangedLedIntensity) and decision.intensities == (("C", 0.0), ("D", 0.0))
    assert decision.event.event_name == "ChangedLedIntensity"
    assert decision.event.data == {"intensities": {"C": 0.0, "D": 0.0}}


@settings(max_examples=150, deadline=None)
@given(light=durations, dark=durations, n=st.integers(1, 60))
def test_boundaries_alternate_and_are_exact(light, dark, n):
    cycle = LightDarkCycle(50.0, light, dark)
    boundaries = walk(cycle, 0.0, n)
    exact = Fraction(0)
    lit = True
    for k, b in enumerate(boundaries):
        exact += Fraction(light) if lit else Fraction(dark)
        lit = not lit
        assert abs(Fraction(b) - exact) <= EXACT, (k, b, float(exact))
        assert cycle.state_at(b)[0] is lit
    assert all(a < b for a, b in zip(boundaries, boundaries[1:]))


@settings(max_examples=300, deadline=None)
@given(light=durations, dark=durations, t=times)
def test_phase_at_any_time_is_consistent_with_next_boundary(light, dark, t):
    cycle = LightDarkCycle(50.0, light, dark)
    lit, _ = cycle.state_at(t)
    nxt = cycle.next_boundary(t)
    start = cycle.phase_start(t)
    assert nxt is not None and start <= t < nxt
    assert nxt - start == pytest.approx(light if lit else dark, rel=1e-9, abs=1e-9)
    # Constant up to the boundary, different at it.
    mid = t + (nxt - t) / 2
    if mid < nxt:
        assert cycle.state_at(mid)[0] is lit
        assert cycle.next_boundary(mid) == nxt
    assert cycle.state_at(nxt)[0] is not lit
    assert cycle.phase_start(nxt) == nxt


@settings(max_examples=200, deadline=None)
@given(
    light=durations,
    dark=durations,
    now=times,
    new_light=st.one_of(st.none(), durations),
    new_dark=st.one_of(st.none(), durations),
)
def test_retime_keeps_the_past_and_reschedules_the_current_phase(light, dark, now, new_light, new_dark):
    old = LightDarkCycle(50.0, light, dark)
    new = old.retime(now, light_duration=new_light, dark_duration=new_dark)
    lit, _ = old.state_at(now)
    start = old.phase_start(now)
    duration = (new_light if new_light is not None else light) if lit else (new_dark if new_dark is not None else dark)
    # The past is unchanged.
    for t in (0.0, now / 3, now / 2, start - (start - 0.0) / 10):
        if 0.0 <= t < start:
            assert new.state_at(t) == old.state_at(t)
    if now - start >= duration:
        # The phase has already run its new length: it ends now.
        assert new.state_at(now)[0] is not lit
        assert new.phase_start(now) == now
    else:
        assert new.state_at(now)[0] is lit
        assert new.phase_start(now) == start
        assert new.next_boundary(now) == pytest.approx(start + duration, abs=EXACT)
    # From then on, the new durations.
    boundaries = walk(new, now, 4)
    gaps = [b - a for a, b in zip(boundaries, boundaries[1:])]
    expected_light = new_light if new_light is not None else light
    expected_dark = new_dark if new_dark is not None else dark
    for a, gap in zip(boundaries, gaps):
        expected = expected_light if new.state_at(a)[0] else expected_dark
        assert gap == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert new.light_duration_minutes == expected_light and new.dark_duration_minutes == expected_dark


def test_shortening_the_light_phase_past_its_age_switches_at_once():
    cycle = LightDarkCycle(80.0, 10.0, 5.0)
    shorter = cycle.retime(7.25, light_duration=4.0)
    assert shorter.state_at(7.25) == (False, 0.0)
    assert shorter.next_boundary(7.25) == 12.25
    assert shorter.state_at(7.0) == (True, 80.0)  # what happened before is kept
    assert shorter.next_boundary(6.0) == 7.25


def test_lengthening_the_phase_moves_its_end():
    cycle = LightDarkCycle(80.0, 10.0, 5.0)
    longer = cycle.retime(12.0, dark_duration=0.75)  # dark since 10: 0.75 already passed
    assert longer.state_at(12.0)[0] is True
    later = cycle.retime(11.0, dark_duration=20.0)
    assert later.state_at(11.0)[0] is False
    assert later.next_boundary(11.0) == 30.0
    assert later.phase_start(11.0) == 10.0


def test_two_changes_at_the_same_instant_compose():
    cycle = LightDarkCycle(80.0, 10.0, 5.0)
    first = cycle.retime(5.0, light_duration=3.0)  # the light phase is past 3 min: dark from 5
    assert first.state_at(5.0)[0] is False
    # The second change acts on what the first made: the dark phase that began at 5 runs its 5 min.
    second = first.retime(5.0, light_duration=4.0)
    assert second.state_at(5.0)[0] is False and second.next_boundary(5.0) == 10.0
    # Steady light, decided at the same instant: no zero-length dark phase is left behind at 5.
    steady = first.retime(5.0, dark_duration=0.0)
    assert steady.state_at(5.0)[0] is True
    assert steady.next_boundary(4.0) is None
    assert steady.state_at(4.0)[0] is True


def test_a_zero_duration_holds_the_light_steady():
    always_dark = LightDarkCycle(50.0, 0.0, 5.0)
    assert always_dark.state_at(123.0) == (False, 0.0)
    assert always_dark.next_boundary(0.0) is None
    always_light = LightDarkCycle(50.0, 5.0, 10.0).retime(2.0, dark_duration=0.0)
    assert always_light.state_at(2.0) == (True, 50.0) and always_light.next_boundary(2.0) is None
    assert always_light.state_at(1000.0) == (True, 50.0)
    # From a steady light back to a cycle: the light phase started at 0, so it ends at 5.
    cycling = always_light.retime(3.0, dark_duration=1.0)
    assert cycling.next_boundary(3.0) == 5.0
    assert "no further change" in always_dark.decide(0.0).event.message


def test_intensity_change_keeps_the_schedule():
    cycle = LightDarkCycle(50.0, 1.0, 1.0).retime(0.5, light_duration=0.25)
    brighter = cycle.with_intensity(90.0)
    assert brighter.epochs == cycle.epochs
    assert brighter.state_at(0.1) == (True, 90.0)


def test_retime_cannot_rewrite_the_past():
    cycle = LightDarkCycle(50.0, 1.0, 1.0).retime(10.0, light_duration=2.0)
    with pytest.raises(ValueError, match="before the previous change"):
        cycle.retime(9.0, dark_duration=3.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(light_intensity=120.0, light_duration_minutes=1.0, dark_duration_minutes=1.0),
        dict(light_intensity=50.0, light_duration_minutes=-1.0, dark_duration_minutes=1.0),
        dict(light_intensity=50.0, light_duration_minutes=0.0, dark_duration_minutes=0.0),
        dict(light_intensity=50.0, light_duration_minutes=float("nan"), dark_duration_minutes=1.0),
        dict(light_intensity=50.0, light_duration_minutes=1.0, dark_duration_minutes=1.0, channels=("E",)),
        dict(light_intensity=50.0, light_duration_minutes=1.0, dark_duration_minutes=1.0, channels=("C", "C")),
        dict(light_intensity=50.0, light_duration_minutes=1.0, dark_duration_minutes=1.0, channels="CD"),
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LightDarkCycle(**kwargs)


def test_negative_time_is_refused():
    with pytest.raises(ValueError):
        LightDarkCycle(50.0, 1.0, 1.0).state_at(-0.1)


maybe_duration = st.one_of(st.none(), st.just(0.0), durations)


@settings(max_examples=200, deadline=None)
@given(
    light=durations,
    dark=durations,
    changes=st.lists(
        st.tuples(st.one_of(st.just(0.0), st.floats(0.0, 500.0)), maybe_duration, maybe_duration), max_size=8
    ),
    probes=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10),
)
def test_any_sequence_of_changes_leaves_a_consistent_alternating_schedule(light, dark, changes, probes):
    cycle = LightDarkCycle(50.0, light, dark)
    now = 0.0
    for dt, new_light, new_dark in changes:
        now += dt
        resulting = (
            new_light if new_light is not None else cycle.light_duration_minutes,
            new_dark if new_dark is not None else cycle.dark_duration_minutes,
        )
        if resulting == (0.0, 0.0):
            continue
        before = cycle
        cycle = cycle.retime(now, light_duration=new_light, dark_duration=new_dark)
        start = before.phase_start(now)
        for fraction in probes:
            t = start * fraction
            if t < start:
                assert cycle.state_at(t) == before.state_at(t)  # the past is kept
    horizon = now + 2 * (cycle.light_duration_minutes + cycle.dark_duration_minutes) + 1.0
    # Walk every boundary from the start: each one flips the light.
    t = 0.0
    lit = cycle.state_at(0.0)[0]
    for _ in range(10_000):
        nxt = cycle.next_boundary(t)
        if nxt is None or nxt > horizon:
            break
        assert nxt > t
        assert cycle.state_at(nxt)[0] is not lit
        lit = not lit
        t = nxt
    for fraction in probes:
        t = horizon * fraction
        lit_t = cycle.state_at(t)[0]
        nxt = cycle.next_boundary(t)
        assert cycle.phase_start(t) <= t
        if nxt is not None:
            assert nxt > t and cycle.state_at(nxt)[0] is not lit_t
