"""The leader's ingest as a real OS process (``python -m leader.ingestor``) on the test's broker,
with its SQLite file in the test's tmp dir, and the queries the no-data-loss tests ask of it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from .waiting import wait_until


class IngestProcess:
    def __init__(self, root: Path, broker: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "leader.sqlite"
        self.health_file = root / "ingest.json"
        self.log = root / "ingest.log"
        self.broker = broker
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "IngestProcess":
        if self.health_file.exists():
            self.health_file.unlink()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leader.ingestor", "--db", str(self.db), "--host", self.broker.host,
                 "--port", str(self.broker.port), "--health", str(self.health_file)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: (self.health() or {}).get("connected"), timeout=20, message="the ingest to connect")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def health(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.health_file.read_text())
        except (OSError, ValueError):
            return None

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not os.path.exists(self.db):
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=15)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def values(self, unit: str, job: str = "record_source", setting: str = "n") -> list[int]:
        """Every stored value of a job's published setting, sorted (duplicates stay visible)."""
        rows = self.query("SELECT value FROM settings_history WHERE pioreactor_unit = ? AND job_name = ? AND setting = ?",
                          unit, job, setting)
        return sorted(int(v) for (v,) in rows)
