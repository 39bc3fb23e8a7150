"""LED jobs on a simulated unit: light_dark_cycle's exact phase boundaries on the node clock, settings
changes, sleep and stop, silent, and the one-shot led_intensity."""

from __future__ import annotations

import json
import time
from datetime import datetime

from actors import topics
from tests.support import MqttWatcher, wait_until


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def leds(node) -> str:
    return topics.leds_topic(node.unit)


def change_events(mqtt_watcher: MqttWatcher, node, since: float | None = None) -> list[dict]:
    topic = topics.led_change_events_topic(node.unit, node.experiment)
    return [json.loads(p) for p in mqtt_watcher.values(topic, since=since)]


def switches(events: list[dict], channel: str = "C") -> list[tuple[float, float]]:
    """(node time, intensity) of each change of ``channel``."""
    return [(epoch(e["timestamp"]), e["intensity"]) for e in events if e["channel"] == channel]


def test_light_dark_cycle_switches_c_and_d_at_the_exact_boundaries(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0).start()
    node.pio(
        "run", "led_automation", "--automation-name", "light_dark_cycle", "--light-intensity", "40",
        "--light-duration-minutes", "0.3", "--dark-duration-minutes", "0.2",
    )
    # Light 18 s, dark 12 s: the retained LED state goes 40 -> 0 -> 40 -> 0 on C and D together.
    lit = lambda p: json.loads(p)["C"] == 40.0 and json.loads(p)["D"] == 40.0  # noqa: E731
    dark = lambda p: json.loads(p)["C"] == 0.0 and json.loads(p)["D"] == 0.0  # noqa: E731
    mqtt_watcher.wait_for_sequence(leds(node), [lit, dark, lit, dark], timeout=15)

    events = change_events(mqtt_watcher, node)
    assert {e["source_of_event"] for e in events} == {"led_automation"}
    c, d = switches(events, "C"), switches(events, "D")
    assert [i for _, i in c[:4]] == [40.0, 0.0, 40.0, 0.0] and [i for _, i in d[:4]] == [40.0, 0.0, 40.0, 0.0]
    start = c[0][0]
    schedule = [0.0, 18.0, 30.0, 48.0]
    # Measured on the node clock (the events' timestamps), each switch is within 1 simulated second.
    for (at, _), due in zip(c[:4], schedule):
        assert abs((at - start) - due) < 1.0, f"switch at {at - start:.2f} s, due at {due} s"
    latest = json.loads(mqtt_watcher.last(node.topic("led_automation", "latest_event")))
    assert latest["event_name"] == "ChangedLedIntensity"

    # Sleep turns lit LEDs off (and records it); stop does too.
    mqtt_watcher.wait_for(leds(node), lit, timeout=10, since=time.monotonic())
    since = time.monotonic()
    mqtt_watcher.publish(node.topic("led_automation", "$state/set"), "sleeping")
    node.wait_job_state("led_automation", "sleeping")
    wait_until(lambda: dark(mqtt_watcher.last(leds(node))), 5, message="LEDs off asleep")
    wait_until(lambda: [e["intensity"] for e in change_events(mqtt_watcher, node, since)] == [0.0, 0.0], 5, message="switch-off recorded")
    mqtt_watcher.publish(node.topic("led_automation", "$state/set"), "ready")
    node.wait_job_state("led_automation", "ready")
    node.pio("kill", "led_automation")
    wait_until(lambda: dark(mqtt_watcher.last(leds(node))), 5, message="LEDs off after stop")


def test_changing_a_duration_reschedules_the_boundary_at_once(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0).start()
    node.pio(
        "run", "led_automation", "--automation-name", "light_dark_cycle", "--light-intensity", "40",
        "--light-duration-minutes", "1", "--dark-duration-minutes", "1",
    )
    mqtt_watcher.wait_for(leds(node), lambda p: json.loads(p)["C"] == 40.0)
    # A new intensity applies at once while lit.
    node.pio("jobs", "set", "led_automation", "light_intensity", "70")
    mqtt_watcher.wait_for(leds(node), lambda p: json.loads(p)["C"] == 70.0 and json.loads(p)["D"] == 70.0)
    # The light phase began at 0 and is now 30 s long: it ends at 30 s instead of 60 s.
    since = time.monotonic()
    node.pio("jobs", "set", "led_automation", "light_duration_minutes", "0.5")
    mqtt_watcher.wait_for(leds(node), lambda p: json.loads(p)["C"] == 0.0, timeout=10, since=since)
    wait_until(lambda: len(switches(change_events(mqtt_watcher, node), "C")) == 3, 5, message="the dark switch recorded")
    c = switches(change_events(mqtt_watcher, node), "C")
    assert [i for _, i in c] == [40.0, 70.0, 0.0]
    assert abs((c[2][0] - c[0][0]) - 30.0) < 1.0
    assert node.job("led_automation")["settings"]["light_duration_minutes"] == 0.5

    # A bad value is refused with the reason, and the schedule goes on unchanged.
    refused = node.pio("jobs", "set", "led_automation", "light_intensity", "150", check=False)
    assert refused.returncode != 0 and "0..100" in refused.stderr
    assert node.job("led_automation")["settings"]["light_intensity"] == 70.0


def test_silent_leaves_the_leds_alone_and_bad_options_are_refused(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "led_intensity", "--B", "15")
    mqtt_watcher.wait_for(leds(node), lambda p: json.loads(p)["B"] == 15.0)
    node.pio("run", "led_automation", "--automation-name", "silent")
    node.wait_job_state("led_automation", "ready")
    assert mqtt_watcher.values(node.topic("led_automation", "latest_event")) == []
    assert json.loads(mqtt_watcher.last(leds(node))) == {"A": 0.0, "B": 15.0, "C": 0.0, "D": 0.0}
    node.pio("kill", "led_automation")

    unknown = node.pio("run", "led_automation", "--automation-name", "disco", check=False)
    assert unknown.returncode != 0 and "unknown led automation 'disco'" in unknown.stderr and "light_dark_cycle" in unknown.stderr
    bad = node.pio("run", "led_automation", "--automation-name", "light_dark_cycle", "--light-intensity", "150", check=False)
    assert bad.returncode != 0 and "light_intensity must be in 0..100 %" in bad.stderr
    both_zero = node.pio(
        "run", "led_automation", "--automation-name", "light_dark_cycle",
        "--light-duration-minutes", "0", "--dark-duration-minutes", "0", check=False,
    )
    assert both_zero.returncode != 0 and "cannot both be 0" in both_zero.stderr
    assert node.job("led_automation") is None
    assert json.loads(mqtt_watcher.last(leds(node)))["C"] == 0.0


def test_led_intensity_sets_channels_records_events_and_refuses_bad_values(node, mqtt_watcher: MqttWatcher):
    node.pio("run", "led_intensity", "--A", "10", "--C", "55.5", "--source-of-event", "me")
    mqtt_watcher.wait_for(leds(node), lambda p: json.loads(p) == {"A": 10.0, "B": 0.0, "C": 55.5, "D": 0.0})
    wait_until(lambda: len(change_events(mqtt_watcher, node)) == 2, 5, message="two LED change events")
    events = sorted(change_events(mqtt_watcher, node), key=lambda e: e["channel"])
    assert [(e["channel"], e["intensity"], e["source_of_event"]) for e in events] == [("A", 10.0, "me"), ("C", 55.5, "me")]
    assert all(set(e) == {"channel", "intensity", "source_of_event", "timestamp"} for e in events)
    wait_until(lambda: node.job("led_intensity") is None, 5, message="led_intensity is a one-shot")
    assert abs(node.pio_json("sim", "truth")["leds"]["C"] - 55.5) < 0.5  # the DAC's 8-bit step

    since = time.monotonic()
    too_bright = node.pio("run", "led_intensity", "--C", "120", check=False)
    assert too_bright.returncode != 0 and "above the maximum" in too_bright.stderr and "100" in too_bright.stderr
    nothing = node.pio("run", "led_intensity", check=False)
    assert nothing.returncode != 0 and "at least one channel" in nothing.stderr
    assert abs(node.pio_json("sim", "truth")["leds"]["C"] - 55.5) < 0.5  # nothing changed
    assert change_events(mqtt_watcher, node, since) == []
