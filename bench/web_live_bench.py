#!/usr/bin/env python3
"""Live-update latency of the dashboard: from a unit's publish on the broker to a browser's WebSocket.

A real Mosquitto, the real relay (leader/web/live.py) behind a real aiohttp server, and a real WebSocket
client subscribed as the overview page is. A publisher thread publishes `od_reading/ods` as a unit does
(QoS 0, one every --period seconds) with its send time in the payload; the client measures arrival.
Prints median, p95 and max over --count messages, for 1 browser and for --browsers browsers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from aiohttp import web  # noqa: E402

from leader.web.live import Relay  # noqa: E402
from tests.support.broker import Mosquitto, free_port  # noqa: E402

TOPIC = "pioreactor/sim01/demo/od_reading/ods"


def publisher(host: str, port: int, count: int, period: float, go: threading.Event) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-unit", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    go.wait()
    for i in range(count):
        payload = {"timestamp": "", "ods": {"2": {"od": 0.1 + i * 1e-4, "angle": 90, "channel": 2}}, "sent": time.perf_counter(), "n": i}
        client.publish(TOPIC, json.dumps(payload), qos=0)
        time.sleep(period)
    client.loop_stop()
    client.disconnect()


async def run(broker: Mosquitto, browsers: int, count: int, period: float) -> list[float]:
    relay = Relay(broker.host, broker.port, None, None)
    await relay.start()

    async def ws_route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await relay.handle(ws)
        return ws

    app = web.Application()
    app.router.add_get("/api/ws", ws_route)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(f"http://127.0.0.1:{port}/api/ws") for _ in range(browsers)]
            for ws in sockets:
                await ws.send_json({"subscribe": ["pioreactor/+/demo/od_reading/ods"]})
                while "subscribed" not in json.loads((await ws.receive(timeout=10)).data):
                    pass
            go = threading.Event()
            thread = threading.Thread(target=publisher, args=(broker.host, broker.port, count, period, go), daemon=True)
            thread.start()
            go.set()

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                got = 0
                while got < count:
                    msg = await ws.receive(timeout=10)
                    frame = json.loads(msg.data)
                    if "topic" not in frame:
                        continue
                    latencies.append(time.perf_counter() - json.loads(frame["payload"])["sent"])
                    got += 1

            await asyncio.gather(*(read(ws) for ws in sockets))
            thread.join()
            for ws in sockets:
                await ws.close()
    finally:
        await relay.stop()
        await runner.cleanup()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--period", type=float, default=0.01)
    parser.add_argument("--browsers", type=int, default=20)
    args = parser.parse_args()
    broker = Mosquitto().start()
    try:
        for n in (1, args.browsers):
            lat = sorted(asyncio.run(run(broker, n, args.count, args.period)))
            p95 = lat[int(0.95 * (len(lat) - 1))]
            print(f"{n:3d} browser(s), {args.count} messages each: publish -> WebSocket median {statistics.median(lat) * 1000:.2f} ms, "
                  f"p95 {p95 * 1000:.2f} ms, max {lat[-1] * 1000:.2f} ms")
    finally:
        broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
