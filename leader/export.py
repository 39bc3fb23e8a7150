"""Export one experiment's data as a zip of CSV files with a manifest.

The zip holds one ``<dataset>.csv`` per dataset (or ``<dataset>/<unit>.csv`` per unit with
``partition_by_unit``) and a ``manifest.json``: what was exported, with which filters, how many rows
went into each file, and what every column means, in which unit.

Memory stays bounded whatever the experiment's size: rows are read with a cursor in batches
(``fetchmany``) and written straight into the zip entry, never gathered. Rows of one dataset come out in
time order across units by merging one cursor per unit (each walks the table's ``(experiment,
pioreactor_unit, timestamp)`` index in order), so SQLite never sorts the whole table. All of it is read
in one read transaction: counts, rows and manifest describe the same snapshot while the ingest keeps
writing (WAL: the export never blocks the writer). The zip is written to a temporary file beside the
target and renamed into place only when complete: a failed or interrupted export leaves no half zip.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import itertools
import json
import operator
import os
import sqlite3
import tempfile
import time
import zipfile
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs

from actors.files import output_problem
from leader import datasets as ds

MANIFEST_VERSION = 1
BATCH = 1000  # rows per fetchmany / writerows: 5000 cost 4x the memory (a batch per unit is held while merging) for no speed
HOURS_DIGITS = 7  # hours to 0.36 ms: finer than the timestamps' milliseconds

Progress = Callable[[int, int], None]


class ExportError(ValueError):
    """An export that cannot be made as asked (the message says what to change); nothing was written."""


@attrs.frozen
class ExportResult:
    path: str
    rows: int
    datasets: dict[str, int]
    manifest: dict[str, Any]


@attrs.frozen
class _Part:
    dataset: ds.Dataset
    units: tuple[str | None, ...]  # the units whose rows go into this file (None: the dataset has no unit)
    path: str
    rows: int


def export(
    conn: sqlite3.Connection,
    experiment: str,
    out_path: str,
    datasets: Iterable[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    partition_by_unit: bool = False,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    now: str | None = None,
    compresslevel: int | None = None,
) -> ExportResult:
    """Write ``experiment``'s ``datasets`` (all by default) to the zip ``out_path``.

    ``start`` (inclusive) and ``end`` (exclusive) bound the rows' ``timestamp``; each must name its
    zone (``Z`` or an offset). ``progress(rows_done, rows_total)`` is called as rows are written.
    """
    try:
        chosen = ds.select(datasets)
        lo = ds.parse_bound(start, "start") if start else None
        hi = ds.parse_bound(end, "end") if end else None
    except ds.DatasetError as e:
        raise ExportError(str(e)) from None
    if lo is not None and hi is not None and lo >= hi:
        raise ExportError(f"start {start} is not before end {end}; the export takes rows with start <= timestamp < end")
    target = os.path.abspath(out_path)
    problem = output_problem(out_path, overwrite, experiment + ".zip")
    if problem:
        raise ExportError(problem)
    folder = os.path.dirname(target)

    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # one snapshot for counts and rows (taken at the first read)
    try:
        exp = conn.execute("SELECT experiment, created_at, ended_at, description, origin FROM experiments WHERE experiment = ?",
                           (experiment,)).fetchone()
        if exp is None:
            known = [r[0] for r in conn.execute("SELECT experiment FROM experiments ORDER BY created_at, experiment")]
            raise ExportError(f"unknown experiment {experiment!r}; experiments: {', '.join(known) or 'none'}")
        exp_row = dict(zip(("experiment", "created_at", "ended_at", "description", "origin"), tuple(exp)))
        parts = [p for d in chosen for p in _plan(conn, d, experiment, lo, hi, partition_by_unit)]
        total = sum(p.rows for p in parts)
        if progress is not None:
            progress(0, total)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".partial")
        os.close(fd)
        try:
            written = _write_zip(conn, tmp, parts, exp_row, lo, hi, total, progress, compresslevel,
                                 manifest=lambda counts: _manifest(exp_row, chosen, parts, counts, lo, hi, partition_by_unit, now, conn))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        if began and conn.in_transaction:
            conn.execute("COMMIT")
    counts, manifest = written
    per_dataset: dict[str, int] = {}
    for part in parts:
        per_dataset[part.dataset.name] = per_dataset.get(part.dataset.name, 0) + counts[part.path]
    return ExportResult(target, sum(counts.values()), per_dataset, manifest)


def _bounds_sql(d: ds.Dataset, lo: str | None, hi: str | None) -> tuple[str, list[str]]:
    if not d.time_series:
        return "", []  # experiments and labels are not time series: time bounds do not apply
    sql, params = "", []
    if lo is not None:
        sql += " AND timestamp >= ?"
        params.append(lo)
    if hi is not None:
        sql += " AND timestamp < ?"
        params.append(hi)
    return sql, params


def _plan(conn: sqlite3.Connection, d: ds.Dataset, experiment: str, lo: str | None, hi: str | None, partition: bool) -> list[_Part]:
    """The files of one dataset, with the rows each will hold (counted in the export's snapshot)."""
    bounds, params = _bounds_sql(d, lo, hi)
    if not d.has_unit:
        n = conn.execute(f'SELECT COUNT(*) FROM "{d.table}" WHERE experiment = ?{bounds}', (experiment, *params)).fetchone()[0]
        return [_Part(d, (None,), f"{d.name}.csv", n)]
    per_unit = conn.execute(
        f'SELECT pioreactor_unit, COUNT(*) FROM "{d.table}" WHERE experiment = ?{bounds} GROUP BY pioreactor_unit ORDER BY pioreactor_unit',
        (experiment, *params),
    ).fetchall()
    if partition:
        return [_Part(d, (unit,), f"{d.name}/{unit}.csv", n) for unit, n in per_unit]
    return [_Part(d, tuple(u for u, _ in per_unit), f"{d.name}.csv", sum(n for _, n in per_unit))]


def _select_sql(d: ds.Dataset, bounds: str) -> str:
    names = [c.name for c in d.all_columns()]
    if d.time_series:
        # Computed by SQLite (julianday reads the Z timestamps): no per-row parsing in Python.
        names[names.index("hours_since_experiment_created")] = f"round((julianday(timestamp) - julianday(?)) * 24.0, {HOURS_DIGITS})"
    where = "experiment = ?" + (" AND pioreactor_unit = ?" if d.has_unit else "") + bounds
    order = ", ".join((*d.order_by, "rowid"))
    return f'SELECT {", ".join(names)} FROM "{d.table}" WHERE {where} ORDER BY {order}'


def _rows(conn: sqlite3.Connection, d: ds.Dataset, experiment: str, unit: str | None, created_at: str, lo: str | None, hi: str | None) -> Iterator[tuple[Any, ...]]:
    bounds, bparams = _bounds_sql(d, lo, hi)
    params: list[Any] = [created_at] if d.time_series else []
    params.append(experiment)
    if d.has_unit:
        params.append(unit)
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: the csv writer takes them as they are
    cur.execute(_select_sql(d, bounds), (*params, *bparams))
    try:
        while True:
            batch = cur.fetchmany(BATCH)
            if not batch:
                return
            yield from batch
    finally:
        cur.close()


def _merged(conn: sqlite3.Connection, part: _Part, experiment: str, created_at: str, lo: str | None, hi: str | None) -> Iterator[tuple[Any, ...]]:
    streams = [_rows(conn, part.dataset, experiment, u, created_at, lo, hi) for u in part.units]
    if len(streams) == 1:
        return streams[0]
    # Each unit's rows come in order; merging keeps memory at one batch per unit (ties: unit order).
    key = operator.itemgetter([c.name for c in part.dataset.all_columns()].index(part.dataset.order_by[0]))
    return heapq.merge(*streams, key=key)


def _write_zip(
    conn: sqlite3.Connection,
    tmp: str,
    parts: Sequence[_Part],
    exp: dict[str, Any],
    lo: str | None,
    hi: str | None,
    total: int,
    progress: Progress | None,
    compresslevel: int | None,
    manifest: Callable[[dict[str, int]], dict[str, Any]],
) -> tuple[dict[str, int], dict[str, Any]]:
    done = 0
    counts: dict[str, int] = {}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel, allowZip64=True) as zf:
        for part in parts:
            rows = _merged(conn, part, exp["experiment"], exp["created_at"], lo, hi)
            n = 0
            # force_zip64: the entry's size is not known up front and may pass 2 GiB.
            with zf.open(_entry(part.path, compresslevel), "w", force_zip64=True) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                writer = csv.writer(text, lineterminator="\n")
                writer.writerow([c.name for c in part.dataset.all_columns()])
                while True:
                    chunk = list(itertools.islice(rows, BATCH))
                    if not chunk:
                        break
                    writer.writerows(chunk)
                    n += len(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            counts[part.path] = n
        content = manifest(counts)
        zf.writestr(_entry("manifest.json", compresslevel), json.dumps(content, indent=2) + "\n")
    return counts, content


def _entry(name: str, compresslevel: int | None) -> zipfile.ZipInfo:
    """A deflated entry dated now (an entry opened by name alone is dated 1980-01-01)."""
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = compresslevel  # type: ignore[attr-defined]  # what ZipFile.open(name) sets
    return info


def _manifest(
    exp: dict[str, Any],
    chosen: Sequence[ds.Dataset],
    parts: Sequence[_Part],
    counts: dict[str, int],
    lo: str | None,
    hi: str | None,
    partition: bool,
    now: str | None,
    conn: sqlite3.Connection,
) -> dict[str, Any]:
    import actors
    from actors.clock import utc_iso

    out: dict[str, Any] = {
        "schema_version": MANIFEST_VERSION,
        "pioactors_version": actors.__version__,
        "database_schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "created_at": now or utc_iso(time.time()),
        "experiment": exp,
        "filters": {
            "experiment": exp["experiment"],
            "datasets": [d.name for d in chosen],
            "start": lo,
            "end": hi,
            "time_bounds": "start <= timestamp < end (UTC); not applied to experiments and unit_labels",
            "partition_by_unit": partition,
        },
        "rows": sum(counts.values()),
        "datasets": {},
    }
    for d in chosen:
        files = [
            {"path": p.path, "pioreactor_unit": p.units[0] if partition and d.has_unit else None, "rows": counts[p.path]}
            for p in parts if p.dataset is d
        ]
        out["datasets"][d.name] = {
            "display_name": d.display_name,
            "description": d.description,
            "table": d.table,
            "rows": sum(f["rows"] for f in files),
            "files": files,
            "columns": [{"name": c.name, "description": c.description, "unit": c.unit} for c in d.all_columns()],
        }
    out["delivery_gaps"] = _delivery_gaps(conn, exp, parts)
    return out


def _delivery_gaps(conn: sqlite3.Connection, exp: dict[str, Any], parts: Sequence[_Part]) -> list[dict[str, Any]]:
    """Records the exported units could never deliver during the experiment (``ingest_gaps``): a
    scientist reading the export must learn of a hole in the data from the export itself."""
    units = sorted({u for p in parts for u in p.units if u is not None})
    if not units:
        return []
    marks = ",".join("?" * len(units))
    rows = conn.execute(
        f"SELECT pioreactor_unit, stream, first_seq, last_seq, recorded_at, reason FROM ingest_gaps "
        f"WHERE pioreactor_unit IN ({marks}) AND recorded_at >= ? AND (? IS NULL OR recorded_at <= ?) ORDER BY recorded_at",
        (*units, exp["created_at"], exp.get("ended_at"), exp.get("ended_at")),
    ).fetchall()
    keys = ("pioreactor_unit", "stream", "first_seq", "last_seq", "recorded_at", "reason")
    return [dict(zip(keys, tuple(r))) for r in rows]
