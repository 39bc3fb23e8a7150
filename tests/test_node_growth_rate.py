"""growth_rate_calculating on a real node: restarts reuse the warm-up, doses are not deaths, bad OD is no NaN.

The restart test reads the simulated vessel through od_reading; the others feed exact OD series over the
broker (as another node's od_reading would), so the expected growth rate is known.
"""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from actors.clock import utc_iso
from tests.support import MqttWatcher, wait_until

T0 = 1_750_000_000.0  # epoch seconds of the first synthetic reading
INTERVAL = 5.0


def ods_message(t: float, od: float) -> str:
    stamp = utc_iso(t)
    reading = {"od": od, "angle": "90", "channel": "2", "ir_led_intensity": 80.0, "timestamp": stamp, "calibrated": 0}
    return json.dumps({"timestamp": stamp, "ods": {"2": reading}})


def dose_message(t: float, ml: float) -> str:
    return json.dumps({"volume_change": ml, "event": "add_media", "source_of_event": "test", "timestamp": utc_iso(t)})


def logs(node, level: str) -> str:
    return f"pioreactor/{node.unit}/{node.experiment}/logs/app/{level}"


def connect_feed(node, watcher: MqttWatcher) -> None:
    """Wait until the job hears the broker: send a malformed reading until it says it ignored one."""
    ods = node.topic("od_reading", "ods")

    def heard() -> bool:
        watcher.publish(ods, "{}")
        return any("ignored an od_reading/ods message" in m for m in watcher.values(logs(node, "error")))

    wait_until(heard, 15, 0.2, "growth_rate_calculating receives OD from the broker")


def rates(watcher: MqttWatcher, node) -> dict[str, dict]:
    out = {}
    for payload in watcher.values(node.topic("growth_rate_calculating", "growth_rate")):
        if payload:
            message = json.loads(payload)
            out[message["timestamp"]] = message
    return out


def readings_until_first_rate(node, watcher: MqttWatcher, since: float, first: dict) -> int:
    """OD readings taken between the job's `ready` (simulated time, from its log) and its first rate."""
    ready = [
        json.loads(p) for p in watcher.values(logs(node, "info"), since=since)
        if json.loads(p)["task"] == "growth_rate_calculating" and json.loads(p)["message"] == "ready."
    ]
    assert ready, "growth_rate_calculating logged ready."
    stamps = [json.loads(p)["timestamp"] for p in watcher.values(node.topic("od_reading", "ods"), since=since) if p]
    return sum(ready[-1]["timestamp"] < s <= first["timestamp"] for s in stamps)


def test_a_restart_reuses_the_warm_up_and_the_last_rate(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "od_reading")
    node.pio("run", "growth_rate_calculating")
    rate_topic = node.topic("growth_rate_calculating", "growth_rate")
    mqtt_watcher.wait_for(rate_topic, lambda p: p != "", timeout=20)
    cache = node.state_dir / node.unit / "growth_rate_calculating" / f"{node.experiment}.json"
    assert json.loads(cache.read_text())["normalization"]["means"]["2"] > 0

    node.pio("kill", "growth_rate_calculating")
    before = json.loads([p for p in mqtt_watcher.values(rate_topic) if p][-1])
    since = time.monotonic()
    node.pio("run", "growth_rate_calculating")
    first = json.loads(mqtt_watcher.wait_for(rate_topic, lambda p: p != "", since=since, timeout=15))
    readings = readings_until_first_rate(node, mqtt_watcher, since, first)
    assert readings <= 3, f"a new warm-up: {readings} readings before the first rate"
    assert math.isfinite(first["growth_rate"])
    # The filter restarts from the cached rate (its effect on the first estimates is in the unit tests).
    assert json.loads(cache.read_text())["growth_rate"] == pytest.approx(before["growth_rate"], abs=0.05)
    assert "reusing the normalisation factors" in node.pio("logs", "-n", "300").stdout
    assert not [p for p in mqtt_watcher.values(logs(node, "info"), since=since) if "warm-up complete" in p]

    # --clear-cache true forgets them: a full warm-up (10 readings) before the first rate.
    node.pio("kill", "growth_rate_calculating")
    since = time.monotonic()
    node.pio("run", "growth_rate_calculating", "--clear-cache", "true")
    first = json.loads(mqtt_watcher.wait_for(rate_topic, lambda p: p != "", since=since, timeout=20))
    assert readings_until_first_rate(node, mqtt_watcher, since, first) >= 10
    assert [p for p in mqtt_watcher.values(logs(node, "info"), since=since) if "warm-up complete" in p]


@pytest.mark.serial  # 180 readings in a burst, judged reading by reading: once lost one under two-worker load
def test_a_dose_is_a_dilution_not_a_death(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "growth_rate_calculating")
    connect_feed(node, mqtt_watcher)
    ods, doses = node.topic("od_reading", "ods"), f"pioreactor/{node.unit}/{node.experiment}/dosing_events"
    rng = random.Random(7)
    mu = 0.6 / 3600.0  # per second
    od, t = 0.2, T0
    stamps_after = []
    for k in range(180):
        t += INTERVAL
        od *= math.exp(mu * INTERVAL)
        if k == 120:  # 3 ml of media into 15 ml of culture, announced as the pump jobs do
            mqtt_watcher.publish(doses, dose_message(t - 2.0, 3.0))
            od *= 15.0 / 18.0
        if k >= 120:
            stamps_after.append(utc_iso(t))
        mqtt_watcher.publish(ods, ods_message(t, od * (1.0 + rng.gauss(0.0, 0.005))))
    filtered_topic = node.topic("growth_rate_calculating", "od_filtered")
    mqtt_watcher.wait_for(filtered_topic, lambda p: p != "" and json.loads(p)["timestamp"] == stamps_after[-1], timeout=20)

    published = rates(mqtt_watcher, node)
    before = [published[s]["growth_rate"] for s in sorted(published) if s < stamps_after[0]][-10:]
    after = [published.get(s) for s in stamps_after]
    assert all(r is not None for r in after), "every reading after the dose gives a rate (none rejected as outlier)"
    assert sum(before) / len(before) == pytest.approx(0.6, abs=0.08)
    assert min(r["growth_rate"] for r in after) > 0.6 - 0.12  # no dip: the dilution is not read as a death
    filtered = {json.loads(p)["timestamp"]: json.loads(p)["od_filtered"] for p in mqtt_watcher.values(filtered_topic) if p}
    previous = max(s for s in filtered if s < stamps_after[0])
    # The level follows the dilution at once.
    assert filtered[stamps_after[0]] / filtered[previous] == pytest.approx(15.0 / 18.0, abs=0.03)


def test_a_dose_during_the_warm_up_rescales_what_was_collected_and_the_warm_up_goes_on(node_factory, mqtt_watcher: MqttWatcher):
    # 4 ml into the 15 ml at the efflux level divides OD by 19/15: 0.3 before, 0.237 after. The readings
    # already collected are put on the post-dose scale, so a chemostat that doses more often than the
    # warm-up lasts (10 readings) still gets its first rate.
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "growth_rate_calculating", "--clear-cache", "true")
    connect_feed(node, mqtt_watcher)
    ods, doses = node.topic("od_reading", "ods"), f"pioreactor/{node.unit}/{node.experiment}/dosing_events"
    stamps = []
    for k in range(30):
        t = T0 + k * INTERVAL
        if k == 5:
            mqtt_watcher.publish(doses, dose_message(t - 1.0, 4.0))
        stamps.append(utc_iso(t))
        mqtt_watcher.publish(ods, ods_message(t, 0.3 if k < 5 else 0.3 * 15 / 19))
    rate_topic = node.topic("growth_rate_calculating", "growth_rate")
    mqtt_watcher.wait_for(rate_topic, lambda p: p != "" and json.loads(p)["timestamp"] == stamps[-1], timeout=15)
    first = min(rates(mqtt_watcher, node))
    # 10 readings set the scale (the last also starts the filter); the next gives a rate: the dose cost nothing.
    assert stamps.index(first) == 10
    # The scale is the post-dose level: nOD near 1, not 0.79.
    filtered = json.loads(mqtt_watcher.last(node.topic("growth_rate_calculating", "od_filtered")))
    assert filtered["od_filtered"] == pytest.approx(1.0, abs=0.02)
    # And no rate was ever pulled down by the dilution.
    assert all(abs(json.loads(p)["growth_rate"]) < 0.05 for p in mqtt_watcher.values(rate_topic) if p)


def test_zero_or_negative_od_gives_an_error_and_no_nan(node_factory, mqtt_watcher: MqttWatcher):
    node = node_factory(time_scale=10.0).start()
    node.pio("run", "growth_rate_calculating")
    connect_feed(node, mqtt_watcher)
    ods = node.topic("od_reading", "ods")
    stamps = [utc_iso(T0 + k * INTERVAL) for k in range(30)]
    values = [0.2] * 14 + [0.0, -0.01, 0.0, -1.0] + [0.2] * 12
    for k, value in enumerate(values):
        mqtt_watcher.publish(ods, ods_message(T0 + k * INTERVAL, value))
    rate_topic = node.topic("growth_rate_calculating", "growth_rate")
    mqtt_watcher.wait_for(rate_topic, lambda p: p != "" and json.loads(p)["timestamp"] == stamps[-1], timeout=15)
    errors = [json.loads(p)["message"] for p in mqtt_watcher.values(logs(node, "error"))]
    assert sum("OD must be above 0" in m for m in errors) == 1  # once per episode, not once per reading
    published = rates(mqtt_watcher, node)
    assert not set(published) & set(stamps[14:18])  # nothing from the bad readings
    assert all(math.isfinite(r["growth_rate"]) for r in published.values())
    for p in mqtt_watcher.values(node.topic("growth_rate_calculating", "od_filtered")):
        assert not p or math.isfinite(json.loads(p)["od_filtered"])
    assert any("usable again" in json.loads(p)["message"] for p in mqtt_watcher.values(logs(node, "info")))
