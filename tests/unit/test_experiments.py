"""Experiments in the leader's database (leader/experiments.py), on real SQLite files: create, list,
assign (one experiment per unit, with history), unassign, end, delete with every row, labels; bad
input refused with one message and nothing changed."""

from __future__ import annotations

import sqlite3

import pytest

from leader import database
from leader import experiments as ex

T0 = "2025-03-01T00:00:00.000Z"
T1 = "2025-03-01T01:00:00.000Z"
T2 = "2025-03-01T02:00:00.000Z"


@pytest.fixture
def conn(tmp_path):
    c = database.connect(str(tmp_path / "pioreactor.sqlite"))
    yield c
    c.close()


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every row of every table: what 'nothing changed' is checked against."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"').fetchall()), key=repr) for t in tables}


def add_rows(conn: sqlite3.Connection, experiment: str, unit: str, n: int) -> None:
    """n OD readings, growth rates and log lines of a unit in an experiment, as the ingest stores them."""
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     [(experiment, unit, T0, 0.1, 90, 2, 80.0, 0, T0, "od_reading", i) for i in range(n)])
    conn.executemany("INSERT INTO growth_rates VALUES (?,?,?,?,?,?,?)",
                     [(experiment, unit, T0, 0.2, T0, "growth_rate_calculating", i) for i in range(n)])
    conn.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?)",
                     [(experiment, unit, T0, "hello", "app", "INFO", "stirring", T0, "logs", i) for i in range(n)])
    conn.execute("COMMIT")


def test_create_then_list_shows_it_with_its_description(conn):
    ex.create(conn, "growth-1", "E. coli at 37 C", T0)
    (row,) = ex.list_experiments(conn)
    assert row["experiment"] == "growth-1" and row["created_at"] == T0 and row["description"] == "E. coli at 37 C"
    assert row["ended_at"] is None and row["units"] == [] and row["origin"] == "user"


@pytest.mark.parametrize("name", ["", "_testing_x", "a/b", "a+b", "#", "with space", "-lead", "x$"])
def test_create_refuses_names_a_topic_level_cannot_carry(conn, name):
    with pytest.raises(ex.ExperimentError, match="letters, digits"):
        ex.create(conn, name, "", T0)
    assert ex.list_experiments(conn) == []


def test_create_refuses_an_existing_name_and_keeps_the_first(conn):
    ex.create(conn, "growth-1", "first", T0)
    with pytest.raises(ex.ExperimentError, match="already exists.*growth-1-2"):
        ex.create(conn, "growth-1", "second", T1)
    assert [(r["description"], r["created_at"]) for r in ex.list_experiments(conn)] == [("first", T0)]


def test_list_is_oldest_first_with_assigned_units_labels_and_optional_counts(conn):
    ex.create(conn, "b", "", T1)
    ex.create(conn, "a", "", T0)
    ex.assign(conn, "b", ["sim02", "sim01"], T1)
    ex.set_label(conn, "b", "sim01", "control", T1)
    add_rows(conn, "b", "sim01", 3)
    rows = ex.list_experiments(conn, counts=True)
    assert [r["experiment"] for r in rows] == ["a", "b"]
    assert rows[1]["units"] == ["sim01", "sim02"] and rows[1]["labels"] == {"sim01": "control"}
    assert rows[1]["rows"]["od_readings"] == 3 and rows[1]["rows"]["logs"] == 3 and rows[0]["rows"]["od_readings"] == 0
    assert "rows" not in ex.list_experiments(conn)[0]


def test_a_unit_works_for_one_experiment_at_a_time_and_moving_it_keeps_history(conn):
    ex.create(conn, "first", "", T0)
    ex.create(conn, "second", "", T0)
    assert ex.assign(conn, "first", ["sim01", "sim02"], T0) == [
        {"unit": "sim01", "from": None, "to": "first"}, {"unit": "sim02", "from": None, "to": "first"}]
    assert ex.assign(conn, "second", ["sim01"], T1) == [{"unit": "sim01", "from": "first", "to": "second"}]
    assert ex.assignments(conn) == {"sim01": "second", "sim02": "first"}
    assert ex.history(conn) == [
        {"unit": "sim01", "experiment": "first", "assigned_at": T0, "unassigned_at": T1},
        {"unit": "sim02", "experiment": "first", "assigned_at": T0, "unassigned_at": None},
        {"unit": "sim01", "experiment": "second", "assigned_at": T1, "unassigned_at": None},
    ]


def test_assigning_a_unit_already_there_changes_nothing(conn):
    ex.create(conn, "first", "", T0)
    ex.assign(conn, "first", ["sim01"], T0)
    before = snapshot(conn)
    assert ex.assign(conn, "first", ["sim01"], T1) == []
    assert snapshot(conn) == before


@pytest.mark.parametrize(("experiment", "units", "message"), [
    ("nope", ["sim01"], "unknown experiment 'nope'; experiments: first"),
    ("first", [], "no unit named"),
    ("first", ["sim01", "bad/unit"], "not a unit name"),
    ("first", ["sim01", "sim01"], "named twice"),
])
def test_bad_assignments_are_refused_and_change_nothing(conn, experiment, units, message):
    ex.create(conn, "first", "", T0)
    ex.assign(conn, "first", ["sim02"], T0)
    before = snapshot(conn)
    with pytest.raises(ex.ExperimentError, match=message):
        ex.assign(conn, experiment, units, T1)
    assert snapshot(conn) == before


def test_unassign_takes_units_out_and_refuses_units_of_other_experiments(conn):
    ex.create(conn, "first", "", T0)
    ex.create(conn, "second", "", T0)
    ex.assign(conn, "first", ["sim01", "sim02"], T0)
    ex.assign(conn, "second", ["sim03"], T0)
    before = snapshot(conn)
    with pytest.raises(ex.ExperimentError, match="sim03 is not in 'first'; its units are: sim01, sim02"):
        ex.unassign(conn, "first", ["sim01", "sim03"], T1)
    assert snapshot(conn) == before
    assert ex.unassign(conn, "first", ["sim01"], T1) == ["sim01"]
    assert ex.assignments(conn) == {"sim02": "first", "sim03": "second"}
    assert [h["unassigned_at"] for h in ex.history(conn, "first") if h["unit"] == "sim01"] == [T1]


def test_end_marks_the_experiment_and_frees_its_units_but_keeps_data(conn):
    ex.create(conn, "first", "", T0)
    ex.create(conn, "other", "", T0)
    ex.assign(conn, "first", ["sim01", "sim02"], T0)
    ex.assign(conn, "other", ["sim03"], T0)
    add_rows(conn, "first", "sim01", 5)
    assert ex.end(conn, "first", T2) == ["sim01", "sim02"]
    assert ex.get(conn, "first")["ended_at"] == T2
    assert ex.assignments(conn) == {"sim03": "other"}
    assert all(h["unassigned_at"] == T2 for h in ex.history(conn, "first"))
    assert ex.row_counts(conn, "first")["od_readings"] == 5
    with pytest.raises(ex.ExperimentError, match=f"already ended at {T2}"):
        ex.end(conn, "first", T2)
    with pytest.raises(ex.ExperimentError, match="ended at .*assign units to a running experiment"):
        ex.assign(conn, "first", ["sim01"], T2)


def test_delete_removes_the_experiment_and_every_row_of_it_and_nothing_else(conn):
    ex.create(conn, "gone", "", T0)
    ex.create(conn, "kept", "", T0)
    ex.assign(conn, "gone", ["sim01", "sim02"], T0)
    ex.assign(conn, "kept", ["sim03"], T0)
    ex.set_label(conn, "gone", "sim01", "control", T0)
    ex.set_label(conn, "kept", "sim03", "control", T0)
    add_rows(conn, "gone", "sim01", 7)
    add_rows(conn, "gone", "sim02", 3)
    add_rows(conn, "kept", "sim03", 4)
    kept_before = {t: rows for t, rows in snapshot(conn).items()}
    deleted = ex.delete(conn, "gone")
    assert {t: n for t, n in deleted.items() if n} == {
        "od_readings": 10, "growth_rates": 10, "logs": 10, "unit_labels": 1, "unit_assignments": 2, "unit_assignments_history": 2}
    assert ex.names(conn) == ["kept"]
    after = snapshot(conn)
    for table, rows in after.items():
        assert all("gone" not in row for row in rows), table
        assert rows == [r for r in kept_before[table] if "gone" not in r], table


def test_delete_covers_every_table_holding_experiment_rows(conn):
    # A table a later migration adds is found from the schema; these are today's.
    assert set(ex.time_series_tables(conn)) == {
        "od_readings", "raw_od_readings", "od_readings_filtered", "growth_rates", "temperature_readings", "stirring_rates",
        "dosing_events", "led_change_events", "liquid_volumes", "alt_media_fractions", "automation_events", "settings_history", "logs"}


def test_delete_is_one_transaction_a_failure_midway_deletes_nothing(conn):
    ex.create(conn, "gone", "", T0)
    add_rows(conn, "gone", "sim01", 5)
    # A trigger that fails on the logs delete, after od_readings and growth_rates were already deleted.
    conn.execute("CREATE TEMP TRIGGER refuse BEFORE DELETE ON logs BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    before = snapshot(conn)
    with pytest.raises(sqlite3.DatabaseError, match="disk trouble"):
        ex.delete(conn, "gone")
    assert snapshot(conn) == before and not conn.in_transaction


def test_delete_of_an_unknown_experiment_names_the_existing_ones(conn):
    ex.create(conn, "kept", "", T0)
    with pytest.raises(ex.ExperimentError, match="unknown experiment 'gone'; experiments: kept"):
        ex.delete(conn, "gone")


def test_labels_are_per_experiment_unique_and_replaceable(conn):
    ex.create(conn, "first", "", T0)
    ex.create(conn, "second", "", T0)
    ex.set_label(conn, "first", "sim01", "control", T0)
    ex.set_label(conn, "second", "sim02", "control", T0)  # the same label in another experiment is fine
    with pytest.raises(ex.ExperimentError, match="'control' is already sim01's in 'first'"):
        ex.set_label(conn, "first", "sim02", "control", T0)
    ex.set_label(conn, "first", "sim01", "  treated ", T1)
    assert ex.get_label(conn, "first", "sim01") == "treated"
    assert ex.labels(conn, "first") == {"sim01": "treated"}
    assert ex.get_label(conn, "first", "sim02") is None
    assert ex.remove_label(conn, "first", "sim01") and ex.labels(conn, "first") == {}


@pytest.mark.parametrize("label", ["", "   ", "two\nlines", "x" * 65])
def test_bad_labels_are_refused(conn, label):
    ex.create(conn, "first", "", T0)
    with pytest.raises(ex.ExperimentError, match="a label is one line"):
        ex.set_label(conn, "first", "sim01", label, T0)
    assert ex.labels(conn, "first") == {}


def test_the_topology_s_experiments_and_assignments_reach_the_database(tmp_path):
    import textwrap

    from actors.topology import load
    from leader import database

    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent("""\
        units:
          u1: {hardware: sim, admin_port: 41001}
          u2: {hardware: sim, admin_port: 41002}
        experiments:
          alpha: {units: [u1], description: first run}
          beta: {units: [u2]}
        """))
    conn = database.connect(str(tmp_path / "db.sqlite"))
    changes = ex.sync_topology(conn, load(str(path), check_jobs=False), "2026-11-28T10:00:00.000Z")
    assert "experiment alpha created from the topology" in changes and "u2 now works for beta" in changes
    assert ex.get(conn, "alpha")["origin"] == "topology" and ex.get(conn, "alpha")["description"] == "first run"
    assert ex.assignments(conn) == {"u1": "alpha", "u2": "beta"}
    # Applying the same topology again changes nothing; moving a unit records the move.
    assert ex.sync_topology(conn, load(str(path), check_jobs=False), "2026-11-28T11:00:00.000Z") == []
    path.write_text(path.read_text().replace("beta: {units: [u2]}", "beta: {units: []}").replace("units: [u1]", "units: [u1, u2]"))
    assert ex.sync_topology(conn, load(str(path), check_jobs=False), "2026-11-28T12:00:00.000Z") == ["u2 now works for alpha (was beta)"]
