"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real leader daemon
(its secured broker, ingest and web server, started with `pios leader start`) and two real simulated
units running od_reading and stirring: log in, live OD points on the chart for every unit, a target_rpm
change that moves the measured RPM, a job stopped and started from its card, and a viewer who sees no
actuation controls and whose API calls are refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from types import SimpleNamespace

import attrs
import pytest

from tests.support import wait_until
from tests.support.broker import free_port
from tests.support.node import Node

CHROMIUM = "/usr/bin/chromium"
PIOS = os.path.join(os.path.dirname(sys.executable), "pios")
UNITS = ("sim01", "sim02")

playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra (playwright) is not installed")
if not os.path.exists(CHROMIUM):  # scripts/bootstrap.sh --browser installs it (scripts/test.sh passes the flag)
    pytest.skip(f"{CHROMIUM} is missing: run scripts/bootstrap.sh --browser", allow_module_level=True)


@attrs.define
class BrokerAddress:
    host: str
    port: int


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    port, web_port = free_port(), free_port()
    state = root / "state"
    topology = root / "cluster.yaml"
    nodes = [Node(root / unit, BrokerAddress("127.0.0.1", port), unit=unit, time_scale=10.0) for unit in UNITS]
    # One cluster topology and one state dir for the leader and both units, as the demo runs them.
    topology.write_text(textwrap.dedent(f"""\
        broker: {{host: 127.0.0.1, port: {port}}}
        leader: {{web_port: {web_port}}}
        units:
          sim01: {{hardware: sim, admin_port: {nodes[0].admin_port}, time_scale: 10}}
          sim02: {{hardware: sim, admin_port: {nodes[1].admin_port}, time_scale: 10}}
        experiments:
          demo:
            description: browser test
            units: [sim01, sim02]
            jobs:
              od_reading: {{interval: 5}}
        """))
    for node in nodes:
        node.topology, node.state_dir = topology, state
        node.env.update(PIO_STATE_DIR=str(state), PIO_TOPOLOGY=str(topology))
    env = {**os.environ, "PIO_STATE_DIR": str(state)}

    def pios(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    try:
        started = pios("leader", "start", "--topology", str(topology), "--unit-credentials")
        assert started.returncode == 0, started.stderr
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_job_state("od_reading", "ready", timeout=30)  # from the leader's desired state
            node.pio("run", "stirring", "--target_rpm", "400")  # by hand: the stop/start test may stop it for good
        base = f"http://127.0.0.1:{web_port}"
        password = (state / "leader" / "initial_admin_password").read_text().strip()
        yield SimpleNamespace(base=base, password=password, nodes={n.unit: n for n in nodes}, pios=pios)
    finally:
        for node in nodes:
            node.cleanup()
        pios("leader", "stop")
        leftovers = [pid for node in nodes for pid in node.processes()]
        assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        # Debian's chromium; Playwright must not download a browser of its own.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def login(browser, cluster, username: str, password: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(cluster.base + "/")
    page.get_by_test_id("login-form").wait_for()
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("whoami").filter(has_text=username).wait_for(timeout=10_000)
    assert not page.get_by_test_id("login").is_visible()
    return page


def number(text: str) -> float:
    match = re.search(r"-?\d+(\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group())


def test_a_wrong_password_is_refused_and_the_login_form_says_so(browser, cluster):
    page = browser.new_page()
    page.goto(cluster.base + "/")
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    error = page.get_by_test_id("login-error")
    page.wait_for_function("() => document.querySelector('[data-testid=login-error]').textContent.length > 0", timeout=10_000)
    assert "password" in error.inner_text().lower() or "invalid" in error.inner_text().lower()
    assert not page.locator("#topbar").is_visible() and page.get_by_test_id("login").is_visible()
    page.close()


def test_after_login_a_live_od_point_reaches_the_chart_for_every_running_unit(browser, cluster):
    page = login(browser, cluster, "admin", cluster.password)
    page.get_by_test_id("chart-od").wait_for()
    assert page.get_by_test_id("experiment-select").input_value() == "demo"
    began = time.monotonic()
    for unit in UNITS:
        # data-live-points counts points that came over the WebSocket (not the history request).
        page.locator(f'[data-testid="last-od-{unit}"][data-live-points]').wait_for(timeout=10_000)
    assert time.monotonic() - began < 10
    assert page.get_by_test_id("live-status").inner_text() == "live"
    assert page.locator("#chart-od canvas").count() >= 1  # uPlot drew it
    for unit in UNITS:
        assert "OD" in page.get_by_test_id(f"last-od-{unit}").inner_text()
    page.close()


def test_changing_target_rpm_on_a_card_moves_that_units_measured_rpm(browser, cluster):
    page = login(browser, cluster, "admin", cluster.password)
    page.get_by_test_id("nav-units").click()
    measured = page.get_by_test_id("setting-value-sim01-stirring-measured_rpm")
    measured.wait_for(timeout=10_000)
    wait_until(lambda: measured.inner_text() and abs(number(measured.inner_text()) - 400) < 60, 20, 0.2, "stirring near 400 RPM")
    page.get_by_test_id("setting-input-sim01-stirring-target_rpm").fill("800")
    page.get_by_test_id("setting-apply-sim01-stirring-target_rpm").click()
    page.get_by_test_id("message").filter(has_text="done").wait_for(timeout=15_000)
    # Measured RPM comes live over the relay; the card updates in place.
    wait_until(lambda: number(measured.inner_text()) > 700, 20, 0.2, "sim01's measured RPM to approach 800")
    assert cluster.nodes["sim01"].job("stirring")["settings"]["target_rpm"] == 800.0
    assert abs(number(page.get_by_test_id("setting-value-sim02-stirring-measured_rpm").inner_text()) - 400) < 60  # the other unit did not move
    page.close()


def test_a_job_is_stopped_and_started_from_its_units_card(browser, cluster):
    page = login(browser, cluster, "admin", cluster.password)
    page.get_by_test_id("nav-units").click()
    page.get_by_test_id("job-state-sim02-stirring").filter(has_text="ready").wait_for(timeout=10_000)
    page.get_by_test_id("job-stop-sim02-stirring").click()
    page.get_by_test_id("job-sim02-stirring").wait_for(state="detached", timeout=15_000)
    wait_until(lambda: (cluster.nodes["sim02"].job("stirring") or {}).get("state") in (None, "disconnected"), 10, 0.2, "stirring stopped on sim02")

    card = page.get_by_test_id("unit-card-sim02")
    card.locator("summary", has_text="Start a job").click()
    page.get_by_test_id("start-job-select-sim02").select_option("stirring")
    page.get_by_test_id("start-option-sim02-target_rpm").fill("450")
    page.get_by_test_id("start-job-sim02").click()
    page.get_by_test_id("job-state-sim02-stirring").filter(has_text="ready").wait_for(timeout=20_000)
    assert cluster.nodes["sim02"].job("stirring")["settings"]["target_rpm"] == 450.0
    page.close()


def test_a_viewer_sees_no_actuation_controls_and_the_api_refuses_them(browser, cluster):
    # Create the viewer through the API as admin (a session cookie + CSRF token, as the browser does).
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    req = urllib.request.Request(cluster.base + "/api/login", data=json.dumps({"username": "admin", "password": cluster.password}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    csrf = json.loads(opener.open(req, timeout=20).read())["csrf_token"]
    req = urllib.request.Request(cluster.base + "/api/users", data=json.dumps({"username": "vera", "role": "viewer", "password": "vera-secret-pw"}).encode(),
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": csrf}, method="POST")
    assert opener.open(req, timeout=20).status == 201

    page = login(browser, cluster, "vera", "vera-secret-pw")
    page.get_by_test_id("nav-units").click()
    page.get_by_test_id("unit-card-sim01").wait_for(timeout=10_000)
    page.get_by_test_id("job-sim01-od_reading").wait_for(timeout=10_000)
    for page_name in ("units", "experiments", "overview"):
        page.goto(f"{cluster.base}/#/{page_name}")
        page.wait_for_function(f"() => document.getElementById('page').dataset.page === '{page_name}'")
        page.wait_for_load_state("networkidle")
        assert page.locator("[data-actuation]").count() == 0, f"a viewer sees actuation controls on {page_name}"
        assert page.locator("button", has_text=re.compile("^(Stop|Pause|Set|Start|Dose|Delete|End)$")).count() == 0
    # The API refuses the viewer even if it tries by hand, from the page's own session.
    answer = page.evaluate("""async () => {
        const me = await (await fetch('/api/me')).json();
        const r = await fetch('/api/units/sim01/jobs/stirring/stop', {method: 'POST', headers: {'X-CSRF-Token': me.csrf_token}});
        return [r.status, (await r.json()).error];
    }""")
    assert answer[0] == 403 and "operator" in answer[1]
    assert cluster.nodes["sim01"].job("stirring")["state"] == "ready"  # nothing happened
    page.close()
