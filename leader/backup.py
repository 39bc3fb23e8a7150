"""An online backup of the leader's database, taken while the ingest keeps writing.

SQLite's backup API copies the database a few pages per step. Alone, it restarts from the first page
whenever another connection writes between two steps, so with a busy ingest it might never finish.
Here the source connection first opens a read transaction and keeps it for the whole copy: in WAL mode
that pins one snapshot, the steps read from it, nothing restarts, and the writer is never blocked (it
appends to the WAL; only checkpoints wait until the copy is done). The copy is therefore exactly the
database as of the moment the backup began.

The copy is written to a temporary file beside the target, checked with ``PRAGMA integrity_check``,
switched to a rollback journal (one self-contained file that opens anywhere, even read-only), and
only then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from typing import Callable

import attrs

from actors.files import output_problem
from leader import database

PAGES_PER_STEP = 256  # 1 MiB of 4 KiB pages per step: each step holds the source's lock for ~1 ms


class BackupError(RuntimeError):
    """A backup that could not be made (the message says why); no file was left at the target."""


@attrs.frozen
class BackupResult:
    path: str
    pages: int
    bytes: int
    seconds: float


def backup(
    src_path: str,
    dest_path: str,
    pages_per_step: int = PAGES_PER_STEP,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Copy the database at ``src_path`` to ``dest_path``. ``progress(pages_done, pages_total)``
    is called after every step (the writer may commit between any two)."""
    if pages_per_step < 1:
        raise BackupError(f"pages_per_step must be at least 1, got {pages_per_step}")
    target = os.path.abspath(dest_path)
    if os.path.abspath(src_path) == target:
        raise BackupError(f"{dest_path} is the database itself; write the backup elsewhere")
    problem = output_problem(dest_path, force, "pioreactor-backup.sqlite")
    if problem:
        raise BackupError(problem)
    folder = os.path.dirname(target)
    try:
        src = database.connect(src_path, readonly=True)
    except (database.DatabaseError, sqlite3.Error) as e:
        raise BackupError(str(e)) from None
    began = time.monotonic()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".partial")
    os.close(fd)
    try:
        src.isolation_level = None
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the read transaction starts here: the snapshot
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            report = (lambda status, remaining, total: progress(total - remaining, total)) if progress else None
            src.backup(dst, pages=pages_per_step, progress=report, sleep=0)
            src.execute("COMMIT")
            problems = [r[0] for r in dst.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise BackupError(f"the copy failed its integrity check ({'; '.join(problems[:3])}); the database itself may be damaged: "
                                  f"run `sqlite3 {src_path} 'PRAGMA integrity_check'`")
            dst.execute("PRAGMA journal_mode=DELETE")
            pages = dst.execute("PRAGMA page_count").fetchone()[0]
        finally:
            dst.close()
        os.replace(tmp, target)
    except BaseException as e:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        if isinstance(e, sqlite3.Error):
            raise BackupError(f"backup of {src_path} failed: {e}") from None
        raise
    finally:
        src.close()
    return BackupResult(target, pages, os.path.getsize(target), time.monotonic() - began)
