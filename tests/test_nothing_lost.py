"""Nothing lost (issue 6 acceptance): every record a worker writes to its outbox is in the leader's
database exactly once, across a network cut, a broker restart, an ingest (leader) restart, the bridge
being SIGKILLed while it drains, and a duplicate flood. Real Mosquitto, real node processes, the real
ingest process, real SQLite files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from actors import records, topics
from tests.support.ingest import IngestProcess
from tests.support.proxy import Proxy
from tests.support.waiting import wait_until
from worker.processes import group_members

PLUGIN = Path(__file__).parent / "plugins" / "record_source.py"


@pytest.fixture
def ingest(tmp_path, broker):
    process = IngestProcess(tmp_path / "leader", broker)
    try:
        yield process.start()
    finally:
        process.stop()


def with_source(node):
    shutil.copy(PLUGIN, node.plugin_dir / "record_source.py")
    return node


@pytest.fixture
def proxy(broker):
    """A cuttable link between one node and the broker."""
    link = Proxy(broker.host, broker.port)
    try:
        yield link
    finally:
        link.close()


def cut_off(node, proxy):
    """Wait until the node is connected through `proxy`, cut it, and wait until it knows."""
    wait_until(lambda: connected(node), timeout=20, message="the node to connect through the proxy")
    proxy.cut()
    wait_until(lambda: not connected(node), timeout=20, message="the node to notice the cut")
    return node


def outbox(node) -> dict:
    return node.pio_json("status")["outbox"]


def connected(node) -> bool:
    return node.pio_json("status")["broker"]["connected"]


def wait_all_stored(ingest, node, count: int, timeout: float = 90.0) -> list[int]:
    try:
        wait_until(lambda: len(ingest.values(node.unit)) >= count and outbox(node)["pending"] == 0, timeout=timeout,
                   message=f"{count} records stored and the outbox empty")
    except AssertionError as e:
        raise AssertionError(f"{e}; stored {len(ingest.values(node.unit))}, outbox {outbox(node)}, "
                             f"jobs {node.pio_json('jobs', 'list')}\nnode log:\n{node.log_text()[-3000:]}") from None
    return ingest.values(node.unit)


def assert_no_gaps(ingest) -> None:
    assert ingest.query("SELECT * FROM ingest_gaps") == []


def test_a_30_minute_style_network_cut_loses_nothing(node_factory, proxy, ingest):
    """The worker is cut off while it produces 6,000 records (six times the broker's default offline
    queue); once the network is back every one is in the database exactly once."""
    node = cut_off(with_source(node_factory(time_scale=100.0, via=proxy)).start(), proxy)
    node.pio("run", "record_source", "--count", "6000", "--per_tick", "50")
    wait_until(lambda: outbox(node)["pending"] >= 6000, timeout=60, message="the outbox to hold 6000 records")
    assert ingest.values(node.unit) == []  # nothing could have gone out
    proxy.restore()
    assert wait_all_stored(ingest, node, 6000) == list(range(1, 6001))
    assert_no_gaps(ingest)


def test_broker_restart_and_ingest_restart_mid_stream(node_factory, broker, ingest):
    node = with_source(node_factory(time_scale=100.0)).start()
    node.pio("run", "record_source", "--count", "4000", "--per_tick", "5")
    wait_until(lambda: len(ingest.values(node.unit)) > 300, timeout=30, message="the stream to start arriving")
    broker.restart()
    wait_until(lambda: len(ingest.values(node.unit)) > 1200, timeout=60, message="the stream to resume after the broker restart")
    ingest.stop(signal.SIGKILL)  # the leader dies without a goodbye, mid-stream
    ingest.start()
    assert wait_all_stored(ingest, node, 4000) == list(range(1, 4001))
    assert_no_gaps(ingest)


def bridge_pid(node) -> int | None:
    for pid in group_members(node.pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"MQTTBridge" in f.read():
                    return pid
        except OSError:
            continue
    return None


def test_sigkill_of_the_bridge_while_it_drains(node_factory, proxy, ingest):
    """Every record written to the outbox arrives exactly once, though the bridge dies mid-drain."""
    node = cut_off(with_source(node_factory(time_scale=100.0, via=proxy)).start(), proxy)
    node.pio("run", "record_source", "--count", "5000", "--per_tick", "50")
    wait_until(lambda: outbox(node)["pending"] >= 5000, timeout=60, message="a backlog of 5000 records")
    killed = bridge_pid(node)
    assert killed is not None
    proxy.restore()
    wait_until(lambda: 0 < len(ingest.values(node.unit)), timeout=30, message="the drain to start")
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: bridge_pid(node) not in (None, killed), timeout=20, message="the supervisor to restart the bridge")
    assert wait_all_stored(ingest, node, 5000) == list(range(1, 5001))
    assert_no_gaps(ingest)


def test_a_duplicate_flood_changes_nothing(node_factory, broker, ingest):
    """The same batches replayed ten times (as a confused worker or a broker redelivering would) leave
    every table's row count as it was."""
    node = with_source(node_factory(time_scale=100.0)).start()
    node.pio("run", "record_source", "--count", "500", "--per_tick", "50")
    wait_all_stored(ingest, node, 500)
    tables = [t for (t,) in ingest.query("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'")]
    before = {t: ingest.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}
    # Rebuild the batches from what the database holds and publish each 10 times as the unit would.
    rows = ingest.query("SELECT stream, seq, timestamp, value FROM settings_history WHERE job_name='record_source' AND setting='n' ORDER BY seq")
    topic = topics.job_topic(node.unit, node.experiment, "record_source", "n")
    batch = records.Batch(unit=node.unit, sent_at="2026-11-28T10:00:00.000Z", records=tuple(
        records.Record(stream=s, seq=q, at=t, topic=topic, payload=v) for s, q, t, v in rows))
    handled = (ingest.health() or {}).get("batches", 0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for _ in range(10):
            client.publish(topics.outbox_topic(node.unit), records.encode_batch(batch), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_until(lambda: (ingest.health() or {}).get("batches", 0) >= handled + 10, timeout=20, message="the flood to be processed")
    after = {t: ingest.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}
    assert after == before


def test_every_actors_log_lines_reach_the_leaders_database(node_factory, proxy, ingest):
    """Job lines, the supervisor's, a driver's boot lines (logged before the bridge existed) and the
    bridge's own warning about losing the broker (logged while it was cut off) all arrive."""
    node = cut_off(with_source(node_factory(time_scale=100.0, via=proxy)).start(), proxy)
    node.pio("run", "record_source", "--count", "10", "--per_tick", "10")
    proxy.restore()

    def tasks() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for task, message in ingest.query("SELECT task, message FROM logs WHERE pioreactor_unit = ?", node.unit):
            found.setdefault(task, []).append(message)
        return found

    wait_until(lambda: {"record_source", "mqtt_bridge", "pigpio_backend"} <= set(tasks()), timeout=30,
               message="job, bridge and driver log lines in the database")
    found = tasks()
    assert any("lost the broker" in m for m in found["mqtt_bridge"])
    assert any("GPIO" in m for m in found["pigpio_backend"])
    assert "ready." in found["record_source"]
    # Each line once: the log file and the database agree on the bridge's warning.
    assert sum("lost the broker" in m for m in found["mqtt_bridge"]) == node.log_text().count("lost the broker")


def test_a_power_cycle_while_cut_off_loses_nothing(node_factory, proxy, ingest):
    """The unit loses its network, then its power (every process killed at once) with records still
    in its outbox; it boots again, its network comes back, and every record arrives once."""
    node = cut_off(with_source(node_factory(time_scale=100.0, via=proxy)).start(), proxy)
    node.pio("run", "record_source", "--count", "2000", "--per_tick", "50")
    wait_until(lambda: outbox(node)["pending"] >= 2000, timeout=60, message="a backlog of 2000 records")
    os.kill(node.daemon_pid, signal.SIGKILL)
    os.killpg(node.pgid, signal.SIGKILL)
    wait_until(lambda: not node.processes(), timeout=20, message="every process of the node gone")
    node.pio("node", "start")
    node._remember()
    wait_until(lambda: outbox(node).get("pending", 0) >= 2000, timeout=20, message="the backlog still there after the power cut")
    proxy.restore()
    assert wait_all_stored(ingest, node, 2000) == list(range(1, 2001))
    assert_no_gaps(ingest)
