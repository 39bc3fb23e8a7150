"""The leader's MQTT conversation with the units, for ``pios``: read what the broker holds for each unit,
publish desired states, send commands and collect one result per unit.

Every wait has a deadline; a unit that does not answer in time is reported as such, never as a success
(a fan-out must not lie about an offline unit).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import paho.mqtt.client as mqtt

from actors import topics

COMMAND_TTL_S = 30.0  # a command not carried out by then is refused by the unit, so a late one never acts


@attrs.frozen(kw_only=True)
class UnitResult:
    unit: str
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "ok": self.ok, "error": self.error}


class ClusterClient:
    """One paho client as the leader identity; use as a context manager."""

    def __init__(self, host: str, port: int, username: str | None = None, password: str | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pios-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._retained: dict[str, str] = {}
        self._messages: list[tuple[str, str]] = []
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._subscribed.set()

    def __enter__(self) -> ClusterClient:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise ConnectionError(f"cannot reach the broker at {self.host}:{self.port} ({e}); is the leader running (`pios leader status`)?") from None
        self.client.loop_start()
        if not self._connected.wait(10.0):
            self.close()
            raise ConnectionError(self._refused or f"the broker at {self.host}:{self.port} did not answer within 10 s")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            self._refused = f"the broker refused the leader's login ({reason_code}); check `pios broker credentials leader`"
        self._connected.set()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        payload = msg.payload.decode(errors="replace")
        with self._lock:
            if msg.retain:
                self._retained[msg.topic] = payload
            self._messages.append((msg.topic, payload))

    def _subscribe(self, filters: Iterable[str]) -> None:
        self._subscribed.clear()
        self.client.subscribe([(f, 1) for f in filters])
        self._subscribed.wait(5.0)

    def retained(self, filters: Iterable[str], settle_s: float = 0.5) -> dict[str, str]:
        """The retained values under ``filters``: the broker sends them right after the subscription;
        ``settle_s`` without a new one ends the wait."""
        self._subscribe(filters)
        last, seen = time.monotonic(), 0
        while time.monotonic() - last < settle_s:
            time.sleep(0.05)
            with self._lock:
                if len(self._retained) != seen:
                    seen, last = len(self._retained), time.monotonic()
        with self._lock:
            return {t: p for t, p in self._retained.items() if p != ""}

    def publish_retained(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(10.0)

    def command(self, units: Iterable[str], action: dict[str, Any], timeout: float = 15.0) -> list[UnitResult]:
        """Send ``action`` to every unit with its own id and an expiry; one result per unit."""
        units = list(units)
        self._subscribe([topics.result_topic(u) for u in units])
        ids: dict[str, str] = {}
        expires = time.time() + COMMAND_TTL_S
        for unit in units:
            ids[unit] = uuid.uuid4().hex
            body = {"id": ids[unit], "expires_at": expires, **action}
            self.client.publish(topics.command_topic(unit), json.dumps(body), qos=1)
        results: dict[str, UnitResult] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(units) and time.monotonic() < deadline:
            time.sleep(0.05)
            with self._lock:
                messages = list(self._messages)
            for topic, payload in messages:
                try:
                    reply = json.loads(payload)
                except ValueError:
                    continue
                unit = reply.get("unit")
                if isinstance(reply, dict) and unit in ids and reply.get("id") == ids[unit] and topic == topics.result_topic(unit):
                    results[unit] = UnitResult(unit=unit, ok=bool(reply.get("ok")), error=reply.get("error"))
        for unit in units:
            if unit not in results:
                results[unit] = UnitResult(unit=unit, ok=False, error=f"no answer within {timeout:g} s: {unit} is offline or its node is not running")
        return [results[u] for u in units]
