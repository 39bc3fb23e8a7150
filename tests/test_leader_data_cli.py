"""`pios experiments|export|backup|logs` as a user runs them: real `pios` processes on a real database
file in $PIO_STATE_DIR/leader. Errors are one line on stderr with a non-zero exit, and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import zipfile

import pytest

from actors.clock import utc_iso
from leader import database
from tests.support.waiting import wait_until
from tests.unit.test_export import START, simulate_experiment

PIOS = os.path.join(os.path.dirname(sys.executable), "pios")


@pytest.fixture
def leader(tmp_path):
    """pios with its own state dir, and the path of the database it uses by default."""
    env = {**os.environ, "PIO_STATE_DIR": str(tmp_path / "state")}
    db = database.default_path(str(tmp_path / "state" / "leader"))

    def pios(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"pios {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    pios.env = env  # type: ignore[attr-defined]
    return pios, db


def refused(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr


def dump(db: str) -> list[tuple]:
    conn = database.connect(db, readonly=True)
    try:
        return [tuple(r) for t in ("experiments", "unit_assignments", "unit_assignments_history", "unit_labels", "od_readings")
                for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")]
    finally:
        conn.close()


def test_create_assign_label_end_and_list_experiments(leader, tmp_path):
    pios, db = leader
    assert "created experiment growth-1" in pios("experiments", "create", "growth-1", "--description", "E. coli at 37 C").stdout
    pios("experiments", "create", "growth-2")
    out = pios("experiments", "assign", "growth-1", "--units", "sim01,sim02").stdout
    assert "sim01: assigned to growth-1" in out and "sim02: assigned to growth-1" in out
    assert "sim02: moved from growth-1 to growth-2" in pios("experiments", "assign", "growth-2", "--units", "sim02").stdout
    pios("experiments", "label", "growth-1", "sim01", "control")
    (tmp_path / "topology.yaml").write_text(textwrap.dedent("""\
        units:
          sim01: {hardware: sim}
        experiments:
          growth-2: {units: [sim01]}
          planned: {units: []}
        """))
    rows = {r["experiment"]: r for r in json.loads(pios("experiments", "list", "--json").stdout)}
    assert rows["growth-1"]["units"] == ["sim01"] and rows["growth-1"]["labels"] == {"sim01": "control"}
    assert rows["growth-1"]["description"] == "E. coli at 37 C" and rows["growth-1"]["in_topology"] is False
    assert rows["growth-2"]["units"] == ["sim02"] and rows["growth-2"]["in_topology"] is True
    assert rows["planned"]["in_database"] is False and rows["planned"]["created_at"] is None
    text = pios("experiments", "list").stdout
    assert "sim01 (control)" in text and "(not in database)" in text
    assert "units unassigned: sim01" in pios("experiments", "end", "growth-1").stdout
    (tmp_path / "topology.yaml").unlink()
    (row,) = [r for r in json.loads(pios("experiments", "list", "--json").stdout) if r["experiment"] == "growth-1"]
    assert row["ended_at"] and row["units"] == [] and row["in_topology"] is None


def test_bad_experiment_commands_say_what_to_do_and_change_nothing(leader):
    pios, db = leader
    pios("experiments", "create", "growth-1")
    pios("experiments", "assign", "growth-1", "--units", "sim01")
    before = dump(db)
    refused(pios("experiments", "create", "growth/1", check=False), "not a usable experiment name")
    refused(pios("experiments", "create", "growth-1", check=False), "already exists")
    refused(pios("experiments", "assign", "nope", "--units", "sim01", check=False), "unknown experiment 'nope'; experiments: growth-1")
    refused(pios("experiments", "assign", "growth-1", "--units", "sim01,sim01", check=False), "named twice")
    refused(pios("experiments", "label", "growth-1", "sim01", "", check=False), "a label is one line")
    refused(pios("experiments", "delete", "nope", "-y", check=False), "unknown experiment 'nope'")
    assert dump(db) == before


def test_delete_asks_first_then_prints_what_it_deleted(leader):
    pios, db = leader
    pios("experiments", "create", "gone")
    conn = database.connect(db)
    conn.executemany("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     [("gone", "sim01", utc_iso(START + i), 0.1, 90, 2, 80.0, 0, utc_iso(START + i), "od_reading", i) for i in range(5)])
    conn.close()
    before = dump(db)
    answer = pios("experiments", "delete", "gone", input="n\n", check=False)
    assert answer.returncode != 0 and "Delete experiment gone and its 5 data rows?" in answer.stderr
    assert dump(db) == before
    out = pios("experiments", "delete", "gone", input="y\n").stdout
    assert "rows deleted: 5" in out and "od_readings: 5" in out
    assert dump(db) == []


def test_export_writes_the_zip_with_a_progress_bar_and_a_final_line(leader, tmp_path):
    pios, db = leader
    conn = database.connect(db)
    simulate_experiment(conn, days=1 / 24)
    rows = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("od_readings", "od_readings_filtered", "growth_rates"))
    conn.close()
    out = tmp_path / "growth.zip"
    done = pios("export", "--experiment", "growth-7d", "--dataset", "od_readings", "--dataset", "od_readings_filtered",
                "--dataset", "growth_rates", "-o", str(out))
    assert done.stdout.strip().splitlines()[-1] == f"exported {rows} rows of growth-7d (3 datasets) to {out}"
    assert "exporting" in done.stderr
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["growth_rates.csv", "manifest.json", "od_readings.csv", "od_readings_filtered.csv"]
        assert json.loads(zf.read("manifest.json"))["rows"] == rows
    parted = pios("export", "--experiment", "growth-7d", "--dataset", "logs", "--partition-by-unit",
                  "--start", "2025-03-01T00:00:00Z", "--end", "2025-03-01T01:00:00+00:00", "-o", str(tmp_path / "logs.zip"))
    assert parted.returncode == 0
    with zipfile.ZipFile(tmp_path / "logs.zip") as zf:
        assert sorted(n for n in zf.namelist() if n.startswith("logs/")) == [f"logs/pio0{i}.csv" for i in range(1, 5)]


def test_export_errors_are_one_line_and_leave_no_file(leader, tmp_path):
    pios, db = leader
    pios("experiments", "create", "growth-1")
    out = tmp_path / "x.zip"
    refused(pios("export", "--experiment", "growth-1", "--start", "2025-03-01T00:00:00", "-o", str(out), check=False), "has no time zone")
    refused(pios("export", "--experiment", "nope", "-o", str(out), check=False), "unknown experiment 'nope'; experiments: growth-1")
    refused(pios("export", "--experiment", "growth-1", "--dataset", "odd", "-o", str(out), check=False), "unknown dataset 'odd'")
    assert not out.exists()
    out.write_text("keep")
    refused(pios("export", "--experiment", "growth-1", "-o", str(out), check=False), "already exists")
    assert out.read_text() == "keep"
    assert pios("export", "--experiment", "growth-1", "-o", str(out), "--force").returncode == 0 and zipfile.is_zipfile(out)


def test_without_a_database_the_commands_say_to_start_the_leader(leader, tmp_path):
    pios, db = leader
    refused(pios("export", "--experiment", "e", "-o", str(tmp_path / "x.zip"), check=False), "no leader database at")
    refused(pios("logs", check=False), "no leader database at")
    refused(pios("backup", "-o", str(tmp_path / "b.sqlite"), check=False), "no leader database at")
    assert not os.path.exists(db)


def test_backup_copies_the_database_and_refuses_to_overwrite(leader, tmp_path):
    pios, db = leader
    pios("experiments", "create", "growth-1")
    target = tmp_path / "backup.sqlite"
    assert "integrity ok" in pios("backup", "-o", str(target)).stdout
    assert database.connect(str(target), readonly=True).execute("SELECT experiment FROM experiments").fetchone()[0] == "growth-1"
    refused(pios("backup", "-o", str(target), check=False), "already exists")
    assert pios("backup", "-o", str(target), "--force").returncode == 0


def add_log(db: str, unit: str, level: str, message: str, experiment: str = "growth-1") -> None:
    conn = database.connect(db)
    n = conn.execute("SELECT COUNT(*) FROM logs").fetchone()[0]
    conn.execute("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (experiment, unit, utc_iso(START + n), message, "app", level, "stirring", utc_iso(START + n), "logs", n + 1))
    conn.close()


def test_logs_filter_by_level_unit_and_experiment(leader):
    pios, db = leader
    pios("experiments", "create", "growth-1")
    for i, level in enumerate(["DEBUG", "INFO", "WARNING", "ERROR"]):
        add_log(db, f"sim0{i % 2 + 1}", level, f"line {i}")
    add_log(db, "sim01", "ERROR", "elsewhere", experiment="other")
    lines = [json.loads(line) for line in pios("logs", "--level", "warning", "--json").stdout.splitlines()]
    assert [(l["message"], l["level"]) for l in lines] == [("line 2", "WARNING"), ("line 3", "ERROR"), ("elsewhere", "ERROR")]
    assert set(lines[0]) == {"timestamp", "experiment", "pioreactor_unit", "level", "source", "task", "message"}
    text = pios("logs", "--experiment", "growth-1", "--units", "sim02", "-n", "1").stdout.splitlines()
    assert len(text) == 1 and "sim02" in text[0] and "ERROR" in text[0] and "line 3" in text[0]
    refused(pios("logs", "--level", "loud", check=False), "unknown log level 'loud'")


def test_logs_follow_prints_new_lines_as_they_arrive(leader):
    pios, db = leader
    pios("experiments", "create", "growth-1")
    add_log(db, "sim01", "INFO", "before")
    proc = subprocess.Popen([PIOS, "logs", "-f", "--level", "info"], env=pios.env, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("before" in l for l in lines), timeout=15, message="the existing line")
        add_log(db, "sim02", "DEBUG", "too quiet")
        add_log(db, "sim02", "WARNING", "after")
        wait_until(lambda: any("after" in l for l in lines), timeout=15, message="the new line")
        assert not any("too quiet" in l for l in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_commands_other_than_create_do_not_make_a_database(leader):
    pios, db = leader
    refused(pios("experiments", "assign", "growth-1", "--units", "sim01", check=False), "no leader database at")
    refused(pios("experiments", "end", "growth-1", check=False), "no leader database at")
    assert not os.path.exists(db)
    assert json.loads(pios("experiments", "list", "--json").stdout) == []
    pios("experiments", "create", "growth-1")
    assert os.path.exists(db)
