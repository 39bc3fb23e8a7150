"""Export, backup and log reading on real SQLite files (leader/export.py, leader/backup.py,
leader/datasets.py).

The acceptance test fills a database the way a 4-unit experiment would (OD every 5 s per unit with
its filtered OD and growth rate, temperature every 2 min, dosing every 10 min, logs), exports it, and
checks that every CSV holds exactly the database's rows and that the export's memory does not grow
with the data (measured in a subprocess: peak RSS before and after)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import threading
import zipfile

import pytest

from actors.clock import utc_iso
from leader import database
from leader import datasets as ds
from leader import experiments as ex
from leader.backup import BackupError, backup
from leader.export import ExportError, export
from tests.support.waiting import wait_until

START = 1740787200.0  # 2025-03-01T00:00:00Z
UNITS = ("pio01", "pio02", "pio03", "pio04")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def simulate_experiment(conn: sqlite3.Connection, experiment: str = "growth-7d", units=UNITS, days: float = 7.0,
                        start: float = START, od_interval: float = 5.0, seq0: int = 0) -> None:
    """Rows as the ingest would store a real run: per unit an OD reading every `od_interval` s (with
    the filtered OD and growth rate computed from it), temperature every 2 min, a media dose and a
    waste removal every 10 min, a log line every 30 min (every tenth a warning). Units read a little
    apart in time, as real units do. A unit's seqs rise across experiments: start a later one at seq0."""
    conn.execute("INSERT INTO experiments (experiment, created_at, description) VALUES (?, ?, ?)",
                 (experiment, utc_iso(start), "simulated chemostat"))
    span = days * 86400
    for k, unit in enumerate(units):
        rng = random.Random(k)
        od, filtered, rates = [], [], []
        for i in range(int(span / od_interval)):
            t = start + 0.25 * k + i * od_interval
            ts, rx = utc_iso(t), utc_iso(t + 0.2)
            x = 0.05 * math.exp(0.3 * (((t - start) / 3600) % 12))
            od.append((experiment, unit, ts, x + rng.gauss(0, 0.002), 90, 2, 80.0, 0, rx, "od_reading", seq0 + i + 1))
            filtered.append((experiment, unit, ts, x / 0.05, rx, "growth_rate_calculating", seq0 + 2 * i + 1))
            rates.append((experiment, unit, ts, 0.3 + rng.gauss(0, 0.01), rx, "growth_rate_calculating", seq0 + 2 * i + 2))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", od)
        conn.executemany("INSERT INTO od_readings_filtered VALUES (?,?,?,?,?,?,?)", filtered)
        conn.executemany("INSERT INTO growth_rates VALUES (?,?,?,?,?,?,?)", rates)
        conn.execute("COMMIT")
        del od, filtered, rates
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO temperature_readings VALUES (?,?,?,?,?,?,?)", [
            (experiment, unit, utc_iso(start + i * 120), 30 + 0.1 * math.sin(i / 30), utc_iso(start + i * 120 + 0.2), "temperature_automation", seq0 + i + 1)
            for i in range(int(span / 120))])
        dosing = []
        for i in range(int(span / 600)):
            t = start + i * 600
            dosing.append((experiment, unit, utc_iso(t), "add_media", 0.5, "chemostat", utc_iso(t + 0.2), "dosing_events", seq0 + 2 * i + 1))
            dosing.append((experiment, unit, utc_iso(t + 2), "remove_waste", 1.0, "chemostat", utc_iso(t + 2.2), "dosing_events", seq0 + 2 * i + 2))
        conn.executemany("INSERT INTO dosing_events VALUES (?,?,?,?,?,?,?,?,?)", dosing)
        conn.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?)", [
            (experiment, unit, utc_iso(start + i * 1800), f"dosing cycle {i}: added 0.5 mL", "app",
             "WARNING" if i % 10 == 0 else "INFO", "dosing_automation", utc_iso(start + i * 1800 + 0.2), "logs", seq0 + i + 1)
            for i in range(int(span / 1800))])
        conn.execute("COMMIT")


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "pioreactor.sqlite")
    conn = database.connect(path)
    yield path, conn
    conn.close()


@pytest.fixture
def small(db):
    """Two hours of a 4-unit experiment plus another experiment's rows that must never leak in."""
    path, conn = db
    simulate_experiment(conn, days=2 / 24)
    simulate_experiment(conn, experiment="other", units=("pio01",), days=1 / 24, seq0=10**6)
    ex.set_label(conn, "growth-7d", "pio02", "control", utc_iso(START))
    return path, conn


def read_zip(path: str) -> tuple[dict, dict[str, list[dict[str, str]]]]:
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = {n: list(csv.DictReader(io.TextIOWrapper(zf.open(n), encoding="utf-8", newline=""))) for n in zf.namelist() if n.endswith(".csv")}
    return manifest, files


def db_count(conn: sqlite3.Connection, table: str, experiment: str = "growth-7d", where: str = "", params=()) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE experiment = ?{where}", (experiment, *params)).fetchone()[0]


# --- export ------------------------------------------------------------------------------------


def test_the_manifest_names_the_records_a_unit_could_never_deliver(small, tmp_path):
    path, conn = small
    conn.execute("INSERT INTO ingest_gaps VALUES ('pio03', 'od_reading', 101, 140, ?, 'dropped by the unit''s outbox bound')",
                 (utc_iso(START + 3600),))
    conn.execute("INSERT INTO ingest_gaps VALUES ('pio09', 'od_reading', 1, 2, ?, 'not in this experiment')", (utc_iso(START + 3600),))
    export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "out.zip"))
    manifest, _ = read_zip(str(tmp_path / "out.zip"))
    assert manifest["delivery_gaps"] == [{
        "pioreactor_unit": "pio03", "stream": "od_reading", "first_seq": 101, "last_seq": 140,
        "recorded_at": utc_iso(START + 3600), "reason": "dropped by the unit's outbox bound",
    }]



def test_export_writes_every_dataset_with_the_databases_rows_and_a_manifest(small, tmp_path):
    path, conn = small
    out = tmp_path / "out.zip"
    seen = []
    result = export(database.connect(path, readonly=True), "growth-7d", str(out), progress=lambda d, t: seen.append((d, t)), now="2025-03-09T00:00:00.000Z")
    manifest, files = read_zip(str(out))
    assert set(files) == {f"{d.name}.csv" for d in ds.DATASETS}
    for d in ds.DATASETS:
        expected = db_count(conn, d.table)
        assert len(files[f"{d.name}.csv"]) == expected == manifest["datasets"][d.name]["rows"] == result.datasets[d.name], d.name
        assert [c["name"] for c in manifest["datasets"][d.name]["columns"]] == [c.name for c in d.all_columns()]
    assert result.rows == manifest["rows"] == sum(len(rows) for rows in files.values()) > 4 * 1440 * 3
    assert manifest["schema_version"] == 1 and manifest["experiment"]["experiment"] == "growth-7d"
    assert manifest["created_at"] == "2025-03-09T00:00:00.000Z" and manifest["filters"]["partition_by_unit"] is False
    assert manifest["pioactors_version"] and manifest["database_schema_version"] == database.latest_version()
    od_cols = {c["name"]: c for c in manifest["datasets"]["growth_rates"]["columns"]}
    assert od_cols["rate"]["unit"] == "1/h" and od_cols["hours_since_experiment_created"]["unit"] == "h"
    assert seen[0] == (0, result.rows) and seen[-1] == (result.rows, result.rows)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert {r["experiment"] for rows in files.values() for r in rows} == {"growth-7d"}
    assert files["unit_labels.csv"] == [{"experiment": "growth-7d", "pioreactor_unit": "pio02", "label": "control", "created_at": utc_iso(START)}]


def test_rows_are_in_time_order_across_units_with_hours_since_the_experiment_was_created(small, tmp_path):
    path, _ = small
    export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "o.zip"), datasets=["od_readings"])
    _, files = read_zip(str(tmp_path / "o.zip"))
    rows = files["od_readings.csv"]
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    assert [r["pioreactor_unit"] for r in rows[:5]] == ["pio01", "pio02", "pio03", "pio04", "pio01"]
    assert list(rows[0]) == ["experiment", "pioreactor_unit", "timestamp", "hours_since_experiment_created", "od_reading", "angle",
                             "channel", "ir_led_intensity", "calibrated", "received_at", "stream", "seq"]
    # pio02's reading at 01:30:00.250 is 1.5 h and 0.25 s after the experiment was created.
    (r,) = [r for r in rows if r["pioreactor_unit"] == "pio02" and r["timestamp"] == "2025-03-01T01:30:00.250Z"]
    assert float(r["hours_since_experiment_created"]) == pytest.approx(1.5 + 0.25 / 3600, abs=1e-6)
    assert r["received_at"] == "2025-03-01T01:30:00.450Z" and r["stream"] == "od_reading" and r["seq"] == str(1080 + 1)


def test_partition_by_unit_writes_one_file_per_unit(small, tmp_path):
    path, conn = small
    export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "p.zip"), datasets=["growth_rates", "experiments", "logs"],
           partition_by_unit=True)
    manifest, files = read_zip(str(tmp_path / "p.zip"))
    assert set(files) == {f"growth_rates/{u}.csv" for u in UNITS} | {f"logs/{u}.csv" for u in UNITS} | {"experiments.csv"}
    for unit in UNITS:
        rows = files[f"growth_rates/{unit}.csv"]
        assert {r["pioreactor_unit"] for r in rows} == {unit}
        assert len(rows) == db_count(conn, "growth_rates", where=" AND pioreactor_unit = ?", params=(unit,))
    assert [f["pioreactor_unit"] for f in manifest["datasets"]["growth_rates"]["files"]] == list(UNITS)
    assert manifest["datasets"]["experiments"]["files"] == [{"path": "experiments.csv", "pioreactor_unit": None, "rows": 1}]


@pytest.mark.parametrize(("start", "end"), [
    ("2025-03-01T00:30:00Z", "2025-03-01T01:00:00Z"),
    ("2025-03-01T01:30:00+01:00", "2025-03-01T02:00:00+01:00"),  # the same half hour, written in CET
    ("2025-03-01T00:30:00.000z", "2025-03-01T01:00:00.000+00:00"),
])
def test_time_bounds_take_start_inclusive_end_exclusive_in_any_explicit_zone(small, tmp_path, start, end):
    path, conn = small
    export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "t.zip"), datasets=["od_readings", "experiments"], start=start, end=end)
    manifest, files = read_zip(str(tmp_path / "t.zip"))
    stamps = [r["timestamp"] for r in files["od_readings.csv"]]
    assert stamps[0] == "2025-03-01T00:30:00.000Z" and max(stamps) < "2025-03-01T01:00:00.000Z"
    assert len(stamps) == 4 * 360 == db_count(conn, "od_readings", where=" AND timestamp >= ? AND timestamp < ?",
                                              params=("2025-03-01T00:30:00.000Z", "2025-03-01T01:00:00.000Z"))
    assert len(files["experiments.csv"]) == 1  # bounds do not apply to the experiment itself
    assert manifest["filters"]["start"] == "2025-03-01T00:30:00.000Z" and manifest["filters"]["end"] == "2025-03-01T01:00:00.000Z"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"experiment": "nope"}, "unknown experiment 'nope'; experiments: growth-7d, other"),
    ({"datasets": ["od_readings", "ods"]}, "unknown dataset 'ods'; datasets are: od_readings, raw_od_readings"),
    ({"datasets": []}, "no dataset named"),
    ({"start": "2025-03-01T00:30:00"}, "has no time zone; add Z for UTC or an offset, e.g. 2025-03-01T00:30:00Z"),
    ({"end": "yesterday"}, "is not an ISO-8601 time"),
    ({"start": "2025-03-01T01:00:00Z", "end": "2025-03-01T00:00:00Z"}, "is not before end"),
])
def test_bad_requests_get_one_clear_error_and_write_nothing(small, tmp_path, kwargs, message):
    path, _ = small
    args = {"experiment": "growth-7d", **kwargs}
    with pytest.raises(ExportError, match=message):
        export(database.connect(path, readonly=True), out_path=str(tmp_path / "x.zip"), **args)
    assert not (tmp_path / "x.zip").exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_an_existing_file_is_not_overwritten_unless_asked(small, tmp_path):
    path, _ = small
    out = tmp_path / "out.zip"
    out.write_text("precious")
    with pytest.raises(ExportError, match="already exists.*--force"):
        export(database.connect(path, readonly=True), "growth-7d", str(out), datasets=["logs"])
    assert out.read_text() == "precious"
    export(database.connect(path, readonly=True), "growth-7d", str(out), datasets=["logs"], overwrite=True)
    assert zipfile.is_zipfile(out)


def test_a_failure_midway_leaves_no_zip_and_no_temporary_file(small, tmp_path):
    path, _ = small

    def explode(done: int, total: int) -> None:
        if done > 2000:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "x.zip"), progress=explode)
    assert sorted(os.listdir(tmp_path)) == ["pioreactor.sqlite", "pioreactor.sqlite-shm", "pioreactor.sqlite-wal"]


def test_export_reads_one_snapshot_while_the_ingest_keeps_writing(small, tmp_path):
    """Rows committed during the export are not half in: every file matches the manifest, and the writer
    is never blocked by the export's read transaction (WAL)."""
    path, conn = small
    writes = {"n": 0}
    wrote_during = threading.Event()

    def progress(done: int, total: int) -> None:
        if 0 < done < total and not wrote_during.is_set():
            # The ingest commits a new reading while the export is half-way.
            t = utc_iso(START + 1800)
            conn.execute("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         ("growth-7d", "pio01", t, 0.5, 90, 2, 80.0, 0, t, "od_reading", 10**6 + writes["n"]))
            writes["n"] += 1
            wrote_during.set()

    before = db_count(conn, "od_readings")
    export(database.connect(path, readonly=True), "growth-7d", str(tmp_path / "s.zip"), datasets=["od_readings"], progress=progress)
    manifest, files = read_zip(str(tmp_path / "s.zip"))
    assert wrote_during.is_set() and db_count(conn, "od_readings") == before + 1
    assert len(files["od_readings.csv"]) == manifest["datasets"]["od_readings"]["rows"] == before


MEMORY_PROBE = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from leader import database
from leader.export import export


def peak_kib():
    # VmHWM: this process's own peak RSS. (ru_maxrss would start at the parent's RSS: Linux carries
    # it over fork and exec, hiding any growth below the parent's size.)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


conn = database.connect(sys.argv[1], readonly=True)
before = peak_kib()
began = time.monotonic()
if sys.argv[3] == "gather":  # the control: what holding the rows in memory would cost
    held = conn.execute("SELECT * FROM od_readings").fetchall()
    result = {{"rows": len(held), "datasets": {{}}}}
else:
    r = export(conn, "growth-7d", sys.argv[2])
    result = {{"rows": r.rows, "datasets": r.datasets}}
seconds = time.monotonic() - began
after = peak_kib()
print(json.dumps({{**result, "seconds": seconds, "growth_kib": after - before}}))
"""


def run_export_measured(db_path: str, out: str, mode: str = "export") -> dict:
    """Export in a fresh process; that process's peak RSS growth during the export, in KiB."""
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(root=ROOT), db_path, out, mode],
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("days", [1, pytest.param(7, marks=pytest.mark.slow)])
def test_acceptance_a_4_unit_experiment_exports_every_row_in_bounded_memory(db, tmp_path, days):
    path, conn = db
    simulate_experiment(conn, days=days)
    out = str(tmp_path / "export.zip")
    figures = run_export_measured(path, out)
    with zipfile.ZipFile(out) as zf:
        csv_bytes = sum(i.file_size for i in zf.infolist() if i.filename.endswith(".csv"))
        for d in ds.DATASETS:
            with zf.open(f"{d.name}.csv") as f:
                lines = sum(1 for _ in f) - 1  # no field holds a newline in this data
            assert lines == db_count(conn, d.table) == figures["datasets"][d.name], d.name
    assert figures["rows"] > days * 4 * 17280 * 3
    growth_mb = figures["growth_kib"] / 1024
    # Measured: 6 MB for 1 day (26 MB of CSV), 8 MB for 7 days (187 MB of CSV). The bound does not
    # scale with the data.
    assert growth_mb < 24, f"peak RSS grew {growth_mb:.1f} MB for {csv_bytes / 1e6:.0f} MB of CSV"
    assert growth_mb * 1e6 < csv_bytes / 3, f"peak RSS grew {growth_mb:.1f} MB for {csv_bytes / 1e6:.0f} MB of CSV"
    # The probe sees growth when there is some: holding one dataset's rows would break the bound.
    control = run_export_measured(path, out, mode="gather")["growth_kib"] / 1024
    assert control > 24, f"holding od_readings grew peak RSS by only {control:.1f} MB: the probe measures nothing"


# --- datasets -----------------------------------------------------------------------------------


def test_every_dataset_is_a_table_of_the_schema_with_the_columns_it_exports(db):
    _, conn = db
    for d in ds.DATASETS:
        columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{d.table}")')}
        assert columns, d.name
        exported = {c.name for c in d.all_columns()} - {"hours_since_experiment_created"}
        assert exported <= columns, (d.name, exported - columns)
        assert all(c.description for c in d.all_columns()), d.name
    covered = {d.table for d in ds.DATASETS if d.time_series}
    assert covered == set(ex.time_series_tables(conn)), "every time-series table is exportable"


@pytest.mark.parametrize(("text", "utc"), [
    ("2025-03-01T14:00:00Z", "2025-03-01T14:00:00.000Z"),
    ("2025-03-01T14:00:00.123456Z", "2025-03-01T14:00:00.123Z"),
    ("2025-03-01T15:00:00+01:00", "2025-03-01T14:00:00.000Z"),
    ("2025-03-01 09:00-05:00", "2025-03-01T14:00:00.000Z"),
])
def test_time_bounds_become_the_databases_utc_text(text, utc):
    assert ds.parse_bound(text) == utc


# --- logs ---------------------------------------------------------------------------------------


def add_log(conn, experiment, unit, level, message):
    n = conn.execute("SELECT COUNT(*) FROM logs").fetchone()[0]
    conn.execute("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (experiment, unit, utc_iso(START + n), message, "app", level, "stirring", utc_iso(START + n), "logs", n + 1))


def test_logs_filter_by_experiment_unit_and_level_and_follow_by_rowid(db):
    _, conn = db
    for i, level in enumerate(["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"]):
        add_log(conn, "e1", "sim01" if i % 2 else "sim02", level, f"m{i}")
    add_log(conn, "e2", "sim01", "error", "other experiment, lower-case level")
    assert [r["message"] for r in ds.read_logs(conn, level="warning")] == ["m3", "m4", "m5", "other experiment, lower-case level"]
    assert [r["message"] for r in ds.read_logs(conn, experiment="e1", units=["sim01"])] == ["m1", "m3", "m5"]
    assert [r["message"] for r in ds.read_logs(conn, limit=2)] == ["m5", "other experiment, lower-case level"]
    last = ds.read_logs(conn, limit=1)[0]["rowid"]
    assert ds.read_logs(conn, after_rowid=last) == []
    add_log(conn, "e1", "sim02", "INFO", "new")
    assert [r["message"] for r in ds.read_logs(conn, after_rowid=last)] == ["new"]
    with pytest.raises(ds.DatasetError, match="unknown log level 'loud'; use one of: debug, info, notice, warning, error, critical"):
        ds.read_logs(conn, level="loud")


# --- backup -------------------------------------------------------------------------------------


def test_backup_copies_every_row_and_passes_its_integrity_check(small, tmp_path):
    path, conn = small
    result = backup(path, str(tmp_path / "copy.sqlite"))
    copy = sqlite3.connect(result.path)
    for table in ex.time_series_tables(conn) + ["experiments", "unit_labels"]:
        assert copy.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0], table
    assert copy.execute("PRAGMA user_version").fetchone()[0] == database.latest_version()
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    assert result.bytes == os.path.getsize(result.path)
    assert sorted(os.listdir(tmp_path)) == ["copy.sqlite", "pioreactor.sqlite", "pioreactor.sqlite-shm", "pioreactor.sqlite-wal"]


def test_backup_refuses_to_overwrite_without_force(small, tmp_path):
    path, _ = small
    target = tmp_path / "copy.sqlite"
    target.write_text("older backup")
    with pytest.raises(BackupError, match="already exists.*--force"):
        backup(path, str(target))
    assert target.read_text() == "older backup"
    backup(path, str(target), force=True)
    assert sqlite3.connect(target).execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 2
    with pytest.raises(BackupError, match="is the database itself"):
        backup(path, path, force=True)
    with pytest.raises(BackupError, match="no leader database"):
        backup(str(tmp_path / "missing.sqlite"), str(tmp_path / "c2.sqlite"))
    assert not (tmp_path / "c2.sqlite").exists()


def test_the_writer_keeps_committing_during_a_backup_and_the_copy_is_the_database_when_it_began(small, tmp_path):
    path, _ = small
    committed = {"n": 0}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        """The ingest: one reading per commit, as fast as it can, on its own connection."""
        w = database.connect(path)
        try:
            while not stop.is_set():
                t = utc_iso(START + 10**5 + committed["n"])
                w.execute("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                          ("growth-7d", "pio09", t, 0.1, 90, 2, 80.0, 0, t, "od_reading", committed["n"] + 1))
                committed["n"] += 1
        except BaseException as e:  # surfaced by the test below
            errors.append(e)
        finally:
            w.close()

    reader = database.connect(path, readonly=True)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_until(lambda: committed["n"] > 10, message="the writer commits")
    started = {}
    during: list[int] = []

    def progress(done: int, total: int) -> None:
        if not started:
            started["n"] = committed["n"]
        if len(during) < 3:
            # Between two steps of the copy the writer must get its commits through.
            mark = committed["n"]
            wait_until(lambda: committed["n"] > mark or errors, timeout=10, message="a commit between backup steps")
            during.append(committed["n"])

    before_backup = reader.execute("SELECT COUNT(*) FROM od_readings WHERE pioreactor_unit = 'pio09'").fetchone()[0]
    result = backup(path, str(tmp_path / "copy.sqlite"), pages_per_step=8, progress=progress)
    after_backup = reader.execute("SELECT COUNT(*) FROM od_readings WHERE pioreactor_unit = 'pio09'").fetchone()[0]
    stop.set()
    thread.join(timeout=10)
    assert not errors
    assert len(during) == 3 and during[-1] > started["n"], "the writer committed while the backup ran"
    copied = sqlite3.connect(result.path).execute("SELECT COUNT(*) FROM od_readings WHERE pioreactor_unit = 'pio09'").fetchone()[0]
    # Every row committed before the backup began is in the copy; rows committed after it are not half in.
    assert before_backup <= copied <= after_backup
    assert after_backup > copied, "rows committed during the backup came after its snapshot"
    assert sqlite3.connect(result.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
