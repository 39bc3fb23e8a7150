"""The exportable datasets, as data: what each one is, where its rows come from, what its columns mean.

Names are the reference system's dataset and CSV names, so a scientist's analysis scripts find the
same files and columns. Every time-series dataset exports, in this order:

* ``experiment``, ``pioreactor_unit``, ``timestamp`` (the worker's UTC time of the reading, ISO-8601
  with milliseconds and ``Z``) and ``hours_since_experiment_created``;
* its own columns;
* ``received_at``, ``stream``, ``seq``: when the leader stored the row and which outbox record it came
  from. Kept on purpose: they let anyone audit delivery (a late ``received_at`` is a unit that was
  offline; a hole in ``seq`` within a stream is a record that never arrived, see ``ingest_gaps``).

``experiments`` and ``unit_labels`` are not time series: they have no ``hours_since_experiment_created``
and no delivery columns, the time bounds of an export do not apply to them, and ``experiments`` has no
unit (it is never partitioned).

This module is also where the ``logs`` table is read for ``pios logs``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Iterable, Sequence

import attrs


class DatasetError(ValueError):
    """A dataset name, time bound or log filter that cannot be used (the message says what to send)."""


@attrs.frozen
class Column:
    name: str
    description: str
    unit: str | None = None


@attrs.frozen
class Dataset:
    name: str
    display_name: str
    description: str
    table: str
    columns: tuple[Column, ...]  # the dataset's own columns (the common ones are added around them)
    time_series: bool = True  # has timestamp, hours_since_experiment_created and the delivery columns
    has_unit: bool = True
    order_by: tuple[str, ...] = ("timestamp",)

    def all_columns(self) -> tuple[Column, ...]:
        """Every exported column, in CSV order."""
        if not self.time_series:
            return self.columns
        return (*_LEADING, *self.columns, *_DELIVERY)


_LEADING = (
    Column("experiment", "the experiment the unit worked for"),
    Column("pioreactor_unit", "the unit that produced the row"),
    Column("timestamp", "when the unit produced it: UTC, ISO-8601 with milliseconds and Z", "UTC"),
    Column("hours_since_experiment_created", "timestamp minus the experiment's created_at", "h"),
)
_DELIVERY = (
    Column("received_at", "when the leader stored the row: UTC, ISO-8601 with milliseconds and Z", "UTC"),
    Column("stream", "the unit's outbox stream the row came from (the publishing job)"),
    Column("seq", "the record's sequence number within its stream; rises by one per record"),
)
_SOURCE = Column("source_of_event", "what caused it: the job or automation, or `manual`")


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "od_readings", "Optical density", "Each photodiode channel's reading, calibrated when a calibration applied.", "od_readings",
        (
            Column("od_reading", "the reading: OD600 when calibrated is 1, else the raw signal", "OD600 or AU"),
            Column("angle", "angle of the photodiode to the IR LED", "degrees"),
            Column("channel", "photodiode channel (1..4)"),
            Column("ir_led_intensity", "IR LED intensity while reading", "%"),
            Column("calibrated", "1 if od_reading went through an OD calibration, else 0"),
        ),
    ),
    Dataset(
        "raw_od_readings", "Raw optical density", "Each channel's reading before calibration (only while a calibration applied).",
        "raw_od_readings",
        (
            Column("od_reading", "the uncalibrated signal", "AU"),
            Column("angle", "angle of the photodiode to the IR LED", "degrees"),
            Column("channel", "photodiode channel (1..4)"),
        ),
    ),
    Dataset(
        "od_readings_filtered", "Normalized filtered OD", "The growth-rate filter's OD, normalized by the initial OD.",
        "od_readings_filtered",
        (Column("normalized_od_reading", "filtered OD over the OD at the start of the run", "dimensionless"),),
    ),
    Dataset(
        "growth_rates", "Implied growth rate", "The growth-rate filter's estimate of the specific growth rate.", "growth_rates",
        (Column("rate", "specific growth rate", "1/h"),),
    ),
    Dataset(
        "temperature_readings", "Temperature", "The vessel temperature the temperature automation reports.", "temperature_readings",
        (Column("temperature_c", "vessel temperature", "°C"),),
    ),
    Dataset(
        "stirring_rates", "Stirring rate", "The stirrer speed stirring measures.", "stirring_rates",
        (Column("measured_rpm", "measured stirrer speed", "RPM"),),
    ),
    Dataset(
        "dosing_events", "Dosing events", "Every pump action: media or alternative media added, waste removed.", "dosing_events",
        (
            Column("event", "add_media, add_alt_media or remove_waste"),
            Column("volume_change_ml", "volume moved by the pump", "mL"),
            _SOURCE,
        ),
    ),
    Dataset(
        "led_change_events", "LED changes", "Every change of an LED channel's intensity.", "led_change_events",
        (Column("channel", "LED channel (A..D)"), Column("intensity", "new intensity", "%"), _SOURCE),
    ),
    Dataset(
        "liquid_volumes", "Liquid volume", "The vessel's liquid volume as the bioreactor's books track it.", "liquid_volumes",
        (Column("liquid_volume", "liquid volume in the vessel", "mL"),),
    ),
    Dataset(
        "alt_media_fractions", "Alternative media fraction", "Fraction of the liquid that is alternative media.",
        "alt_media_fractions",
        (Column("alt_media_fraction", "alternative media over total liquid", "fraction (0..1)"),),
    ),
    Dataset(
        "automation_events", "Automation events", "Each event an automation run reported (its latest_event).", "automation_events",
        (
            Column("job_name", "dosing_automation, temperature_automation or led_automation"),
            Column("event_name", "the event's kind, e.g. DilutionEvent, NoEvent"),
            Column("message", "the event's human-readable message"),
            Column("data", "the event's data, as JSON"),
        ),
    ),
    Dataset(
        "settings_history", "Settings history", "Every published value of every job setting and state: which automation ran with which parameters, and when they changed.",
        "settings_history",
        (
            Column("job_name", "the job that published the value"),
            Column("setting", "the setting's name (the job's state included)"),
            Column("value", "the value as published (text)"),
        ),
    ),
    Dataset(
        "logs", "Logs", "The log lines the units' jobs published during the experiment.", "logs",
        (
            Column("message", "the log line"),
            Column("source", "what logged it: app (a job), supervisor, ..."),
            Column("level", "DEBUG, INFO, NOTICE, WARNING, ERROR or CRITICAL"),
            Column("task", "the job or task that logged it"),
        ),
    ),
    Dataset(
        "experiments", "Experiment", "The experiment itself: when it was created and ended, its description.", "experiments",
        (
            Column("experiment", "the experiment's name"),
            Column("created_at", "when it was created: UTC, ISO-8601 with milliseconds and Z", "UTC"),
            Column("ended_at", "when it ended (empty while it runs)", "UTC"),
            Column("description", "the user's description"),
            Column("origin", "how the leader learnt of it: user, topology or ingest (first seen in data)"),
        ),
        time_series=False, has_unit=False, order_by=("created_at",),
    ),
    Dataset(
        "unit_labels", "Unit labels", "The label each unit had in the experiment.", "unit_labels",
        (
            Column("experiment", "the experiment"),
            Column("pioreactor_unit", "the unit"),
            Column("label", "the label the user gave the unit in this experiment"),
            Column("created_at", "when the label was set: UTC, ISO-8601 with milliseconds and Z", "UTC"),
        ),
        time_series=False, order_by=("pioreactor_unit",),
    ),
)

BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}


def select(names: Iterable[str] | None) -> list[Dataset]:
    """The datasets named (in catalogue order, each once); all of them when ``names`` is None."""
    if names is None:
        return list(DATASETS)
    wanted = list(names)
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise DatasetError(f"unknown dataset{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                           f"datasets are: {', '.join(BY_NAME)}")
    if not wanted:
        raise DatasetError(f"no dataset named; name one or more of: {', '.join(BY_NAME)}")
    return [d for d in DATASETS if d.name in set(wanted)]


def parse_bound(text: str, what: str = "time bound") -> str:
    """A user's time bound as the database's timestamp text (UTC, milliseconds, Z), so comparing text
    compares times. A time without a zone is refused: the leader's zone and the units' may differ."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DatasetError(f"{what} {text!r} is not an ISO-8601 time; write e.g. 2025-01-31T14:00:00Z or 2025-01-31T15:00:00+01:00") from None
    if when.tzinfo is None:
        raise DatasetError(f"{what} {text!r} has no time zone; add Z for UTC or an offset, e.g. {text.strip()}Z or {text.strip()}+01:00")
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# --- logs -----------------------------------------------------------------------------------------

LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def levels_from(level: str) -> tuple[str, ...]:
    """``level`` and every more severe one."""
    name = level.strip().upper()
    if name not in LEVELS:
        raise DatasetError(f"unknown log level {level!r}; use one of: {', '.join(l.lower() for l in LEVELS)}")
    return LEVELS[LEVELS.index(name):]


LOG_FIELDS = ("rowid", "timestamp", "experiment", "pioreactor_unit", "level", "source", "task", "message")


def read_logs(
    conn: sqlite3.Connection,
    *,
    experiment: str | None = None,
    units: Sequence[str] = (),
    level: str | None = None,
    after_rowid: int | None = None,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Log rows in arrival order (rowid): the last ``limit`` of them, or every one after ``after_rowid``
    (what a follower has not seen yet). ``level`` keeps that level and more severe ones."""
    where, params = [], []
    if experiment is not None:
        where.append("experiment = ?")
        params.append(experiment)
    if units:
        where.append(f"pioreactor_unit IN ({','.join('?' * len(units))})")
        params.extend(units)
    if level is not None and level.strip().upper() != LEVELS[0]:
        allowed = levels_from(level)
        where.append(f"UPPER(level) IN ({','.join('?' * len(allowed))})")
        params.extend(allowed)
    if after_rowid is not None:
        where.append("rowid > ?")
        params.append(after_rowid)
    sql = f"SELECT {', '.join(LOG_FIELDS)} FROM logs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is not None and after_rowid is None:
        # The newest `limit` rows, then back into arrival order.
        rows = conn.execute(sql + " ORDER BY rowid DESC LIMIT ?", (*params, limit)).fetchall()
        rows.reverse()
    else:
        rows = conn.execute(sql + " ORDER BY rowid", params).fetchall()
    return [dict(zip(LOG_FIELDS, tuple(r))) for r in rows]
