"""The dashboard's live updates: one MQTT client on the server relays broker traffic to browsers over
WebSockets.

Why a relay and not MQTT-over-WebSocket in the browser: the browser never holds broker credentials and
cannot publish (every actuation goes through the audited HTTP API). The relay subscribes to each MQTT
filter once for all browsers (reference-counted) and remembers the retained values it has seen, so a
browser that subscribes gets the current value of every retained topic first, then live messages.

Protocol, browser -> server: ``{"subscribe": [filters]}`` / ``{"unsubscribe": [filters]}``; only filters
under ``pioreactor/`` that cannot reach the units' bulk transport (``$node/outbox``, ``$node/ingest_ack``).
Server -> browser: ``{"topic", "payload", "retain"}`` (payload is the MQTT payload as text; an empty
retained payload means the value was cleared), ``{"subscribed": [...]}`` / ``{"unsubscribed": [...]}``
once a request is done (the relay's cached retained values come before it; for a filter no browser
held yet, the broker's replay of retained values can follow it), ``{"dropped": n}`` when the browser was too
slow and the n oldest messages were skipped, ``{"error": "..."}`` for a refused request.

paho runs its own network thread; every message is handed to the asyncio loop with
``call_soon_threadsafe`` and only the loop touches the relay's state. Each browser has a bounded queue
and its own writer task, so a slow browser loses its own oldest messages and never delays the others.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import WSMsgType, web
from paho.mqtt.subscribeoptions import SubscribeOptions

from actors import topics

log = logging.getLogger("pioactors.web.live")

QUEUE_LIMIT = 2000  # messages waiting for one browser; beyond it the oldest go (and the browser is told)
MAX_FILTERS_PER_BROWSER = 200
MAX_FILTER_LENGTH = 256
CONNECT_WAIT_S = 10.0
_BULK = (topics.outbox_topic, topics.ingest_ack_topic)  # unit -> topic of the units' bulk transport


def check_filter(topic_filter: Any) -> str | None:
    """Why a browser may not subscribe to ``topic_filter`` (None: it may)."""
    if not isinstance(topic_filter, str) or not topic_filter:
        return f"a filter must be a non-empty string like 'pioreactor/+/+/od_reading/ods', got {topic_filter!r:.60}"
    if len(topic_filter) > MAX_FILTER_LENGTH:
        return f"filter longer than {MAX_FILTER_LENGTH} characters: {topic_filter[:60]!r}..."
    levels = topic_filter.split("/")
    if levels[0] != topics.ROOT:
        return f"only filters under '{topics.ROOT}/' are relayed, like 'pioreactor/+/+/od_reading/ods'; got {topic_filter!r:.80}"
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            return f"{topic_filter!r:.80} is not a valid MQTT filter: '+' and '#' stand for whole levels, '#' only last"
    unit = levels[1] if len(levels) > 1 and levels[1] not in ("+", "#") else "unit"
    for bulk in _BULK:
        if topics.matches(topic_filter, bulk(unit)):
            return (f"{topic_filter!r:.80} would also carry the units' bulk transport ({bulk('<unit>')}), which is not relayed; "
                    "name the job level, like 'pioreactor/+/+/+/$state' or 'pioreactor/+/$node/$state'")
    return None


def _is_bulk(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) == 4 and parts[2] == topics.NODE and parts[3] in ("outbox", "ingest_ack")


class _Browser:
    """One connected browser: its filters, what retained values it has, and its bounded queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.filters: set[str] = set()
        self.retained_sent: dict[str, str] = {}  # topic -> payload last sent as the current value
        self.queue: collections.deque[str] = collections.deque()
        self.dropped_pending = 0
        self.wakeup = asyncio.Event()

    def wants(self, topic: str) -> bool:
        return any(topics.matches(f, topic) for f in self.filters)


class Relay:
    """One paho client (the leader's broker identity) shared by every browser."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None) -> None:
        self.host, self.port = host, port
        self._username, self._password = username, password
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Event | None = None
        self._refcount: dict[str, int] = {}
        self._cache: dict[str, str] = {}  # topic -> current retained payload
        self._browsers: set[_Browser] = set()
        self.relayed = 0
        self.dropped = 0

    # -- lifecycle (asyncio loop) ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pios-web-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.5, 5)
        self._client = client
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            await asyncio.wait_for(self._connected.wait(), CONNECT_WAIT_S)
        except asyncio.TimeoutError:
            # The dashboard still serves pages and history; paho keeps retrying and resubscribes on connect.
            log.warning("live relay: the broker at %s:%s did not accept a connection within %.0f s; retrying in the background",
                        self.host, self.port, CONNECT_WAIT_S)

    async def stop(self) -> None:
        for browser in list(self._browsers):
            await browser.ws.close()
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)

    def figures(self) -> dict[str, int]:
        return {"browsers": len(self._browsers), "mqtt_filters": len(self._refcount), "relayed": self.relayed,
                "dropped": self.dropped}

    # -- paho thread: hand everything to the loop ----------------------------------------------------------

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.warning("live relay: the broker refused the leader's login (%s)", reason_code)
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._resubscribe)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, msg.topic, msg.payload.decode("utf-8", errors="replace"), bool(msg.retain))

    # -- loop side ----------------------------------------------------------------------------------------

    def _mqtt_subscribe(self, topic_filter: str) -> None:
        if self._client is not None:
            # retainAsPublished: a live retained publication keeps its flag, so the cache stays current.
            self._client.subscribe(topic_filter, options=SubscribeOptions(qos=0, retainAsPublished=True))

    def _resubscribe(self) -> None:
        assert self._connected is not None
        self._connected.set()
        for topic_filter in self._refcount:
            self._mqtt_subscribe(topic_filter)

    def _dispatch(self, topic: str, payload: str, retain: bool) -> None:
        if _is_bulk(topic):
            return  # never relayed, even if a broker delivers it through an overlapping filter
        if retain:
            if payload:
                self._cache[topic] = payload
            else:
                self._cache.pop(topic, None)
        for browser in self._browsers:
            if browser.wants(topic):
                self._offer(browser, topic, payload, retain)

    def _offer(self, browser: _Browser, topic: str, payload: str, retain: bool) -> None:
        if retain:
            # The same current value reaches the relay again when another filter is subscribed (the
            # broker replays retained messages per subscription): a browser gets each value once.
            if browser.retained_sent.get(topic) == payload or (not payload and topic not in browser.retained_sent):
                return
            if payload:
                browser.retained_sent[topic] = payload
            else:
                browser.retained_sent.pop(topic, None)
        self._enqueue(browser, json.dumps({"topic": topic, "payload": payload, "retain": retain}))

    def _enqueue(self, browser: _Browser, frame: str) -> None:
        if len(browser.queue) >= QUEUE_LIMIT:
            browser.queue.popleft()
            browser.dropped_pending += 1
            self.dropped += 1
        browser.queue.append(frame)
        self.relayed += 1
        browser.wakeup.set()

    async def _writer(self, browser: _Browser) -> None:
        """Sends one browser's queue; only this task waits on that browser's socket."""
        while not browser.ws.closed:
            await browser.wakeup.wait()
            browser.wakeup.clear()
            while browser.queue or browser.dropped_pending:
                if browser.dropped_pending:
                    n, browser.dropped_pending = browser.dropped_pending, 0
                    await browser.ws.send_str(json.dumps({"dropped": n}))
                    continue
                await browser.ws.send_str(browser.queue.popleft())

    def _subscribe(self, browser: _Browser, filters: list[str]) -> None:
        for topic_filter in filters:
            if topic_filter in browser.filters:
                continue
            browser.filters.add(topic_filter)
            self._refcount[topic_filter] = self._refcount.get(topic_filter, 0) + 1
            if self._refcount[topic_filter] == 1:
                self._mqtt_subscribe(topic_filter)
            for topic, payload in list(self._cache.items()):
                if topics.matches(topic_filter, topic):
                    self._offer(browser, topic, payload, True)
        self._enqueue(browser, json.dumps({"subscribed": filters}))

    def _unsubscribe(self, browser: _Browser, filters: list[str]) -> None:
        for topic_filter in filters:
            if topic_filter not in browser.filters:
                continue
            browser.filters.discard(topic_filter)
            self._release(topic_filter)
        browser.retained_sent = {t: p for t, p in browser.retained_sent.items() if browser.wants(t)}

    def _release(self, topic_filter: str) -> None:
        self._refcount[topic_filter] -= 1
        if self._refcount[topic_filter] == 0:
            del self._refcount[topic_filter]
            if self._client is not None:
                self._client.unsubscribe(topic_filter)
            # Forget retained values no remaining filter covers: they would go stale unseen.
            self._cache = {t: p for t, p in self._cache.items() if any(topics.matches(f, t) for f in self._refcount)}

    def _request(self, browser: _Browser, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._error(browser, 'send JSON like {"subscribe": ["pioreactor/+/+/od_reading/ods"]}')
            return
        if not isinstance(request, dict) or len(request) != 1 or next(iter(request)) not in ("subscribe", "unsubscribe"):
            self._error(browser, 'send one of {"subscribe": [filters]} or {"unsubscribe": [filters]}')
            return
        verb, filters = next(iter(request.items()))
        if not isinstance(filters, list) or not filters:
            self._error(browser, f'"{verb}" takes a non-empty list of MQTT filters, like ["pioreactor/+/+/+/$state"]')
            return
        problems = [p for p in (check_filter(f) for f in filters) if p]
        if problems:
            self._error(browser, problems[0])  # nothing subscribed: a request is taken whole or not at all
            return
        if verb == "subscribe":
            if len(browser.filters | set(filters)) > MAX_FILTERS_PER_BROWSER:
                self._error(browser, f"at most {MAX_FILTERS_PER_BROWSER} filters per connection; use wildcards or unsubscribe some")
                return
            self._subscribe(browser, filters)
        else:
            self._unsubscribe(browser, filters)
            self._enqueue(browser, json.dumps({"unsubscribed": filters}))

    def _error(self, browser: _Browser, message: str) -> None:
        self._enqueue(browser, json.dumps({"error": message}))

    async def handle(self, ws: web.WebSocketResponse) -> None:
        """Run the protocol with one prepared, authenticated WebSocket until it closes."""
        browser = _Browser(ws)
        self._browsers.add(browser)
        writer = asyncio.create_task(self._writer(browser))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._request(browser, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._error(browser, "send text frames of JSON, not binary")
                elif msg.type == WSMsgType.ERROR:
                    break
                if writer.done():  # the socket failed while sending
                    break
        finally:
            self._browsers.discard(browser)
            for topic_filter in list(browser.filters):
                self._release(topic_filter)
            browser.filters.clear()
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, ConnectionError, RuntimeError):
                pass
