"""The vial's books for one experiment as the monitor keeps them: the projection of
:mod:`actors.bioreactor`, plus what makes it safe to feed from the wire.

Pure: payload text in, new books and the fields that changed out; saving is a JSON document the monitor
writes atomically. Two things live here and not in :class:`~actors.bioreactor.BioreactorState`:

* **Duplicates.** MQTT QoS 1 may deliver an event twice, and an outbox replays what it is not sure was
  sent. A dosing event carries no id, so its identity is the whole record: ``(timestamp, event,
  source_of_event, volume_change)``. Why that is enough: one pump publishes its sub-chunks about 0.5 s
  apart with millisecond timestamps, so one pump never repeats a timestamp; two pumps that share a
  millisecond differ in ``event``. Two genuinely different events with all four fields equal would need
  the same pump to dose twice in one millisecond, which it cannot. The last :data:`REMEMBERED_EVENTS`
  identities are kept (and saved with the state, in the same atomic file, so a restarted monitor does
  not count a redelivered event again).
* **Bad payloads.** A record that is not a dosing event is refused with a message and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from actors.bioreactor import BioreactorState, DosingEvent

REMEMBERED_EVENTS = 2048  # ~17 min of a pump's 0.5 s sub-chunks; redeliveries come within seconds
SCHEMA = 1

EventKey = tuple[str, str, str, float]


class BadEvent(ValueError):
    """A ``dosing_events`` payload the books cannot use; the message says what was wrong."""


def parse_event(payload: str) -> tuple[EventKey, DosingEvent]:
    """A ``dosing_events`` payload -> its identity and the event. Raises :class:`BadEvent`."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise BadEvent(f"not JSON: {payload[:80]!r}") from None
    if not isinstance(data, dict):
        raise BadEvent(f"expected an object {{volume_change, event, source_of_event, timestamp}}, got {payload[:80]!r}")
    missing = [k for k in ("volume_change", "event", "timestamp") if k not in data]
    if missing:
        raise BadEvent(f"missing {', '.join(missing)} in {payload[:120]!r}")
    timestamp = str(data["timestamp"])
    try:
        epoch = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadEvent(f"timestamp {timestamp!r} is not ISO-8601 (e.g. 2024-01-01T12:00:00.000Z)") from None
    source = str(data.get("source_of_event", "unknown"))
    try:
        event = DosingEvent(
            volume_change=data["volume_change"], event=data["event"], source_of_event=source, timestamp=epoch
        )
    except (TypeError, ValueError) as e:
        raise BadEvent(str(e)) from None
    return (timestamp, event.event, source, event.volume_change), event


def vessel_defaults(capacity_ml: float, max_fill_ml: float, efflux_ml: float) -> BioreactorState:
    """A fresh experiment: the vial filled to its efflux level (the reference's initial volume)."""
    return BioreactorState(
        current_volume_ml=efflux_ml,
        efflux_tube_volume_ml=efflux_ml,
        max_fill_ml=max_fill_ml,
        capacity_ml=capacity_ml,
    )


@attrs.frozen
class Books:
    state: BioreactorState
    seen: tuple[EventKey, ...] = ()  # oldest first, at most REMEMBERED_EVENTS

    def record(self, payload: str) -> tuple[Books, dict[str, float], str | None]:
        """Fold one ``dosing_events`` payload in. Returns (books, changed fields, note).

        ``note`` explains an event that changed nothing (a duplicate, an ignored source); a bad payload
        raises :class:`BadEvent` and leaves the books as they were.
        """
        key, event = parse_event(payload)
        if key in self.seen:
            return self, {}, f"duplicate dosing event {key[1]} at {key[0]} ignored"
        seen = (self.seen + (key,))[-REMEMBERED_EVENTS:]
        new = self.state.apply(event)
        return Books(new, seen), changed(self.state, new), None

    def edit(self, field: str, value: object) -> tuple[Books, dict[str, float]]:
        """A user's ``/set`` of one field; ``ValueError`` (with what to send instead) leaves it unchanged."""
        new = self.state.edit({field: value})
        return Books(new, self.seen), changed(self.state, new)

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, "state": self.state.as_dict(), "seen": [list(k) for k in self.seen]})

    @staticmethod
    def from_json(text: str, vessel: BioreactorState | None = None) -> Books:
        """Books saved by :meth:`to_json`. ``vessel`` (the current model's defaults) supplies the vial's
        limits when the saved volumes still fit them, so a changed model takes effect; otherwise the saved
        limits stay. Raises ``ValueError`` on a document that is not ours."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("state"), dict):
            raise ValueError(f"not a schema-{SCHEMA} books file")
        fields = {k: float(v) for k, v in data["state"].items() if k in attrs.fields_dict(BioreactorState)}
        state = BioreactorState(**fields)
        if vessel is not None:
            try:
                state = attrs.evolve(state, max_fill_ml=vessel.max_fill_ml, capacity_ml=vessel.capacity_ml)
            except ValueError:
                pass  # the saved books do not fit the new vial: keep them as they were saved
        seen = tuple((str(k[0]), str(k[1]), str(k[2]), float(k[3])) for k in data.get("seen", []))
        return Books(state, seen[-REMEMBERED_EVENTS:])


def changed(old: BioreactorState, new: BioreactorState) -> dict[str, float]:
    """The published fields whose value differs between two states."""
    before: Mapping[str, Any] = old.as_dict()
    return {k: v for k, v in new.as_dict().items() if before.get(k) != v}
