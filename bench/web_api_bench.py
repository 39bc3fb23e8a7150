"""Time to first chart: a 7-day, 16-unit experiment (OD every 5 s), asked for by the dashboard's API.

Fills a leader database as the ingest would (od_readings, ~121k rows per unit), starts the real
dashboard server (leader/web/app.py) on a free port, logs in, and times
``GET /api/experiments/<e>/timeseries/od?points=1000`` for all units at once: the first request
(cold: a fresh server, SQLite's page cache empty; the OS file cache is warm since the rows were just
written) and then warm repeats; with the payload size, raw and gzip-compressed (what a browser
receives when it sends Accept-Encoding: gzip). Run: ``.venv/bin/python bench/web_api_bench.py``
(``--units 4 --days 1`` for a quick look). Figures are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.clock import utc_iso  # noqa: E402
from leader import database  # noqa: E402

EXPERIMENT = "growth-7d"


def fill(path: str, units: list[str], days: float, interval: float, start: float) -> int:
    conn = database.connect(path)
    conn.execute("INSERT INTO experiments (experiment, created_at, description) VALUES (?, ?, ?)", (EXPERIMENT, utc_iso(start), "bench"))
    n = int(days * 86400 / interval)
    for k, unit in enumerate(units):
        rng = random.Random(k)
        rows = []
        for i in range(n):
            t = start + 0.25 * k + i * interval
            x = 0.05 * math.exp(0.3 * (((t - start) / 3600) % 12))
            rows.append((EXPERIMENT, unit, utc_iso(t), x + rng.gauss(0, 0.002), 90, 2, 80.0, 0, utc_iso(t + 0.2), "od_reading", i + 1))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    conn.close()
    return n * len(units)


def request(port: int, path: str, headers: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, status, body bytes) of one GET on a new connection, as a browser's first fetch."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed, resp.status, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between OD readings")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from actors.topology import load
    from leader.web.app import make_app, run_in_thread

    units = [f"unit{i:02d}" for i in range(1, args.units + 1)]
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        leader_dir = os.path.join(tmp, "leader")
        os.makedirs(leader_dir)
        began = time.perf_counter()
        rows = fill(database.default_path(leader_dir), units, args.days, args.interval, time.time() - args.days * 86400)
        print(f"filled {rows} OD rows ({args.units} units x {args.days:g} days, every {args.interval:g} s) in {time.perf_counter() - began:.0f} s; "
              f"database {os.path.getsize(database.default_path(leader_dir)) / 1e6:.0f} MB")
        topo = os.path.join(tmp, "cluster.yaml")
        unit_lines = "\n".join(f"  {u}: {{hardware: sim, admin_port: {20000 + i}}}" for i, u in enumerate(units))
        with open(topo, "w") as f:
            f.write(textwrap.dedent("""\
                broker: {host: 127.0.0.1, port: 1}
                units:
                """) + unit_lines + "\n")
        port = _free_port()
        server = run_in_thread(make_app(leader_dir, load(topo)), "127.0.0.1", port)
        try:
            password = open(os.path.join(leader_dir, "initial_admin_password")).read().strip()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/api/login", body=json.dumps({"username": "admin", "password": password}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            cookie = resp.getheader("Set-Cookie").split(";")[0]
            conn.close()
            path = f"/api/experiments/{EXPERIMENT}/timeseries/od?points={args.points}"
            headers = {"Cookie": cookie}
            cold, status, size = request(port, path, headers)
            assert status == 200, status
            warm = [request(port, path, headers)[0] for _ in range(args.repeats)]
            _t, _s, gz = request(port, path, {**headers, "Accept-Encoding": "gzip"})
            day, _s, day_size = request(port, path + "&lookback_hours=24", headers)
            print(f"GET {path} ({args.units} units in one response, {args.points} points each at most)")
            print(f"  cold (first request of a fresh server): {cold * 1000:.0f} ms, {size / 1e3:.0f} kB ({gz / 1e3:.0f} kB gzip)")
            print(f"  warm: median {statistics.median(warm) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms over {args.repeats}")
            print(f"  last 24 h only (lookback_hours=24): {day * 1000:.0f} ms, {day_size / 1e3:.0f} kB")
            from leader.web import timeseries

            db = database.connect(database.default_path(leader_dir), readonly=True)
            t0 = time.perf_counter()
            timeseries.query(db, EXPERIMENT, "od", None, args.points)
            direct = time.perf_counter() - t0
            db.close()
            print(f"  of which timeseries.query itself (no HTTP, no JSON): {direct * 1000:.0f} ms")
        finally:
            server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
