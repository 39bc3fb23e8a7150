"""A node follows its desired state and answers the leader's commands (real broker, real node processes).

The leader here is a plain MQTT client (the watcher) publishing on the contract topics of issue 5.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

from tests.support import MqttWatcher, wait_until
from worker.processes import pid_alive

TIME_SCALE = 20.0


def desired(node, jobs: dict[str, dict[str, str]], generation: str) -> str:
    return json.dumps({"generation": generation, "experiment": node.experiment, "jobs": jobs, "issued_at": "2024-01-01T00:00:00.000Z"})


def node_topic(node, attr: str) -> str:
    return f"pioreactor/{node.unit}/$node/{attr}"


def apply(node, watcher: MqttWatcher, jobs: dict[str, dict[str, str]], generation: str) -> None:
    watcher.publish(node_topic(node, "desired"), desired(node, jobs, generation), retain=True)


def actual_in_sync(watcher: MqttWatcher, node, generation: str, since: float | None = None, timeout: float = 20.0) -> dict:
    def synced(payload: str) -> bool:
        body = json.loads(payload)
        return body["generation"] == generation and body["in_sync"] is True

    return json.loads(watcher.wait_for(node_topic(node, "actual"), synced, timeout=timeout, since=since))


def command(node, watcher: MqttWatcher, timeout: float = 20.0, retain: bool = False, **fields) -> dict:
    body = {"id": uuid.uuid4().hex, "expires_at": time.time() + 30, **fields}
    if not retain:
        # Commands are not retained: one sent before the node has subscribed is never seen (as with
        # `pios run`, which reports that unit as not answering). The node says `ready` after subscribing.
        watcher.wait_for(node_topic(node, "$state"), "ready", timeout=timeout)
    since = time.monotonic()
    watcher.publish(node_topic(node, "command"), json.dumps(body), retain=retain)
    if retain:
        return body
    payload = watcher.wait_for(node_topic(node, "result"), lambda p: json.loads(p)["id"] == body["id"], timeout=timeout, since=since)
    return json.loads(payload)


def jobs_by_name(node) -> dict[str, dict]:
    return {j["name"]: j for j in node.pio_json("jobs", "list")}


def test_desired_state_starts_jobs_sets_in_place_restarts_for_startup_options_and_stops_removed_jobs(node_factory, mqtt_watcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "led_intensity", "--A", "10")  # a one-shot by hand: no desired state ever touches it
    apply(node, mqtt_watcher, {"stirring": {"target_rpm": "400"}, "od_reading": {}}, "g1")

    body = actual_in_sync(mqtt_watcher, node, "g1")
    assert body["jobs"]["stirring"]["settings"] == {"target_rpm": "400.0"} and body["jobs"]["stirring"]["managed"]
    jobs = jobs_by_name(node)
    assert jobs["stirring"]["state"] == jobs["od_reading"]["state"] == "ready"
    assert jobs["stirring"]["settings"]["target_rpm"] == 400.0
    assert jobs["stirring"]["experiment"] == node.experiment
    stirring_pid = jobs["stirring"]["pid"]

    # A changed setting is applied in place; a job removed from the desired state is stopped.
    since = time.monotonic()
    apply(node, mqtt_watcher, {"stirring": {"target_rpm": "600"}}, "g2")
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "600.0", since=since)
    mqtt_watcher.wait_for(node.topic("od_reading", "$state"), "disconnected", since=since)
    actual_in_sync(mqtt_watcher, node, "g2", since=since)
    jobs = jobs_by_name(node)
    assert set(jobs) == {"stirring"}
    assert jobs["stirring"]["pid"] == stirring_pid  # no restart for a settable value

    # A startup-only option needs a restart: a new process, with the desired options.
    since = time.monotonic()
    apply(node, mqtt_watcher, {"stirring": {"target_rpm": "600", "use_rpm": "false"}}, "g3")
    actual_in_sync(mqtt_watcher, node, "g3", since=since)
    job = node.wait_job_state("stirring", "ready")
    assert job["pid"] != stirring_pid and job["settings"]["use_rpm"] is False and job["settings"]["target_rpm"] == 600.0

    # The same desired state delivered again (a second apply) changes nothing.
    apply(node, mqtt_watcher, {"stirring": {"target_rpm": "600", "use_rpm": "false"}}, "g3")
    assert command(node, mqtt_watcher, action="set", job="stirring", setting="target_rpm", value="600")["ok"]  # a marker: g3 was seen
    assert node.job("stirring")["pid"] == job["pid"]

    log = node.log_text()
    assert "reconcile (desired state g1): starting od_reading" in log
    assert "reconcile (desired state g2): stopping od_reading" in log
    assert "reconcile (desired state g2): setting stirring target_rpm to 600" in log
    assert "reconcile (desired state g3): starting stirring --target-rpm 600 --use-rpm false (restart)" in log


def test_a_hand_started_job_is_left_alone_and_a_malformed_desired_state_changes_nothing(node_factory, mqtt_watcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    node.pio("run", "od_reading")
    apply(node, mqtt_watcher, {"stirring": {}}, "g1")
    body = actual_in_sync(mqtt_watcher, node, "g1")
    assert body["jobs"]["od_reading"]["managed"] is False

    since = time.monotonic()
    mqtt_watcher.publish(node_topic(node, "desired"), '{"generation": "g2", "jobs": {}}', retain=True)
    refused = mqtt_watcher.wait_for(node_topic(node, "actual"), lambda p: json.loads(p)["refused"], since=since)
    assert "experiment" in json.loads(refused)["refused"] and json.loads(refused)["generation"] == "g1"
    apply(node, mqtt_watcher, {}, "g3")  # stirring was managed: stopped; od_reading was not: left running
    actual_in_sync(mqtt_watcher, node, "g3", since=since)
    assert set(jobs_by_name(node)) == {"od_reading"}


def test_a_node_comes_back_to_its_desired_jobs_without_the_broker(node_factory, broker, mqtt_watcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    apply(node, mqtt_watcher, {"stirring": {"target_rpm": "450"}}, "g1")
    actual_in_sync(mqtt_watcher, node, "g1")
    assert json.loads((node.state_dir / node.unit / "desired.json").read_text())["desired"]["generation"] == "g1"

    # A clean stop, then a start with the leader's broker away.
    node.pio("node", "stop")
    broker.stop()
    node.start()
    job = node.wait_job_state("stirring", "ready", timeout=20)
    assert job["settings"]["target_rpm"] == 450.0
    assert node.pio_json("status")["broker"]["connected"] is False

    # A crash (SIGKILL of the daemon and the actor system's admin), then a start, still without a broker.
    admin = node.admin_pid
    os.kill(node.daemon_pid, signal.SIGKILL)
    os.kill(admin, signal.SIGKILL)
    wait_until(lambda: not pid_alive(admin), 5, message="admin gone")
    node.pio("node", "start")
    node._remember()
    job = node.wait_job_state("stirring", "ready", timeout=20)
    assert job["settings"]["target_rpm"] == 450.0
    assert set(jobs_by_name(node)) == {"stirring"}

    # The broker comes back: the node reports in sync, and the retained desired state restarts nothing.
    broker.start()
    wait_until(lambda: node.pio_json("status")["broker"]["connected"], 20, message="node reconnects")
    assert json.loads(mqtt_watcher.retained(node_topic(node, "actual")))["in_sync"] is True
    assert command(node, mqtt_watcher, action="set", job="stirring", setting="target_rpm", value="450")["ok"]
    assert node.job("stirring")["pid"] == job["pid"]


def test_commands_run_set_kill_and_refusals(node_factory, mqtt_watcher):
    node = node_factory(time_scale=TIME_SCALE).start()
    result = command(node, mqtt_watcher, action="run", job="stirring", options={"target_rpm": "300"})
    assert result == {"id": result["id"], "unit": node.unit, "ok": True, "error": None}
    assert node.job("stirring")["settings"]["target_rpm"] == 300.0

    assert command(node, mqtt_watcher, action="set", job="stirring", setting="target_rpm", value="350")["ok"]
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "350.0")

    bad = command(node, mqtt_watcher, action="set", job="stirring", setting="target_rpm", value="fast")
    assert bad["ok"] is False and "not a number" in bad["error"] and "\n" not in bad["error"]
    unknown = command(node, mqtt_watcher, action="run", job="centrifuge")
    assert unknown["ok"] is False and "unknown job 'centrifuge'" in unknown["error"]
    already = command(node, mqtt_watcher, action="run", job="stirring")
    assert already["ok"] is False and "already running" in already["error"]
    malformed = command(node, mqtt_watcher, action="explode", job="stirring")
    assert malformed["ok"] is False and "unknown action" in malformed["error"]

    expired = command(node, mqtt_watcher, action="kill", job="stirring", expires_at=time.time() - 5)
    assert expired["ok"] is False and "expired" in expired["error"]
    assert node.job("stirring")["state"] == "ready"

    assert command(node, mqtt_watcher, action="kill", job="stirring")["ok"]
    assert node.job("stirring") is None


def test_a_retained_command_is_never_run(node_factory, mqtt_watcher):
    node = node_factory(time_scale=TIME_SCALE)
    stale = command(node, mqtt_watcher, retain=True, action="run", job="stirring")
    node.start()
    # A later live command is answered after the retained one was delivered (in order, on subscribing).
    assert command(node, mqtt_watcher, action="kill", job="od_reading")["ok"] is False
    assert not [p for p in mqtt_watcher.values(node_topic(node, "result")) if json.loads(p)["id"] == stale["id"]]
    assert node.job("stirring") is None
    assert "ignored a retained command" in node.log_text()
