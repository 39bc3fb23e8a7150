"""MqttWatcher: a plain paho-mqtt 2.x client that records every message it sees, for assertions.

It reconnects by itself when the broker restarts (paho's network thread) and re-subscribes in
on_connect. All waiting is deadline-based polling over the recorded messages.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import paho.mqtt.client as mqtt

from .waiting import wait_until

Matcher = Union[str, Callable[[str], object]]

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str  # decoded as UTF-8 (undecodable bytes replaced)
    retain: bool
    time: float  # time.monotonic() when received


def _new_client(prefix: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{prefix}-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5,
    )


def _matches(topic: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if "+" in wanted or "#" in wanted:
        return mqtt.topic_matches_sub(wanted, topic)
    return topic == wanted


def _as_predicate(predicate_or_value: Matcher) -> Callable[[str], object]:
    if callable(predicate_or_value):
        return predicate_or_value
    expected = str(predicate_or_value)
    return lambda payload: payload == expected


def _describe(predicate_or_value: Matcher) -> str:
    if callable(predicate_or_value):
        return getattr(predicate_or_value, "__name__", repr(predicate_or_value))
    return repr(str(predicate_or_value))


class MqttWatcher:
    """Subscribe to `topic_filter` and record every message (topic, payload str, retain, time).

    The constructor returns once the first subscription is acknowledged, so anything published
    afterwards is seen. `topic` arguments of the query methods may be exact topics or filters
    with + / # wildcards.
    """

    def __init__(self, host: str, port: int, topic_filter: str = "pioreactor/#",
                 qos: int = 1, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.topic_filter = topic_filter
        self.qos = qos
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._connected = False
        self._subscribed_count = 0  # SUBACKs received: one per (re)connection
        self._closed = False

        self._client = _new_client("watcher")
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        try:
            wait_until(lambda: self._subscribed_count >= 1, timeout=connect_timeout,
                       message=f"MqttWatcher could not connect+subscribe to {host}:{port}")
        except BaseException:
            self.close()
            raise

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        with self._lock:
            self._connected = True
        client.subscribe(self.topic_filter, qos=self.qos)  # every (re)connect

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._connected = False

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._lock:
            self._subscribed_count += 1

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        message = Message(
            topic=msg.topic,
            payload=msg.payload.decode("utf-8", errors="replace"),
            retain=bool(msg.retain),
            time=time.monotonic(),
        )
        with self._lock:
            self._messages.append(message)

    # -- state -----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def connect_count(self) -> int:
        """How many times the watcher has connected and subscribed (1 + number of reconnects)."""
        with self._lock:
            return self._subscribed_count

    def wait_connected(self, timeout: float = CONNECT_TIMEOUT) -> None:
        wait_until(lambda: self.connected, timeout=timeout,
                   message=f"MqttWatcher not connected to {self.host}:{self.port}")

    # -- queries ---------------------------------------------------------------------------------

    def messages(self, topic: str | None = None, since: float | None = None) -> list[Message]:
        """Recorded messages in arrival order, optionally only `topic` (or filter) and only those
        received at or after monotonic time `since`."""
        with self._lock:
            snapshot = list(self._messages)
        return [m for m in snapshot
                if _matches(m.topic, topic) and (since is None or m.time >= since)]

    def values(self, topic: str, since: float | None = None) -> list[str]:
        """Payloads on `topic`, in arrival order."""
        return [m.payload for m in self.messages(topic, since=since)]

    def last(self, topic: str) -> str | None:
        """The most recent payload on `topic`, or None if nothing was seen."""
        found = self.messages(topic)
        return found[-1].payload if found else None

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._messages.clear()

    def wait_for(self, topic: str, predicate_or_value: Matcher, timeout: float = 10.0,
                 since: float | None = None) -> str:
        """Wait until a recorded payload on `topic` equals the value (compared as str) or satisfies
        the predicate (called with the payload str); return the first such payload. Messages already
        recorded count (pass `since=time.monotonic()` taken earlier to only count newer ones).
        On timeout raise AssertionError listing the payloads recorded for `topic`."""
        match = _as_predicate(predicate_or_value)

        def probe() -> tuple[str] | None:
            # Wrapped in a 1-tuple: a matching payload may be "" or "0", which is falsy.
            for payload in self.values(topic, since=since):
                if match(payload):
                    return (payload,)
            return None

        try:
            return wait_until(probe, timeout=timeout)[0]
        except AssertionError:
            raise AssertionError(
                f"no payload on {topic!r} matching {_describe(predicate_or_value)} within "
                f"{timeout:g}s; recorded payloads: {self.values(topic, since=since)!r}") from None

    def wait_for_sequence(self, topic: str, values: Sequence[Matcher], timeout: float = 10.0,
                          since: float | None = None) -> list[str]:
        """Wait until payloads matching `values` (values or predicates) appear on `topic` in that
        order, possibly with other payloads between; return the matched payloads."""
        matchers = [_as_predicate(v) for v in values]

        def probe() -> tuple[list[str]] | None:
            matched: list[str] = []
            for payload in self.values(topic, since=since):
                if len(matched) < len(matchers) and matchers[len(matched)](payload):
                    matched.append(payload)
            return (matched,) if len(matched) == len(matchers) else None

        try:
            return wait_until(probe, timeout=timeout)[0]
        except AssertionError:
            wanted = [_describe(v) for v in values]
            raise AssertionError(
                f"sequence {wanted} not seen in order on {topic!r} within {timeout:g}s; "
                f"recorded payloads: {self.values(topic, since=since)!r}") from None

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str | bytes | int | float | None, qos: int = 1,
                retain: bool = False, timeout: float = 10.0) -> None:
        """Publish and wait until the broker has it (PUBACK for qos 1, ...). Waits for a
        connection first if the watcher is reconnecting."""
        self.wait_connected(timeout=timeout)
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic!r} not completed within {timeout:g}s "
                                 f"(rc={info.rc})")

    def retained(self, topic: str, timeout: float = 3.0) -> str | None:
        """The broker's retained payload for exactly `topic`, via a fresh short-lived client;
        None if there is none (an empty retained payload means cleared, so also None)."""
        return retained(self.host, self.port, topic, timeout=timeout)

    # -- teardown --------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def __enter__(self) -> "MqttWatcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<MqttWatcher {self.host}:{self.port} {self.topic_filter!r} "
                f"{len(self._messages)} messages>")


def retained(host: str, port: int, topic: str, timeout: float = 3.0) -> str | None:
    """Read the retained payload of exactly `topic` with a fresh client; None if none arrives.

    To return quickly when nothing is retained, the client then subscribes to a private probe
    topic and publishes to it: the broker delivers a new subscription's retained message right
    after its SUBACK, so once the probe comes back, any retained message has already arrived.
    The deadline still bounds everything.
    """
    probe_topic = f"test-probe/{uuid.uuid4().hex}"
    lock = threading.Lock()
    found: list[str] = []
    probe_seen = threading.Event()
    suback_count = 0

    client = _new_client("retained")

    def on_connect(c, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            c.subscribe(topic, qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        nonlocal suback_count
        suback_count += 1
        if suback_count == 1:
            c.subscribe(probe_topic, qos=1)
        elif suback_count == 2:
            c.publish(probe_topic, b"probe", qos=1)

    def on_message(c, userdata, msg):
        if msg.topic == probe_topic:
            probe_seen.set()
        elif msg.retain and msg.topic == topic:
            with lock:
                found.append(msg.payload.decode("utf-8", errors="replace"))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        while time.monotonic() < deadline:
            with lock:
                if found:
                    break
            if probe_seen.is_set():
                break
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        payload = found[-1] if found else None
    return payload or None
