"""What each record becomes in the leader's database: topic -> parser -> table (pure: no I/O, no clock).

The mapping is data, a list of :class:`Sink` (topic pattern, parser, table), tried in order; the last
one takes every publication nobody else claimed into ``settings_history``, so nothing a job publishes
is dropped on the floor. A plugin adds its own sink with :meth:`SinkTable.add` (it goes before the
built-ins, so it can also take over a built-in topic).

Patterns match the topic after ``pioreactor/<unit>/<experiment>/`` level by level: each level is a
shell-style pattern (``*``, ``?``, ``[0-9]``) that never crosses a ``/``, and a final ``#`` matches
whatever follows (nothing included).

Every row gets the columns every time-series table has: ``experiment`` and ``pioreactor_unit`` (from the
topic), ``timestamp`` (the payload's ``timestamp`` when it has one, else the record's ``at``),
``received_at`` (the leader's clock), ``stream`` and ``seq`` (the record's key in the worker's outbox).
A payload that cannot be stored as what its topic says it is raises :class:`ParseError` naming the topic
and the problem.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from typing import Any, Callable, Iterable

import attrs

from actors import records

COMMON_COLUMNS = ("experiment", "pioreactor_unit", "timestamp", "received_at", "stream", "seq")
# UTC ISO-8601 as actors.clock.utc_iso writes it (seconds at least, an optional fraction, Z or an offset).
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")


class ParseError(ValueError):
    """A record whose payload cannot be stored: ``"<topic>: <what is wrong>"``."""


class _Bad(ValueError):
    """Raised by parsers with the problem only; :func:`rows_for` adds the topic."""


@attrs.frozen(kw_only=True)
class Message:
    """One record as a parser sees it: the topic already split, the payload still text."""

    unit: str
    experiment: str
    job: str
    rest: str  # the topic after the job level ('' for e.g. ``dosing_events``)
    payload: str
    at: str  # the record's node-clock time, the timestamp of payloads that carry none


Parser = Callable[[Message], list[dict[str, Any]]]
"""Returns the table's own columns plus ``timestamp`` for each row the message becomes."""


@attrs.frozen
class Sink:
    pattern: str
    parse: Parser
    table: str | None  # None: the message becomes no row (duplicates of another topic)


# -- field helpers ----------------------------------------------------------------------------------------


def _json(msg: Message) -> Any:
    try:
        return json.loads(msg.payload)
    except ValueError:
        raise _Bad(f"payload is not JSON: {msg.payload[:60]!r}") from None


def _object(msg: Message) -> dict[str, Any]:
    value = _json(msg)
    if not isinstance(value, dict):
        raise _Bad(f"payload must be a JSON object, got {msg.payload[:60]!r}")
    return value


def _number(obj: dict[str, Any], field: str, where: str = "payload") -> float:
    if field not in obj:
        raise _Bad(f"{where} has no {field!r}")
    return _as_number(obj[field], f"{where} {field!r}")


def _as_number(value: Any, what: str) -> float:
    # bool is an int in Python but never a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{what} must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise _Bad(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _optional_number(obj: dict[str, Any], field: str, where: str = "payload") -> float | None:
    value = obj.get(field)
    return None if value is None else _as_number(value, f"{where} {field!r}")


def _text(obj: dict[str, Any], field: str, where: str = "payload", default: str | None = None) -> str:
    value = obj.get(field, default)
    if value is None:
        raise _Bad(f"{where} has no {field!r}")
    if not isinstance(value, str):
        raise _Bad(f"{where} {field!r} must be text, got {value!r:.40}")
    return value


def _optional_text(obj: dict[str, Any], field: str) -> str | None:
    value = obj.get(field)
    if value is not None and not isinstance(value, str):
        raise _Bad(f"payload {field!r} must be text, got {value!r:.40}")
    return value


def _integer(value: Any, what: str) -> int:
    """Channel and angle numbers travel as text ("2", "90") in the reference payloads."""
    if isinstance(value, bool):
        raise _Bad(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Bad(f"{what} must be a whole number, got {value!r:.40}")


def _timestamp(obj: dict[str, Any], fallback: str, where: str = "payload") -> str:
    value = obj.get("timestamp")
    if value is None:
        return fallback
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise _Bad(f"{where} 'timestamp' must be UTC ISO-8601 like 2026-01-31T12:00:00.000Z, got {value!r:.40}")
    return value


# -- parsers ----------------------------------------------------------------------------------------------


def _od_columns(entry: Any, where: str, fallback_ts: str, channel_key: str | None) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _Bad(f"{where} must be a JSON object, got {entry!r:.40}")
    if "channel" in entry:
        channel = _integer(entry["channel"], f"{where} 'channel'")
        if channel_key is not None and _integer(channel_key, f"ods key {channel_key!r}") != channel:
            raise _Bad(f"{where} says channel {entry['channel']!r} under key {channel_key!r}")
    elif channel_key is not None:
        channel = _integer(channel_key, f"ods key {channel_key!r}")
    else:
        raise _Bad(f"{where} has no 'channel'")
    if "angle" not in entry:
        raise _Bad(f"{where} has no 'angle'")
    calibrated = entry.get("calibrated", 0)
    if calibrated not in (0, 1):  # True/False are 1/0 too
        raise _Bad(f"{where} 'calibrated' must be 0 or 1, got {calibrated!r:.40}")
    return {
        "timestamp": _timestamp(entry, fallback_ts, where),
        "od_reading": _number(entry, "od", where),
        "angle": _integer(entry["angle"], f"{where} 'angle'"),
        "channel": channel,
        "ir_led_intensity": _optional_number(entry, "ir_led_intensity", where),
        "calibrated": int(calibrated),
    }


def parse_ods(msg: Message) -> list[dict[str, Any]]:
    """``od_reading/ods`` -> one od_readings row per channel."""
    obj = _object(msg)
    ods = obj.get("ods")
    if not isinstance(ods, dict):
        raise _Bad("payload has no 'ods' object of channel -> reading")
    fallback = _timestamp(obj, msg.at)
    return [_od_columns(entry, f"ods[{key!r}]", fallback, key) for key, entry in ods.items()]


def parse_raw_od(msg: Message) -> list[dict[str, Any]]:
    """``od_reading/raw_od<n>``: one channel's reading before its calibration."""
    row = _od_columns(_object(msg), "payload", msg.at, None)
    return [{k: row[k] for k in ("timestamp", "od_reading", "angle", "channel")}]


def no_rows(msg: Message) -> list[dict[str, Any]]:
    """``od<n>`` and ``calibrated_od<n>`` repeat what ``ods`` (and ``raw_od<n>``) already carry."""
    return []


def field_parser(field: str, column: str) -> Parser:
    """``{<field>, timestamp}`` -> one row with ``column`` = the field's number."""

    def parse(msg: Message) -> list[dict[str, Any]]:
        obj = _object(msg)
        return [{"timestamp": _timestamp(obj, msg.at), column: _number(obj, field)}]

    parse.__name__ = f"parse_{field}"
    return parse


def scalar_parser(column: str) -> Parser:
    """A bare number (the bioreactor's retained books); stamped with the record's time."""

    def parse(msg: Message) -> list[dict[str, Any]]:
        return [{"timestamp": msg.at, column: _as_number(_json(msg), "payload")}]

    parse.__name__ = f"parse_{column}"
    return parse


def parse_dosing_event(msg: Message) -> list[dict[str, Any]]:
    obj = _object(msg)
    return [
        {
            "timestamp": _timestamp(obj, msg.at),
            "event": _text(obj, "event"),
            "volume_change_ml": _number(obj, "volume_change"),
            "source_of_event": _optional_text(obj, "source_of_event"),
        }
    ]


def parse_led_change_event(msg: Message) -> list[dict[str, Any]]:
    obj = _object(msg)
    return [
        {
            "timestamp": _timestamp(obj, msg.at),
            "channel": _text(obj, "channel"),
            "intensity": _number(obj, "intensity"),
            "source_of_event": _optional_text(obj, "source_of_event"),
        }
    ]


def parse_automation_event(msg: Message) -> list[dict[str, Any]]:
    """``<x>_automation/latest_event`` ``{event_name, message, data}``; no timestamp in the payload."""
    obj = _object(msg)
    data = obj.get("data")
    return [
        {
            "timestamp": _timestamp(obj, msg.at),
            "job_name": msg.job,
            "event_name": _text(obj, "event_name"),
            "message": _optional_text(obj, "message"),
            "data": None if data is None else json.dumps(data, separators=(",", ":"), sort_keys=True),
        }
    ]


def parse_log(msg: Message) -> list[dict[str, Any]]:
    """``logs/<source>/<level>``; source and level default to the topic's when the payload lacks them."""
    obj = _object(msg)
    levels = msg.rest.split("/")  # rest is "<source>/<level>"
    topic_source = levels[0] or None
    topic_level = levels[1].upper() if len(levels) > 1 and levels[1] else None
    return [
        {
            "timestamp": _timestamp(obj, msg.at),
            "message": _text(obj, "message"),
            "source": _text(obj, "source", default=topic_source),
            "level": _text(obj, "level", default=topic_level),
            "task": _text(obj, "task"),
        }
    ]


def parse_setting(msg: Message) -> list[dict[str, Any]]:
    """Anything else a job publishes: its settings, ``$state``... kept as text, as published."""
    timestamp = msg.at
    if msg.payload.startswith("{"):
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            obj = None
        stamp = obj.get("timestamp") if isinstance(obj, dict) else None
        # A setting's own "timestamp" is the job's business; use it only when it is one we can sort by.
        if isinstance(stamp, str) and _TIMESTAMP.match(stamp):
            timestamp = stamp
    return [{"timestamp": timestamp, "job_name": msg.job, "setting": msg.rest, "value": msg.payload}]


SINKS: tuple[Sink, ...] = (
    Sink("od_reading/ods", parse_ods, "od_readings"),
    Sink("od_reading/raw_od[0-9]*", parse_raw_od, "raw_od_readings"),
    Sink("od_reading/od[0-9]*", no_rows, None),
    Sink("od_reading/calibrated_od[0-9]*", no_rows, None),
    Sink("growth_rate_calculating/growth_rate", field_parser("growth_rate", "rate"), "growth_rates"),
    Sink("growth_rate_calculating/od_filtered", field_parser("od_filtered", "normalized_od_reading"), "od_readings_filtered"),
    Sink("temperature_automation/temperature", field_parser("temperature", "temperature_c"), "temperature_readings"),
    Sink("stirring/measured_rpm", field_parser("measured_rpm", "measured_rpm"), "stirring_rates"),
    Sink("dosing_events", parse_dosing_event, "dosing_events"),
    Sink("led_change_events", parse_led_change_event, "led_change_events"),
    Sink("bioreactor/current_volume_ml", scalar_parser("liquid_volume"), "liquid_volumes"),
    Sink("bioreactor/alt_media_fraction", scalar_parser("alt_media_fraction"), "alt_media_fractions"),
    Sink("*_automation/latest_event", parse_automation_event, "automation_events"),
    Sink("logs/#", parse_log, "logs"),
    Sink("#", parse_setting, "settings_history"),
)


def pattern_matches(pattern: str, suffix: str) -> bool:
    """Level-by-level shell patterns; a final ``#`` takes the rest (see the module docstring)."""
    pparts = pattern.split("/")
    sparts = suffix.split("/")
    for i, p in enumerate(pparts):
        if p == "#" and i == len(pparts) - 1:
            return True
        if i >= len(sparts) or not fnmatch.fnmatchcase(sparts[i], p):
            return False
    return len(pparts) == len(sparts)


class SinkTable:
    """The ordered sinks plus a cache of which one takes each topic suffix (jobs publish few distinct
    topics, and matching patterns per record would cost more than parsing)."""

    def __init__(self, sinks: Iterable[Sink] = SINKS) -> None:
        self.sinks: list[Sink] = list(sinks)
        self._cache: dict[str, Sink] = {}

    def add(self, sink: Sink) -> None:
        """A plugin's sink, tried before every built-in one."""
        self.sinks.insert(0, sink)
        self._cache.clear()

    def sink_for(self, suffix: str) -> Sink:
        sink = self._cache.get(suffix)
        if sink is None:
            for candidate in self.sinks:
                if pattern_matches(candidate.pattern, suffix):
                    sink = candidate
                    break
            else:
                raise _Bad("no sink takes this topic")
            if len(self._cache) < 10000:  # bounded: topics are few, but a misbehaving job could invent many
                self._cache[suffix] = sink
        return sink


DEFAULT_SINKS = SinkTable()


def rows_for(record: records.Record, received_at: str, sinks: SinkTable = DEFAULT_SINKS) -> list[tuple[str, dict[str, Any]]]:
    """The (table, row) pairs ``record`` becomes; raises :class:`ParseError` ``"<topic>: <problem>"``."""
    try:
        unit, experiment, job, rest = records.split_topic(record.topic)
        if not experiment or not job:
            raise _Bad("topic lacks an experiment or a job level")
        msg = Message(unit=unit, experiment=experiment, job=job, rest=rest, payload=record.payload, at=record.at)
        sink = sinks.sink_for(f"{job}/{rest}" if rest else job)
    except (_Bad, records.ProtocolError) as e:
        raise ParseError(f"{record.topic}: {e}") from None
    try:
        parsed = sink.parse(msg)
        if not isinstance(parsed, list) or not all(isinstance(columns, dict) for columns in parsed):
            raise _Bad(f"the parser of {sink.pattern!r} must return a list of dicts, got {parsed!r:.60}")
    except (_Bad, ParseError) as e:
        raise ParseError(f"{record.topic}: {e}") from None
    except Exception as e:
        # A plugin's parser failing in its own way must cost this record, not stop the whole ingest
        # (the unit would resend the same batch forever).
        raise ParseError(f"{record.topic}: the parser of {sink.pattern!r} failed: {type(e).__name__}: {e}") from None
    if sink.table is None:
        return []
    table = sink.table
    out = []
    for columns in parsed:
        row = {
            "experiment": experiment,
            "pioreactor_unit": unit,
            "received_at": received_at,
            "stream": record.stream,
            "seq": record.seq,
        }
        row.update(columns)  # carries "timestamp"
        out.append((table, row))
    return out
