"""`pios` against real nodes: apply a topology (dry run first), see desired against actual, and send
commands whose results come back per unit, an offline unit reported as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support import wait_until

PIOS = os.path.join(os.path.dirname(sys.executable), "pios")


@pytest.fixture
def cluster(tmp_path, broker, node_factory):
    """Two running simulated nodes and a third unit that never starts, in one topology file for pios."""
    nodes = [node_factory("sim01").start(), node_factory("sim02").start()]
    path = tmp_path / "cluster.yaml"

    def write(rpm: int, with_od: bool = False, sim02: str | None = None) -> None:
        extra = "\n                  od_reading: {interval: 10}" if with_od else ""
        sim02 = sim02 or f"{{stirring: {{target_rpm: {rpm + 100}}}}}"
        path.write_text(textwrap.dedent(f"""\
            cluster: test-lab
            broker: {{host: {broker.host}, port: {broker.port}}}
            units:
              sim01: {{hardware: sim, admin_port: {nodes[0].admin_port}}}
              sim02: {{hardware: sim, admin_port: {nodes[1].admin_port}}}
              sim03: {{hardware: sim, admin_port: 1}}
            experiments:
              demo:
                units: [sim01, sim02, sim03]
                jobs:
                  stirring: {{target_rpm: {rpm}}}{extra}
                overrides:
                  sim02: {sim02}
            """).replace("admin_port: 1}", "admin_port: 1999}"))

    write(400)
    env = {**os.environ, "PIO_STATE_DIR": str(tmp_path / "leader-state")}

    def pios(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"pios {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    return nodes, path, write, pios


def test_apply_dry_run_then_apply_then_nodes_converge_and_status_says_in_sync(cluster):
    nodes, path, write, pios = cluster
    plan = pios("apply", str(path), "--dry-run").stdout
    assert "sim01" in plan and "stirring" in plan and "400" in plan
    assert all(n.job("stirring") is None for n in nodes), "a dry run changes nothing"

    pios("apply", str(path))
    for node, rpm in zip(nodes, (400.0, 500.0)):
        job = node.wait_job_state("stirring", "ready", timeout=20)
        assert job["settings"]["target_rpm"] == rpm  # sim02 with its override
    assert "no changes" in pios("apply", str(path), "--dry-run").stdout

    def rows() -> dict:
        return {r["unit"]: r for r in json.loads(pios("status", "--topology", str(path), "--json").stdout)}

    wait_until(lambda: rows()["sim01"]["in_sync"] and rows()["sim02"]["in_sync"], 20, 0.3, "sim01 and sim02 in sync")
    status = rows()
    assert status["sim01"]["reachable"] and status["sim01"]["desired_jobs"] == ["stirring"] == status["sim01"]["actual_jobs"]
    assert not status["sim03"]["reachable"] and not status["sim03"]["in_sync"]  # desired, never started

    # A changed setting is applied in place: same process, new value.
    pid = nodes[0].job("stirring")["pid"]
    write(450, with_od=True)
    assert "450" in pios("apply", str(path), "--dry-run").stdout
    pios("apply", str(path))
    wait_until(lambda: (j := nodes[0].job("stirring")) and j["settings"]["target_rpm"] == 450.0, 20, 0.2, "target 450")
    assert nodes[0].job("stirring")["pid"] == pid
    nodes[0].wait_job_state("od_reading", "ready", timeout=20)

    # One unit's setting edited: only that setting on that unit changes, and nothing restarts.
    pids = {(i, job): nodes[i].job(job)["pid"] for i in (0, 1) for job in ("stirring", "od_reading")}
    write(450, with_od=True, sim02="{stirring: {target_rpm: 620}}")
    plan = pios("apply", str(path), "--dry-run").stdout
    assert "sim02" in plan and "sim01" not in plan
    pios("apply", str(path))
    wait_until(lambda: nodes[1].job("stirring")["settings"]["target_rpm"] == 620.0, 20, 0.2, "sim02 at 620")
    assert nodes[0].job("stirring")["settings"]["target_rpm"] == 450.0
    assert {(i, job): nodes[i].job(job)["pid"] for i in (0, 1) for job in ("stirring", "od_reading")} == pids

    # A job removed for one unit stops there only, its output at 0; the other unit is untouched.
    write(450, with_od=True, sim02="{stirring: null}")
    pios("apply", str(path))
    wait_until(lambda: nodes[1].job("stirring") is None, 20, 0.2, "stirring stopped on sim02")
    outputs = nodes[1].pio_json("status")["outputs"]
    assert all(v == 0 for v in outputs["pwm"]["outputs"].values()), outputs
    assert nodes[0].job("stirring")["pid"] == pids[(0, "stirring")]
    assert nodes[1].job("od_reading")["pid"] == pids[(1, "od_reading")]


def test_commands_report_one_result_per_unit_and_an_offline_unit_as_such(cluster):
    nodes, path, _write, pios = cluster
    result = pios("run", "stirring", "--target-rpm", "300", "--topology", str(path), "--units", "sim01", "--units", "sim03", "--json",
                  "--timeout", "4", check=False)
    assert result.returncode != 0  # one unit failed
    by_unit = {r["unit"]: r for r in json.loads(result.stdout)}
    assert by_unit["sim01"] == {"unit": "sim01", "ok": True, "error": None}
    assert by_unit["sim03"]["ok"] is False and "offline" in by_unit["sim03"]["error"]
    assert nodes[0].wait_job_state("stirring", "ready")["settings"]["target_rpm"] == 300.0

    assert pios("set", "stirring", "target_rpm", "350", "--topology", str(path), "--units", "sim01").returncode == 0
    wait_until(lambda: nodes[0].job("stirring")["settings"]["target_rpm"] == 350.0, 10, 0.1, "350")
    bad = pios("set", "stirring", "target_rpm", "fast", "--topology", str(path), "--units", "sim01", check=False)
    assert bad.returncode != 0 and "not a number" in bad.stdout
    pios("kill", "stirring", "--topology", str(path), "--units", "sim01")
    wait_until(lambda: nodes[0].job("stirring") is None, 10, 0.1, "stirring stopped")


def test_a_bad_topology_is_refused_with_its_line_and_nothing_is_published(cluster, tmp_path):
    nodes, path, _write, pios = cluster
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("stirring:", "stiring:"))
    result = pios("apply", str(bad), check=False)
    assert result.returncode != 0 and "stiring" in result.stderr and "bad.yaml:" in result.stderr
    assert all(n.job("stirring") is None for n in nodes)
