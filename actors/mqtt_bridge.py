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

Nothing lost: every record (what :func:`actors.records.stream_of` says is one) is appended to the
node's durable outbox (:mod:`actors.outbox`) before anything is sent, then drained in batches to the
leader's ingest on ``$node/outbox``; the leader's retained ``$node/ingest_ack`` prunes it. Live values
still go out on their own topics at once for the dashboard and the CLI.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
from typing import Any

from thespian.actors import ActorTypeDispatcher, ThespianWatch, WakeupMessage, WatchMessage

from actors import logs, records, topics
from actors.clock import Clock, utc_iso
from actors.outbox import Outbox
from actors.messages import (
    Boot,
    BridgeStatus,
    MqttMessage,
    NodeConfig,
    Publish,
    PublishMany,
    Published,
    Subscribe,
    Unsubscribe,
)

log = logs.get("mqtt_bridge")

TICK_SECONDS = 0.5
KEEPALIVE_SECONDS = 10
RETRY_MIN = 0.5
RETRY_MAX = 10.0
OUTBOX_FILE = "outbox.sqlite"
ACK_TIMEOUT_MIN = 10.0  # resend from the ack when the leader stays silent this long (doubling to the max)
ACK_TIMEOUT_MAX = 120.0
STATUS_EVERY = 2.0  # seconds between outbox figures sent to the supervisor


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
        self.outbox: Outbox | None = None
        self.clock: Clock | None = None
        self.append_errors = 0
        self.batches_sent = 0
        self.last_ack_at: float | None = None  # wall time of the last ack that moved the watermark
        self.ack_timeout = ACK_TIMEOUT_MIN
        self.waiting_since: float | None = None  # when records went in flight with no ack since
        self.next_status = 0.0
        self.dropped_reported = 0

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
        if msg.subscribe:
            self.routes.append((sender, tuple(sorted(set(msg.subscribe)))))
        self.clock = Clock(time_scale=self.config.time_scale, anchor=self.config.clock_anchor)
        logs.ship(self, self.myAddress, self.config)  # the bridge's own lines go through its own outbox
        try:
            self.outbox = Outbox(os.path.join(self.config.state_dir, OUTBOX_FILE))
        except sqlite3.Error as e:  # the node still runs and publishes live; say loudly what is lost
            log.error("cannot open the outbox in %s (%s): records will not be kept while the broker is away", self.config.state_dir, e)
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
        self._report()  # the outbox's figures from the start (a backlog from before a power cut)
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
        assert self.config is not None
        filters = sorted({f for _, fs in self.routes for f in fs} | {topics.ingest_ack_topic(self.config.unit)})
        options = mqtt.SubscribeOptions(qos=1, noLocal=True)
        client.subscribe([(f, options) for f in filters])
        client.publish(topics.node_topic(self.config.unit, topics.STATE), "ready", qos=1, retain=True)
        for topic, (payload, qos) in self.retained.items():
            client.publish(topic, payload, qos=qos, retain=True)
        if self.outbox is not None:
            self.outbox.rewind()  # resume from the leader's acknowledgement, not from paho's memory
            self.waiting_since = None
            self._drain()
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
        if self.config is not None and msg.topic == topics.ingest_ack_topic(self.config.unit):
            self._acknowledged(payload)
            return
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
            self._check_ack_timeout()
            self._drain()
            if self.client.want_write():
                self.client.loop_write()
        else:
            self.retry_in -= TICK_SECONDS
            if self.retry_in <= 0:
                self._connect()
        if time.monotonic() >= self.next_status:
            self._report()

    def receiveMsg_Publish(self, msg: Publish, sender: Any) -> None:
        # Live delivery carries retain=False, as a broker does: the flag marks a value replayed to a
        # new subscriber, which a controller may choose to ignore.
        self._fan_out(MqttMessage(topic=msg.topic, payload=msg.payload, retain=False), origin=sender)
        if msg.retain:
            if msg.payload == "":
                self.retained.pop(msg.topic, None)
            else:
                self.retained[msg.topic] = (msg.payload, msg.qos)
        self._keep(msg)
        self._send_to_broker(msg)  # batches to the ingest go on the tick, many records at a time

    def receiveMsg_PublishMany(self, msg: PublishMany, sender: Any) -> None:
        for item in msg.items:
            self.receiveMsg_Publish(item, sender)
        if msg.ack is not None:
            self.send(sender, Published(ack=msg.ack))

    def _keep(self, msg: Publish) -> None:
        """Append a record to the outbox before it is sent anywhere."""
        stream = records.stream_of(msg.topic, msg.payload)
        if stream is None or self.outbox is None or self.clock is None:
            return
        try:
            self.outbox.append(stream, msg.topic, msg.payload, utc_iso(self.clock.now()))
        except sqlite3.Error as e:  # disk full, file removed...: the record still goes out live
            self.append_errors += 1
            if self.append_errors == 1 or self.append_errors % 1000 == 0:
                log.error("outbox append failed (%s); %d record(s) not kept so far", e, self.append_errors)
        dropped = self.outbox.dropped_now
        if dropped > self.dropped_reported:
            # Reported in round figures so a long outage does not flood the log.
            if self.dropped_reported == 0 or dropped >= self.dropped_reported * 2:
                log.warning(
                    "outbox full (%d records): dropped the %d oldest record(s) so far; the leader will record the gap",
                    self.outbox.max_records, dropped,
                )
                self.dropped_reported = dropped

    def _send_to_broker(self, msg: Publish) -> None:
        if self.client is None:
            return
        if not self.connected:
            return  # retained values are re-sent on reconnect; the outbox keeps every record
        self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        self.published += 1

    # --- the outbox's drain ---------------------------------------------------------------------------

    def _drain(self) -> None:
        if not self.connected or self.outbox is None or self.config is None or self.clock is None:
            return
        while True:
            batch = self.outbox.next_batch()
            if not batch:
                return
            payload = records.encode_batch(
                records.Batch(
                    unit=self.config.unit,
                    sent_at=utc_iso(time.time()),  # wall clock: the leader compares it with its own
                    records=tuple(batch),
                    bases=self.outbox.bases(),
                    dropped=self.outbox.dropped(),
                )
            )
            self.client.publish(topics.outbox_topic(self.config.unit), payload, qos=1)
            self.batches_sent += 1
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()

    def _acknowledged(self, payload: str) -> None:
        if self.outbox is None:
            return
        try:
            watermarks = records.decode_ack(payload)
        except records.ProtocolError as e:
            log.warning("ignored a malformed ingest ack: %s", e)
            return
        if self.outbox.acknowledge(watermarks):
            self.last_ack_at = time.time()
            self.ack_timeout = ACK_TIMEOUT_MIN
            self.waiting_since = None if self.outbox.in_flight == 0 else time.monotonic()
        self._drain()

    def _check_ack_timeout(self) -> None:
        """Go back to the oldest unacknowledged record when the leader has been silent too long:
        a batch lost with a broker restart, or a leader that was away."""
        if self.outbox is None or self.waiting_since is None or self.outbox.in_flight == 0:
            return
        if time.monotonic() - self.waiting_since >= self.ack_timeout:
            log.info("no ingest ack for %.0f s; resending %d unacknowledged record(s)", self.ack_timeout, self.outbox.pending())
            self.outbox.rewind()
            self.waiting_since = None
            self.ack_timeout = min(ACK_TIMEOUT_MAX, self.ack_timeout * 2)

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
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

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

    def outbox_figures(self) -> dict[str, Any]:
        box = self.outbox
        return {
            "pending": box.pending() if box else None,
            "in_flight": box.in_flight if box else 0,
            "appended": box.appended if box else 0,
            "dropped": box.dropped_now if box else 0,
            "append_errors": self.append_errors,
            "batches_sent": self.batches_sent,
            "last_ack_at": utc_iso(self.last_ack_at) if self.last_ack_at else None,
        }

    def _report(self) -> None:
        self.next_status = time.monotonic() + STATUS_EVERY
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
                    outbox=self.outbox_figures(),
                ),
            )
