"""Experiments in the leader's database: create, list, assign units, label them, end, delete.

Plain functions over a ``sqlite3`` connection opened by :func:`leader.database.connect`. Every write
runs in one ``BEGIN IMMEDIATE`` transaction, and every check happens before the first write, so bad
input raises :class:`ExperimentError` (one message saying what is wrong and what to write instead)
and leaves the database as it was. Times (``now``) are passed in, UTC ISO text (actors.clock.utc_iso).

A unit works for one experiment at a time: assigning it elsewhere moves it, and
``unit_assignments_history`` keeps when it joined and left each experiment.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Any, Iterator, Sequence

# The unit rule of topology.yaml (a unit name is an MQTT topic level and a host name).
_UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_LABEL = 64


class ExperimentError(ValueError):
    """Input the experiments cannot take; nothing was changed."""


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; any exception rolls all of it back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_name(name: str) -> None:
    """The experiment name rule of topology.yaml: it becomes an MQTT topic level on every unit."""
    from actors.topology import _EXPERIMENT_NAME  # one rule for both places

    if not isinstance(name, str) or not _EXPERIMENT_NAME.match(name):
        raise ExperimentError(
            f"{name!r} is not a usable experiment name; use letters, digits, '_', '-' and '.', "
            f"starting with a letter or digit (e.g. growth_2025-01)"
        )


def _check_units(units: Sequence[str]) -> list[str]:
    if not units:
        raise ExperimentError("no unit named; name one or more units, e.g. --units sim01,sim02")
    seen: list[str] = []
    for unit in units:
        if not isinstance(unit, str) or not _UNIT_NAME.match(unit):
            raise ExperimentError(f"{unit!r} is not a unit name; use letters, digits, '-' and '_', starting with a letter or digit (e.g. sim01)")
        if unit in seen:
            raise ExperimentError(f"{unit} is named twice; name each unit once")
        seen.append(unit)
    return seen


def names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT experiment FROM experiments ORDER BY created_at, experiment")]


def _known(names_: list[str]) -> str:
    return ", ".join(names_) if names_ else "none yet (pios experiments create NAME)"


def get(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    """The experiment's row; ExperimentError naming the existing ones if there is none."""
    row = conn.execute("SELECT experiment, created_at, ended_at, description, origin FROM experiments WHERE experiment = ?", (name,)).fetchone()
    if row is None:
        raise ExperimentError(f"unknown experiment {name!r}; experiments: {_known(names(conn))}")
    return dict(zip(("experiment", "created_at", "ended_at", "description", "origin"), tuple(row)))


def create(conn: sqlite3.Connection, name: str, description: str = "", now: str = "", origin: str = "user") -> dict[str, Any]:
    check_name(name)
    if not now:
        raise ExperimentError("create needs the creation time (UTC ISO)")
    if "\n" in description or "\r" in description:
        raise ExperimentError("the description must be one line; join its lines with spaces")
    with _write(conn):
        row = conn.execute("SELECT created_at FROM experiments WHERE experiment = ?", (name,)).fetchone()
        if row is not None:
            raise ExperimentError(f"experiment {name!r} already exists (created {row[0]}); choose another name, e.g. {name}-2")
        conn.execute("INSERT INTO experiments (experiment, created_at, description, origin) VALUES (?, ?, ?, ?)",
                     (name, now, description, origin))
    return get(conn, name)


def time_series_tables(conn: sqlite3.Connection) -> list[str]:
    """Every table holding rows of an experiment, read from the schema itself so a table a later
    migration adds is covered by delete without anyone remembering to list it here."""
    out = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"):
        cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
        if {"experiment", "pioreactor_unit", "timestamp", "stream", "seq"} <= cols:
            out.append(table)
    return out


def row_counts(conn: sqlite3.Connection, name: str) -> dict[str, int]:
    """Rows of the experiment per time-series table (each count walks the (experiment, ...) index)."""
    return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}" WHERE experiment = ?', (name,)).fetchone()[0] for t in time_series_tables(conn)}


def list_experiments(conn: sqlite3.Connection, counts: bool = False) -> list[dict[str, Any]]:
    """Every experiment, oldest first: created_at, ended_at, description, origin, the units assigned
    now, their labels, and (with ``counts``) rows per time-series table."""
    assigned: dict[str, list[str]] = {}
    for unit, exp in conn.execute("SELECT pioreactor_unit, experiment FROM unit_assignments ORDER BY pioreactor_unit"):
        assigned.setdefault(exp, []).append(unit)
    labels: dict[str, dict[str, str]] = {}
    for exp, unit, label in conn.execute("SELECT experiment, pioreactor_unit, label FROM unit_labels ORDER BY pioreactor_unit"):
        labels.setdefault(exp, {})[unit] = label
    out = []
    for row in conn.execute("SELECT experiment, created_at, ended_at, description, origin FROM experiments ORDER BY created_at, experiment").fetchall():
        item = dict(zip(("experiment", "created_at", "ended_at", "description", "origin"), tuple(row)))
        item["units"] = assigned.get(item["experiment"], [])
        item["labels"] = labels.get(item["experiment"], {})
        if counts:
            item["rows"] = row_counts(conn, item["experiment"])
        out.append(item)
    return out


def assignments(conn: sqlite3.Connection) -> dict[str, str]:
    """unit -> the experiment it works for now."""
    return dict(conn.execute("SELECT pioreactor_unit, experiment FROM unit_assignments ORDER BY pioreactor_unit").fetchall())


def assign(conn: sqlite3.Connection, experiment: str, units: Sequence[str], now: str) -> list[dict[str, Any]]:
    """Make each unit work for ``experiment``; a unit in another experiment moves (its history row
    there is closed). Returns ``{unit, from, to}`` per unit that moved (none for one already there)."""
    exp = get(conn, experiment)
    if exp["ended_at"] is not None:
        raise ExperimentError(f"experiment {experiment!r} ended at {exp['ended_at']}; assign units to a running experiment (pios experiments create NAME)")
    wanted = _check_units(units)
    moves = []
    with _write(conn):
        current = assignments(conn)
        for unit in wanted:
            before = current.get(unit)
            if before == experiment:
                continue
            if before is not None:
                _close_history(conn, unit, before, now)
            conn.execute("INSERT INTO unit_assignments (pioreactor_unit, experiment, assigned_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (pioreactor_unit) DO UPDATE SET experiment = excluded.experiment, assigned_at = excluded.assigned_at",
                         (unit, experiment, now))
            conn.execute("INSERT INTO unit_assignments_history (pioreactor_unit, experiment, assigned_at) VALUES (?, ?, ?)", (unit, experiment, now))
            moves.append({"unit": unit, "from": before, "to": experiment})
    return moves


def _close_history(conn: sqlite3.Connection, unit: str, experiment: str, now: str) -> None:
    conn.execute("UPDATE unit_assignments_history SET unassigned_at = ? WHERE pioreactor_unit = ? AND experiment = ? AND unassigned_at IS NULL",
                 (now, unit, experiment))


def unassign(conn: sqlite3.Connection, experiment: str, units: Sequence[str], now: str) -> list[str]:
    """Take units out of ``experiment`` (they then work for none). Every unit must be in it."""
    get(conn, experiment)
    wanted = _check_units(units)
    current = assignments(conn)
    strangers = [u for u in wanted if current.get(u) != experiment]
    if strangers:
        members = sorted(u for u, e in current.items() if e == experiment)
        raise ExperimentError(f"{', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'} not in {experiment!r}; "
                              f"its units are: {', '.join(members) or 'none'}")
    with _write(conn):
        for unit in wanted:
            conn.execute("DELETE FROM unit_assignments WHERE pioreactor_unit = ?", (unit,))
            _close_history(conn, unit, experiment, now)
    return wanted


def history(conn: sqlite3.Connection, experiment: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT pioreactor_unit, experiment, assigned_at, unassigned_at FROM unit_assignments_history"
    params: tuple[Any, ...] = ()
    if experiment is not None:
        sql += " WHERE experiment = ?"
        params = (experiment,)
    rows = conn.execute(sql + " ORDER BY rowid", params).fetchall()
    return [dict(zip(("unit", "experiment", "assigned_at", "unassigned_at"), tuple(r))) for r in rows]


def end(conn: sqlite3.Connection, name: str, now: str) -> list[str]:
    """Mark the experiment ended and take its units out of it; returns those units."""
    exp = get(conn, name)
    if exp["ended_at"] is not None:
        raise ExperimentError(f"experiment {name!r} already ended at {exp['ended_at']}")
    with _write(conn):
        units = [r[0] for r in conn.execute("SELECT pioreactor_unit FROM unit_assignments WHERE experiment = ? ORDER BY pioreactor_unit", (name,))]
        for unit in units:
            _close_history(conn, unit, name, now)
        conn.execute("DELETE FROM unit_assignments WHERE experiment = ?", (name,))
        conn.execute("UPDATE experiments SET ended_at = ? WHERE experiment = ?", (now, name))
    return units


def delete(conn: sqlite3.Connection, name: str) -> dict[str, int]:
    """Delete the experiment and every row of it, in one transaction. Returns rows deleted per table
    (time series, labels, assignments and their history)."""
    get(conn, name)
    tables = [*time_series_tables(conn), "unit_labels", "unit_assignments", "unit_assignments_history"]
    deleted: dict[str, int] = {}
    with _write(conn):
        for table in tables:
            deleted[table] = conn.execute(f'DELETE FROM "{table}" WHERE experiment = ?', (name,)).rowcount
        conn.execute("DELETE FROM experiments WHERE experiment = ?", (name,))
    return deleted


def set_label(conn: sqlite3.Connection, experiment: str, unit: str, label: str, now: str) -> None:
    """Give ``unit`` a label within ``experiment`` (replacing its previous one). Labels are unique
    within an experiment."""
    get(conn, experiment)
    _check_units([unit])
    text = label.strip() if isinstance(label, str) else ""
    if not text or "\n" in text or len(text) > MAX_LABEL:
        raise ExperimentError(f"a label is one line of 1 to {MAX_LABEL} characters, e.g. 'control' or 'high dilution'; got {label!r}")
    holder = conn.execute("SELECT pioreactor_unit FROM unit_labels WHERE experiment = ? AND label = ?", (experiment, text)).fetchone()
    if holder is not None and holder[0] != unit:
        raise ExperimentError(f"label {text!r} is already {holder[0]}'s in {experiment!r}; labels are unique within an experiment, choose another")
    with _write(conn):
        conn.execute("INSERT INTO unit_labels (experiment, pioreactor_unit, label, created_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (experiment, pioreactor_unit) DO UPDATE SET label = excluded.label, created_at = excluded.created_at",
                     (experiment, unit, text, now))


def get_label(conn: sqlite3.Connection, experiment: str, unit: str) -> str | None:
    row = conn.execute("SELECT label FROM unit_labels WHERE experiment = ? AND pioreactor_unit = ?", (experiment, unit)).fetchone()
    return row[0] if row else None


def labels(conn: sqlite3.Connection, experiment: str) -> dict[str, str]:
    get(conn, experiment)
    return dict(conn.execute("SELECT pioreactor_unit, label FROM unit_labels WHERE experiment = ? ORDER BY pioreactor_unit", (experiment,)).fetchall())


def remove_label(conn: sqlite3.Connection, experiment: str, unit: str) -> bool:
    get(conn, experiment)
    with _write(conn):
        return conn.execute("DELETE FROM unit_labels WHERE experiment = ? AND pioreactor_unit = ?", (experiment, unit)).rowcount > 0


def sync_topology(conn: sqlite3.Connection, topology: Any, now: str) -> list[str]:
    """Make the database know the topology's experiments and who works for them: create the ones it
    lacks (origin ``topology``) and assign their units. Never deletes or ends anything: data outlives
    a topology edit. Returns one line per change, for the leader's log."""
    changes = []
    known = set(names(conn))
    for name, exp in sorted(topology.experiments.items()):
        if name not in known:
            create(conn, name, getattr(exp, "description", "") or "", now=now, origin="topology")
            changes.append(f"experiment {name} created from the topology")
        if get(conn, name)["ended_at"] is not None:
            if exp.units:
                changes.append(f"experiment {name} has ended; its units in the topology were not assigned to it")
            continue
        for move in assign(conn, name, list(exp.units), now) if exp.units else []:
            changes.append(f"{move['unit']} now works for {name}" + (f" (was {move['from']})" if move["from"] else ""))
    return changes
