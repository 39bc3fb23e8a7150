"""Supervision: crashed jobs leave nothing on, come back with their settings, and crash loops stop."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.support import MqttWatcher, wait_until


def pwm_topic(node) -> str:
    return f"pioreactor/{node.unit}/$experiment/pwms/dc"


def test_sigkill_of_the_job_zeroes_its_pwm_and_it_comes_back_with_its_target(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    node.pio("jobs", "set", "stirring", "target_rpm", "650")
    before = node.job("stirring")
    mqtt_watcher.wait_for(pwm_topic(node), lambda p: json.loads(p).get("17", 0) > 0)

    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)
    # The driver forces the channel to 0 as soon as the supervisor hears of the death.
    mqtt_watcher.wait_for(pwm_topic(node), "{}", timeout=2.0, since=killed_at)
    assert time.monotonic() - killed_at < 2.0

    after = wait_until(lambda: (j := node.job("stirring")) and j["pid"] != before["pid"] and j["state"] == "ready" and j, 15)
    assert time.monotonic() - killed_at < 15.0
    assert after["settings"]["target_rpm"] == 650.0
    assert after["restarts"] == 1
    mqtt_watcher.wait_for(pwm_topic(node), lambda p: json.loads(p).get("17", 0) > 0, since=killed_at)


CRASHY = '''
from actors.job import Job
from actors.settings import Setting
from actors.supervision import RestartPolicy


class Crashy(Job):
    name = "crashy"
    settings = (Setting(name="level", datatype="integer", settable=True, default=1),)
    restart_policy = RestartPolicy(max_restarts=2, window_seconds=60, base_delay=0.1, max_delay=0.2)

    def start(self):
        self.ctx.ready()
        self.ctx.after(0.5, self.explode)  # simulated seconds: the node runs 10x

    def explode(self):
        raise RuntimeError("sensor on fire")
'''


def test_a_crash_loop_gives_up_and_reads_lost(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("crashy", CRASHY)
    node.pio("run", "crashy")
    state = node.topic("crashy", "$state")
    mqtt_watcher.wait_for(state, "lost", timeout=20)
    error = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/supervisor/error", lambda p: "crashy" in p)
    assert "giving up" in json.loads(error)["message"]
    job = node.job("crashy")
    assert job["state"] == "lost" and job["restarts"] == 2
    # A lost job can be cleared and started again by the user.
    node.pio("kill", "crashy")
    assert node.job("crashy") is None


def test_a_job_whose_code_raises_is_restarted_not_left_half_running(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("crashy", CRASHY)
    node.pio("run", "crashy")
    crash_log = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/app/error", lambda p: "sensor on fire" in p)
    assert "crashy" in json.loads(crash_log)["message"]
    warn = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/supervisor/warning", lambda p: "restarting" in p)
    assert "crashy" in warn


KILL_ORDER = '''
from actors.job import Job, {priority}


class Ordered(Job):
    name = "{name}"
    kill_priority = {priority}
'''


def test_kill_all_stops_jobs_in_the_safe_order(node, mqtt_watcher: MqttWatcher):
    # Started in the "wrong" order on purpose.
    for name, priority in [("lights", "LEDS"), ("feeder", "AUTOMATIONS"), ("warmer", "HEATING"), ("pump_a", "PUMPS")]:
        node.write_plugin(name, KILL_ORDER.format(name=name, priority=priority))
        node.pio("run", name)
    node.pio("run", "stirring")
    since = time.monotonic()
    out = node.pio("kill", "--all").stdout
    assert "pump_a" in out and "lights" in out
    def stopped():
        return [
            m.topic.split("/")[3]
            for m in mqtt_watcher.messages(f"pioreactor/{node.unit}/demo/+/$state", since=since)
            if m.payload == "disconnected"
        ]

    order = wait_until(lambda: len(stopped()) == 5 and stopped(), 10, message="five jobs disconnected")
    assert order == ["pump_a", "warmer", "feeder", "stirring", "lights"]
    assert node.pio_json("jobs", "list") == []


def test_a_stalled_stir_bar_is_kicked_and_recovers(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    rpm = node.topic("stirring", "measured_rpm")
    mqtt_watcher.wait_for(rpm, lambda p: abs(json.loads(p)["measured_rpm"] - 500) < 50, timeout=15)
    since = time.monotonic()
    node.pio("sim", "fault", "stalled_motor", "on")
    mqtt_watcher.wait_for(rpm, lambda p: json.loads(p)["measured_rpm"] == 0, since=since)
    warning = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/app/warning", lambda p: "stalled" in p, since=since)
    assert "kicking" in warning
    assert node.job("stirring")["settings"]["duty_cycle"] <= 60.0  # recovery never spirals to full power
    since = time.monotonic()
    node.pio("sim", "fault", "stalled_motor", "off")
    mqtt_watcher.wait_for(rpm, lambda p: abs(json.loads(p)["measured_rpm"] - 500) < 75, timeout=30, since=since)


def test_an_unknown_fault_knob_is_refused(node):
    result = node.pio("sim", "fault", "gremlins", "on", check=False)
    assert result.returncode != 0 and "unknown fault knob 'gremlins'" in result.stderr


HUNG = '''
import time

from actors.job import Job


class Hung(Job):
    name = "hung"

    def start(self):
        self.ctx.acquire("pwm", "stirring", self.granted)

    def granted(self, ok, error):
        self.ctx.set_duty("stirring", 80.0)
        self.ctx.ready()
        self.ctx.after(1.0, self.hang)

    def hang(self):
        time.sleep(60)  # stuck in a handler: no crash, no exit, no lease renewals
'''


def test_a_hung_job_loses_its_channel_when_its_lease_lapses(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("hung", HUNG)
    node.pio("run", "hung")
    mqtt_watcher.wait_for(pwm_topic(node), lambda p: json.loads(p).get("17") == 80.0)
    on_at = time.monotonic()
    # The process is alive but silent; the driver forces the pump off after its lease (10 s) lapses.
    mqtt_watcher.wait_for(pwm_topic(node), "{}", timeout=20, since=on_at)
    assert time.monotonic() - on_at > 5  # it was the lease, not something else
    assert wait_until(lambda: "stopped renewing its lease on stirring" in node.log_text(), 5, message="lease log line")
    # The supervisor notices the job no longer answers, kills it, and its restart policy applies.
    error = mqtt_watcher.wait_for(f"pioreactor/{node.unit}/demo/logs/supervisor/error", lambda p: "has not answered" in p, timeout=30)
    assert "hung" in error
    wait_until(lambda: (node.job("hung") or {}).get("restarts", 0) >= 1, 15, message="hung job restarted")
