"""Export and backup of a week-long 4-unit experiment: rows/s and peak memory.

Fills a fresh leader database as the ingest would store a 4-unit run (OD every 5 s per unit with its
filtered OD and growth rate, temperature every 2 min, dosing every 10 min, logs: the acceptance test's
data, tests/unit/test_export.py), then runs each export in its own process and reports rows/s and
the process's peak RSS growth during the export, and an online backup with its duration.

Run: .venv/bin/python bench/export_bench.py [--days 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leader import database  # noqa: E402
from leader.backup import backup  # noqa: E402
from tests.unit.test_export import simulate_experiment  # noqa: E402

PROBE = """
import json, sys, time
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
result = export(conn, "growth-7d", sys.argv[2], partition_by_unit=sys.argv[3] == "1",
                compresslevel=None if sys.argv[4] == "default" else int(sys.argv[4]))
seconds = time.monotonic() - began
after = peak_kib()
print(json.dumps({{"rows": result.rows, "seconds": seconds, "rss_before_kib": before, "rss_peak_kib": after}}))
"""


def measure(db: str, out: str, partition: bool, level: str) -> dict:
    if os.path.exists(out):
        os.remove(out)
    done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT)), db, out, "1" if partition else "0", level],
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout)
    import zipfile

    with zipfile.ZipFile(out) as zf:
        figures["csv_mb"] = sum(i.file_size for i in zf.infolist() if i.filename.endswith(".csv")) / 1e6
    figures["zip_mb"] = os.path.getsize(out) / 1e6
    return figures


@contextlib.contextmanager
def busy_writer(db: str):
    """The ingest at full speed: one log row per commit on its own connection, until the block ends."""
    commits = [0]
    stop = threading.Event()

    def run() -> None:
        w = database.connect(db)
        base = w.execute("SELECT COALESCE(MAX(seq), 0) FROM logs WHERE stream = 'bench-writer'").fetchone()[0]
        while not stop.is_set():
            w.execute("INSERT INTO logs VALUES ('growth-7d', 'pio01', '2025-03-08T00:00:00.000Z', 'm', 'app', 'INFO', 'bench',"
                      " '2025-03-08T00:00:00.000Z', 'bench-writer', ?)", (base + commits[0] + 1,))
            commits[0] += 1
        w.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while commits[0] < 10:
        time.sleep(0.01)
    try:
        yield commits
    finally:
        stop.set()
        thread.join()


def plain_backup(db: str, target: str, give_up_s: float = 20.0) -> str:
    src = database.connect(db, readonly=True)
    dst = sqlite3.connect(target)
    steps = [0]
    needed = [0]
    deadline = time.monotonic() + give_up_s

    def progress(status: int, remaining: int, total: int) -> None:
        steps[0] += 1
        needed[0] = -(-total // 256)
        if time.monotonic() > deadline:
            raise KeyboardInterrupt  # the only way to stop Connection.backup from a callback

    try:
        src.backup(dst, pages=256, progress=progress, sleep=0)
        return f"finished in {steps[0]} steps"
    except KeyboardInterrupt:
        return f"not finished after {steps[0]} steps in {give_up_s:g} s (a full copy is {needed[0]} steps; it restarts whenever the writer commits)"
    finally:
        src.close()
        dst.close()
        os.remove(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--keep", default=None, help="work in this folder and keep the files")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="export-bench-")
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "pioreactor.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    conn = database.connect(db)
    began = time.monotonic()
    simulate_experiment(conn, days=args.days)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fill = time.monotonic() - began
    rows = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
               for t in ("od_readings", "od_readings_filtered", "growth_rates", "temperature_readings", "dosing_events", "logs"))
    conn.close()
    print(f"database: {args.days:g} days x 4 units, {rows} rows, {os.path.getsize(db) / 1e6:.0f} MB, filled in {fill:.1f} s")
    print(f"{'export':<34} {'rows/s':>9} {'seconds':>8} {'CSV MB':>7} {'zip MB':>7} {'RSS before':>10} {'peak growth':>11}")
    for label, partition, level in (("one CSV per dataset", False, "default"), ("partitioned by unit", True, "default"),
                                     ("one CSV per dataset, compresslevel 1", False, "1")):
        f = measure(db, os.path.join(work, "export.zip"), partition, level)
        print(f"{label:<34} {f['rows'] / f['seconds']:>9.0f} {f['seconds']:>8.1f} {f['csv_mb']:>7.0f} {f['zip_mb']:>7.1f} "
              f"{f['rss_before_kib'] / 1024:>7.0f} MB {(f['rss_peak_kib'] - f['rss_before_kib']) / 1024:>8.1f} MB")
    target = os.path.join(work, "backup.sqlite")
    for name in (target, target + ".2"):
        if os.path.exists(name):
            os.remove(name)
    result = backup(db, target)
    print(f"backup, idle: {result.bytes / 1e6:.0f} MB in {result.seconds:.1f} s ({result.bytes / 1e6 / result.seconds:.0f} MB/s, integrity_check included)")
    with busy_writer(db) as commits:
        before = commits[0]
        result = backup(db, target + ".2")
        print(f"backup, writer committing: {result.seconds:.1f} s (integrity_check included); {commits[0] - before} commits during it")
    with busy_writer(db) as commits:
        before, began = commits[0], time.monotonic()
        print("plain Connection.backup (no held snapshot), writer committing:", plain_backup(db, os.path.join(work, "plain.sqlite")),
              f"({commits[0] - before} commits)")
    if not args.keep:
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    main()
