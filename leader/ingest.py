"""The ingest writer: batches of unit records into the leader's database, each record stored once.

A plain class on an injected sqlite3 connection (no MQTT, no threads: :mod:`leader.ingestor` is the
shell that feeds it and publishes the acknowledgements it returns). Per (unit, stream) it keeps the
*watermark*, the highest seq below which it holds everything, in ``ingest_watermarks``, written in the
same transaction as the rows it covers; a record at or below the watermark is a duplicate and costs
almost nothing, a record beyond the next one is out of order (the unit resends from the ack), and a
record the unit says it no longer holds (its ``bases``) is recorded in ``ingest_gaps``, never waited
for and never hidden. See docs/data.md, "Ingest".
"""

from __future__ import annotations

import collections
import sqlite3
import time
from datetime import datetime
from typing import Any, Callable, Sequence

import attrs

from actors import topics
from actors.clock import utc_iso
from actors.records import Batch
from leader import parsers

SKEW_LIMIT_S = 1.0
RATE_WINDOW_S = 60.0
RECENT_ERRORS = 50
SKEW_BATCHES = 32  # the clock offset is estimated over this many of a unit's latest batches
REASON_DROPPED = "dropped by the unit's outbox bound"
REASON_NOT_HELD = "not held by the unit's outbox (outbox replaced or restored)"
ORIGIN = "ingest"
# sqlite3 errors that say the database itself cannot be written now: abort the transaction (no ack,
# the unit resends) rather than blame one record.
_DATABASE_TROUBLE = ("locked", "busy", "disk", "full", "readonly", "read-only", "i/o", "corrupt", "interrupt")


@attrs.define
class _UnitFigures:
    """What health() tells about one unit; counters since this Ingest started."""

    records: int = 0  # records received, duplicates included
    rows: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    errors: int = 0
    gaps: int = 0
    last_received_at: float | None = None
    lag_s: float | None = None
    lag_sent_s: float | None = None
    # leader receive time - batch sent_at, latest batches: transport delay + clock offset. The smallest
    # is the best estimate of the offset (a backlog the broker held while the leader was away is late,
    # not skewed).
    offsets: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=SKEW_BATCHES))
    window: collections.deque = attrs.field(factory=collections.deque)  # (stored at, rows)


@attrs.define
class _Pending:
    """One transaction's effects on the figures, merged only once it commits."""

    figures: dict[str, _UnitFigures] = attrs.field(factory=dict)
    errors: list[dict[str, Any]] = attrs.field(factory=list)

    def unit(self, unit: str) -> _UnitFigures:
        f = self.figures.get(unit)
        if f is None:
            f = self.figures[unit] = _UnitFigures()
        return f


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        return None


class Ingest:
    def __init__(
        self,
        conn: sqlite3.Connection,
        now: Callable[[], float] = time.time,
        sinks: parsers.SinkTable = parsers.DEFAULT_SINKS,
    ) -> None:
        self.conn = conn
        self.now = now
        self.sinks = sinks
        self._insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._figures: dict[str, _UnitFigures] = {}
        self._recent_errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_ERRORS)

    # --- writing -------------------------------------------------------------------------------------------

    def apply(self, batches: Sequence[tuple[Batch, float]]) -> dict[str, dict[str, int]]:
        """Store ``(batch, leader receive time)`` pairs in one transaction; returns ``{unit: {stream: seq}}``,
        the full watermarks of every unit touched (the acks to publish once this returns)."""
        stored_at = self.now()
        pending = _Pending()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            acks = self._apply(batches, stored_at, pending)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self._merge(pending, stored_at)
        return acks

    def _apply(self, batches: Sequence[tuple[Batch, float]], stored_at: float, pending: _Pending) -> dict[str, dict[str, int]]:
        stamp = utc_iso(stored_at)
        marks: dict[str, dict[str, list[int]]] = {}  # unit -> stream -> [seq, dropped]
        moved: set[tuple[str, str]] = set()
        # Rows to insert, grouped by (unit, table, columns): one executemany each, and exact per-unit counts.
        groups: dict[tuple[str, str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        topics_of: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}  # the record topic of each row
        first_seen: dict[str, str] = {}  # experiment -> first row's timestamp
        gaps: list[tuple[Any, ...]] = []
        rows_for, sinks = parsers.rows_for, self.sinks

        for batch, received in batches:
            unit = batch.unit
            streams = marks.get(unit)
            if streams is None:
                streams = marks[unit] = self._load_marks(unit)
            fig = pending.unit(unit)
            received_iso = utc_iso(received)
            bases, dropped = batch.bases, batch.dropped
            moved_here: set[str] = set()
            newest_at: str | None = None
            fig.records += len(batch.records)

            for record in batch.records:
                stream, seq = record.stream, record.seq
                state = streams.get(stream)
                if state is None:
                    base = bases.get(stream)
                    if base is not None and seq > base:  # the unit still holds earlier ones: wait for them
                        fig.out_of_order += 1
                        continue
                    state = streams[stream] = [seq, dropped.get(stream, 0)]
                else:
                    wm = state[0]
                    if seq <= wm:
                        fig.duplicates += 1
                        continue
                    if seq != wm + 1:
                        base = bases.get(stream)
                        if base is not None and base > wm + 1 and seq >= base:
                            # [wm+1, base-1] will never come: say so, then go on from the base.
                            reason = REASON_DROPPED if dropped.get(stream, 0) > state[1] else REASON_NOT_HELD
                            gaps.append((unit, stream, wm + 1, base - 1, stamp, reason))
                            fig.gaps += 1
                            state[0] = wm = base - 1
                            moved_here.add(stream)
                        if seq != wm + 1:
                            fig.out_of_order += 1
                            continue
                    state[0] = seq
                moved_here.add(stream)
                if newest_at is None or record.at > newest_at:
                    newest_at = record.at

                # Acknowledged from here on, whether it parses or not: it never will parse better.
                try:
                    parts = record.topic.split("/", 4)
                    if len(parts) < 4 or parts[1] != unit or parts[3] != stream:
                        raise parsers.ParseError(f"{record.topic}: not a topic of unit {unit!r}'s stream {stream!r}")
                    rows = rows_for(record, received_iso, sinks)
                except parsers.ParseError as e:
                    fig.errors += 1
                    pending.errors.append({"unit": unit, "topic": record.topic, "message": str(e), "received_at": received_iso})
                    continue
                for table, row in rows:
                    key = (unit, table, tuple(row))
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = []
                        topics_of[key] = []
                    group.append(tuple(row.values()))
                    topics_of[key].append(record.topic)
                    experiment = row["experiment"]
                    if experiment not in first_seen:
                        first_seen[experiment] = row["timestamp"]

            for stream in moved_here:
                state = streams[stream]
                state[1] = dropped.get(stream, 0)  # the unit lists only streams that ever dropped
                moved.add((unit, stream))

            # Figures of the unit's latest batch.
            fig.last_received_at = received
            sent = _epoch(batch.sent_at)
            if sent is not None:
                fig.lag_sent_s = received - sent
                fig.offsets.append(received - sent)
            if newest_at is not None:
                at = _epoch(newest_at)
                if at is not None:
                    fig.lag_s = received - at

        for key, values in groups.items():
            pending.unit(key[0]).rows += self._insert(key, values, topics_of[key], pending, stamp)

        experiments = [(e, ts) for e, ts in first_seen.items() if e != topics.NO_EXPERIMENT]
        if experiments:
            self.conn.executemany(
                "INSERT OR IGNORE INTO experiments (experiment, created_at, origin) VALUES (?, ?, ?)",
                [(e, ts, ORIGIN) for e, ts in experiments],
            )
        if gaps:
            self.conn.executemany(
                "INSERT INTO ingest_gaps (pioreactor_unit, stream, first_seq, last_seq, recorded_at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                gaps,
            )
        if moved:
            self.conn.executemany(
                "INSERT INTO ingest_watermarks (pioreactor_unit, stream, seq, dropped, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (pioreactor_unit, stream) DO UPDATE SET "
                "seq = excluded.seq, dropped = excluded.dropped, updated_at = excluded.updated_at",
                [(unit, stream, *marks[unit][stream], stamp) for unit, stream in moved],
            )
        return {unit: {stream: state[0] for stream, state in streams.items()} for unit, streams in marks.items()}

    def _load_marks(self, unit: str) -> dict[str, list[int]]:
        rows = self.conn.execute(
            "SELECT stream, seq, dropped FROM ingest_watermarks WHERE pioreactor_unit = ?", (unit,)
        ).fetchall()
        return {stream: [seq, dropped] for stream, seq, dropped in rows}

    def _insert(self, key: tuple[str, str, tuple[str, ...]], values: list[tuple[Any, ...]],
                row_topics: list[str], pending: _Pending, stamp: str) -> int:
        """Insert one group; returns how many rows were new."""
        unit, table, columns = key
        sql = self._insert_sql.get((table, columns))
        if sql is None:
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" * len(columns))
            sql = self._insert_sql[(table, columns)] = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})'
        before = self.conn.total_changes
        try:
            self.conn.executemany(sql, values)
            return self.conn.total_changes - before
        except sqlite3.Error as e:
            if _is_database_trouble(e):
                raise
        # One row the database refuses (a plugin's sink writing to a table it never created, a value
        # SQLite cannot bind) must not hold back the unit's others: find it, count it, keep going.
        # Rows already stored by the failed executemany are ignored by their unique key.
        for row, topic in zip(values, row_topics):
            try:
                self.conn.execute(sql, row)
            except sqlite3.Error as e:
                if _is_database_trouble(e):
                    raise
                pending.unit(unit).errors += 1
                pending.errors.append({"unit": unit, "topic": topic, "message": f"{topic}: the database refused the row: {e}",
                                       "received_at": stamp})
        return self.conn.total_changes - before

    def _merge(self, pending: _Pending, stored_at: float) -> None:
        for unit, new in pending.figures.items():
            fig = self._figures.get(unit)
            if fig is None:
                fig = self._figures[unit] = _UnitFigures()
            fig.records += new.records
            fig.rows += new.rows
            fig.duplicates += new.duplicates
            fig.out_of_order += new.out_of_order
            fig.errors += new.errors
            fig.gaps += new.gaps
            fig.offsets.extend(new.offsets)
            for attr in ("last_received_at", "lag_s", "lag_sent_s"):
                value = getattr(new, attr)
                if value is not None:
                    setattr(fig, attr, value)
            if new.rows:
                fig.window.append((stored_at, new.rows))
        self._recent_errors.extend(pending.errors)

    # --- reading -------------------------------------------------------------------------------------------

    def watermarks(self) -> dict[str, dict[str, int]]:
        """Every unit's acknowledgement as stored (published again when the leader starts)."""
        out: dict[str, dict[str, int]] = {}
        for unit, stream, seq in self.conn.execute("SELECT pioreactor_unit, stream, seq FROM ingest_watermarks"):
            out.setdefault(unit, {})[stream] = seq
        return out

    def health(self) -> dict[str, Any]:
        """Per-unit and total figures, JSON-ready, stable keys (``pios status --json``; docs/data.md)."""
        now = self.now()
        gaps_recorded = dict(
            self.conn.execute("SELECT pioreactor_unit, COUNT(*) FROM ingest_gaps GROUP BY pioreactor_unit").fetchall()
        )
        units: dict[str, dict[str, Any]] = {}
        names = sorted(set(self._figures) | set(gaps_recorded))
        for unit in names:
            fig = self._figures.get(unit) or _UnitFigures()
            skew = min(fig.offsets) if fig.offsets else None  # offset + the least transport delay
            while fig.window and fig.window[0][0] <= now - RATE_WINDOW_S:
                fig.window.popleft()
            units[unit] = {
                "rows_per_minute": sum(n for _, n in fig.window),
                "records": fig.records,
                "rows": fig.rows,
                "duplicates": fig.duplicates,
                "out_of_order": fig.out_of_order,
                "errors": fig.errors,
                "gaps": fig.gaps,
                "gaps_recorded": gaps_recorded.get(unit, 0),
                "last_received_at": None if fig.last_received_at is None else utc_iso(fig.last_received_at),
                "lag_s": _round(fig.lag_s),
                "lag_sent_s": _round(fig.lag_sent_s),
                "skew_s": _round(skew),
                "skew_flag": skew is not None and abs(skew) > SKEW_LIMIT_S,
            }
        totals = {
            key: sum(u[key] for u in units.values())
            for key in ("rows_per_minute", "records", "rows", "duplicates", "out_of_order", "errors", "gaps", "gaps_recorded")
        }
        totals["units"] = len(units)
        totals["skew_flagged_units"] = sorted(u for u, f in units.items() if f["skew_flag"])
        return {"units": units, "totals": totals, "recent_errors": list(self._recent_errors)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _is_database_trouble(error: sqlite3.Error) -> bool:
    if not isinstance(error, sqlite3.OperationalError):
        return False
    text = str(error).lower()
    return any(word in text for word in _DATABASE_TROUBLE)
