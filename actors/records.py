"""The record protocol between a worker's outbox and the leader's ingest: the only place it is spelled.

Everything a job publishes (readings, events, settings, state changes, log lines) is a *record*. A
worker keeps each record in its durable outbox under ``(stream, seq)``, where ``stream`` is the job
that produced it (``od_reading``, ``dosing_events``, ``logs``, ...) and ``seq`` rises by one per record
within the stream. Records travel in batches on the unit's ``$node/outbox`` topic; the leader stores
each record at most once and answers with a retained ``$node/ingest_ack``: per stream, the highest
seq below which it holds everything. The worker prunes what is acknowledged and, after any
reconnect or silence, resends from the acknowledgement. Exactly-once storage over at-least-once
transport.

Batch payload (JSON)::

    {"v": 1, "unit": "sim01", "sent_at": "<worker wall clock, UTC ISO>",
     "bases": {stream: lowest seq the outbox still holds (or the next seq if it holds none)},
     "dropped": {stream: records of this stream the outbox bound has ever dropped},
     "records": [[stream, seq, at, topic, payload], ...]}

``at`` is the node clock's time when the record was appended (simulated time on a simulated node,
the same clock as the payloads' ``timestamp``). ``bases`` lets the leader tell a record still in
flight from one the worker will never send again (dropped at the outbox bound, or an outbox that was
replaced), so it never waits forever and never hides a gap: it records the gap.

Ack payload (JSON): ``{stream: seq}``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from actors import topics

VERSION = 1


@attrs.frozen(kw_only=True)
class Record:
    stream: str
    seq: int
    at: str  # node clock when appended, UTC ISO-8601 with milliseconds and Z
    topic: str
    payload: str


@attrs.frozen(kw_only=True)
class Batch:
    unit: str
    sent_at: str
    records: tuple[Record, ...]
    bases: dict[str, int] = attrs.field(factory=dict)
    dropped: dict[str, int] = attrs.field(factory=dict)


class ProtocolError(ValueError):
    """A batch or ack that does not follow this protocol (the message says which part)."""


def stream_of(topic: str, payload: str) -> str | None:
    """The stream a publication belongs to, or None when it is not a record.

    Records are every job publication ``pioreactor/<unit>/<experiment>/<job>/...`` with a payload.
    Not records: node topics (``$node/...``: the node's own state, desired/actual, the outbox itself),
    ``/set`` requests (commands, not facts) and empty payloads (a retained value being cleared).
    """
    if payload == "":
        return None
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != topics.ROOT or parts[2] == topics.NODE or parts[-1] == topics.SET:
        return None
    return parts[3]


def split_topic(topic: str) -> tuple[str, str, str, str]:
    """``pioreactor/<unit>/<experiment>/<job>/<rest...>`` -> (unit, experiment, job, rest)."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != topics.ROOT:
        raise ProtocolError(f"not a record topic: {topic!r}")
    return parts[1], parts[2], parts[3], "/".join(parts[4:])


def encode_batch(batch: Batch) -> str:
    return json.dumps(
        {
            "v": VERSION,
            "unit": batch.unit,
            "sent_at": batch.sent_at,
            "bases": batch.bases,
            "dropped": batch.dropped,
            "records": [[r.stream, r.seq, r.at, r.topic, r.payload] for r in batch.records],
        },
        separators=(",", ":"),
    )


def decode_batch(payload: str | bytes) -> Batch:
    """Parse a batch; raises :class:`ProtocolError` naming what is wrong."""
    try:
        data = json.loads(payload)
    except ValueError as e:
        raise ProtocolError(f"batch is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ProtocolError(f"batch version must be {VERSION}")
    unit, sent_at, rows = data.get("unit"), data.get("sent_at"), data.get("records")
    if not isinstance(unit, str) or not unit or not isinstance(sent_at, str) or not isinstance(rows, list):
        raise ProtocolError("batch needs unit, sent_at and records")
    records = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str) and isinstance(row[1], int)
                and all(isinstance(x, str) for x in row[2:])):
            raise ProtocolError(f"malformed record {row!r:.80}")
        records.append(Record(stream=row[0], seq=row[1], at=row[2], topic=row[3], payload=row[4]))
    return Batch(unit=unit, sent_at=sent_at, records=tuple(records),
                 bases=_int_map(data.get("bases", {}), "bases"), dropped=_int_map(data.get("dropped", {}), "dropped"))


def encode_ack(watermarks: dict[str, int]) -> str:
    return json.dumps(watermarks, separators=(",", ":"), sort_keys=True)


def decode_ack(payload: str | bytes) -> dict[str, int]:
    if not payload:
        return {}
    try:
        return _int_map(json.loads(payload), "ack")
    except ValueError as e:
        raise ProtocolError(f"ack is not JSON: {e}") from None


def _int_map(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in value.items()):
        raise ProtocolError(f"{what} must map stream names to integers")
    return dict(value)
