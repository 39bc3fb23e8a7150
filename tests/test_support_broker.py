"""The test harness itself: a real broker with persistence, the watcher, and deadline waits."""

import socket
import time

import paho.mqtt.client as mqtt
import pytest

from tests.support.broker import Mosquitto, free_port
from tests.support.waiting import wait_until


def _publish_with_other_client(host, port, topic, payload, retain=False):
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id="other-publisher", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_retained_message_survives_restart(broker, mqtt_watcher):
    topic = "pioreactor/unit1/exp1/stirring/target_rpm"
    mqtt_watcher.publish(topic, "500", retain=True)
    assert mqtt_watcher.retained(topic) == "500"
    port, pid = broker.port, broker.pid

    broker.restart()

    assert broker.port == port and broker.pid != pid
    assert mqtt_watcher.retained(topic) == "500"
    # The watcher reconnects by itself, re-subscribes, and gets the retained value again.
    wait_until(lambda: mqtt_watcher.connect_count >= 2, message="watcher did not reconnect")
    since = time.monotonic()
    mqtt_watcher.publish(topic, "600", retain=True)
    assert mqtt_watcher.wait_for(topic, "600", since=since) == "600"


def test_cleared_retained_message_reads_as_none(broker, mqtt_watcher):
    topic = "pioreactor/unit1/exp1/od_reading/$state"
    mqtt_watcher.publish(topic, "ready", retain=True)
    assert mqtt_watcher.retained(topic) == "ready"
    mqtt_watcher.publish(topic, "", retain=True)
    started = time.monotonic()
    assert mqtt_watcher.retained(topic) is None
    assert mqtt_watcher.retained("pioreactor/never/published") is None
    assert time.monotonic() - started < 2.0, "retained() should not wait out its deadline"


def test_watcher_sees_message_from_another_client(broker, mqtt_watcher):
    topic = "pioreactor/unit2/exp1/temperature_control/temperature"
    for value in ("30.1", "30.4", "31.0"):
        _publish_with_other_client(broker.host, broker.port, topic, value)
    assert mqtt_watcher.wait_for(topic, lambda p: float(p) > 30.5) == "31.0"
    mqtt_watcher.wait_for_sequence(topic, ["30.1", "31.0"])
    assert mqtt_watcher.values(topic) == ["30.1", "30.4", "31.0"]
    assert mqtt_watcher.last(topic) == "31.0"
    assert [m.retain for m in mqtt_watcher.messages(topic)] == [False, False, False]
    # Outside the subscription filter: not recorded.
    _publish_with_other_client(broker.host, broker.port, "elsewhere/x", "1")
    assert mqtt_watcher.messages("elsewhere/x") == []


def test_watcher_wait_for_reports_recorded_payloads(broker, mqtt_watcher):
    topic = "pioreactor/unit1/exp1/dosing/$state"
    mqtt_watcher.publish(topic, "init")
    mqtt_watcher.wait_for(topic, "init")
    with pytest.raises(AssertionError, match=r"'ready'.*\['init'\]"):
        mqtt_watcher.wait_for(topic, "ready", timeout=0.3)


def test_wait_until_raises_on_timeout_with_message():
    calls = []

    def never():
        calls.append(1)
        return 0

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^pump never primed: .*last value: 0$"):
        wait_until(never, timeout=0.3, interval=0.05, message="pump never primed")
    assert 0.3 <= time.monotonic() - started < 2.0
    assert len(calls) >= 2
    assert wait_until(lambda: "done", timeout=0.1) == "done"


def test_broker_listens_only_on_loopback(broker):
    assert broker.host == "127.0.0.1"
    assert broker.port != 1883
    with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
        pass
    # Bound to 127.0.0.1 only: another loopback address (same lo interface on Linux) is refused,
    # which it would not be for a 0.0.0.0 listener.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", broker.port), timeout=1).close()
    # And the kernel's table of listening sockets agrees.
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, port = local.rsplit(":", 1)
                if state == "0A" and int(port, 16) == broker.port:  # 0A = LISTEN
                    listening.append((table, addr))
    assert listening == [("/proc/net/tcp", "0100007F")]  # 127.0.0.1, little-endian hex


def test_stop_is_idempotent_and_frees_the_port():
    mosquitto = Mosquitto()
    try:
        mosquitto.start()
        port = mosquitto.port
        mosquitto.stop()
        mosquitto.stop()
        assert not mosquitto.running
        wait_until(lambda: _refused(port), timeout=5, message="port still accepting after stop")
    finally:
        mosquitto.cleanup()


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_free_port_is_bindable_and_never_1883():
    port = free_port()
    assert port != 1883
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
