#!/usr/bin/env python3
"""Take docs/dashboard.png: the overview page with the demo cluster running.

Runs the demo (`pios demo`: the leader and every simulated unit of topology.yaml) in a private state dir
on free ports, waits until every unit has OD history, logs in as admin in Debian's headless chromium
(Playwright; it downloads no browser), waits for a live point on each chart, saves the screenshot and
stops the demo. Needs `scripts/bootstrap.sh --browser`. Usage: .venv/bin/python scripts/screenshot.py
[--out docs/dashboard.png] [--warmup 60]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_topology(path: str, out: str) -> tuple[list[str], int]:
    """topology.yaml with free ports, so the screenshot never collides with a demo already running."""
    with open(path) as f:
        topo = yaml.safe_load(f)
    topo["broker"]["port"] = free_port()
    topo.setdefault("leader", {})
    topo["leader"].update(admin_port=free_port(), web_port=free_port())
    for unit in topo["units"].values():
        unit["admin_port"] = free_port()
    with open(out, "w") as f:
        yaml.safe_dump(topo, f)
    return list(topo["units"]), topo["leader"]["web_port"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "dashboard.png"))
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of demo before the screenshot (history to draw)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = tempfile.mkdtemp(prefix="pio-screenshot-")
    topology = os.path.join(work, "topology.yaml")
    units, web_port = demo_topology(os.path.join(ROOT, "topology.yaml"), topology)
    env = {**os.environ, "PIO_STATE_DIR": os.path.join(work, "state"), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([sys.executable, "-m", "worker.demo", "--topology", topology], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        password = None
        deadline = time.monotonic() + 120
        while password is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                raise SystemExit("screenshot: the demo ended before printing its login")
            match = re.match(r"login: admin / (\S+)", line.strip())
            if match:
                password = match.group(1)
        if password is None:
            raise SystemExit("screenshot: the demo printed no admin password within 120 s")
        # Keep reading the demo's live view so its pipe never fills and blocks it.
        threading.Thread(target=lambda: [None for _ in demo.stdout], daemon=True).start()
        base = f"http://127.0.0.1:{web_port}"
        print(f"screenshot: demo up at {base}; warming up {args.warmup:.0f} s", file=sys.stderr)
        time.sleep(args.warmup)  # a script, not a test: history accumulates for the picture
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 1080})
            page.goto(base + "/")
            page.get_by_test_id("login-username").fill("admin")
            page.get_by_test_id("login-password").fill(password)
            page.get_by_test_id("login-submit").click()
            page.get_by_test_id("chart-od").wait_for(timeout=20_000)
            for unit in units:
                page.locator(f'[data-testid="last-od-{unit}"][data-live-points]').wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let the other charts draw their latest points
            page.screenshot(path=args.out, full_page=False)
            browser.close()
        print(f"screenshot: wrote {args.out} ({os.path.getsize(args.out) // 1024} kB)", file=sys.stderr)
        return 0
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # the demo stops its nodes and the leader on Ctrl-C
            try:
                demo.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
