"""The leader's SQLite database: where it lives, how it is opened, and its versioned migrations.

The schema is in ``leader/migrations/NNNN_<what>.sql``, applied in order, each in one transaction,
and recorded in ``PRAGMA user_version``: opening a database made by an older version brings it up to
date; opening one made by a newer version is refused (an older leader must not write a schema it does
not know). Everything that reads or writes the database opens it here, so every connection has the
same pragmas.
"""

from __future__ import annotations

import os
import re
import sqlite3
from importlib import resources

FILE_NAME = "pioreactor.sqlite"
BUSY_TIMEOUT_MS = 15000
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class DatabaseError(RuntimeError):
    pass


def default_path(leader_dir: str) -> str:
    return os.path.join(leader_dir, FILE_NAME)


def migrations() -> list[tuple[int, str, str]]:
    """``(version, file name, sql)`` of every migration shipped with this package, in order."""
    found = []
    for entry in resources.files("leader").joinpath("migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise DatabaseError(f"migrations must be numbered 0001, 0002, ... without gaps; found {versions}")
    return found


def latest_version() -> int:
    return len(migrations())


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the leader's pragmas. Writers also get the schema brought up to date."""
    if readonly:
        if not os.path.exists(path):
            raise DatabaseError(f"no leader database at {path}; start the leader first (pios leader start)")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None)
        # WAL: readers (export, dashboard, backup) never block the ingest writer, nor it them.
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives any process crash; only an OS crash or power cut can lose the last
        # commits, and those records are still in the workers' outboxes until acknowledged.
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.row_factory = sqlite3.Row
    if not readonly:
        migrate(conn)
    else:
        _check_version(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks; returns the version it is at afterwards."""
    current = _check_version(conn)
    for version, name, sql in migrations():
        if version <= current:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise DatabaseError(f"migration {name} failed: {e}") from None
        current = version
    return current


def _check_version(conn: sqlite3.Connection) -> int:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > latest_version():
        raise DatabaseError(
            f"the database is at schema version {current}, newer than this pioactors knows "
            f"({latest_version()}); upgrade pioactors on the leader"
        )
    return current


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (our migrations hold no ';' inside literals or triggers)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
