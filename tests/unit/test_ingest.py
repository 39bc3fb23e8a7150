"""The ingest writer (leader/ingest.py) on real SQLite files: every record stored exactly once whatever
the transport does to the batches, gaps recorded honestly, and the figures pios status shows."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.clock import utc_iso
from actors.records import Batch, Record
from leader import database, parsers
from leader.ingest import RECENT_ERRORS, REASON_DROPPED, REASON_NOT_HELD, Ingest

T0 = 1_780_000_000.0  # leader clock in these tests (epoch seconds)
GR = "growth_rate_calculating"
OD = "od_reading"


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def gr_record(seq: int, unit: str = "u1", experiment: str = "exp1", at: float | None = None) -> Record:
    at_iso = utc_iso(T0 + seq if at is None else at)
    payload = json.dumps({"growth_rate": seq / 1000, "timestamp": at_iso})
    return Record(stream=GR, seq=seq, at=at_iso, topic=f"pioreactor/{unit}/{experiment}/{GR}/growth_rate", payload=payload)


def od_record(seq: int, unit: str = "u1", experiment: str = "exp1") -> Record:
    at = utc_iso(T0 + seq)
    entry = {"od": seq / 100, "angle": "90", "ir_led_intensity": 80.0, "timestamp": at, "calibrated": 0}
    payload = json.dumps({"timestamp": at, "ods": {"1": {**entry, "channel": "1"}, "2": {**entry, "channel": "2"}}})
    return Record(stream=OD, seq=seq, at=at, topic=f"pioreactor/{unit}/{experiment}/{OD}/ods", payload=payload)


def batch(records: list[Record], unit: str = "u1", sent_at: float = T0, bases: dict | None = None,
          dropped: dict | None = None) -> Batch:
    return Batch(unit=unit, sent_at=utc_iso(sent_at), records=tuple(records), bases=bases or {}, dropped=dropped or {})


def open_db(path: Path) -> sqlite3.Connection:
    return database.connect(str(path))


@pytest.fixture
def conn(tmp_path):
    c = open_db(tmp_path / "leader.sqlite")
    yield c
    c.close()


def seqs(conn: sqlite3.Connection, table: str = "growth_rates", unit: str = "u1") -> list[int]:
    return [s for (s,) in conn.execute(f"SELECT seq FROM {table} WHERE pioreactor_unit = ? ORDER BY seq", (unit,))]


def count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# --- the watermark rules ---------------------------------------------------------------------------------


def test_records_are_stored_and_acknowledged(conn):
    ingest = Ingest(conn, now=FakeClock())
    acks = ingest.apply([(batch([gr_record(1), gr_record(2), od_record(1)]), T0 + 0.1)])
    assert acks == {"u1": {GR: 2, OD: 1}}
    assert seqs(conn) == [1, 2]
    assert count(conn, "od_readings") == 2  # one row per channel
    row = conn.execute("SELECT experiment, timestamp, received_at, rate FROM growth_rates WHERE seq = 2").fetchone()
    assert tuple(row) == ("exp1", utc_iso(T0 + 2), utc_iso(T0 + 0.1), 0.002)
    assert ingest.watermarks() == {"u1": {GR: 2, OD: 1}}


def test_a_duplicate_flood_changes_nothing(conn):
    ingest = Ingest(conn, now=FakeClock())
    b = batch([gr_record(s) for s in range(1, 51)] + [od_record(s) for s in range(1, 11)])
    ingest.apply([(b, T0)])
    before = (count(conn, "growth_rates"), count(conn, "od_readings"), count(conn, "ingest_watermarks"))
    for _ in range(10):
        assert ingest.apply([(b, T0)] * 3) == {"u1": {GR: 50, OD: 10}}
    assert (count(conn, "growth_rates"), count(conn, "od_readings"), count(conn, "ingest_watermarks")) == before
    assert ingest.health()["units"]["u1"]["duplicates"] == 60 * 30


def test_a_batch_ahead_of_the_watermark_waits_for_the_resend(conn):
    ingest = Ingest(conn, now=FakeClock())
    first, second = batch([gr_record(s) for s in range(1, 6)], bases={GR: 1}), batch([gr_record(s) for s in range(6, 11)], bases={GR: 1})
    assert ingest.apply([(second, T0)]) == {"u1": {}}  # seq 6 while the unit still holds 1: 1..5 are in flight
    assert ingest.apply([(first, T0)]) == {"u1": {GR: 5}}
    assert ingest.apply([(second, T0)]) == {"u1": {GR: 10}}
    assert seqs(conn) == list(range(1, 11))
    assert count(conn, "ingest_gaps") == 0
    assert ingest.health()["units"]["u1"]["out_of_order"] == 5


def test_a_stream_starts_wherever_the_unit_starts_it(conn):
    ingest = Ingest(conn, now=FakeClock())
    assert ingest.apply([(batch([gr_record(500), gr_record(501)]), T0)]) == {"u1": {GR: 501}}
    assert ingest.apply([(batch([gr_record(499)]), T0)]) == {"u1": {GR: 501}}
    assert seqs(conn) == [500, 501]


def test_streams_and_units_are_independent(conn):
    ingest = Ingest(conn, now=FakeClock())
    acks = ingest.apply([
        (batch([gr_record(1), gr_record(2)]), T0),
        (batch([gr_record(1, unit="u2"), od_record(7, unit="u2")], unit="u2"), T0),
        (batch([gr_record(3), gr_record(5)]), T0),  # 5 is ahead for u1: ignored, u2 unaffected
    ])
    assert acks == {"u1": {GR: 3}, "u2": {GR: 1, OD: 7}}
    assert seqs(conn, unit="u1") == [1, 2, 3]
    assert seqs(conn, unit="u2") == [1]


# --- gaps ------------------------------------------------------------------------------------------------


def gaps(conn):
    return [tuple(r) for r in conn.execute("SELECT pioreactor_unit, stream, first_seq, last_seq, reason, recorded_at FROM ingest_gaps")]


def test_records_dropped_at_the_outbox_bound_are_recorded_as_a_gap(conn):
    clock = FakeClock()
    ingest = Ingest(conn, now=clock)
    ingest.apply([(batch([gr_record(s) for s in range(1, 11)], bases={GR: 1}, dropped={GR: 0}), T0)])
    clock.t = T0 + 100
    # The unit was cut off; its bound dropped 11..20 and it holds 21 onwards.
    acks = ingest.apply([(batch([gr_record(s) for s in range(21, 26)], bases={GR: 21}, dropped={GR: 10}), T0 + 100)])
    assert acks == {"u1": {GR: 25}}
    assert gaps(conn) == [("u1", GR, 11, 20, REASON_DROPPED, utc_iso(T0 + 100))]
    assert seqs(conn) == list(range(1, 11)) + list(range(21, 26))
    # replaying the same batch records nothing more
    ingest.apply([(batch([gr_record(s) for s in range(21, 26)], bases={GR: 21}, dropped={GR: 10}), T0 + 101)])
    assert len(gaps(conn)) == 1
    assert ingest.health()["units"]["u1"]["gaps"] == 1


def test_a_replaced_outbox_is_a_gap_of_its_own_kind(conn):
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(s) for s in range(1, 4)], bases={GR: 1}, dropped={GR: 2}), T0)])
    ingest.apply([(batch([gr_record(40)], bases={GR: 40}, dropped={GR: 2}), T0)])
    assert [g[:5] for g in gaps(conn)] == [("u1", GR, 4, 39, REASON_NOT_HELD)]


def test_a_gap_is_recorded_even_when_the_batch_starts_past_the_base(conn):
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(s) for s in range(1, 11)], bases={GR: 1}), T0)])
    # 11..20 are gone; 21..22 are still held but their batch was lost in transit.
    assert ingest.apply([(batch([gr_record(23), gr_record(24)], bases={GR: 21}, dropped={GR: 10}), T0)]) == {"u1": {GR: 20}}
    assert [g[2:5] for g in gaps(conn)] == [(11, 20, REASON_DROPPED)]
    assert ingest.apply([(batch([gr_record(s) for s in range(21, 25)], bases={GR: 21}, dropped={GR: 10}), T0)]) == {"u1": {GR: 24}}
    assert seqs(conn)[-4:] == [21, 22, 23, 24]
    assert len(gaps(conn)) == 1


def test_a_drop_reported_in_an_ignored_batch_still_explains_the_later_gap(conn):
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(1)], bases={GR: 1}, dropped={GR: 0}), T0)])
    ingest.apply([(batch([], bases={GR: 1}, dropped={GR: 5}), T0)])  # nothing stored: the drop is not "seen" yet
    ingest.apply([(batch([gr_record(7)], bases={GR: 7}, dropped={GR: 5}), T0)])
    assert [g[2:5] for g in gaps(conn)] == [(2, 6, REASON_DROPPED)]


# --- a leader restart -------------------------------------------------------------------------------------


def test_a_restarted_leader_goes_on_from_the_stored_watermarks(tmp_path):
    path = tmp_path / "leader.sqlite"
    first = open_db(path)
    Ingest(first, now=FakeClock()).apply([(batch([gr_record(s) for s in range(1, 6)] + [od_record(1)]), T0)])
    first.close()

    second = open_db(path)
    ingest = Ingest(second, now=FakeClock())
    assert ingest.watermarks() == {"u1": {GR: 5, OD: 1}}
    acks = ingest.apply([(batch([gr_record(s) for s in range(3, 9)] + [od_record(1), od_record(2)]), T0)])
    assert acks == {"u1": {GR: 8, OD: 2}}
    assert seqs(second) == list(range(1, 9))
    assert count(second, "od_readings") == 4
    assert ingest.health()["units"]["u1"]["duplicates"] == 4
    second.close()


def test_two_writers_on_one_file_store_each_record_once(tmp_path):
    """Two ingest processes sharing the load (shared subscriptions): the watermark is read inside the
    write transaction, so interleaved batches never store a record twice nor skip one."""
    path = tmp_path / "leader.sqlite"
    a, b = open_db(path), open_db(path)
    ia, ib = Ingest(a, now=FakeClock()), Ingest(b, now=FakeClock())
    for start in range(1, 100, 10):
        chunk = batch([gr_record(s) for s in range(start, start + 10)])
        ia.apply([(chunk, T0)])
        ib.apply([(chunk, T0)])
    assert ia.watermarks() == ib.watermarks() == {"u1": {GR: 100}}
    assert seqs(a) == list(range(1, 101))
    a.close()
    b.close()


def test_nothing_is_acknowledged_when_the_database_cannot_be_written(tmp_path):
    path = tmp_path / "leader.sqlite"
    conn = open_db(path)
    conn.execute("PRAGMA busy_timeout=50")
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(1)]), T0)])
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a long write elsewhere holds the lock
    with pytest.raises(sqlite3.OperationalError):
        ingest.apply([(batch([gr_record(2)]), T0)])
    other.execute("ROLLBACK")
    other.close()
    assert ingest.watermarks() == {"u1": {GR: 1}}
    assert ingest.apply([(batch([gr_record(2)]), T0)]) == {"u1": {GR: 2}}
    assert seqs(conn) == [1, 2]
    conn.close()


# --- bad records, experiments -----------------------------------------------------------------------------


def test_a_bad_record_is_acknowledged_counted_and_listed(conn):
    ingest = Ingest(conn, now=FakeClock())
    bad = Record(stream=GR, seq=2, at=utc_iso(T0), topic=f"pioreactor/u1/exp1/{GR}/growth_rate", payload='{"growth_rate": "x"}')
    acks = ingest.apply([(batch([gr_record(1), bad, gr_record(3)]), T0)])
    assert acks == {"u1": {GR: 3}}
    assert seqs(conn) == [1, 3]
    health = ingest.health()
    assert health["units"]["u1"]["errors"] == 1
    (error,) = health["recent_errors"]
    assert error["unit"] == "u1" and error["topic"] == bad.topic
    assert bad.topic in error["message"] and "number" in error["message"]


def test_a_record_under_another_units_name_is_refused(conn):
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(1, unit="u2")], unit="u1"), T0)])
    assert count(conn, "growth_rates") == 0
    assert "not a topic of unit 'u1'" in ingest.health()["recent_errors"][0]["message"]


def test_the_recent_errors_list_is_bounded(conn):
    ingest = Ingest(conn, now=FakeClock())
    bad = [Record(stream=GR, seq=s, at=utc_iso(T0), topic=f"pioreactor/u1/exp1/{GR}/growth_rate", payload="{")
           for s in range(1, RECENT_ERRORS + 21)]
    ingest.apply([(batch(bad), T0)])
    health = ingest.health()
    assert health["units"]["u1"]["errors"] == RECENT_ERRORS + 20
    assert len(health["recent_errors"]) == RECENT_ERRORS
    assert health["recent_errors"][-1]["topic"].endswith("growth_rate")


def test_a_row_the_database_refuses_does_not_hold_back_the_others(conn):
    sinks = parsers.SinkTable()
    sinks.add(parsers.Sink("ph_reading/ph", lambda msg: [{"timestamp": msg.at, "ph": float(msg.payload)}], "ph_readings"))
    ingest = Ingest(conn, now=FakeClock(), sinks=sinks)
    ph = Record(stream="ph_reading", seq=1, at=utc_iso(T0), topic="pioreactor/u1/exp1/ph_reading/ph", payload="7.0")
    assert ingest.apply([(batch([gr_record(1), ph]), T0)]) == {"u1": {GR: 1, "ph_reading": 1}}
    assert seqs(conn) == [1]
    health = ingest.health()
    assert health["units"]["u1"]["errors"] == 1
    assert "no such table" in health["recent_errors"][0]["message"]


def test_unknown_experiments_are_listed_from_their_first_record(conn):
    conn.execute("INSERT INTO experiments (experiment, created_at, origin) VALUES ('known', '2020-01-01T00:00:00.000Z', 'user')")
    ingest = Ingest(conn, now=FakeClock())
    state = Record(stream="stirring", seq=1, at=utc_iso(T0), topic="pioreactor/u1/$experiment/stirring/$state", payload="ready")
    ingest.apply([(batch([gr_record(5, experiment="new"), gr_record(6, experiment="new"), gr_record(7, experiment="known"), state]), T0)])
    rows = {r[0]: tuple(r) for r in conn.execute("SELECT experiment, created_at, origin FROM experiments")}
    assert rows == {"known": ("known", "2020-01-01T00:00:00.000Z", "user"), "new": ("new", utc_iso(T0 + 5), "ingest")}
    assert conn.execute("SELECT experiment FROM settings_history").fetchone()[0] == "$experiment"


# --- health --------------------------------------------------------------------------------------------------


def test_health_figures(conn):
    clock = FakeClock(T0 + 10)
    ingest = Ingest(conn, now=clock)
    # sent 0.2 s before it arrived, the newest record taken 3 s before that
    ingest.apply([(batch([gr_record(s, at=T0 + 7) for s in (1, 2)] + [od_record(1)], sent_at=T0 + 9.8), T0 + 10)])
    clock.t = T0 + 40
    ingest.apply([(batch([gr_record(3, at=T0 + 39), gr_record(3, at=T0 + 39)], sent_at=T0 + 39.9), T0 + 40)])
    u1 = ingest.health()["units"]["u1"]
    assert u1["rows_per_minute"] == 5  # 2 growth rates + 2 OD channels + 1
    assert u1["records"] == 5 and u1["rows"] == 5 and u1["duplicates"] == 1
    assert u1["last_received_at"] == utc_iso(T0 + 40)
    assert u1["lag_s"] == pytest.approx(1.0)
    assert u1["lag_sent_s"] == pytest.approx(0.1)
    assert u1["skew_s"] == pytest.approx(0.1) and u1["skew_flag"] is False
    clock.t = T0 + 80  # the first transaction is now over a minute old
    assert ingest.health()["units"]["u1"]["rows_per_minute"] == 1
    clock.t = T0 + 200
    health = ingest.health()
    assert health["units"]["u1"]["rows_per_minute"] == 0
    assert health["totals"]["rows"] == 5 and health["totals"]["units"] == 1
    json.dumps(health)  # it goes into pios status --json


def test_a_unit_whose_clock_is_off_is_flagged_but_its_data_kept(conn):
    ingest = Ingest(conn, now=FakeClock())
    ingest.apply([(batch([gr_record(1)], unit="u1", sent_at=T0 + 5.0), T0 + 0.01)])  # its clock runs 5 s ahead
    ingest.apply([(batch([gr_record(1, unit="u2")], unit="u2", sent_at=T0 - 0.3), T0)])
    health = ingest.health()
    assert health["units"]["u1"]["skew_s"] == pytest.approx(-4.99) and health["units"]["u1"]["skew_flag"] is True
    assert health["units"]["u2"]["skew_flag"] is False
    assert health["totals"]["skew_flagged_units"] == ["u1"]
    assert seqs(conn, unit="u1") == [1]


def test_a_backlog_held_by_the_broker_is_late_not_skewed(conn):
    ingest = Ingest(conn, now=FakeClock())
    # batches the broker kept for 5 minutes while the leader was away, then fresh ones
    ingest.apply([(batch([gr_record(1)], sent_at=T0 - 300), T0), (batch([gr_record(2)], sent_at=T0 - 0.05), T0)])
    u1 = ingest.health()["units"]["u1"]
    assert u1["skew_flag"] is False
    assert u1["lag_sent_s"] == pytest.approx(0.05)


# --- property: whatever the transport does, each record is stored exactly once ------------------------------


class GoBackNWorker:
    """A unit's outbox as it sends: records in append order (two streams), batches from its send
    pointer, the base of each stream = its last ack + 1 (it prunes what is acknowledged), and after a
    timeout it goes back to the first unacknowledged record."""

    def __init__(self, streams: list[str]) -> None:
        counters = {GR: 0, OD: 0}
        self.records: list[Record] = []
        for stream in streams:
            counters[stream] += 1
            self.records.append(gr_record(counters[stream]) if stream == GR else od_record(counters[stream]))
        self.totals = counters
        self.acked = {GR: 0, OD: 0}
        self.next = 0

    def unacked(self, record: Record) -> bool:
        return record.seq > self.acked[record.stream]

    def send(self, size: int) -> Batch | None:
        chosen = [r for r in self.records[self.next:self.next + size] if self.unacked(r)]
        self.next = min(len(self.records), self.next + size)
        if not chosen:
            return None
        return batch(chosen, bases={s: a + 1 for s, a in self.acked.items()})

    def timeout(self) -> None:
        self.next = next((i for i, r in enumerate(self.records) if self.unacked(r)), len(self.records))

    def ack(self, acks: dict[str, int]) -> None:
        for stream, seq in acks.items():
            assert seq >= self.acked[stream], "an acknowledgement went backwards"
            self.acked[stream] = seq

    def done(self) -> bool:
        return self.acked == self.totals


_send = st.tuples(st.just("send"), st.integers(1, 8))
_deliver = st.tuples(st.just("deliver"), st.integers(0, 50), st.booleans(), st.booleans())  # keep a copy? lose the ack?
operations = st.lists(
    # sends and deliveries dominate, as on a real link; losses, replays and timeouts now and then
    st.one_of(
        _send, _send, _send,
        _deliver, _deliver, _deliver, _deliver,
        st.tuples(st.just("lose"), st.integers(0, 50)),
        st.tuples(st.just("replay"), st.integers(0, 50)),
        st.tuples(st.just("timeout")),
    ),
    min_size=15,
    max_size=80,
)


def check_stored_exactly_once(conn: sqlite3.Connection, ingest: Ingest) -> None:
    marks = ingest.watermarks().get("u1", {})
    assert seqs(conn) == list(range(1, marks.get(GR, 0) + 1))
    od_seqs = seqs(conn, "od_readings")
    assert od_seqs == sorted(2 * list(range(1, marks.get(OD, 0) + 1)))  # two channels per record


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(streams=st.lists(st.sampled_from([GR, OD]), min_size=10, max_size=60), ops=operations, data=st.data())
def test_any_interleaving_of_duplicated_reordered_and_replayed_batches_stores_each_record_once(tmp_path, streams, ops, data):
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        conn = open_db(Path(d) / "leader.sqlite")
        ingest = Ingest(conn, now=FakeClock())
        worker = GoBackNWorker(streams)
        in_flight: list[Batch] = []
        delivered: list[Batch] = []

        def deliver(b: Batch, ack_lost: bool = False) -> None:
            acks = ingest.apply([(b, T0)])
            delivered.append(b)
            check_stored_exactly_once(conn, ingest)
            if not ack_lost:
                worker.ack(acks["u1"])

        for op in ops:
            if op[0] == "send":
                b = worker.send(op[1])
                if b is not None:
                    in_flight.append(b)
            elif op[0] == "deliver" and in_flight:
                i = op[1] % len(in_flight)
                b = in_flight[i] if op[2] else in_flight.pop(i)  # op[2]: the network duplicates it
                deliver(b, ack_lost=op[3])
            elif op[0] == "lose" and in_flight:
                in_flight.pop(op[1] % len(in_flight))
            elif op[0] == "replay" and delivered:
                deliver(delivered[op[1] % len(delivered)])
            elif op[0] == "timeout":
                worker.timeout()
        # The network settles: whatever is in flight arrives, then go-back-N until all is acknowledged.
        for i in data.draw(st.permutations(range(len(in_flight))), label="arrival order of what is in flight"):
            deliver(in_flight[i])
        for _ in range(200):
            if worker.done():
                break
            worker.timeout()
            b = worker.send(10)
            if b is not None:
                deliver(b)
        assert worker.done()
        assert ingest.watermarks()["u1"] == {s: n for s, n in worker.totals.items() if n}
        check_stored_exactly_once(conn, ingest)
        assert count(conn, "ingest_gaps") == 0  # the worker never dropped anything: no gap may appear
        rows = (count(conn, "growth_rates"), count(conn, "od_readings"))
        ingest.apply([(b, T0) for b in delivered])  # a broker replaying everything at once
        assert (count(conn, "growth_rates"), count(conn, "od_readings")) == rows
        conn.close()
