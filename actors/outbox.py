"""A worker's durable outbox: every record it produces, on local disk, until the leader has stored it.

The MQTT bridge appends each record here *before* sending anything, so a broker restart, a leader that
is off, a network cut or the bridge being killed cannot lose it. Records are kept per stream (the job
that produced them) with a sequence number that rises by one per record; the leader acknowledges, per
stream, the highest seq below which it holds everything, and this outbox prunes what is acknowledged.

Sending is go-back-N over a bounded window: batches go out in append order while fewer than
``window`` records are unacknowledged; after a reconnect, or when acknowledgements stop coming, the
cursor goes back to the oldest unacknowledged record and everything is resent (the leader ignores
what it already has). The outbox never grows without bound: past ``max_records`` it drops the oldest
records, counts them per stream, and says so; the leader records the gap.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed record survives the process being killed;
an OS crash or power cut may lose the last fraction of a second.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Callable

from actors.records import Record

MAX_RECORDS = 3_000_000  # ~2 weeks of a busy unit's records while its leader is unreachable
BATCH_RECORDS = 500
BATCH_BYTES = 256 * 1024
WINDOW_RECORDS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    stream  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at      TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream, seq)
);
CREATE TABLE IF NOT EXISTS streams (
    stream   TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    acked    INTEGER,
    dropped  INTEGER NOT NULL DEFAULT 0
);
"""


class Outbox:
    def __init__(self, path: str, max_records: int = MAX_RECORDS, wall: Callable[[], float] = time.time) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.max_records = max_records
        self._wall = wall
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.streams: dict[str, list[int]] = {  # stream -> [next_seq, acked or -1, dropped]
            s: [n, a if a is not None else -1, d]
            for s, n, a, d in self.db.execute("SELECT stream, next_seq, acked, dropped FROM streams")
        }
        self.count = self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        self.cursor = 0  # highest record id sent since the last rewind
        self.in_flight = 0  # records sent and not yet acknowledged
        self.appended = 0
        self.dropped_now = 0  # dropped by this process (figures for the node's status)

    # --- writing ------------------------------------------------------------------------------------

    def append(self, stream: str, topic: str, payload: str, at: str) -> Record:
        """Store one record durably and return it with its seq. Raises sqlite3.Error (disk full...)."""
        state = self.streams.get(stream)
        if state is None:
            # A new stream starts at the wall clock in microseconds, so a replaced outbox never reuses
            # a seq the leader already holds for this unit and stream.
            state = [int(self._wall() * 1_000_000), -1, 0]
        seq = state[0]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT INTO records (stream, seq, at, topic, payload) VALUES (?, ?, ?, ?, ?)",
                            (stream, seq, at, topic, payload))
            self.db.execute(
                "INSERT INTO streams (stream, next_seq, dropped) VALUES (?, ?, ?) "
                "ON CONFLICT(stream) DO UPDATE SET next_seq = excluded.next_seq",
                (stream, seq + 1, state[2]),
            )
            dropped = self._enforce_bound(self.count + 1)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        state[0] = seq + 1
        self.streams[stream] = state
        self.count += 1 - dropped
        self.appended += 1
        return Record(stream=stream, seq=seq, at=at, topic=topic, payload=payload)

    def _enforce_bound(self, count: int) -> int:
        excess = count - self.max_records
        if excess <= 0:
            return 0
        rows = self.db.execute("SELECT id, stream FROM records ORDER BY id LIMIT ?", (excess,)).fetchall()
        per_stream: dict[str, int] = {}
        for _id, stream in rows:
            per_stream[stream] = per_stream.get(stream, 0) + 1
        self.db.execute("DELETE FROM records WHERE id <= ?", (rows[-1][0],))
        for stream, n in per_stream.items():
            self.db.execute("UPDATE streams SET dropped = dropped + ? WHERE stream = ?", (n, stream))
            self.streams.setdefault(stream, [0, -1, 0])[2] += n
        if rows[-1][0] <= self.cursor:
            self.in_flight = max(0, self.in_flight - sum(1 for i, _ in rows if i <= self.cursor))
        self.dropped_now += len(rows)
        return len(rows)

    # --- sending ------------------------------------------------------------------------------------

    def next_batch(self, limit: int = BATCH_RECORDS, max_bytes: int = BATCH_BYTES, window: int = WINDOW_RECORDS) -> list[Record]:
        """The next records to send, in append order, within the in-flight window; marks them sent."""
        room = min(limit, window - self.in_flight)
        if room <= 0:
            return []
        rows = self.db.execute(
            "SELECT id, stream, seq, at, topic, payload FROM records WHERE id > ? ORDER BY id LIMIT ?", (self.cursor, room)
        ).fetchall()
        batch: list[Record] = []
        size = 0
        for id_, stream, seq, at, topic, payload in rows:
            size += len(topic) + len(payload) + 48
            if batch and size > max_bytes:
                break
            batch.append(Record(stream=stream, seq=seq, at=at, topic=topic, payload=payload))
            self.cursor = id_
        self.in_flight += len(batch)
        return batch

    def rewind(self) -> None:
        """Send again from the oldest unacknowledged record (after a reconnect or a silent leader)."""
        self.cursor = 0
        self.in_flight = 0

    def bases(self) -> dict[str, int]:
        """Per stream, the lowest seq still held (the next seq when none is held)."""
        bases = {}
        for stream, state in self.streams.items():  # one index lookup per stream, whatever the backlog
            low = self.db.execute("SELECT MIN(seq) FROM records WHERE stream = ?", (stream,)).fetchone()[0]
            bases[stream] = low if low is not None else state[0]
        return bases

    def dropped(self) -> dict[str, int]:
        return {s: state[2] for s, state in self.streams.items() if state[2]}

    # --- acknowledgements ---------------------------------------------------------------------------

    def acknowledge(self, watermarks: dict[str, int]) -> int:
        """Prune what the leader holds; returns how many records were pruned."""
        changed = {s: wm for s, wm in watermarks.items() if s in self.streams and wm > self.streams[s][1]}
        if not changed:
            return 0
        pruned = 0
        sent_pruned = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for stream, wm in changed.items():
                sent_pruned += self.db.execute(
                    "SELECT COUNT(*) FROM records WHERE stream = ? AND seq <= ? AND id <= ?", (stream, wm, self.cursor)
                ).fetchone()[0]
                pruned += self.db.execute("DELETE FROM records WHERE stream = ? AND seq <= ?", (stream, wm)).rowcount
                self.db.execute("UPDATE streams SET acked = ? WHERE stream = ?", (wm, stream))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        for stream, wm in changed.items():
            self.streams[stream][1] = wm
        self.count -= pruned
        self.in_flight = max(0, self.in_flight - sent_pruned)
        return pruned

    def acked(self) -> dict[str, int]:
        return {s: state[1] for s, state in self.streams.items() if state[1] >= 0}

    def pending(self) -> int:
        return self.count

    def close(self) -> None:
        self.db.close()
