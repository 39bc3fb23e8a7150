"""Time series for the dashboard's charts, downsampled on the server to a point budget.

A 7-day experiment with readings every 5 s holds ~120k rows per unit per series; a browser on a
laptop (and the Pi that serves it) must not move all of them to draw a 1000-pixel-wide chart. Each
unit's time range is cut into ``points // 2`` equal buckets and each bucket keeps the row with its
lowest and the row with its highest value (min/max decimation): spikes, dips and steps survive, and
the points keep their real timestamps. The bucketing and the min/max selection run in SQLite over the
``(experiment, pioreactor_unit, timestamp)`` index; Python only merges at most ``points`` rows.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs


class TimeseriesError(ValueError):
    """Bad request: the message says what to send instead."""


@attrs.frozen
class Series:
    table: str
    column: str
    unit_of_measure: str
    label: str


SERIES: dict[str, Series] = {
    "od": Series("od_readings", "od_reading", "OD", "optical density (90°)"),
    "od_filtered": Series("od_readings_filtered", "normalized_od_reading", "normalised OD", "normalised OD"),
    "growth_rate": Series("growth_rates", "rate", "1/h", "implied growth rate"),
    "temperature": Series("temperature_readings", "temperature_c", "°C", "temperature"),
    "volume": Series("liquid_volumes", "liquid_volume", "mL", "liquid volume"),
    "stirring": Series("stirring_rates", "measured_rpm", "RPM", "measured stirring"),
}

MIN_POINTS = 2
MAX_POINTS = 100_000
MAX_LOOKBACK_HOURS = 24 * 366
_JULIAN_UNIX_EPOCH = 2440587.5  # julianday('1970-01-01')
_OD_PREFERRED_ANGLE = 90  # the reference's default OD signal is the 90° photodiode (channel 2)
_OD_PREFERRED_CHANNEL = 2


# -- pure helpers -----------------------------------------------------------------------------------------


def parse_utc(text: str) -> datetime:
    """``2024-01-01T00:00:00.000Z`` (or any ISO-8601 with an offset) -> aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise TimeseriesError(f"now must be a UTC ISO-8601 time like 2024-05-01T12:00:00.000Z, got {text!r:.60}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_utc(dt: datetime) -> str:
    """The database's timestamp format (ms and Z), so string comparison orders like time."""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def check_request(series: str, lookback_hours: float | None, points: int) -> Series:
    """Validate what a caller asked for; the error names what to send instead."""
    if series not in SERIES:
        raise TimeseriesError(f"unknown series {series!r}; send one of: {', '.join(SERIES)}")
    if isinstance(points, bool) or not isinstance(points, int) or not MIN_POINTS <= points <= MAX_POINTS:
        raise TimeseriesError(f"points must be a whole number from {MIN_POINTS} to {MAX_POINTS}, got {points!r:.40}")
    if lookback_hours is not None:
        if isinstance(lookback_hours, bool) or not isinstance(lookback_hours, (int, float)) or not math.isfinite(lookback_hours) \
                or not 0 < lookback_hours <= MAX_LOOKBACK_HOURS:
            raise TimeseriesError(
                f"lookback_hours must be a number of hours above 0 and at most {MAX_LOOKBACK_HOURS}, "
                f"or left out for the whole experiment; got {lookback_hours!r:.40}")
    return SERIES[series]


def pick_od_channel(channels: Sequence[tuple[int, int | None]]) -> int | None:
    """Which OD channel a chart shows: the 90° photodiode, else channel 2, else the only/lowest one."""
    if not channels:
        return None
    for channel, angle in channels:
        if angle == _OD_PREFERRED_ANGLE:
            return channel
    numbers = sorted({c for c, _ in channels})
    return _OD_PREFERRED_CHANNEL if _OD_PREFERRED_CHANNEL in numbers else numbers[0]


def merge_extremes(rows: Sequence[tuple[int, int, float]], budget: int) -> tuple[list[int], list[float]]:
    """Rows of ``(bucket, t_ms, y)`` (a bucket's min and max rows, possibly the same row twice) ->
    time-ordered ``t``/``y`` lists, duplicates dropped, at most ``budget`` points."""
    seen: set[tuple[int, float]] = set()
    points: list[tuple[int, float]] = []
    for _bucket, t, y in rows:
        if (t, y) not in seen:
            seen.add((t, y))
            points.append((t, y))
    points.sort()
    if len(points) > budget:  # two rows with the same timestamp and value in different buckets cannot
        points = points[:budget]  # happen, but a budget is a promise: never more than asked
    return [p[0] for p in points], [p[1] for p in points]


# -- queries ----------------------------------------------------------------------------------------------


def _units_with_rows(conn: sqlite3.Connection, table: str, experiment: str) -> list[str]:
    """Distinct units in the experiment by hopping along the index (a loose index scan), not a table scan."""
    rows = conn.execute(
        f"""WITH RECURSIVE u(unit) AS (
                SELECT MIN(pioreactor_unit) FROM {table} WHERE experiment = ?1
                UNION ALL
                SELECT (SELECT MIN(pioreactor_unit) FROM {table} WHERE experiment = ?1 AND pioreactor_unit > u.unit)
                FROM u WHERE u.unit IS NOT NULL)
            SELECT unit FROM u WHERE unit IS NOT NULL""",
        (experiment,),
    ).fetchall()
    return [r[0] for r in rows]


def _od_channel(conn: sqlite3.Connection, experiment: str, unit: str) -> int | None:
    # The latest few rows tell which channels the unit reads now (one row per channel per reading).
    rows = conn.execute(
        "SELECT channel, angle FROM od_readings WHERE experiment = ? AND pioreactor_unit = ? ORDER BY timestamp DESC LIMIT 16",
        (experiment, unit),
    ).fetchall()
    return pick_od_channel([(r[0], r[1]) for r in rows])


def _ms_expr() -> str:
    return f"CAST(ROUND((julianday(timestamp) - {_JULIAN_UNIX_EPOCH}) * 86400000.0) AS INTEGER)"


def _one_unit(conn: sqlite3.Connection, spec: Series, experiment: str, unit: str, start: str | None, end: str | None,
              points: int, channel: int | None) -> tuple[list[int], list[float]]:
    where = "experiment = ? AND pioreactor_unit = ?"
    args: list[Any] = [experiment, unit]
    if start is not None:
        where += " AND timestamp >= ?"
        args.append(start)
    if end is not None:
        where += " AND timestamp <= ?"
        args.append(end)
    if channel is not None:
        where += " AND channel = ?"
        args.append(channel)
    col = spec.column
    # Few rows: send them as they are (one index range read, stopped after points + 1 rows).
    raw = conn.execute(
        f"SELECT {_ms_expr()}, {col} FROM {spec.table} WHERE {where} ORDER BY timestamp LIMIT ?", (*args, points + 1)
    ).fetchall()
    if len(raw) <= points:
        return [r[0] for r in raw], [float(r[1]) for r in raw]
    first_last = conn.execute(
        f"SELECT julianday(MIN(timestamp)), julianday(MAX(timestamp)) FROM {spec.table} WHERE {where}", args
    ).fetchone()
    j0, j1 = first_last
    buckets = max(1, points // 2)
    width = (j1 - j0) / buckets or 1e-12  # in days; all rows at one instant -> one bucket
    bucket = f"MIN({buckets - 1}, CAST((julianday(timestamp) - ?) / ? AS INTEGER))"
    # SQLite's bare-column rule: with exactly one MIN() (or MAX()) aggregate, the other columns come
    # from the row that holds it, so each query returns the extreme rows themselves with their times.
    rows: list[tuple[int, int, float]] = []
    for agg in ("MIN", "MAX"):
        rows.extend(conn.execute(
            f"SELECT {bucket} AS b, {_ms_expr()}, {agg}({col}) FROM {spec.table} WHERE {where} GROUP BY b",
            (j0, width, *args),
        ).fetchall())
    t, y = merge_extremes([(int(b), int(ms), float(v)) for b, ms, v in rows], points)
    return t, y


def query(conn: sqlite3.Connection, experiment: str, series: str, lookback_hours: float | None, points: int,
          units: Sequence[str] | None = None, now: str | None = None) -> dict[str, Any]:
    """One series of one experiment, per unit, at most ``points`` points per unit.

    ``lookback_hours`` counts back from ``now`` if given, else from the newest row of the series in the
    experiment; None means the whole experiment. ``units`` limits the answer to those units (a unit with
    no rows is answered with empty lists)."""
    spec = check_request(series, lookback_hours, points)
    if not isinstance(experiment, str) or not experiment:
        raise TimeseriesError("experiment must be a non-empty experiment name (see GET /api/experiments)")
    if units is not None and (isinstance(units, str) or not all(isinstance(u, str) and u for u in units)):
        raise TimeseriesError("units must be a list of unit names, like ['pio01', 'pio02'], or left out for all units")
    end_dt = parse_utc(now) if now is not None else None
    present = _units_with_rows(conn, spec.table, experiment)
    wanted = list(dict.fromkeys(units)) if units is not None else present
    end = format_utc(end_dt) if end_dt is not None else None
    start: str | None = None
    if lookback_hours is not None:
        if end_dt is None:
            newest = None
            for unit in present:
                row = conn.execute(
                    f"SELECT MAX(timestamp) FROM {spec.table} WHERE experiment = ? AND pioreactor_unit = ?", (experiment, unit)
                ).fetchone()
                if row[0] is not None and (newest is None or row[0] > newest):
                    newest = row[0]
            anchor = parse_utc(newest) if newest is not None else None
        else:
            anchor = end_dt
        if anchor is not None:
            start = format_utc(anchor - timedelta(hours=lookback_hours))
    out: dict[str, dict[str, list[Any]]] = {}
    for unit in wanted:
        if unit not in present:
            out[unit] = {"t": [], "y": []}
            continue
        channel = _od_channel(conn, experiment, unit) if spec.table == "od_readings" else None
        t, y = _one_unit(conn, spec, experiment, unit, start, end, points, channel)
        out[unit] = {"t": t, "y": y}
    return {"series": series, "experiment": experiment, "unit_of_measure": spec.unit_of_measure, "units": out}
