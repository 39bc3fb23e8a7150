"""The node and its broker: reconnection and self-healing retained state."""

from __future__ import annotations

import shutil
import time

from tests.support import MqttWatcher, wait_until


def test_broker_restart_the_node_reconnects_and_republishes_its_state(node, broker, mqtt_watcher: MqttWatcher):
    node.pio("run", "stirring", "--target-rpm", "500")
    state = node.topic("stirring", "$state")
    mqtt_watcher.wait_for(state, "ready")
    pid_before = node.job("stirring")["pid"]

    broker.stop()
    # Throw away what the broker remembered: whatever is retained afterwards, the node put back.
    shutil.rmtree(broker.persistence_dir)
    broker.persistence_dir.mkdir()
    wait_until(lambda: not node.pio_json("status")["broker"]["connected"], 10, message="node notices the broker is gone")
    # Control stays local: the job keeps running while the broker is away.
    assert node.job("stirring")["state"] == "ready"

    since = time.monotonic()
    broker.start()
    wait_until(lambda: node.pio_json("status")["broker"]["connected"], 20, message="node reconnects")
    mqtt_watcher.wait_for(state, "ready", timeout=20, since=since)
    assert mqtt_watcher.retained(state) == "ready"
    assert mqtt_watcher.retained(node.topic("stirring", "target_rpm")) == "500.0"
    assert mqtt_watcher.retained(f"pioreactor/{node.unit}/$node/$state") == "ready"
    assert node.job("stirring")["pid"] == pid_before  # nothing was restarted

    # Commands over MQTT work again.
    mqtt_watcher.publish(node.topic("stirring", "target_rpm/set"), "550")
    mqtt_watcher.wait_for(node.topic("stirring", "target_rpm"), "550.0")


def test_node_starts_without_a_broker_and_connects_when_it_appears(node_factory, broker):
    broker.stop()
    node = node_factory().start()
    node.pio("run", "stirring")  # jobs run with no broker at all
    assert node.pio_json("status")["broker"]["connected"] is False
    broker.start()
    wait_until(lambda: node.pio_json("status")["broker"]["connected"], 20, message="node connects late")
    with MqttWatcher(broker.host, broker.port) as watcher:
        assert watcher.retained(node.topic("stirring", "$state")) == "ready"
