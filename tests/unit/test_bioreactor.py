"""Volume bookkeeping: the reference rules, conservation laws, and validation of hand edits."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actors.bioreactor import BioreactorState, DosingEvent

KINDS = ("add_media", "add_alt_media", "remove_waste")

volumes = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
events = st.builds(
    lambda kind, ml: DosingEvent(volume_change=ml, event=kind, source_of_event="test", timestamp=0.0),
    st.sampled_from(KINDS),
    volumes,
)


@st.composite
def states(draw: st.DrawFn, capacity: float = 400.0) -> BioreactorState:
    """A valid starting state in a big vial, so event lists rarely spill (spill has its own tests)."""
    max_fill = draw(st.floats(min_value=1.0, max_value=capacity))
    efflux = draw(st.floats(min_value=0.0, max_value=max_fill))
    volume = draw(st.floats(min_value=0.0, max_value=max_fill))
    fraction = draw(st.floats(min_value=0.0, max_value=1.0))
    return BioreactorState(
        current_volume_ml=volume,
        efflux_tube_volume_ml=efflux,
        alt_media_fraction=fraction,
        max_fill_ml=max_fill,
        capacity_ml=capacity,
    )


def add(kind: str, ml: float, source: str = "test") -> DosingEvent:
    return DosingEvent(volume_change=ml, event=kind, source_of_event=source, timestamp=1.0)


# -- the reference rules ----------------------------------------------------------------------------------


def test_defaults_are_a_20_ml_vial_at_the_efflux_level():
    s = BioreactorState()
    assert (s.current_volume_ml, s.efflux_tube_volume_ml, s.max_fill_ml, s.capacity_ml) == (15, 15, 18, 20)
    assert s.alt_media_fraction == 0


def test_add_media_adds_volume_and_dilutes_the_alt_fraction():
    s = BioreactorState(current_volume_ml=10.0, efflux_tube_volume_ml=10.0, alt_media_fraction=0.5)
    s = s.apply(add("add_media", 2.0))
    assert s.current_volume_ml == 12.0
    assert s.alt_media_fraction == pytest.approx(5.0 / 12.0)
    assert s.cumulative_media_added_ml == 2.0
    assert s.cumulative_alt_media_added_ml == 0.0


def test_add_alt_media_raises_the_fraction_by_mass_balance():
    s = BioreactorState(current_volume_ml=10.0, efflux_tube_volume_ml=10.0, alt_media_fraction=0.5)
    s = s.apply(add("add_alt_media", 2.0))
    assert s.alt_media_fraction == pytest.approx((0.5 * 10 + 2) / 12)
    assert s.cumulative_alt_media_added_ml == 2.0


def test_waste_drains_only_down_to_the_efflux_level_and_keeps_the_fraction():
    s = BioreactorState(current_volume_ml=16.0, alt_media_fraction=0.3)
    s = s.apply(add("remove_waste", 3.0))
    assert s.current_volume_ml == 15.0
    assert s.cumulative_waste_removed_ml == 1.0  # liquid actually removed, not what the pump moved
    assert s.alt_media_fraction == 0.3
    assert s.apply(add("remove_waste", 3.0)) == s  # at the needle: the pump pulls air


def test_waste_below_the_efflux_level_removes_nothing():
    s = BioreactorState(current_volume_ml=12.0)
    assert s.apply(add("remove_waste", 1.0)) == s


def test_pump_calibration_events_are_ignored():
    s = BioreactorState()
    assert s.apply(add("add_media", 1.0, source="pump_calibration")) == s


def test_adding_past_capacity_spills_and_records_it():
    s = BioreactorState(current_volume_ml=19.5, alt_media_fraction=0.0)
    s = s.apply(add("add_alt_media", 1.0))
    assert s.current_volume_ml == 20.0
    assert s.spilled_ml == pytest.approx(0.5)
    assert s.alt_media_fraction == pytest.approx(1.0 / 20.5)


def test_max_fill_flags():
    assert not BioreactorState(current_volume_ml=17.0).near_max_fill
    assert BioreactorState(current_volume_ml=17.1).near_max_fill
    assert not BioreactorState(current_volume_ml=17.9).at_max_fill
    assert BioreactorState(current_volume_ml=18.0).at_max_fill


def test_replaying_the_history_gives_the_same_state():
    history = [
        add("add_media", 1.0),
        add("remove_waste", 1.0),
        add("add_alt_media", 0.5),
        add("remove_waste", 3),
    ]
    s = BioreactorState()
    for e in history:
        s = s.apply(e)
    assert BioreactorState().apply_all(history) == s


# -- properties -------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(start=states(), history=st.lists(events, max_size=40))
def test_volume_is_conserved(start, history):
    """final = initial + added - actually removed (- spilled), and each removal is within what was asked."""
    s = start
    for e in history:
        before = s
        s = s.apply(e)
        if e.event == "remove_waste":
            removed = before.current_volume_ml - s.current_volume_ml
            assert 0.0 <= removed <= e.volume_change + 1e-9
            assert s.cumulative_waste_removed_ml - before.cumulative_waste_removed_ml == pytest.approx(
                removed, abs=1e-9
            )
    asked_media = math.fsum(e.volume_change for e in history if e.event == "add_media")
    asked_alt = math.fsum(e.volume_change for e in history if e.event == "add_alt_media")
    assert s.cumulative_media_added_ml == pytest.approx(asked_media, abs=1e-9)
    assert s.cumulative_alt_media_added_ml == pytest.approx(asked_alt, abs=1e-9)
    expected = (
        start.current_volume_ml
        + s.cumulative_media_added_ml
        + s.cumulative_alt_media_added_ml
        - s.cumulative_waste_removed_ml
        - s.spilled_ml
    )
    assert s.current_volume_ml == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= s.current_volume_ml <= s.capacity_ml


@settings(max_examples=300)
@given(start=states(), history=st.lists(events, max_size=40))
def test_alt_media_mass_is_conserved(start, history):
    """fraction * V tracks the alt media put in minus the alt media carried out in waste (and spills)."""
    s = start
    alt_in_vial = start.alt_media_fraction * start.current_volume_ml
    for e in history:
        before = s
        s = s.apply(e)
        if e.event == "add_alt_media":
            alt_in_vial += e.volume_change
        elif e.event == "remove_waste":
            alt_in_vial -= before.alt_media_fraction * (before.current_volume_ml - s.current_volume_ml)
        spilled = s.spilled_ml - before.spilled_ml
        if spilled:
            alt_in_vial -= s.alt_media_fraction * spilled
        assert 0.0 <= s.alt_media_fraction <= 1.0
    assert s.alt_media_fraction * s.current_volume_ml == pytest.approx(alt_in_vial, rel=1e-9, abs=1e-9)


@given(start=states(), ml=volumes)
def test_volume_never_goes_below_the_efflux_level_through_waste(start, ml):
    after = start.apply(add("remove_waste", ml))
    if start.current_volume_ml >= start.efflux_tube_volume_ml:
        assert after.current_volume_ml >= start.efflux_tube_volume_ml
    else:
        assert after.current_volume_ml == start.current_volume_ml


addition = st.builds(add, st.sampled_from(("add_media", "add_alt_media")), volumes)
waste = st.builds(add, st.just("remove_waste"), volumes)


@given(start=states(), history=st.lists(addition, max_size=10), data=st.data())
def test_additions_commute(start, history, data):
    shuffled = data.draw(st.permutations(history))
    a, b = start.apply_all(history), start.apply_all(shuffled)
    # Past the capacity the vial spills, and what spills depends on what came in last: order matters then.
    assume(a.spilled_ml == start.spilled_ml and b.spilled_ml == start.spilled_ml)
    assert a.current_volume_ml == pytest.approx(b.current_volume_ml, abs=1e-9)
    assert a.alt_media_fraction == pytest.approx(b.alt_media_fraction, abs=1e-9)


@given(start=states(), history=st.lists(waste, max_size=10), data=st.data())
def test_waste_removals_commute(start, history, data):
    shuffled = data.draw(st.permutations(history))
    a, b = start.apply_all(history), start.apply_all(shuffled)
    assert a.current_volume_ml == pytest.approx(b.current_volume_ml, abs=1e-9)
    assert a.alt_media_fraction == b.alt_media_fraction


def test_addition_and_waste_do_not_commute_at_the_needle():
    """Order matters across kinds: waste first finds the level at the needle and removes nothing."""
    s = BioreactorState()
    assert s.apply(add("add_media", 1)).apply(add("remove_waste", 1)).current_volume_ml == 15.0
    assert s.apply(add("remove_waste", 1)).apply(add("add_media", 1)).current_volume_ml == 16.0


# -- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"current_volume_ml": -1}, "between 0 and 20"),
        ({"current_volume_ml": 25}, "above the vial's 20 ml capacity"),
        ({"current_volume_ml": "lots"}, "must be a number"),
        ({"current_volume_ml": "nan"}, "finite"),
        ({"alt_media_fraction": 1.5}, "send a fraction between 0 and 1"),
        ({"alt_media_fraction": -0.1}, "outside [0, 1]"),
        ({"efflux_tube_volume_ml": 19}, "between 0 and the max fill 18"),
        ({"cumulative_media_added_ml": 3}, "editable fields are"),
    ],
)
def test_manual_edits_are_validated_with_a_message_saying_what_to_send(changes, words):
    with pytest.raises(ValueError) as excinfo:
        BioreactorState().edit(changes)
    assert words in str(excinfo.value)


def test_manual_edits_accept_strings_and_keep_the_rest():
    s = BioreactorState(cumulative_media_added_ml=4.0).edit(
        {"current_volume_ml": "16.5", "alt_media_fraction": "0.25"}
    )
    assert (s.current_volume_ml, s.alt_media_fraction, s.cumulative_media_added_ml) == (16.5, 0.25, 4.0)


def test_inconsistent_construction_is_refused():
    with pytest.raises(ValueError, match="max_fill_ml=25 is above capacity_ml=20"):
        BioreactorState(max_fill_ml=25)
    with pytest.raises(ValueError):
        BioreactorState(capacity_ml=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"volume_change": -1.0, "event": "add_media"},
        {"volume_change": math.inf, "event": "add_media"},
        {"volume_change": 1.0, "event": "add_water"},
    ],
)
def test_bad_dosing_events_are_refused(kwargs):
    with pytest.raises(ValueError):
        DosingEvent(**kwargs)


def test_negative_volume_change_message_points_to_remove_waste():
    with pytest.raises(ValueError, match="remove_waste"):
        DosingEvent(volume_change=-1.0, event="add_media")


def test_state_is_frozen_and_publishable():
    s = BioreactorState()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.current_volume_ml = 3.0  # type: ignore[misc]
    assert s.as_dict()["current_volume_ml"] == 15.0
