"""The `pio` CLI: clear one-line errors for bad input, stable JSON, fresh code at each start."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import MqttWatcher, wait_until


def one_line_error(result, *fragments: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_no_node_running(node_factory):
    node = node_factory()  # not started
    one_line_error(node.pio("status", check=False), "no node running for unit sim01", "pio node start")
    one_line_error(node.pio("run", "stirring", check=False), "no node running")
    one_line_error(node.pio("jobs", "list", check=False), "no node running")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("run", "stiring"), ("unknown job 'stiring'", "stirring")),
        (("run", "stirring", "--target-rmp", "500"), ("unknown option --target-rmp", "--target-rpm")),
        (("run", "stirring", "--target-rpm", "fast"), ("target_rpm", "not a number")),
        (("run", "stirring", "--target-rpm", "9000"), ("above the maximum", "5000")),
        (("jobs", "set", "stirring", "target_rpm", "500"), ("no job 'stirring' is running",)),
        (("kill", "stirring"), ("no job 'stirring' is running",)),
        (("kill",), ("--all",)),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(node, args, fragments):
    one_line_error(node.pio(*args, check=False), *fragments)
    assert node.pio_json("jobs", "list") == []


def test_bad_settings_of_a_running_job(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    one_line_error(node.pio("jobs", "set", "stirring", "speed", "5", check=False), "unknown setting 'speed'", "target_rpm")
    one_line_error(node.pio("jobs", "set", "stirring", "target_rpm", "abc", check=False), "not a number")
    one_line_error(node.pio("jobs", "set", "stirring", "target_rpm", "-5", check=False), "below the minimum")
    one_line_error(node.pio("jobs", "set", "stirring", "measured_rpm", "1", check=False), "read-only")
    assert node.job("stirring")["settings"]["target_rpm"] == 500.0


def test_unknown_unit_and_bad_topology(node_factory, tmp_path):
    node = node_factory()
    one_line_error(node.pio("--unit", "nope", "status", check=False), "unit 'nope' is not in", "sim01")
    bad = tmp_path / "bad.yaml"
    bad.write_text("units:\n  sim01: {hardwear: sim}\n")
    result = node.pio("--topology", str(bad), "status", check=False)
    one_line_error(result, "bad.yaml:2", "unknown key 'hardwear'", "hardware")


def test_json_outputs_are_stable(node):
    node.pio("run", "stirring", "--target-rpm", "500")
    jobs = node.pio_json("jobs", "list")
    assert [sorted(j) for j in jobs] == [["experiment", "name", "pid", "restarts", "settings", "state"]]
    assert jobs[0]["name"] == "stirring" and jobs[0]["experiment"] == "demo" and jobs[0]["state"] == "ready"
    status = node.pio_json("status")
    for key in ("unit", "version", "experiment", "hardware", "time_scale", "broker", "jobs", "outputs", "uptime_seconds"):
        assert key in status
    assert status["jobs"] == {"stirring": "ready"}
    assert status["broker"]["connected"] is True
    assert node.pio("version").stdout.startswith("pioactors ")


def test_pio_mqtt_prints_live_values(node):
    node.pio("run", "stirring")
    out = node.pio("mqtt", "-t", f"pioreactor/{node.unit}/demo/stirring/$state", "--count", "1", "--timeout", "10").stdout
    assert out.strip() == f"pioreactor/{node.unit}/demo/stirring/$state ready"


PLUGIN = '''
from actors.job import Job
from actors.settings import Setting


class Greeter(Job):
    name = "greeter"
    settings = (Setting(name="greeting", datatype="string", default="{greeting}"),)
'''


def test_an_edited_job_file_runs_fresh_code_without_restarting_the_node(node, mqtt_watcher: MqttWatcher):
    supervisor_pid = node.pio_json("status")["supervisor_pid"]
    node.write_plugin("greeter", PLUGIN.format(greeting="hello v1"))
    node.pio("run", "greeter")
    mqtt_watcher.wait_for(node.topic("greeter", "greeting"), "hello v1")
    node.pio("kill", "greeter")

    node.write_plugin("greeter", PLUGIN.format(greeting="hello v2"))
    since = time.monotonic()
    node.pio("run", "greeter")
    mqtt_watcher.wait_for(node.topic("greeter", "greeting"), "hello v2", since=since)
    assert node.pio_json("status")["supervisor_pid"] == supervisor_pid


def test_a_dropped_in_plugin_with_an_error_is_refused_by_name(node):
    node.write_plugin("broken", "from actors.job import Job\nraise ValueError('oops')\n")
    one_line_error(node.pio("run", "broken", check=False), "oops")
    assert node.pio_json("jobs", "list") == []
    wait_until(lambda: node.pio_json("status")["jobs"] == {}, 5)
    assert json.dumps(node.pio_json("status")["outputs"])  # the node is still healthy


def test_unit_and_topology_options_work_after_any_command(node):
    env_free = dict(node.env)
    env_free.pop("PIO_UNIT")
    env_free.pop("PIO_TOPOLOGY")
    node.env = env_free
    args = ("--unit", node.unit, "--topology", str(node.topology))
    node.pio("run", "stirring", "--target-rpm", "350", *args)
    assert json.loads(node.pio("jobs", "list", "--json", *args).stdout)[0]["settings"]["target_rpm"] == 350.0
    node.pio("jobs", "set", "stirring", "target_rpm", "360", *args)
    assert json.loads(node.pio("status", "--json", *args).stdout)["unit"] == node.unit
    node.pio("kill", "stirring", *args)
    assert node.pio("node", "status", *args).returncode == 0
