"""The node's one MQTT client, and its local publish/subscribe.

Jobs never talk to the broker. They send :class:`Publish` and :class:`Subscribe` to this actor:
- every publication is fanned out at once to local subscribers by actor message, so job-to-job data
  on a node keeps flowing while the broker is down (control stays local);
- it is also sent to the broker; the broker does not echo our own publications back (MQTT 5
  ``noLocal``), so local subscribers see each message exactly once;
- retained publications are cached and re-published after every reconnect, so the broker's view
  heals by itself after a broker restart.

paho runs single-threaded inside the actor: its socket is handed to Thespian with ``ThespianWatch``
and read when readable; a tick drives keepalive and reconnection (measured ~1 ms command round trip).
Every record goes through :meth:`MQTTBridge._send_to_broker`, the seam where a durable outbox slots in.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from thespian.actors import ActorTypeDispatcher, ThespianWatch, WakeupMessage, WatchMessage

from actors import logs, topics
from actors.messages import (
    Boot,
    BridgeStatus,
    MqttMessage,
    NodeConfig,
    Publish,
    Subscribe,
    Unsubscribe,
)

log = logs.get("mqtt_bridge")

TICK_SECONDS = 0.5
KEEPALIVE_SECONDS = 10
RETRY_MIN = 0.5
RETRY_MAX = 10.0


class Backoff:
    """Exponential reconnect delays: 0.5, 1, 2, ... capped at 10 s; reset on success."""

    def __init__(self, minimum: float = RETRY_MIN, maximum: float = RETRY_MAX) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.current = minimum

    def next(self) -> float:
        delay = self.current
        self.current = min(self.maximum, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.minimum


class MQTTBridge(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: NodeConfig | None = None
        self.supervisor: Any = None
        self.client: Any = None
        self.connected = False
        self.connect_called = False
        self.closing = False
        self.routes: list[tuple[Any, tuple[str, ...]]] = []  # (subscriber, filters); addresses are not hashable
        self.retained: dict[str, tuple[str, int]] = {}
        self.local_retained: dict[str, str] = {}  # retained for local subscribers only (the broker link)
        self.backoff = Backoff()
        self.retry_in = 0.0  # seconds of ticks left before the next connection attempt
        self.reconnects = 0
        self.published = 0
        self.received = 0
        self.last_error: str | None = None

    # Every handler returns through here so that paho's socket stays watched.
    def receiveMessage(self, message: Any, sender: Any) -> Any:
        try:
            super().receiveMessage(message, sender)
        except Exception:
            log.exception("bridge failed to handle %r", message)
        sock = self.client.socket() if self.client is not None else None
        return ThespianWatch([sock.fileno()]) if sock is not None else None

    # --- setup ----------------------------------------------------------------------------------

    def receiveMsg_Boot(self, msg: Boot, sender: Any) -> None:
        if self.config is not None:
            return
        import paho.mqtt.client as mqtt

        self.config = msg.config
        self.supervisor = sender
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"pio-node-{self.config.unit}",
            protocol=mqtt.MQTTv5,
        )
        if self.config.broker_username:
            client.username_pw_set(self.config.broker_username, self.config.broker_password)
        client.will_set(topics.node_topic(self.config.unit, topics.STATE), "lost", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_timeout = 2.0
        self.client = client
        self._connect()
        self._link_changed()
        self.wakeupAfter(TICK_SECONDS)

    def _connect(self) -> None:
        assert self.config is not None
        try:
            if not self.connect_called:
                self.connect_called = True
                self.client.connect(self.config.broker_host, self.config.broker_port, KEEPALIVE_SECONDS)
            else:
                self.client.reconnect()
        except OSError as e:
            self.last_error = f"cannot reach broker {self._broker()}: {e.strerror or e}"
            self.retry_in = self.backoff.next()
            return
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.reconnects += 1

    def _broker(self) -> str:
        assert self.config is not None
        return f"{self.config.broker_host}:{self.config.broker_port}"

    # --- paho callbacks (run inside this actor's thread) ----------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker {self._broker()} refused the connection: {reason_code}"
            log.warning(self.last_error)
            self.retry_in = self.backoff.next()
            return
        import paho.mqtt.client as mqtt

        self.connected = True
        self.backoff.reset()
        self.last_error = None
        log.info("connected to broker %s", self._broker())
        filters = sorted({f for _, fs in self.routes for f in fs})
        if filters:
            options = mqtt.SubscribeOptions(qos=1, noLocal=True)
            client.subscribe([(f, options) for f in filters])
        assert self.config is not None
        client.publish(topics.node_topic(self.config.unit, topics.STATE), "ready", qos=1, retain=True)
        for topic, (payload, qos) in self.retained.items():
            client.publish(topic, payload, qos=qos, retain=True)
        self._report()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        was = self.connected and not self.closing
        self.connected = False
        self.retry_in = self.backoff.next()
        if was:
            self.last_error = f"lost the broker {self._broker()} ({reason_code})"
            log.warning(self.last_error)
            self._report()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        self.received += 1
        payload = msg.payload.decode("utf-8", errors="replace")
        self._fan_out(MqttMessage(topic=msg.topic, payload=payload, retain=bool(msg.retain)), origin=None)

    # --- actor protocol ---------------------------------------------------------------------------

    def receiveMsg_WatchMessage(self, _msg: WatchMessage, _sender: Any) -> None:
        if self.client is not None:
            self.client.loop_read()
            if self.client.want_write():
                self.client.loop_write()

    def receiveMsg_WakeupMessage(self, _msg: WakeupMessage, _sender: Any) -> None:
        self.wakeupAfter(TICK_SECONDS)  # re-arm first: a failure below must not end the tick chain
        if self.client is None:
            return
        if self.connected:
            self.client.loop_misc()
            if self.client.want_write():
                self.client.loop_write()
        else:
            self.retry_in -= TICK_SECONDS
            if self.retry_in <= 0:
                self._connect()

    def receiveMsg_Publish(self, msg: Publish, sender: Any) -> None:
        # Live delivery carries retain=False, as a broker does: the flag marks a value replayed to a
        # new subscriber, which a controller may choose to ignore.
        self._fan_out(MqttMessage(topic=msg.topic, payload=msg.payload, retain=False), origin=sender)
        if msg.retain:
            if msg.payload == "":
                self.retained.pop(msg.topic, None)
            else:
                self.retained[msg.topic] = (msg.payload, msg.qos)
        self._send_to_broker(msg)

    def _send_to_broker(self, msg: Publish) -> None:
        if self.client is None:
            return
        if not self.connected:
            return  # retained values are re-sent on reconnect; the outbox will keep the rest
        self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        self.published += 1

    def receiveMsg_Subscribe(self, msg: Subscribe, sender: Any) -> None:
        known = {f for _, fs in self.routes for f in fs}
        mine = next((fs for address, fs in self.routes if address == sender), ())
        self.routes = [(a, fs) for a, fs in self.routes if a != sender]
        self.routes.append((sender, tuple(sorted(set(mine) | set(msg.filters)))))
        new = [f for f in msg.filters if f not in known]
        # A late local subscriber still learns the current retained values (the vial's books, a
        # job's settings), as it would from the broker, even while the broker is away.
        replay = [(t, p) for t, (p, _qos) in self.retained.items()] + list(self.local_retained.items())
        for topic, payload in replay:
            if any(topics.matches(f, topic) for f in msg.filters if f not in mine):
                self.send(sender, MqttMessage(topic=topic, payload=payload, retain=True))
        if new and self.connected and self.client is not None:
            import paho.mqtt.client as mqtt

            options = mqtt.SubscribeOptions(qos=1, noLocal=True)
            self.client.subscribe([(f, options) for f in new])

    def receiveMsg_Unsubscribe(self, _msg: Unsubscribe, sender: Any) -> None:
        self.routes = [(a, fs) for a, fs in self.routes if a != sender]

    def receiveMsg_ActorExitRequest(self, _msg: Any, _sender: Any) -> None:
        if self.client is not None and self.connected and self.config is not None:
            # A clean stop is not a loss: say so, then leave without triggering the will.
            self.closing = True
            self.client.publish(topics.node_topic(self.config.unit, topics.STATE), "disconnected", qos=1, retain=True)
            self.client.loop_write()
            self.client.disconnect()
            self.client.loop_write()

    def _fan_out(self, message: MqttMessage, origin: Any) -> None:
        for address, filters in list(self.routes):
            if address == origin:
                continue
            if any(topics.matches(f, message.topic) for f in filters):
                self.send(address, message)

    def _link_changed(self) -> None:
        """Tell local jobs (the monitor) whether the broker is reachable: a local retained value."""
        if self.config is None:
            return
        topic = topics.broker_link_topic(self.config.unit)
        payload = "connected" if self.connected else "disconnected"
        if self.local_retained.get(topic) != payload:
            self.local_retained[topic] = payload
            self._fan_out(MqttMessage(topic=topic, payload=payload, retain=True), origin=None)

    def _report(self) -> None:
        self._link_changed()
        if self.supervisor is not None:
            self.send(
                self.supervisor,
                BridgeStatus(
                    connected=self.connected,
                    broker=self._broker(),
                    reconnects=self.reconnects,
                    published=self.published,
                    received=self.received,
                    last_error=self.last_error,
                ),
            )
