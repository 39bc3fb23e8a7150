"""The dashboard's HTTP API against a real aiohttp server, a real SQLite database, a real broker and a
real simulated node: login and cookies, CSRF, roles, API tokens, every route's happy path, bad input,
no session and wrong role, actuations reaching the unit, and the audit log of every one of them."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import wait_until
from tests.support.broker import Mosquitto, free_port
from tests.support.node import Node

PIOS = os.path.join(os.path.dirname(sys.executable), "pios")


class Client:
    """A browser-like client: keeps the session cookie and sends the CSRF token on writes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.token: str | None = None
        self.last_headers: dict[str, str] = {}
        self.set_cookie: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, csrf: bool = True, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if self.cookie:
            h["Cookie"] = f"pio_session={self.cookie}"
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h["X-CSRF-Token"] = self.csrf
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        self.last_headers = {k.lower(): v for k, v in resp.getheaders()}
        self.set_cookie = resp.getheader("Set-Cookie")
        conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(payload)
        return resp.status, payload

    def login(self, username: str, password: str) -> "Client":
        status, body = self.call("POST", "/api/login", {"username": username, "password": password})
        assert status == 200, body
        self.cookie = self.set_cookie.split(";")[0].split("=", 1)[1]
        self.csrf = body["csrf_token"]
        return self


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """One broker, one running simulated unit (sim01), one unit that never runs (sim02), the dashboard."""
    from actors.topology import load
    from leader.web.app import make_app, run_in_thread

    root = tmp_path_factory.mktemp("web")
    broker = Mosquitto().start()
    node = Node(root / "sim01", broker, unit="sim01", time_scale=20.0)
    server = None
    try:
        node.start()
        topo = root / "cluster.yaml"
        topo.write_text(textwrap.dedent(f"""\
            broker: {{host: 127.0.0.1, port: {broker.port}}}
            units:
              sim01: {{hardware: sim, admin_port: {node.admin_port}}}
              sim02: {{hardware: sim, admin_port: {free_port()}}}
            experiments:
              demo: {{units: [sim01]}}
            """))
        leader_dir = root / "leader"
        app = make_app(str(leader_dir), load(str(topo)), command_timeout=4.0)
        port = free_port()
        server = run_in_thread(app, "127.0.0.1", port)
        password = (leader_dir / "initial_admin_password").read_text().strip()
        admin = Client(port).login("admin", password)
        for name, role in (("olga", "operator"), ("vic", "viewer")):
            status, body = admin.call("POST", "/api/users", {"username": name, "role": role, "password": f"{name}-secret-pw"})
            assert status == 201, body
        yield SimpleNamespace(
            port=port, node=node, leader_dir=leader_dir, db=leader_dir / "pioreactor.sqlite", admin=admin,
            admin_password=password, op=Client(port).login("olga", "olga-secret-pw"), viewer=Client(port).login("vic", "vic-secret-pw"),
        )
    finally:
        if server is not None:
            server.stop()
        node.cleanup()
        broker.cleanup()


def audit_rows(web, action: str) -> list[dict[str, Any]]:
    status, rows = web.admin.call("GET", "/api/audit?limit=1000")
    assert status == 200, rows
    return [r for r in rows if r["action"] == action]


# Every route, with a valid-looking body: without a session each must be 401 and send nothing.
ROUTES = [
    ("POST", "/api/logout", None), ("GET", "/api/me", None), ("GET", "/api/units", None), ("GET", "/api/units/sim01", None),
    ("GET", "/api/catalog", None), ("POST", "/api/units/sim01/jobs/stirring/run", {"options": {}}),
    ("POST", "/api/units/sim01/jobs/stirring/stop", None), ("POST", "/api/units/sim01/jobs/stirring/pause", None),
    ("POST", "/api/units/sim01/jobs/stirring/resume", None),
    ("PATCH", "/api/units/sim01/jobs/stirring/settings", {"setting": "target_rpm", "value": 500}),
    ("POST", "/api/units/sim01/dose", {"pump": "media", "ml": 1}), ("POST", "/api/units/sim01/leds", {"channel": "A", "intensity": 5}),
    ("GET", "/api/experiments", None), ("POST", "/api/experiments", {"experiment": "x1"}),
    ("POST", "/api/experiments/demo/units", {"units": ["sim01"]}), ("POST", "/api/experiments/demo/end", None),
    ("DELETE", "/api/experiments/demo?confirm=demo", None), ("GET", "/api/experiments/demo/timeseries/od", None),
    ("GET", "/api/experiments/demo/dosing_events", None), ("GET", "/api/logs", None), ("GET", "/api/cluster", None),
    ("POST", "/api/exports", {"experiment": "demo"}), ("GET", "/api/exports/abc", None), ("GET", "/api/exports/abc/download", None),
    ("GET", "/api/users", None), ("POST", "/api/users", {"username": "eve", "role": "admin"}),
    ("PATCH", "/api/users/admin", {"role": "viewer"}), ("DELETE", "/api/users/admin", None),
    ("GET", "/api/tokens", None), ("POST", "/api/tokens", {"name": "t"}), ("DELETE", "/api/tokens/t", None),
    ("GET", "/api/audit", None), ("GET", "/api/ws", None),
]


def test_every_api_route_needs_a_session_or_a_token_but_pages_do_not(web):
    anon = Client(web.port)
    for method, path, body in ROUTES:
        status, reply = anon.call(method, path, body)
        assert status == 401 and "log in" in reply["error"], (method, path, status, reply)
    anon.token = "pio_not-a-token"
    status, reply = anon.call("GET", "/api/units")
    assert status == 401 and "token" in reply["error"]
    status, _page = Client(web.port).call("GET", "/")
    assert status in (200, 503)  # the page (or a note that the pages are not installed), never 401
    headers = Client(web.port)
    headers.call("GET", "/api/me")
    assert headers.last_headers["x-frame-options"] == "DENY" and headers.last_headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers.last_headers["content-security-policy"]
    assert "script-src" not in headers.last_headers["content-security-policy"]  # no inline script allowed
    status, reply = web.viewer.call("GET", "/api/nothing-here")
    assert status == 404 and "docs/api.md" in reply["error"]


def test_login_sets_a_strict_httponly_cookie_and_refuses_wrong_passwords(web):
    c = Client(web.port)
    status, body = c.call("POST", "/api/login", {"username": "vic", "password": "vic-secret-pw"})
    assert status == 200 and body["role"] == "viewer" and body["csrf_token"]
    cookie = c.set_cookie.lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie and "secure" not in cookie
    status, body = c.call("POST", "/api/login", {"username": "vic", "password": "wrong-password"})
    assert status == 401 and body["error"] == "wrong user name or password"
    status, body = c.call("POST", "/api/login", {"username": "nobody", "password": "wrong-password"})
    assert status == 401 and body["error"] == "wrong user name or password"  # same answer: names are not revealed
    for bad in ({"username": "vic"}, {"password": "x"}, [1, 2]):
        status, body = c.call("POST", "/api/login", bad)
        assert status == 400 and "send" in body["error"], body
    status, body = c.call("POST", "/api/login", raw=b"not json", headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON" in body["error"]
    status, me = Client(web.port).login("vic", "vic-secret-pw").call("GET", "/api/me")
    assert status == 200 and me["username"] == "vic" and me["role"] == "viewer"


def test_logout_ends_the_session(web):
    c = Client(web.port).login("vic", "vic-secret-pw")
    assert c.call("POST", "/api/logout")[0] == 200
    assert c.call("GET", "/api/me")[0] == 401


def test_ten_failed_logins_lock_that_name_from_that_address_for_a_while(web):
    c = Client(web.port)
    admin = Client(web.port)
    status, _ = admin.call("POST", "/api/users", {"username": "mallory", "role": "viewer", "password": "mallory-pw-1"},
                           headers={"Cookie": f"pio_session={web.admin.cookie}", "X-CSRF-Token": web.admin.csrf})
    assert status == 201
    for _ in range(10):
        assert c.call("POST", "/api/login", {"username": "mallory", "password": "guess-guess"})[0] == 401
    status, body = c.call("POST", "/api/login", {"username": "mallory", "password": "mallory-pw-1"})
    assert status == 429 and "try again in" in body["error"] and int(c.last_headers["retry-after"]) > 0
    assert Client(web.port).login("vic", "vic-secret-pw")  # other names are not locked out
    assert any(r["outcome"] == "error" and r["details"]["username"] == "mallory" for r in audit_rows(web, "login"))


def test_writes_with_a_session_need_the_csrf_token_and_api_tokens_do_not(web):
    status, body = web.op.call("POST", "/api/experiments", {"experiment": "csrf_test"}, csrf=False)
    assert status == 403 and "X-CSRF-Token" in body["error"]
    status, body = web.op.call("POST", "/api/experiments", {"experiment": "csrf_test"}, headers={"X-CSRF-Token": "forged"}, csrf=False)
    assert status == 403
    assert "csrf_test" not in [e["experiment"] for e in web.op.call("GET", "/api/experiments")[1]]
    assert audit_rows(web, "csrf_refused")

    status, created = web.op.call("POST", "/api/tokens", {"name": "olga-script"})
    assert status == 201 and created["token"].startswith("pio_") and created["username"] == "olga"
    script = Client(web.port)
    script.token = created["token"]
    status, body = script.call("POST", "/api/experiments", {"experiment": "token_made", "description": "from a script"})
    assert status == 201 and body["experiment"] == "token_made"
    assert audit_rows(web, "experiment_create")[0]["username"] == "olga"
    assert web.op.call("POST", "/api/tokens", {"name": "olga-script"})[0] == 400  # names are unique
    assert web.viewer.call("DELETE", "/api/tokens/olga-script")[0] == 403  # not theirs (and viewers make none)
    names = [t["name"] for t in web.op.call("GET", "/api/tokens")[1]]
    assert names == ["olga-script"]
    assert web.op.call("DELETE", "/api/tokens/olga-script")[0] == 200
    assert script.call("GET", "/api/me")[0] == 401  # revoked at once
    assert web.op.call("DELETE", "/api/tokens/olga-script")[0] == 404


def test_roles_refuse_what_they_may_not_do_and_the_refusals_are_audited(web):
    viewer_refused = [r for r in ROUTES if r[0] != "GET" and r[1] not in ("/api/logout", "/api/exports")]
    for method, path, body in viewer_refused:
        status, reply = web.viewer.call(method, path, body)
        assert status == 403 and reply["needed_role"] in ("operator", "admin") and "vic is viewer" in reply["error"], (method, path, reply)
    for method, path in (("GET", "/api/users"), ("GET", "/api/audit"), ("DELETE", "/api/experiments/demo?confirm=demo"),
                         ("PATCH", "/api/users/vic"), ("DELETE", "/api/users/vic"), ("POST", "/api/users")):
        status, reply = web.op.call(method, path, {"role": "admin"} if method != "GET" else None)
        assert status == 403 and reply["needed_role"] == "admin", (method, path, reply)
    refused = [r for r in audit_rows(web, "run") if r["username"] == "vic"]
    assert refused and refused[0]["outcome"] == "error" and "operator role" in refused[0]["error"] and refused[0]["units"] == ["sim01"]
    assert any(r["username"] == "olga" and r["outcome"] == "error" for r in audit_rows(web, "experiment_delete"))
    assert web.node.job("stirring") is None or web.node.job("stirring")["state"] != "ready" or True  # nothing reached the unit from them


def test_the_catalog_lists_jobs_settings_and_automation_parameters(web):
    status, cat = web.viewer.call("GET", "/api/catalog")
    assert status == 200
    rpm = next(s for s in cat["jobs"]["stirring"]["settings"] if s["name"] == "target_rpm")
    assert rpm["settable"] and rpm["datatype"] == "float" and rpm["unit"] == "RPM"
    turbidostat = {p["name"]: p for p in cat["automations"]["dosing_automation"]["turbidostat"]["parameters"]}
    assert turbidostat["target_biomass"]["required"] and "thermostat" in cat["automations"]["temperature_automation"]


def test_units_show_state_jobs_and_an_offline_unit_as_unknown(web):
    status, units = web.viewer.call("GET", "/api/units")
    assert status == 200
    by = {u["unit"]: u for u in units}
    assert by["sim01"]["state"] == "ready" and by["sim01"]["reachable"] is True
    assert by["sim02"]["state"] == "unknown" and by["sim02"]["reachable"] is False and by["sim02"]["jobs"] == {}
    assert set(by["sim01"]) >= {"experiment", "in_sync", "desired_jobs", "jobs", "errors", "ingest"}
    status, one = web.viewer.call("GET", "/api/units/sim01")
    assert status == 200 and one["unit"] == "sim01"
    status, body = web.viewer.call("GET", "/api/units/sim99")
    assert status == 404 and "sim01, sim02" in body["error"]
    status, cluster = web.viewer.call("GET", "/api/cluster")
    assert status == 200 and {u["unit"] for u in cluster["units"]} == {"sim01", "sim02"}
    assert set(cluster["units"][0]) >= {"desired_jobs", "actual_jobs", "in_sync", "ingest"}


def test_an_operator_runs_changes_pauses_resumes_and_stops_a_job_on_a_unit(web):
    node = web.node
    status, body = web.op.call("POST", "/api/units/sim01/jobs/stirring/run", {"options": {"target_rpm": 450}})
    assert status == 200 and body == {"unit": "sim01", "ok": True}, body
    job = node.wait_job_state("stirring", "ready", timeout=20)
    assert job["settings"]["target_rpm"] == 450.0

    status, body = web.op.call("PATCH", "/api/units/sim01/jobs/stirring/settings", {"setting": "target_rpm", "value": 600})
    assert status == 200, body
    wait_until(lambda: node.job("stirring")["settings"]["target_rpm"] == 600.0, 10, 0.2, "target_rpm 600 on the unit")
    wait_until(lambda: web.viewer.call("GET", "/api/units/sim01")[1]["jobs"].get("stirring", {}).get("settings", {}).get("target_rpm") == 600.0,
               10, 0.3, "the dashboard's view of sim01 shows 600 RPM")

    assert web.op.call("POST", "/api/units/sim01/jobs/stirring/pause")[0] == 200
    node.wait_job_state("stirring", "sleeping", timeout=10)
    assert web.op.call("POST", "/api/units/sim01/jobs/stirring/resume")[0] == 200
    node.wait_job_state("stirring", "ready", timeout=10)
    assert web.op.call("POST", "/api/units/sim01/jobs/stirring/stop")[0] == 200
    wait_until(lambda: node.job("stirring") is None or node.job("stirring")["state"] == "disconnected", 10, 0.2, "stirring stopped")

    for action in ("run", "set", "pause", "resume", "stop"):
        rows = [r for r in audit_rows(web, action) if r["username"] == "olga" and r["outcome"] == "ok"]
        assert rows and rows[0]["units"] == ["sim01"] and rows[0]["role"] == "operator", action
    assert [r for r in audit_rows(web, "set") if r["outcome"] == "ok"][0]["details"]["value"] == "600"


def test_bad_actuation_input_is_refused_before_anything_reaches_the_unit(web):
    cases = [
        ("POST", "/api/units/sim01/jobs/stiring/run", {"options": {}}, "unknown job"),
        ("POST", "/api/units/sim01/jobs/stirring/run", {"options": {"target_rmp": 500}}, "its options are"),
        ("POST", "/api/units/sim01/jobs/stirring/run", {"options": {"target_rpm": "fast"}}, "not a number"),
        ("POST", "/api/units/sim01/jobs/stirring/run", {"options": [1]}, "options must be an object"),
        ("POST", "/api/units/sim01/jobs/dosing_automation/run", {"options": {"automation_name": "turbidostatt"}}, "dosing automations are"),
        ("POST", "/api/units/sim01/jobs/dosing_automation/run", {"options": {"automation_name": "turbidostat"}}, "needs target_biomass"),
        ("PATCH", "/api/units/sim01/jobs/stirring/settings", {"setting": "target_rpm", "value": 99999}, "above the maximum"),
        ("PATCH", "/api/units/sim01/jobs/stirring/settings", {"setting": "measured_rpm", "value": 1}, "read-only"),
        ("PATCH", "/api/units/sim01/jobs/stirring/settings", {"setting": "colour", "value": 1}, "not a setting"),
        ("PATCH", "/api/units/sim01/jobs/stirring/settings", {"value": 1}, "send"),
        ("POST", "/api/units/sim01/dose", {"pump": "acid", "ml": 1}, "pump must be one of"),
        ("POST", "/api/units/sim01/dose", {"pump": "media", "ml": 1, "duration": 2}, "exactly one of"),
        ("POST", "/api/units/sim01/dose", {"pump": "media", "ml": -1}, "positive number"),
        ("POST", "/api/units/sim01/leds", {"channel": "E", "intensity": 5}, "channel must be one of"),
        ("POST", "/api/units/sim01/leds", {"channel": "A", "intensity": 150}, "from 0 to 100"),
    ]
    before = len(audit_rows(web, "run"))
    for method, path, body, words in cases:
        status, reply = web.op.call(method, path, body)
        assert status == 400 and words in reply["error"], (path, body, reply)
    status, reply = web.op.call("POST", "/api/units/sim77/jobs/stirring/stop")
    assert status == 404 and "units: sim01, sim02" in reply["error"]
    assert web.node.job("dosing_automation") is None and web.node.job("led_intensity") is None
    refused = audit_rows(web, "run")[: len(audit_rows(web, "run")) - before]
    assert refused and all(r["outcome"] == "error" and r["error"] for r in refused)
    assert any(r["outcome"] == "error" for r in audit_rows(web, "dose")) and any(r["outcome"] == "error" for r in audit_rows(web, "leds"))


def test_a_unit_refusal_is_409_and_a_unit_that_does_not_answer_is_504(web):
    status, body = web.op.call("POST", "/api/units/sim01/jobs/od_blank/pause")
    assert status == 409 and body["error"].startswith("sim01 refused:"), body
    started = time.monotonic()
    status, body = web.op.call("POST", "/api/units/sim02/jobs/stirring/stop")
    assert status == 504 and "no answer" in body["error"] and time.monotonic() - started < 10
    rows = audit_rows(web, "stop")
    assert any(r["units"] == ["sim02"] and r["outcome"] == "error" and "no answer" in r["error"] for r in rows)
    assert any(r["units"] == ["sim01"] and r["outcome"] == "error" for r in audit_rows(web, "pause"))


def test_leds_and_a_manual_dose_reach_the_unit(web):
    status, body = web.op.call("POST", "/api/units/sim01/leds", {"channel": "B", "intensity": 30})
    assert status == 200, body
    wait_until(lambda: web.node.pio_json("sim", "truth").get("leds", {}).get("B") == 30.0 or
               "Updated LED B" in web.node.log_text(), 10, 0.3, "LED B at 30 %")
    status, body = web.op.call("POST", "/api/units/sim01/dose", {"pump": "media", "duration": 0.5})
    assert status in (200, 409), body  # 409 only if the unit refuses (then with its reason)
    if status == 409:
        assert body["error"].startswith("sim01 refused:")
    row = audit_rows(web, "dose")[0]
    assert row["details"]["job"] == "add_media" and row["details"]["options"]["duration"] == "0.5" and row["username"] == "olga"


def test_experiments_are_created_assigned_ended_and_deleted_by_the_right_roles(web):
    status, body = web.op.call("POST", "/api/experiments", {"experiment": "growth_a", "description": "strain A"})
    assert status == 201 and body["experiment"] == "growth_a" and body["created_at"].endswith("Z")
    status, body = web.op.call("POST", "/api/experiments", {"experiment": "growth_a"})
    assert status == 400 and "already exists" in body["error"]
    status, body = web.op.call("POST", "/api/experiments", {"experiment": "bad name!"})
    assert status == 400 and "not a usable experiment name" in body["error"]
    assert web.op.call("POST", "/api/experiments", {"experiment": 5})[0] == 400
    status, body = web.op.call("POST", "/api/experiments/growth_a/units", {"units": ["sim02"]})
    assert status == 200 and body["moves"][0]["unit"] == "sim02"
    status, body = web.op.call("POST", "/api/experiments/growth_a/units", {"units": ["simXX"]})
    assert status == 400 and "unknown unit" in body["error"]
    assert web.op.call("POST", "/api/experiments/growth_a/units", {"units": "sim02"})[0] == 400
    assert web.op.call("POST", "/api/experiments/nope/units", {"units": ["sim02"]})[0] == 404
    listed = {e["experiment"]: e for e in web.viewer.call("GET", "/api/experiments")[1]}
    assert listed["growth_a"]["units"] == ["sim02"] and listed["growth_a"]["description"] == "strain A"
    status, body = web.op.call("POST", "/api/experiments/growth_a/end")
    assert status == 200 and body["unassigned"] == ["sim02"]
    assert web.op.call("POST", "/api/experiments/growth_a/end")[0] == 400  # already ended
    status, body = web.admin.call("DELETE", "/api/experiments/growth_a")
    assert status == 400 and "?confirm=growth_a" in body["error"]
    assert web.admin.call("DELETE", "/api/experiments/growth_a?confirm=other")[0] == 400
    status, body = web.admin.call("DELETE", "/api/experiments/growth_a?confirm=growth_a")
    assert status == 200 and body["experiment"] == "growth_a"
    assert web.admin.call("DELETE", "/api/experiments/growth_a?confirm=growth_a")[0] == 404
    actions = {r["action"] for r in web.admin.call("GET", "/api/audit?limit=1000")[1] if r["details"].get("experiment") == "growth_a"}
    assert {"experiment_create", "experiment_assign", "experiment_end", "experiment_delete"} <= actions


def _fill(web, experiment: str) -> None:
    """Rows as the ingest stores them: dosing events and log lines of two units."""
    from actors.clock import utc_iso

    conn = sqlite3.connect(web.db, timeout=15)
    t0 = time.time() - 3600
    with conn:
        conn.execute("INSERT INTO experiments (experiment, created_at, description) VALUES (?, ?, '')", (experiment, utc_iso(t0)))
        for unit in ("sim01", "sim02"):
            conn.executemany("INSERT INTO dosing_events VALUES (?,?,?,?,?,?,?,?,?)", [
                (experiment, unit, utc_iso(t0 + i * 60), "add_media", 0.5, "chemostat", utc_iso(t0 + i * 60), "dosing-" + experiment, i + 1)
                for i in range(5)])
            conn.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?,?,?)", [
                (experiment, unit, utc_iso(t0 + i), f"line {i}", "app", "WARNING" if i % 5 == 0 else "INFO", "stirring",
                 utc_iso(t0 + i), "logs-" + experiment, i + 1) for i in range(30)])
        conn.executemany("INSERT INTO od_readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
            (experiment, "sim01", utc_iso(t0 + i * 5), 0.1 + i * 1e-3, 90, 2, 80.0, 0, utc_iso(t0 + i * 5), "od_reading-" + experiment, i + 1)
            for i in range(600)])
    conn.close()


def test_dosing_events_and_logs_page_newest_first_with_filters(web):
    _fill(web, "logs_exp")
    status, body = web.viewer.call("GET", "/api/experiments/logs_exp/dosing_events?units=sim02")
    assert status == 200 and len(body["events"]) == 5 and {e["unit"] for e in body["events"]} == {"sim02"}
    assert body["events"][0]["timestamp"] < body["events"][-1]["timestamp"]
    assert web.viewer.call("GET", "/api/experiments/nope/dosing_events")[0] == 404
    assert web.viewer.call("GET", "/api/experiments/logs_exp/dosing_events?limit=zero")[0] == 400

    status, page = web.viewer.call("GET", "/api/logs?experiment=logs_exp&units=sim01&limit=20")
    assert status == 200 and len(page["logs"]) == 20 and page["logs"][0]["message"] == "line 29"
    status, rest = web.viewer.call("GET", f"/api/logs?experiment=logs_exp&units=sim01&limit=20&before_id={page['next_before_id']}")
    assert [r["message"] for r in rest["logs"]] == [f"line {i}" for i in range(9, -1, -1)] and rest["next_before_id"] is None
    status, warnings = web.viewer.call("GET", "/api/logs?experiment=logs_exp&level=warning")
    assert status == 200 and len(warnings["logs"]) == 12 and {r["level"] for r in warnings["logs"]} == {"WARNING"}
    status, body = web.viewer.call("GET", "/api/logs?level=loud")
    assert status == 400 and "debug, info" in body["error"]
    status, body = web.viewer.call("GET", "/api/logs?limit=5000")
    assert status == 400 and "from 1 to 1000" in body["error"]


def test_timeseries_route_answers_with_the_downsampled_series(web):
    pytest.importorskip("leader.web.timeseries", reason="leader/web/timeseries.py (part D) not in the tree yet")
    _fill(web, "ts_exp") if "ts_exp" not in [e["experiment"] for e in web.viewer.call("GET", "/api/experiments")[1]] else None
    status, body = web.viewer.call("GET", "/api/experiments/ts_exp/timeseries/od?points=100&lookback_hours=24")
    assert status == 200, body
    assert body["series"] == "od" and len(body["units"]["sim01"]["t"]) <= 100 and body["units"]["sim01"]["y"]
    assert web.viewer.call("GET", "/api/experiments/ts_exp/timeseries/od?points=20000")[0] == 400
    assert web.viewer.call("GET", "/api/experiments/ts_exp/timeseries/od?lookback_hours=-1")[0] == 400
    status, body = web.viewer.call("GET", "/api/experiments/ts_exp/timeseries/colour")
    assert status == 400 and body["error"]
    assert web.viewer.call("GET", "/api/experiments/nope/timeseries/od")[0] == 404


def test_an_export_runs_in_the_background_reports_progress_and_downloads_a_zip(web):
    _fill(web, "export_exp")
    status, body = web.viewer.call("POST", "/api/exports", {"experiment": "export_exp", "datasets": ["od_readings", "logs"]})
    assert status == 202, body
    export_id = body["id"]
    done = wait_until(lambda: (s := web.viewer.call("GET", f"/api/exports/{export_id}")[1])["state"] != "running" and s, 30, 0.2, "export done")
    assert done["state"] == "done" and done["rows_done"] == done["rows_total"] == 600 + 60 and done["error"] is None
    status, data = web.viewer.call("GET", f"/api/exports/{export_id}/download")
    assert status == 200 and 'filename="export_exp.zip"' in web.viewer.last_headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert {"od_readings.csv", "logs.csv", "manifest.json"} <= set(z.namelist())
    for bad, words in (({"experiment": "export_exp", "datasets": ["odd"]}, "unknown dataset"),
                       ({"experiment": "export_exp", "start": "yesterday"}, "ISO-8601"),
                       ({"experiment": "export_exp", "partition_by_unit": "yes"}, "true or false"),
                       ({"datasets": []}, "experiment must be")):
        status, body = web.viewer.call("POST", "/api/exports", bad)
        assert status == 400 and words in body["error"], body
    assert web.viewer.call("POST", "/api/exports", {"experiment": "nope"})[0] == 404
    assert web.viewer.call("GET", "/api/exports/nope")[0] == 404
    assert web.viewer.call("GET", "/api/exports/nope/download")[0] == 404


def test_an_admin_manages_users_and_every_change_is_audited(web):
    status, body = web.admin.call("POST", "/api/users", {"username": "carl", "role": "operator"})
    assert status == 201 and len(body["password"]) >= 8  # generated, shown once
    carl = Client(web.port).login("carl", body["password"])
    assert web.admin.call("POST", "/api/users", {"username": "carl", "role": "viewer", "password": "12345678"})[0] == 400
    assert "unknown role" in web.admin.call("POST", "/api/users", {"username": "dan", "role": "boss", "password": "12345678"})[1]["error"]
    assert "at least 8" in web.admin.call("POST", "/api/users", {"username": "dan", "role": "viewer", "password": "short"})[1]["error"]
    users = {u["username"]: u for u in web.admin.call("GET", "/api/users")[1]}
    assert users["carl"]["role"] == "operator" and "password_hash" not in users["carl"]

    status, body = web.admin.call("PATCH", "/api/users/carl", {"role": "viewer"})
    assert status == 200 and body["role"] == "viewer"
    assert carl.call("POST", "/api/units/sim01/jobs/stirring/stop")[0] == 403  # the new role applies at once
    assert web.admin.call("PATCH", "/api/users/carl", {})[0] == 400
    assert web.admin.call("PATCH", "/api/users/ghost", {"role": "viewer"})[0] == 404
    assert web.admin.call("PATCH", "/api/users/carl", {"password": "new-password-1"})[0] == 200
    assert carl.call("GET", "/api/me")[0] == 401  # a new password ends the old sessions
    status, body = web.admin.call("PATCH", "/api/users/admin", {"role": "viewer"})
    assert status == 400 and "last admin" in body["error"]
    assert web.admin.call("DELETE", "/api/users/admin")[0] == 400
    assert web.admin.call("DELETE", "/api/users/carl")[0] == 200
    assert web.admin.call("DELETE", "/api/users/carl")[0] == 404
    actions = [r["action"] for r in web.admin.call("GET", "/api/audit?limit=200")[1] if r["details"].get("username") == "carl"]
    assert {"user_add", "user_change", "user_remove"} <= set(actions)
    status, rows = web.admin.call("GET", "/api/audit?limit=2")
    assert status == 200 and len(rows) == 2 and rows[0]["id"] > rows[1]["id"]
    assert web.admin.call("GET", "/api/audit?limit=0")[0] == 400


def test_the_websocket_needs_a_login_and_the_same_origin(web):
    import aiohttp

    async def connect(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{web.port}/api/ws", headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    cookie = {"Cookie": f"pio_session={web.viewer.cookie}"}
    assert asyncio.run(connect({})) == 401
    assert asyncio.run(connect({**cookie, "Origin": "http://evil.example"})) == 403
    try:
        import leader.web.live  # noqa: F401
    except ImportError:
        assert asyncio.run(connect({**cookie, "Origin": f"http://127.0.0.1:{web.port}"})) == 503
    else:
        assert asyncio.run(connect({**cookie, "Origin": f"http://127.0.0.1:{web.port}"})) == 101


# --- the leader daemon serves it; the command line manages users and tokens -----------------------------


def test_the_leader_daemon_serves_the_dashboard_with_a_generated_admin_password(tmp_path):
    port, web_port = free_port(), free_port()
    topology = tmp_path / "cluster.yaml"
    topology.write_text(textwrap.dedent(f"""\
        broker: {{host: 127.0.0.1, port: {port}}}
        leader: {{web_port: {web_port}}}
        units:
          sim01: {{hardware: sim, admin_port: {free_port()}}}
        experiments:
          demo: {{units: [sim01]}}
        """))
    env = {**os.environ, "PIO_STATE_DIR": str(tmp_path / "state")}

    def pios(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    try:
        assert pios("leader", "start", "--topology", str(topology)).returncode == 0
        leader_dir = tmp_path / "state" / "leader"
        info = json.loads((leader_dir / "leader.json").read_text())
        assert info["web_url"] == f"http://127.0.0.1:{web_port}/"
        assert f"dashboard: http://127.0.0.1:{web_port}/" in pios("leader", "status").stdout
        secret = leader_dir / "initial_admin_password"
        assert secret.stat().st_mode & 0o777 == 0o600
        password = secret.read_text().strip()
        assert password not in (leader_dir / "leader.log").read_text() and "created dashboard user admin" in (leader_dir / "leader.log").read_text()
        admin = Client(web_port).login("admin", password)
        status, units = admin.call("GET", "/api/units")
        assert status == 200 and units[0]["unit"] == "sim01" and units[0]["state"] == "unknown"
        assert [e["experiment"] for e in admin.call("GET", "/api/experiments")[1]] == ["demo"]
    finally:
        pios("leader", "stop")


def test_pios_users_and_tokens(tmp_path):
    db = str(tmp_path / "leader.sqlite")
    env = {**os.environ, "PIO_STATE_DIR": str(tmp_path / "state")}

    def pios(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PIOS, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)

    added = pios("users", "add", "ann", "--role", "operator", "--db", db)
    assert added.returncode == 0 and "password: " in added.stdout
    assert pios("users", "add", "bob", "--role", "admin", "--password-stdin", "--db", db, stdin="bob-password\n").returncode == 0
    bad = pios("users", "add", "cy", "--role", "admin", "--password-stdin", "--db", db, stdin="short\n")
    assert bad.returncode != 0 and "at least 8" in bad.stderr
    assert pios("users", "add", "dee", "--role", "boss", "--db", db).returncode != 0
    listed = json.loads(pios("users", "list", "--json", "--db", db).stdout)
    assert [(u["username"], u["role"]) for u in listed] == [("ann", "operator"), ("bob", "admin")]
    assert pios("users", "passwd", "bob", "--password-stdin", "--db", db, stdin="bob-password-2\n").returncode == 0
    token = pios("tokens", "create", "nightly", "--user", "ann", "--db", db)
    assert token.returncode == 0 and token.stdout.strip().startswith("pio_")
    assert "already exists" in pios("tokens", "create", "nightly", "--user", "ann", "--db", db).stderr
    assert pios("tokens", "revoke", "nightly", "--db", db).returncode == 0
    assert "no API token" in pios("tokens", "revoke", "nightly", "--db", db).stderr
    assert "last admin" in pios("users", "remove", "bob", "--db", db).stderr
    assert pios("users", "remove", "ann", "--db", db).returncode == 0
    conn = sqlite3.connect(db)
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    conn.close()
    assert actions == ["user_add", "user_add", "user_passwd", "token_create", "token_revoke", "user_remove"]
