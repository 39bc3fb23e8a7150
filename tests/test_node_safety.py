"""Safety in the PWM driver, through real node processes."""

from __future__ import annotations

import json
import time

from tests.support import MqttWatcher, wait_until

NAN_DUTY = '''
from actors.job import Job, PUMPS


class Nanny(Job):
    name = "nanny"
    kill_priority = PUMPS

    def start(self):
        self.ctx.acquire("pwm", "media", self.granted)

    def granted(self, ok, error):
        self.ctx.set_duty("media", 50.0)
        self.ctx.ready()
        self.ctx.after(1.0, lambda: self.ctx.set_duty("media", float("nan")))
'''


def test_a_nan_duty_turns_the_output_off_never_full_on(node, mqtt_watcher: MqttWatcher):
    node.write_plugin("nanny", NAN_DUTY)
    dc = f"pioreactor/{node.unit}/$experiment/pwms/dc"
    since = time.monotonic()
    node.pio("run", "nanny")
    mqtt_watcher.wait_for(dc, lambda p: json.loads(p).get("13") == 50.0, since=since)
    on_at = time.monotonic()
    mqtt_watcher.wait_for(dc, "{}", since=on_at)
    assert all(json.loads(p).get("13", 0) <= 50.0 for p in mqtt_watcher.values(dc, since=since))
    assert wait_until(lambda: "not a number; output set to 0" in node.log_text(), 5)


HOLDER = '''
from actors.job import Job


class {cls}(Job):
    name = "{name}"

    def start(self):
        self.ctx.acquire("pwm", "waste", self.granted)

    def granted(self, ok, error):
        if not ok:
            self.ctx.fail(error)
            return
        self.ctx.ready()
'''


def test_one_owner_per_channel(node):
    node.write_plugin("first", HOLDER.format(cls="First", name="first"))
    node.write_plugin("second", HOLDER.format(cls="Second", name="second"))
    node.pio("run", "first")
    result = node.pio("run", "second", check=False)
    assert result.returncode != 0
    status = node.pio_json("status")
    assert status["outputs"]["pwm"]["owners"] == {"waste": "first"}
