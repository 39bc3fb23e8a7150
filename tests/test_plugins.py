"""Plugins end to end: the worked examples in tests/plugins/ on simulated nodes, found and run by the real
`pio` CLI the way a user would drop them in or install them.

* ``automations/pulse_feed.py``: a drop-in dosing automation (``<plugin_dir>/automations/``);
* ``doubling_time.py``: a drop-in job (``<plugin_dir>/<job>.py``);
* ``entry_point/``: an installed package's layout (module + ``*.dist-info/entry_points.txt``) declaring
  the LED automation ``constant_light`` in the ``pioactors.automations`` group; the node is started with
  that folder on PYTHONPATH, which is all importlib.metadata needs to find it (no pip).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from actors import topics
from actors.automations.dosing.policies import Inputs, Reading
from actors.automations.events import DilutionEvent, ErrorOccurred, NoEvent
from actors.bioreactor import BioreactorState
from actors.clock import utc_iso
from tests.support import MqttWatcher, wait_until
from tests.test_node_dosing import calibrate_pumps

PLUGINS = Path(__file__).parent / "plugins"
PULSE_FEED = PLUGINS / "automations" / "pulse_feed.py"


def load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drop_in_automation(node, source: Path = PULSE_FEED, text: str | None = None) -> Path:
    folder = node.plugin_dir / "automations"
    folder.mkdir(exist_ok=True)
    target = folder / source.name
    target.write_text(source.read_text() if text is None else text)
    return target


def refusal(node, *args: str) -> str:
    result = node.pio("run", *args, check=False)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def dosing_events(watcher: MqttWatcher, node) -> list[dict]:
    return [json.loads(p) for p in watcher.values(topics.dosing_events_topic(node.unit, node.experiment))]


def latest_event(watcher: MqttWatcher, node) -> dict:
    return json.loads(watcher.last(node.topic("dosing_automation", "latest_event")) or "{}")


# -- the example plugins as pure code: what they decide, without a node ----------------------------------


def test_pulse_feed_pulses_only_a_dense_enough_culture_and_never_on_stale_od():
    PulseFeed = load_file(PULSE_FEED, "pulse_feed_under_test").PulseFeed
    policy = PulseFeed(exchange_volume_ml=0.5, min_normalized_od=1.2, duration=10)
    books = BioreactorState(current_volume_ml=15.0, efflux_tube_volume_ml=15.0, max_fill_ml=18.0)
    sparse = Inputs(bioreactor=books, normalized_od=Reading(1.1, 0.0))
    first = policy.decide(sparse, 0.0)  # not due yet: the first run is 2 s after the start
    assert first.exchange is None and first.next_check == pytest.approx(2.0)
    young = policy.decide(sparse, 2.0)
    assert young.exchange is None and isinstance(young.event, NoEvent) and "not feeding yet" in young.event.message
    assert young.next_check == pytest.approx(602.0)  # every 10 minutes
    dense = Inputs(bioreactor=books, normalized_od=Reading(1.3, 600.0))
    fed = policy.decide(dense, 602.0)
    assert isinstance(fed.event, DilutionEvent)
    assert (fed.exchange.media_ml, fed.exchange.waste_ml) == (0.5, 0.5)
    stale = policy.decide(dense, 602.0 + 600.0 + 400.0)  # the reading is 1000 s old by then
    assert stale.exchange is None and isinstance(stale.event, ErrorOccurred)
    with pytest.raises(ValueError, match="min_normalized_od"):
        policy.update({"min_normalized_od": -1}, books)
    assert policy.min_normalized_od == 1.2  # a refused change leaves the old value
    with pytest.raises(ValueError, match="max fill"):
        PulseFeed(exchange_volume_ml=0.5).update({"exchange_volume_ml": 40}, books)


def test_doubling_time_is_ln2_over_the_growth_rate_and_none_without_growth():
    doubling_time_hours = load_file(PLUGINS / "doubling_time.py", "doubling_time_under_test").doubling_time_hours
    assert doubling_time_hours(math.log(2) / 3.0) == pytest.approx(3.0)
    assert doubling_time_hours(0.0) is None and doubling_time_hours(-0.1) is None
    assert doubling_time_hours(float("nan")) is None


# -- a drop-in dosing automation, end to end ----------------------------------------------------------


def test_a_drop_in_dosing_automation_runs_on_real_readings_with_its_parameters_as_settings(
    node_factory, mqtt_watcher: MqttWatcher
):
    node = node_factory(time_scale=300.0, simulation={"ambient_c": 37.0, "lag_hours": 0.0}).start()
    drop_in_automation(node)
    calibrate_pumps(node)
    node.pio("run", "monitor")  # the vial's books, from the dosing events
    node.pio("run", "od_reading", "--interval", "30")
    node.pio("run", "growth_rate_calculating")
    node.pio("run", "dosing_automation", "--automation-name", "pulse_feed",
             "--exchange-volume-ml", "0.5", "--min-normalized-od", "0.5", "--duration", "2")
    node.wait_job_state("dosing_automation", "ready")

    # Its parameters are the job's settings, published retained like any built-in's.
    for name, value in (("exchange_volume_ml", 0.5), ("min_normalized_od", 0.5), ("duration", 2.0)):
        mqtt_watcher.wait_for(node.topic("dosing_automation", name), lambda p, v=value: float(p) == v)

    # It doses: media in, then waste and the extra waste, as dosing events the books count.
    wait_until(lambda: len(dosing_events(mqtt_watcher, node)) >= 3, 25, message="a pulse's three pump runs")
    first = dosing_events(mqtt_watcher, node)[:3]
    assert [(e["event"], e["volume_change"]) for e in first] == [("add_media", 0.5), ("remove_waste", 0.5), ("remove_waste", 1.0)]
    assert all(e["source_of_event"] == "dosing_automation" for e in first)
    assert "normalized OD" in mqtt_watcher.wait_for(
        node.topic("dosing_automation", "latest_event"), lambda p: "DilutionEvent" in p, timeout=10)

    # /set is cast and validated by the plugin's own rules: a bad value is refused and changes nothing.
    bad = node.pio("jobs", "set", "dosing_automation", "exchange_volume_ml", "-1", check=False)
    assert bad.returncode != 0 and "exchange_volume_ml must be a volume > 0 ml" in bad.stderr
    assert float(mqtt_watcher.last(node.topic("dosing_automation", "exchange_volume_ml"))) == 0.5
    # A good one applies in place: a culture below the new threshold is no longer fed.
    node.pio("jobs", "set", "dosing_automation", "min_normalized_od", "50")
    mqtt_watcher.wait_for(node.topic("dosing_automation", "min_normalized_od"), lambda p: float(p) == 50.0)
    wait_until(lambda: "not feeding yet" in latest_event(mqtt_watcher, node).get("message", ""), 15,
               message="the next period judged against the new threshold")


def test_plugin_parameters_are_refused_when_unknown_missing_or_invalid_and_nothing_starts(node_factory):
    node = node_factory(time_scale=10.0).start()
    drop_in_automation(node)
    calibrate_pumps(node)
    missing = refusal(node, "dosing_automation", "--automation-name", "pulse_feed")
    assert "pulse_feed needs --exchange-volume-ml <value>" in missing
    unknown = refusal(node, "dosing_automation", "--automation-name", "pulse_feed",
                      "--exchange-volume-ml", "1", "--feed-rate", "3")
    assert "unknown option --feed-rate" in unknown and "--min-normalized-od" in unknown  # and what it takes
    invalid = refusal(node, "dosing_automation", "--automation-name", "pulse_feed",
                      "--exchange-volume-ml", "1", "--min-normalized-od", "-2")
    assert "min_normalized_od must be >= 0" in invalid
    assert "is not a number" in refusal(node, "dosing_automation", "--automation-name", "pulse_feed",
                                         "--exchange-volume-ml", "lots")
    assert node.job("dosing_automation") is None
    assert all(duty == 0 for duty in node.pio_json("sim", "truth")["pwm"].values())


# -- fresh code per start, and broken files ----------------------------------------------------------


def test_an_edited_plugin_is_picked_up_by_the_next_run_and_a_broken_one_is_refused_by_file(node, mqtt_watcher: MqttWatcher):
    supervisor_pid = node.pio_json("status")["supervisor_pid"]
    calibrate_pumps(node)
    start = ("dosing_automation", "--automation-name", "pulse_feed", "--exchange-volume-ml", "0.5")
    plugin = drop_in_automation(node)
    node.pio("run", *start)
    mqtt_watcher.wait_for(node.topic("dosing_automation", "min_normalized_od"), "1.2")
    node.pio("kill", "dosing_automation")
    wait_until(lambda: node.job("dosing_automation") is None, 10, message="the first run gone")

    # Edit the file (a new default): the next start runs the new code, with no node restart.
    plugin.write_text(plugin.read_text().replace('"AU", 1.2,', '"AU", 2.5,'))
    since = time.monotonic()
    node.pio("run", *start)
    mqtt_watcher.wait_for(node.topic("dosing_automation", "min_normalized_od"), "2.5", since=since)

    node.pio("kill", "dosing_automation")
    wait_until(lambda: node.job("dosing_automation") is None, 10, message="the second run gone")

    # A drop-in with a syntax error: asking for it is refused with the file and the line ...
    broken = drop_in_automation(node, PULSE_FEED.with_name("typo_feed.py"), text="class TypoFeed(:\n    name = 'typo_feed'\n")
    message = refusal(node, "dosing_automation", "--automation-name", "typo_feed")
    assert "unknown dosing automation 'typo_feed'" in message
    assert f"{broken}: SyntaxError" in message and "(line 1)" in message
    # ... while the other plugins (and the built-ins) still start: one broken file does not stop them,
    # and the run that skipped it names it in the log.
    node.pio("run", *start)
    node.wait_job_state("dosing_automation", "ready")
    wait_until(lambda: f"could not be loaded: {broken}" in node.log_text(), 10, message="the skipped file logged")

    # A drop-in job with a syntax error: refused by its file name; the node keeps running.
    node.write_plugin("broken_job", "def oops(:\n    pass\n")
    assert "broken_job.py" in refusal(node, "broken_job")
    assert node.job("broken_job") is None
    assert node.pio_json("status")["supervisor_pid"] == supervisor_pid
    assert node.job("dosing_automation")["state"] == "ready"


# -- a drop-in job -------------------------------------------------------------------------------------


def test_a_drop_in_job_runs_with_pio_run_and_publishes_its_derived_value(node, mqtt_watcher: MqttWatcher):
    shutil.copy(PLUGINS / "doubling_time.py", node.plugin_dir / "doubling_time.py")
    assert "unknown option --interval" in refusal(node, "doubling_time", "--interval", "5")
    node.pio("run", "doubling_time", "--log-every-minutes", "30")
    node.wait_job_state("doubling_time", "ready")
    # A growth rate of ln2/2 per hour, as growth_rate_calculating publishes it, is a 2 h doubling time.
    rate = {"growth_rate": math.log(2) / 2.0, "timestamp": utc_iso(time.time())}
    mqtt_watcher.publish(node.topic("growth_rate_calculating", "growth_rate"), json.dumps(rate))
    mqtt_watcher.wait_for(node.topic("doubling_time", "doubling_time_hours"), lambda p: float(p) == 2.0)
    refused = node.pio("jobs", "set", "doubling_time", "log_every_minutes", "0", check=False)
    assert refused.returncode != 0 and "log_every_minutes" in refused.stderr
    node.pio("jobs", "set", "doubling_time", "log_every_minutes", "1")
    mqtt_watcher.wait_for(node.topic("doubling_time", "log_every_minutes"), lambda p: float(p) == 1.0)
    wait_until(lambda: "doubling time 2.00 h" in node.log_text(), 15, message="the periodic log line")


# -- an installed package's automation (entry point) ---------------------------------------------------


def test_an_entry_point_automation_is_found_by_name_like_a_built_in(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0)
    path = [str(PLUGINS / "entry_point"), node.env.get("PYTHONPATH", "")]
    node.env = {**node.env, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    node.start()
    leds = topics.leds_topic(node.unit)
    # It is listed among the LED automations the node knows (an unknown name's refusal lists them).
    known = refusal(node, "led_automation", "--automation-name", "constant_lite")
    assert "constant_light" in known and "light_dark_cycle" in known
    node.pio("run", "led_automation", "--automation-name", "constant_light", "--intensity", "40")
    mqtt_watcher.wait_for(leds, lambda p: json.loads(p)["C"] == 40.0 and json.loads(p)["D"] == 40.0)
    mqtt_watcher.wait_for(node.topic("led_automation", "intensity"), lambda p: float(p) == 40.0)
    refused = node.pio("jobs", "set", "led_automation", "intensity", "150", check=False)
    assert refused.returncode != 0 and "intensity must be 0-100 %" in refused.stderr
    node.pio("jobs", "set", "led_automation", "intensity", "10")
    mqtt_watcher.wait_for(leds, lambda p: json.loads(p)["C"] == 10.0)
