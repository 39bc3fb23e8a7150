"""How fast the leader's ingest writer stores unit records, and what they cost on disk.

Why: a leader carries every unit's readings, and after an outage a unit resends its whole outbox (a
30-minute outage at a few records a second is thousands of records per unit, many of them already
stored). Three figures bound that:

1. fresh ingest: records never seen, in batches as units send them (500 records per batch), several
   batches per transaction as the ingest service groups them (``--per-tx``);
2. replay: the same batches again, all duplicates (what a go-back-N resend after a lost ack costs);
3. the database size per 100k rows (WAL checkpointed), with the schema's indexes.

The records are a unit's real mix (the jobs' own payload shapes), per 5 s OD cycle: ``od_reading/ods``
(one row), ``od_reading/od2`` (no row: a copy of ``ods``), ``growth_rate`` and ``od_filtered``,
``stirring/measured_rpm``; every 12th cycle a ``temperature``; every 20th a dosing event, an automation
event, a log line and a setting. Units are interleaved, ``--units`` of them.

Run: ``.venv/bin/python bench/ingest_bench.py [--records 200000] [--batch 500] [--per-tx 20] [--units 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from actors.clock import utc_iso  # noqa: E402
from actors.records import Batch, Record  # noqa: E402
from leader import database  # noqa: E402
from leader.ingest import Ingest  # noqa: E402

T0 = 1_780_000_000.0
ROW_TABLES = ("od_readings", "od_readings_filtered", "growth_rates", "temperature_readings", "stirring_rates",
              "dosing_events", "automation_events", "logs", "settings_history")


class UnitSource:
    """One unit's outbox: records in append order with per-stream seqs."""

    def __init__(self, unit: str, experiment: str = "bench") -> None:
        self.unit, self.experiment = unit, experiment
        self.seqs: dict[str, int] = {}
        self.cycle = 0

    def _record(self, job: str, attr: str, payload: object, at: float) -> Record:
        seq = self.seqs[job] = self.seqs.get(job, 0) + 1
        topic = f"pioreactor/{self.unit}/{self.experiment}/{job}" + (f"/{attr}" if attr else "")
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        return Record(stream=job, seq=seq, at=utc_iso(at), topic=topic, payload=text)

    def next_cycle(self) -> list[Record]:
        self.cycle += 1
        at = T0 + 5 * self.cycle
        ts = utc_iso(at)
        od = 0.05 + 0.0001 * self.cycle
        reading = {"od": od, "angle": "90", "channel": "2", "ir_led_intensity": 80.0, "timestamp": ts, "calibrated": 0}
        out = [
            self._record("od_reading", "ods", {"timestamp": ts, "ods": {"2": reading}}, at),
            self._record("od_reading", "od2", reading, at),
            self._record("growth_rate_calculating", "growth_rate", {"growth_rate": 0.21, "timestamp": ts}, at),
            self._record("growth_rate_calculating", "od_filtered", {"od_filtered": od * 20, "timestamp": ts}, at),
            self._record("stirring", "measured_rpm", {"measured_rpm": 498.7, "timestamp": ts}, at),
        ]
        if self.cycle % 12 == 0:
            out.append(self._record("temperature_automation", "temperature", {"temperature": 30.01, "timestamp": ts}, at))
        if self.cycle % 20 == 0:
            out += [
                self._record("dosing_events", "", {"volume_change": 0.5, "event": "add_media", "source_of_event": "turbidostat", "timestamp": ts}, at),
                self._record("dosing_automation", "latest_event", {"event_name": "DilutionEvent", "message": "exchanged 0.5 ml", "data": {"volume": 0.5}}, at),
                self._record("logs", "app/info", {"message": "DilutionEvent: exchanged 0.5 ml", "level": "INFO", "task": "dosing_automation", "source": "app", "timestamp": ts}, at),
                self._record("dosing_automation", "target_od", "1.5", at),
            ]
        return out


def make_batches(total: int, size: int, units: int) -> list[Batch]:
    sources = [UnitSource(f"bench{i:02d}") for i in range(units)]
    pending: dict[str, list[Record]] = {s.unit: [] for s in sources}
    batches: list[Batch] = []
    made = 0
    while made < total:
        for source in sources:
            for record in source.next_cycle():
                if made >= total:
                    break
                pending[source.unit].append(record)
                made += 1
                if len(pending[source.unit]) == size:
                    batches.append(Batch(unit=source.unit, sent_at=utc_iso(T0), records=tuple(pending[source.unit])))
                    pending[source.unit] = []
    batches += [Batch(unit=u, sent_at=utc_iso(T0), records=tuple(rs)) for u, rs in pending.items() if rs]
    return batches


def run(batches: list[Batch], ingest: Ingest, per_tx: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(batches), per_tx):
        ingest.apply([(b, T0 + 1) for b in batches[i:i + per_tx]])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="records per batch (a unit's outbox batch)")
    parser.add_argument("--per-tx", type=int, default=20, help="batches per transaction")
    parser.add_argument("--units", type=int, default=8)
    args = parser.parse_args()

    batches = make_batches(args.records, args.batch, args.units)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "leader.sqlite")
        conn = database.connect(path)
        ingest = Ingest(conn)
        fresh = run(batches, ingest, args.per_tx)
        rows = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ROW_TABLES)
        replay = run(batches, ingest, args.per_tx)
        after_replay = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ROW_TABLES)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(path)
        health = ingest.health()["totals"]
        conn.close()

    records = args.records
    print(f"{records} records ({len(batches)} batches of up to {args.batch}, {args.per_tx} per transaction, "
          f"{args.units} units) -> {rows} rows")
    print(f"fresh ingest : {fresh:6.2f} s  {records / fresh:9,.0f} records/s  {rows / fresh:9,.0f} rows/s")
    print(f"replay (dups): {replay:6.2f} s  {records / replay:9,.0f} records/s  ({replay / fresh:.1%} of the fresh time)")
    print(f"rows after replay: {after_replay} (unchanged: {after_replay == rows}); duplicates counted: {health['duplicates']}")
    print(f"database: {size / 1e6:.1f} MB, {size / rows * 100_000 / 1e6:.1f} MB per 100k rows")


if __name__ == "__main__":
    main()
