"""The leader daemon end to end: a secured broker of its own, desired states published from the topology,
a node that logs in with its own credentials and converges, and ClusterWatch's truthful lost/back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import attrs
import pytest

from tests.support import wait_until
from tests.support.broker import free_port
from tests.support.node import Node

PIOS = os.path.join(os.path.dirname(sys.executable), "pios")


@attrs.define
class BrokerAddress:  # what Node needs of a broker: where it listens
    host: str
    port: int


@pytest.fixture
def leader(tmp_path):
    port = free_port()
    node = Node(tmp_path / "sim01", BrokerAddress("127.0.0.1", port), unit="sim01", time_scale=10.0)
    topology = tmp_path / "cluster.yaml"
    topology.write_text(textwrap.dedent(f"""\
        broker: {{host: 127.0.0.1, port: {port}}}
        units:
          sim01: {{hardware: sim, admin_port: {node.admin_port}}}
        experiments:
          demo:
            units: [sim01]
            jobs:
              stirring: {{target_rpm: 420}}
        """))
    env = {**os.environ, "PIO_STATE_DIR": str(node.state_dir)}  # the unit's login lands in its state dir

    def pios(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"pios {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    try:
        yield node, topology, pios
    finally:
        node.cleanup()
        pios("leader", "stop", check=False)
        leftovers = node.processes()
        assert not leftovers, f"processes left behind: {leftovers}"


def status(pios) -> dict:
    return {u["unit"]: u for u in json.loads(pios("leader", "status", "--json", check=False).stdout).get("units", [])}


def test_the_leader_deploys_a_node_that_logs_in_with_its_own_credentials_and_watches_it(leader):
    node, topology, pios = leader
    assert "leader started" in pios("leader", "start", "--topology", str(topology), "--unit-credentials").stdout
    creds = json.loads((node.state_dir / "sim01" / "broker_credentials.json").read_text())
    assert creds["username"] == "sim01" and creds["password"]
    assert "already running" in pios("leader", "start", "--topology", str(topology), check=False).stderr

    node.start()  # reads its broker login from its state dir; the broker refuses anonymous clients
    job = node.wait_job_state("stirring", "ready", timeout=30)  # from the desired state the leader published
    assert job["settings"]["target_rpm"] == 420.0
    wait_until(lambda: status(pios).get("sim01", {}).get("state") == "ready" and status(pios)["sim01"]["in_sync"], 20, 0.3,
               "ClusterWatch sees sim01 ready and in sync")

    # The node dies without a goodbye (power cut: every process at once): the broker's last will says
    # lost (after 1.5 keepalives), and the leader logs it.
    daemon, group = node.daemon_pid, node.pgid
    os.kill(daemon, signal.SIGKILL)
    os.killpg(group, signal.SIGKILL)
    wait_until(lambda: status(pios)["sim01"]["state"] == "lost", 90, 0.5, "sim01 lost")
    log = node.state_dir / "leader" / "leader.log"
    assert "sim01 went away" in log.read_text()
    # It comes back by itself, to its desired jobs, and the leader says so.
    node.pio("node", "start")
    node._remember()
    node.wait_job_state("stirring", "ready", timeout=30)
    wait_until(lambda: status(pios)["sim01"]["state"] == "ready", 30, 0.3, "sim01 back")
    assert "sim01 is back" in log.read_text()

    pios("leader", "stop")
    assert status(pios) == {} or json.loads(pios("leader", "status", "--json", check=False).stdout)["running"] is False


def test_the_leader_database_fills_from_the_unit_through_the_secured_broker(leader):
    """The unit's outbox drains into the leader's database under its own login (writing its outbox,
    reading the leader's ack), and `pios status` shows the data arriving."""
    import sqlite3

    node, topology, pios = leader
    pios("leader", "start", "--topology", str(topology), "--unit-credentials")
    node.start()
    node.wait_job_state("stirring", "ready", timeout=30)
    db = node.state_dir / "leader" / "pioreactor.sqlite"

    def stored() -> list:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=15)
        try:
            return conn.execute("SELECT value FROM settings_history WHERE pioreactor_unit='sim01' AND job_name='stirring' "
                                "AND setting='target_rpm'").fetchall()
        finally:
            conn.close()

    wait_until(lambda: db.exists() and stored(), 30, 0.3, "the unit's settings in the leader's database")
    assert ("420.0",) in stored() or ("420",) in stored()
    wait_until(lambda: node.pio_json("status")["outbox"]["last_ack_at"], 30, 0.3, "the unit to receive the leader's ack")
    rows = {r["unit"]: r for r in json.loads(pios("status", "--topology", str(topology), "--json").stdout)}
    assert rows["sim01"]["ingest"]["rows"] > 0 and rows["sim01"]["ingest"]["errors"] == 0
    assert "rows/min" in pios("status", "--topology", str(topology)).stdout


def test_the_workers_keep_running_while_the_leader_is_dead_and_a_restarted_leader_converges_without_restarts(leader):
    node, topology, pios = leader
    pios("leader", "start", "--topology", str(topology), "--unit-credentials")
    node.start()
    pid = node.wait_job_state("stirring", "ready", timeout=30)["pid"]
    wait_until(lambda: status(pios).get("sim01", {}).get("in_sync"), 20, 0.3, "sim01 in sync")

    # The leader's machine loses power: its daemon and its broker die at once.
    info = json.loads((node.state_dir / "leader" / "leader.json").read_text())
    os.kill(info["pid"], signal.SIGKILL)
    os.kill(info["broker_pid"], signal.SIGKILL)
    wait_until(lambda: not node.pio_json("status")["broker"]["connected"], 30, 0.3, "the unit to notice")
    job = node.job("stirring")
    assert job["state"] == "ready" and job["pid"] == pid  # control stays local

    pios("leader", "start", "--topology", str(topology), "--unit-credentials")
    wait_until(lambda: status(pios).get("sim01", {}).get("state") == "ready" and status(pios)["sim01"]["in_sync"], 60, 0.3,
               "sim01 back in sync with the restarted leader")
    assert node.job("stirring")["pid"] == pid  # converged without restarting the job


def test_a_bad_topology_is_refused_before_anything_starts(leader, tmp_path):
    _node, topology, pios = leader
    bad = tmp_path / "bad.yaml"
    bad.write_text(topology.read_text().replace("target_rpm", "target_rmp"))
    result = pios("leader", "start", "--topology", str(bad), check=False)
    assert result.returncode != 0 and "target_rmp" in result.stderr
    assert json.loads(pios("leader", "status", "--json", check=False).stdout)["running"] is False
