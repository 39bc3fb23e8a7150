"""The dashboard's live relay against a real Mosquitto and a real aiohttp server: browsers get the current
retained value first and then live messages, share one MQTT subscription per filter, never see the units'
bulk transport, cannot publish, and a browser that stops reading loses only its own oldest messages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from leader.web import live
from leader.web.live import Relay
from tests.support.broker import free_port
from tests.support.mqtt import MqttWatcher

DEADLINE_S = 10.0


async def _serve(relay: Relay) -> tuple[web.AppRunner, str]:
    async def ws_route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await relay.handle(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_route)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/ws"


def run(broker, body: Callable[[Relay, str, aiohttp.ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        relay = Relay(broker.host, broker.port, None, None)
        await relay.start()
        runner, url = await _serve(relay)
        try:
            async with aiohttp.ClientSession() as session:
                await asyncio.wait_for(body(relay, url, session), 60)
        finally:
            await relay.stop()
            await runner.cleanup()

    asyncio.run(main())


async def frames_until(ws: aiohttp.ClientWebSocketResponse, done: Callable[[dict], bool]) -> list[dict]:
    """Frames received up to and including the first one ``done`` accepts (deadline DEADLINE_S)."""
    got: list[dict] = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {DEADLINE_S} s; got {got[-5:]}")
        msg = await ws.receive(timeout=remaining)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        got.append(frame)
        if done(frame):
            return got


async def until_true(probe: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def publish(watcher: MqttWatcher, topic: str, payload: str, retain: bool = False) -> None:
    await asyncio.get_running_loop().run_in_executor(None, lambda: watcher.publish(topic, payload, retain=retain))


def test_browsers_get_the_current_value_then_live_points_over_one_shared_subscription(broker, mqtt_watcher):
    rpm = "pioreactor/pio01/exp/stirring/target_rpm"
    ods = "pioreactor/pio01/exp/od_reading/ods"
    mqtt_watcher.publish(rpm, "400", retain=True)

    async def body(relay: Relay, url: str, session: aiohttp.ClientSession) -> None:
        a = await session.ws_connect(url)
        b = await session.ws_connect(url)
        filters = ["pioreactor/+/+/stirring/+", "pioreactor/+/+/od_reading/ods"]
        await a.send_json({"subscribe": filters})
        # A new filter: the broker replays its retained values to the relay, which passes them on.
        seen: list[dict] = []
        await frames_until(a, lambda f: seen.append(f) or ("subscribed" in str(seen) and any(x.get("topic") == rpm for x in seen)))
        assert {"topic": rpm, "payload": "400", "retain": True} in seen
        await b.send_json({"subscribe": filters})
        first_b = await frames_until(b, lambda f: "subscribed" in f)
        assert {"topic": rpm, "payload": "400", "retain": True} in first_b  # from the relay's cache, before the ack
        assert relay.figures()["browsers"] == 2 and relay.figures()["mqtt_filters"] == 2  # shared, not per browser

        await publish(mqtt_watcher, ods, '{"ods": {"2": {"od": 0.51}}}')
        await publish(mqtt_watcher, rpm, "500", retain=True)
        for ws in (a, b):
            live_od = (await frames_until(ws, lambda f: f.get("topic") == ods))[-1]
            assert live_od == {"topic": ods, "payload": '{"ods": {"2": {"od": 0.51}}}', "retain": False}
            changed = (await frames_until(ws, lambda f: f.get("topic") == rpm))[-1]
            assert changed["payload"] == "500" and changed["retain"] is True

        # A third browser arriving now gets 500, the current value, once.
        c = await session.ws_connect(url)
        await c.send_json({"subscribe": ["pioreactor/pio01/exp/stirring/target_rpm"]})
        got = await frames_until(c, lambda f: "subscribed" in f)
        assert [f for f in got if f.get("topic") == rpm] == [{"topic": rpm, "payload": "500", "retain": True}]
        assert relay.figures()["mqtt_filters"] == 3

        await c.send_json({"unsubscribe": ["pioreactor/pio01/exp/stirring/target_rpm"]})
        await frames_until(c, lambda f: "unsubscribed" in f)
        await until_true(lambda: relay.figures()["mqtt_filters"] == 2, "the last browser of a filter to release it")
        await a.close()
        await until_true(lambda: relay.figures()["browsers"] == 2, "browser a to leave")
        assert relay.figures()["mqtt_filters"] == 2  # b still holds both
        await b.close()
        await c.close()
        await until_true(lambda: relay.figures()["mqtt_filters"] == 0 and relay.figures()["browsers"] == 0,
                         "the relay to unsubscribe when the last browser leaves")

    run(broker, body)


@pytest.mark.parametrize("request_, says", [
    ({"subscribe": ["#"]}, "only filters under 'pioreactor/'"),
    ({"subscribe": ["pioreactor/#"]}, "bulk transport"),
    ({"subscribe": ["pioreactor/+/+/#"]}, "bulk transport"),
    ({"subscribe": ["pioreactor/pio01/$node/outbox"]}, "bulk transport"),
    ({"subscribe": ["pioreactor/+/$node/ingest_ack"]}, "bulk transport"),
    ({"subscribe": ["pioreactor/+/+/od_reading/ods", "pioreactor/a#"]}, "not a valid MQTT filter"),
    ({"subscribe": []}, "non-empty list"),
    ({"publish": {"topic": "pioreactor/pio01/exp/stirring/target_rpm/set", "payload": "9999"}}, "send one of"),
    ("not json", "send JSON"),
])
def test_refused_requests_get_an_error_frame_and_change_nothing(broker, mqtt_watcher, request_, says):
    async def body(relay: Relay, url: str, session: aiohttp.ClientSession) -> None:
        ws = await session.ws_connect(url)
        await (ws.send_str(request_) if isinstance(request_, str) else ws.send_json(request_))
        frame = (await frames_until(ws, lambda f: True))[-1]
        assert says in frame["error"]
        assert relay.figures()["mqtt_filters"] == 0  # a refused request subscribes nothing, not even its good filters
        await ws.close()

    run(broker, body)
    assert not mqtt_watcher.messages("pioreactor/pio01/exp/stirring/target_rpm/set")  # the browser published nothing


def test_bulk_transport_is_never_relayed_even_through_a_legal_filter(broker, mqtt_watcher):
    async def body(relay: Relay, url: str, session: aiohttp.ClientSession) -> None:
        ws = await session.ws_connect(url)
        await ws.send_json({"subscribe": ["pioreactor/+/$node/+"]})  # $node/$state etc., but that would match outbox:
        frame = (await frames_until(ws, lambda f: True))[-1]
        assert "bulk transport" in frame["error"]
        await ws.send_json({"subscribe": ["pioreactor/+/$node/$state"]})
        await frames_until(ws, lambda f: "subscribed" in f)
        await publish(mqtt_watcher, "pioreactor/pio01/$node/outbox", '{"records": []}')
        await publish(mqtt_watcher, "pioreactor/pio01/$node/$state", "ready")
        got = await frames_until(ws, lambda f: f.get("topic") == "pioreactor/pio01/$node/$state")
        assert all("outbox" not in f.get("topic", "") for f in got)
        await ws.close()

    run(broker, body)


@pytest.mark.serial  # a 38 MB burst judged on a 10 s deadline: not with other tests on the same cores
def test_a_browser_that_stops_reading_loses_its_oldest_messages_and_delays_nobody(broker, mqtt_watcher, monkeypatch):
    monkeypatch.setattr(live, "QUEUE_LIMIT", 200)
    topic = "pioreactor/pio01/exp/od_reading/ods"
    count, size = 1200, 32_000  # ~38 MB: more than the kernel and aiohttp buffer for a reader that stops

    async def body(relay: Relay, url: str, session: aiohttp.ClientSession) -> None:
        slow = await session.ws_connect(url, max_msg_size=0)
        fast = await session.ws_connect(url, max_msg_size=0)
        for ws in (slow, fast):
            await ws.send_json({"subscribe": [topic]})
            await frames_until(ws, lambda f: "subscribed" in f)
        # Publish in chunks the fast browser keeps up with (a burst larger than its queue would be
        # dropped for it too); the slow one reads nothing.
        seen: list[int] = []
        for start in range(0, count, 50):
            chunk = range(start, min(count, start + 50))
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: [mqtt_watcher.publish(topic, json.dumps({"n": i, "pad": "x" * size}), qos=0) for i in chunk])
            while len(seen) < chunk[-1] + 1:
                frame = json.loads((await fast.receive(timeout=DEADLINE_S)).data)
                assert "dropped" not in frame
                seen.append(json.loads(frame["payload"])["n"])
        assert seen == list(range(count))  # the fast browser got everything, in order
        await until_true(lambda: relay.figures()["dropped"] > 0, "the slow browser's queue to overflow")

        # The slow browser reads at last: it is told how many it missed and ends with the newest messages.
        frames, dropped = [], 0
        while not frames or frames[-1] != count - 1:
            frame = json.loads((await slow.receive(timeout=DEADLINE_S)).data)
            if "dropped" in frame:
                dropped += frame["dropped"]
            else:
                frames.append(json.loads(frame["payload"])["n"])
        assert dropped > 0 and len(frames) + dropped == count
        assert frames == sorted(frames)
        await slow.close()
        await fast.close()

    run(broker, body)
