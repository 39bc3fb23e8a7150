"""The monitor's books per experiment: wire payloads in, duplicates ignored, saved and resumed exactly.

Conservation of volume and alt-media mass is proven on the projection itself in test_bioreactor.py;
here the properties are about the wire: duplicates never count twice, and saving loses nothing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.bioreactor import BioreactorState
from actors.bioreactor_books import REMEMBERED_EVENTS, BadEvent, Books, parse_event, vessel_defaults

VIAL = vessel_defaults(capacity_ml=40.0, max_fill_ml=36.0, efflux_ml=15.0)


def payload(event: str, ml: float, t: str, source: str = "pump") -> str:
    return json.dumps({"volume_change": ml, "event": event, "source_of_event": source, "timestamp": t})


def test_fresh_books_sit_at_the_efflux_level_of_the_model():
    assert (VIAL.current_volume_ml, VIAL.efflux_tube_volume_ml, VIAL.max_fill_ml, VIAL.capacity_ml) == (15, 15, 36, 40)


def test_an_event_updates_the_books_and_reports_only_what_changed():
    books, changed, note = Books(VIAL).record(payload("add_alt_media", 1.0, "2024-01-01T00:00:00.000Z"))
    assert note is None
    assert changed == {
        "current_volume_ml": 16.0,
        "alt_media_fraction": 1.0 / 16.0,
        "cumulative_alt_media_added_ml": 1.0,
    }
    assert books.state.current_volume_ml == 16.0


def test_a_redelivered_event_is_not_counted_but_the_next_sub_chunk_is():
    books, _, _ = Books(VIAL).record(payload("add_media", 0.5, "2024-01-01T00:00:00.000Z"))
    again, changed, note = books.record(payload("add_media", 0.5, "2024-01-01T00:00:00.000Z"))
    assert again is books and changed == {} and "duplicate" in note
    later, changed, _ = books.record(payload("add_media", 0.5, "2024-01-01T00:00:00.500Z"))
    assert later.state.current_volume_ml == 16.0
    # Two pumps in the same millisecond are different events.
    both, _, _ = later.record(payload("remove_waste", 0.5, "2024-01-01T00:00:00.500Z"))
    assert both.state.current_volume_ml == 15.5


def test_pump_calibration_events_change_nothing():
    books = Books(VIAL)
    after, changed, _ = books.record(payload("add_media", 5.0, "2024-01-01T00:00:00.000Z", source="pump_calibration"))
    assert changed == {} and after.state == books.state


@pytest.mark.parametrize(
    "text, says",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"event": "add_media", "timestamp": "2024-01-01T00:00:00Z"}), "missing volume_change"),
        (payload("add_media", 1.0, "yesterday"), "ISO-8601"),
        (payload("drink", 1.0, "2024-01-01T00:00:00Z"), "unknown dosing event"),
        (payload("add_media", -1.0, "2024-01-01T00:00:00Z"), "remove_waste"),
        (json.dumps({"volume_change": "lots", "event": "add_media", "timestamp": "2024-01-01T00:00:00Z"}), "lots"),
    ],
)
def test_a_bad_payload_is_refused_with_a_reason(text, says):
    with pytest.raises(BadEvent, match=says):
        Books(VIAL).record(text)


def test_manual_edits_are_validated():
    books, changed = Books(VIAL).edit("current_volume_ml", "10")
    assert changed == {"current_volume_ml": 10.0}
    with pytest.raises(ValueError, match="capacity"):
        books.edit("current_volume_ml", "41")
    with pytest.raises(ValueError, match="editable"):
        books.edit("cumulative_media_added_ml", "0")
    with pytest.raises(ValueError, match="number"):
        books.edit("alt_media_fraction", "half")


def test_saved_books_take_the_limits_of_a_new_model_when_they_fit():
    books, _ = Books(VIAL).edit("current_volume_ml", "30")
    small = vessel_defaults(capacity_ml=20.0, max_fill_ml=18.0, efflux_ml=15.0)
    # 30 ml does not fit a 20 ml vial: the saved limits stay.
    assert Books.from_json(books.to_json(), small).state.capacity_ml == 40.0
    fits, _ = Books(VIAL).edit("current_volume_ml", "16")
    assert Books.from_json(fits.to_json(), small).state.capacity_ml == 20.0


def test_a_file_that_is_not_ours_is_refused():
    with pytest.raises(ValueError):
        Books.from_json(json.dumps({"schema": 99, "state": {}}))


def test_only_the_most_recent_identities_are_remembered():
    books = Books(VIAL)
    for i in range(REMEMBERED_EVENTS + 5):
        books, _, _ = books.record(payload("add_media", 0.0, f"2024-01-01T00:00:00.{i % 1000:03d}Z", source=str(i)))
    assert len(books.seen) == REMEMBERED_EVENTS


timestamps = st.integers(min_value=0, max_value=10_000).map(
    lambda ms: f"2024-01-01T00:{ms // 60000:02d}:{(ms // 1000) % 60:02d}.{ms % 1000:03d}Z"
)
wire_events = st.builds(
    payload,
    st.sampled_from(["add_media", "add_alt_media", "remove_waste"]),
    st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
    timestamps,
)


@settings(max_examples=200)
@given(history=st.lists(wire_events, max_size=30, unique=True), data=st.data())
def test_duplicates_never_count_twice_and_saving_loses_nothing(history, data):
    """Delivered with random repeats (each right after an earlier delivery of the same record), the books
    equal the books of the history delivered once; a save/load between any two events changes nothing."""
    once = Books(VIAL)
    for p in history:
        once, _, _ = once.record(p)
    delivered = []
    for p in history:
        delivered.append(p)
        delivered.extend(data.draw(st.lists(st.sampled_from(delivered), max_size=2)))
    cut = data.draw(st.integers(min_value=0, max_value=len(delivered)))
    books = Books(VIAL)
    for i, p in enumerate(delivered):
        if i == cut:
            books = Books.from_json(books.to_json(), VIAL)
        books, _, _ = books.record(p)
    assert books.state == once.state
    assert BioreactorState(**books.state.as_dict()) == once.state
