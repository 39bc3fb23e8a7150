"""The dashboard's time series: a real leader database (SQLite in a tmp dir), the point budget, the
shape kept by min/max downsampling, lookback windows and clear refusals of bad requests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.clock import utc_iso
from leader import database
from leader.web import timeseries
from leader.web.timeseries import TimeseriesError

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _insert(conn, table: str, column: str, rows, stream: str = "s") -> None:
    cols = ["experiment", "pioreactor_unit", "timestamp", column, "received_at", "stream", "seq"]
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    conn.execute("BEGIN")
    conn.executemany(sql, [(e, u, utc_iso(t), y, utc_iso(t), stream, i) for i, (e, u, t, y) in enumerate(rows)])
    conn.execute("COMMIT")


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "pioreactor.sqlite")
    writer = database.connect(path)
    yield writer, path
    writer.close()


def _reader(path):
    return database.connect(path, readonly=True)


def test_few_rows_come_back_as_they_are_in_epoch_ms(db):
    conn, path = db
    _insert(conn, "growth_rates", "rate", [("exp", "pio01", T0 + i * 5, 0.1 * i) for i in range(10)])
    out = timeseries.query(_reader(path), "exp", "growth_rate", None, 1000)
    assert out["series"] == "growth_rate" and out["experiment"] == "exp" and out["unit_of_measure"] == "1/h"
    series = out["units"]["pio01"]
    assert series["t"] == [int((T0 + i * 5) * 1000) for i in range(10)]
    assert series["y"] == pytest.approx([0.1 * i for i in range(10)])


def test_a_week_of_readings_fits_the_budget_and_keeps_a_spike_and_a_dip(db):
    conn, path = db
    n = 20_000
    values = [1.0 + 0.0001 * i for i in range(n)]
    values[7_777] = 50.0  # one spike and one dip in the middle of a flat trend: both must be drawn
    values[12_345] = -3.0
    _insert(conn, "temperature_readings", "temperature_c", [("exp", "pio01", T0 + i * 30, v) for i, v in enumerate(values)])
    out = timeseries.query(_reader(path), "exp", "temperature", None, 200)
    t, y = out["units"]["pio01"]["t"], out["units"]["pio01"]["y"]
    assert 100 <= len(t) <= 200
    assert t == sorted(t)
    assert max(y) == 50.0 and min(y) == -3.0
    assert t[y.index(50.0)] == int((T0 + 7_777 * 30) * 1000)  # at its real time, not a bucket's
    assert t[0] == int(T0 * 1000) and t[-1] == int((T0 + (n - 1) * 30) * 1000)  # the ends are kept


def test_od_shows_the_90_degree_channel_and_units_are_separate(db):
    conn, path = db
    rows = []
    for unit, base in (("pio01", 0.1), ("pio02", 0.5)):
        for i in range(50):
            rows.append(("exp", unit, T0 + i, base + i * 0.001, 135, 1))
            rows.append(("exp", unit, T0 + i, 9.0, 90, 2))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO od_readings (experiment, pioreactor_unit, timestamp, od_reading, angle, channel, received_at, stream, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 's', ?)",
        [(e, u, utc_iso(t), y, a, c, utc_iso(t), i) for i, (e, u, t, y, a, c) in enumerate(rows)])
    conn.execute("COMMIT")
    out = timeseries.query(_reader(path), "exp", "od", None, 1000)
    assert set(out["units"]) == {"pio01", "pio02"}
    assert out["units"]["pio01"]["y"] == [9.0] * 50 and len(out["units"]["pio02"]["t"]) == 50
    only = timeseries.query(_reader(path), "exp", "od", None, 1000, units=["pio02", "pio09"])
    assert set(only["units"]) == {"pio02", "pio09"} and only["units"]["pio09"] == {"t": [], "y": []}


def test_a_single_channel_unit_shows_that_channel():
    assert timeseries.pick_od_channel([(1, 135)]) == 1
    assert timeseries.pick_od_channel([(1, 45), (2, 135)]) == 2
    assert timeseries.pick_od_channel([(1, 135), (3, 90)]) == 3
    assert timeseries.pick_od_channel([]) is None


def test_lookback_counts_back_from_the_newest_row_or_from_now(db):
    conn, path = db
    _insert(conn, "liquid_volumes", "liquid_volume", [("exp", "pio01", T0 + h * 3600, 14.0 + h) for h in range(48)])
    _insert(conn, "liquid_volumes", "liquid_volume", [("other", "pio01", T0 + 10 * 86400, 1.0)], stream="s2")  # other experiment: ignored
    last6 = timeseries.query(_reader(path), "exp", "volume", 6, 1000)["units"]["pio01"]
    assert last6["y"] == [14.0 + h for h in range(41, 48)]  # 41..47: six hours back from the newest row, inclusive
    at = utc_iso(T0 + 10 * 3600)
    window = timeseries.query(_reader(path), "exp", "volume", 2.5, 1000, now=at)["units"]["pio01"]
    assert window["y"] == [22.0, 23.0, 24.0]


def test_an_experiment_without_rows_answers_empty(db):
    _conn, path = db
    assert timeseries.query(_reader(path), "nothing", "stirring", 24, 100)["units"] == {}


@pytest.mark.parametrize("series, lookback, points, says", [
    ("odd", None, 100, "send one of: od, od_filtered"),
    ("od", None, 1, "points must be a whole number from 2"),
    ("od", None, 10 ** 9, "points must be a whole number"),
    ("od", None, 10.5, "points must be a whole number"),
    ("od", 0, 100, "lookback_hours must be a number of hours above 0"),
    ("od", -1, 100, "lookback_hours"),
    ("od", math.nan, 100, "lookback_hours"),
    ("od", "24", 100, "lookback_hours"),
])
def test_bad_requests_are_refused_with_what_to_send(db, series, lookback, points, says):
    _conn, path = db
    with pytest.raises(TimeseriesError, match=says):
        timeseries.query(_reader(path), "exp", series, lookback, points)
    assert issubclass(TimeseriesError, ValueError)


def test_a_bad_now_is_refused(db):
    _conn, path = db
    with pytest.raises(TimeseriesError, match="now must be a UTC ISO-8601 time"):
        timeseries.query(_reader(path), "exp", "od", 1, 100, now="yesterday")


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10 ** 6), st.floats(-1e6, 1e6)), max_size=300),
       st.integers(2, 400))
def test_merge_extremes_is_ordered_unique_and_within_budget(rows, budget):
    t, y = timeseries.merge_extremes(rows, budget)
    assert len(t) == len(y) <= budget
    assert t == sorted(t)
    assert len(set(zip(t, y))) == len(t)


@given(st.lists(st.floats(-100, 100), min_size=3, max_size=400), st.integers(4, 60))
def test_downsampling_keeps_the_extremes_of_any_signal(tmp_path_factory, values, points):
    path = str(tmp_path_factory.mktemp("db") / "p.sqlite")
    conn = database.connect(path)
    _insert(conn, "stirring_rates", "measured_rpm", [("e", "u", T0 + i, v) for i, v in enumerate(values)])
    got = timeseries.query(conn, "e", "stirring", None, points)["units"]["u"]
    conn.close()
    assert len(got["t"]) <= points
    assert max(got["y"]) == max(values) and min(got["y"]) == min(values)
    assert set(got["y"]) <= set(values)
