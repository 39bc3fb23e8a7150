"""leader/web/auth.py and the API's validation, on a real SQLite database in a temporary folder:
passwords, sessions (sliding expiry), API tokens, roles, the last admin, the audit log, the login limiter,
and the catalog checks that stand between a form and a unit."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leader import database
from leader import cluster_view
from leader.web import api, auth


@pytest.fixture
def conn(tmp_path):
    c = database.connect(str(tmp_path / "leader.sqlite"))
    yield c
    c.close()


def test_passwords_are_stored_as_salted_argon2_hashes_and_checked(conn):
    auth.create_user(conn, "ann", "operator", "correct horse", 1000.0)
    auth.create_user(conn, "bob", "viewer", "correct horse", 1000.0)
    hashes = [r[0] for r in conn.execute("SELECT password_hash FROM users ORDER BY username")]
    assert all(h.startswith("$argon2id$") for h in hashes) and hashes[0] != hashes[1]  # salted
    assert "correct horse" not in "".join(hashes)
    assert auth.authenticate(conn, "ann", "correct horse")["role"] == "operator"
    assert auth.authenticate(conn, "ann", "wrong horse") is None
    assert auth.authenticate(conn, "nobody", "correct horse") is None
    assert auth.authenticate(conn, "ann", None) is None


@pytest.mark.parametrize("name, role, password, words", [
    ("a b", "viewer", "12345678", "not a usable user name"),
    ("ann", "root", "12345678", "unknown role"),
    ("ann", "viewer", "1234567", "at least 8"),
    ("ann", "viewer", " 12345678", "spaces"),
])
def test_bad_users_are_refused_with_what_to_send(conn, name, role, password, words):
    with pytest.raises(auth.AuthError, match=words):
        auth.create_user(conn, name, role, password, 0.0)
    assert auth.list_users(conn) == []


def test_the_last_admin_can_be_neither_removed_nor_demoted(conn):
    auth.create_user(conn, "root", "admin", "12345678", 0.0)
    with pytest.raises(auth.AuthError, match="last admin"):
        auth.remove_user(conn, "root")
    with pytest.raises(auth.AuthError, match="last admin"):
        auth.set_role(conn, "root", "viewer")
    auth.create_user(conn, "second", "admin", "12345678", 0.0)
    auth.set_role(conn, "root", "viewer")
    assert auth.get_user(conn, "root")["role"] == "viewer"


def test_sessions_slide_and_expire_and_a_new_password_ends_them(conn):
    auth.create_user(conn, "ann", "operator", "12345678", 0.0)
    token, csrf = auth.create_session(conn, "ann", 0.0)
    stored = conn.execute("SELECT token_hash, csrf_token FROM sessions").fetchone()
    assert stored[0] == auth.sha256(token) and token not in stored[0] and stored[1] == csrf
    p = auth.session_principal(conn, token, 11 * 3600.0)
    assert p.username == "ann" and p.role == "operator" and p.csrf_token == csrf and p.via == "session"
    assert auth.session_principal(conn, token, 22 * 3600.0) is not None  # slid forward at 11 h
    assert auth.session_principal(conn, token, 22 * 3600.0 + auth.SESSION_TTL_S + 1) is None  # 12 h idle
    token, _ = auth.create_session(conn, "ann", 0.0)
    auth.set_password(conn, "ann", "87654321")
    assert auth.session_principal(conn, token, 1.0) is None
    assert auth.session_principal(conn, "made-up", 1.0) is None


def test_api_tokens_are_shown_once_stored_hashed_named_and_revocable(conn):
    auth.create_user(conn, "ann", "operator", "12345678", 0.0)
    token = auth.create_token(conn, "ann", "nightly", 0.0)
    assert token.startswith("pio_") and token not in str(conn.execute("SELECT * FROM api_tokens").fetchall())
    p = auth.token_principal(conn, token, 60.0)
    assert (p.username, p.role, p.via, p.token_name, p.csrf_token) == ("ann", "operator", "token", "nightly", None)
    assert auth.list_tokens(conn, "ann")[0]["last_used_at"] is not None
    with pytest.raises(auth.AuthError, match="already exists"):
        auth.create_token(conn, "ann", "nightly", 0.0)
    with pytest.raises(auth.AuthError, match="not a usable token name"):
        auth.create_token(conn, "ann", "bad name", 0.0)
    auth.revoke_token(conn, "nightly")
    assert auth.token_principal(conn, token, 61.0) is None
    with pytest.raises(auth.AuthError, match="no API token"):
        auth.revoke_token(conn, "nightly")
    token = auth.create_token(conn, "ann", "other", 0.0)
    auth.create_user(conn, "root", "admin", "12345678", 0.0)
    auth.remove_user(conn, "ann")  # a removed user's tokens die with them
    assert auth.token_principal(conn, token, 1.0) is None


def test_roles_are_ordered():
    assert auth.role_allows("admin", "operator") and auth.role_allows("operator", "viewer")
    assert not auth.role_allows("viewer", "operator") and not auth.role_allows("operator", "admin")
    assert not auth.role_allows("root", "viewer")


def test_the_first_admin_gets_a_generated_password_in_a_private_file_once(conn, tmp_path):
    path = auth.ensure_initial_admin(conn, str(tmp_path), 0.0)
    assert path == os.path.join(str(tmp_path), auth.INITIAL_PASSWORD_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    password = open(path).read().strip()
    assert len(password) >= 16 and auth.authenticate(conn, "admin", password)["role"] == "admin"
    assert auth.ensure_initial_admin(conn, str(tmp_path), 1.0) is None  # users exist: nothing new
    auth.forget_initial_password(str(tmp_path), "admin")
    assert not os.path.exists(path)


def test_the_audit_log_reads_newest_first(conn):
    for i in range(5):
        auth.audit(conn, now=float(i), username="ann", role="operator", method="POST", path=f"/p{i}", action="run",
                   units=["sim01"], details={"i": i}, outcome="ok" if i % 2 else "error", error=None if i % 2 else "refused", client="1.2.3.4")
    rows = auth.read_audit(conn, limit=3)
    assert [r["details"]["i"] for r in rows] == [4, 3, 2] and rows[0]["units"] == ["sim01"] and rows[0]["error"] == "refused"
    assert [r["details"]["i"] for r in auth.read_audit(conn, limit=10, before_id=rows[-1]["id"])] == [1, 0]


def test_the_login_limiter_refuses_the_eleventh_failure_until_the_window_passes():
    limiter = auth.LoginLimiter(max_failures=10, window_s=300.0)
    for i in range(10):
        assert limiter.retry_after("ann|1.2.3.4", float(i)) is None
        limiter.failed("ann|1.2.3.4", float(i))
    assert limiter.retry_after("ann|1.2.3.4", 10.0) == pytest.approx(290.0)
    assert limiter.retry_after("bob|1.2.3.4", 10.0) is None
    assert limiter.retry_after("ann|1.2.3.4", 300.5) is None  # the first failure left the window


@given(st.lists(st.floats(min_value=0, max_value=3600, allow_nan=False), max_size=60))
def test_the_limiter_never_allows_more_than_its_budget_in_any_window(times):
    limiter = auth.LoginLimiter(max_failures=5, window_s=60.0)
    accepted: list[float] = []
    for t in sorted(times):
        if limiter.retry_after("k", t) is None:
            accepted.append(t)
            limiter.failed("k", t)
    for t in accepted:
        assert sum(1 for u in accepted if t - 60.0 < u <= t) <= 5


def test_the_limiter_memory_stays_bounded_under_a_spray_of_names():
    limiter = auth.LoginLimiter(max_failures=3, window_s=10.0, max_keys=100)
    for i in range(1000):
        limiter.failed(f"user{i}|x", float(i))
    assert len(limiter._failures) <= 101


# --- validation against the catalog (what a form may send) ---------------------------------------------


def test_run_options_are_checked_against_the_jobs_and_automations_declarations():
    assert api.validate_run("stirring", {"target_rpm": 500}) == {"target_rpm": "500"}
    assert api.validate_run("stirring", None) == {}
    assert api.validate_run("dosing_automation", {"automation_name": "chemostat", "exchange_volume_ml": 1, "duration": 20})["automation_name"] == "chemostat"
    with pytest.raises(api.ApiError, match="no option 'measured_rpm'"):  # published, not an option
        api.validate_run("stirring", {"measured_rpm": 5})
    with pytest.raises(api.ApiError, match="send a string, a number or true/false"):
        api.validate_run("stirring", {"target_rpm": [500]})
    with pytest.raises(api.ApiError, match="needs options.automation_name"):
        api.validate_run("temperature_automation", {})


def test_setting_changes_accept_an_automations_settable_parameters():
    assert api.validate_setting("temperature_automation", "target_temperature", 37) == ("target_temperature", "37")
    with pytest.raises(api.ApiError, match="is not a setting"):
        api.validate_setting("temperature_automation", "target_rpm", 3)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.text(max_size=5) | st.none())
def test_led_and_dose_checks_take_only_sane_numbers(value):
    ok_led = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and 0 <= value <= 100
    try:
        api.validate_leds({"channel": "a", "intensity": value})
        assert ok_led
    except api.ApiError as e:
        assert not ok_led and e.status == 400
    ok_dose = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and 0 < value < float("inf")
    try:
        job, options = api.validate_dose({"pump": "waste", "ml": value})
        assert ok_dose and job == "remove_waste" and options["source_of_event"] == "manual"
    except api.ApiError as e:
        assert not ok_dose and e.status == 400


def test_unit_view_reads_state_jobs_and_settings_from_retained_topics():
    import json

    held = {
        "pioreactor/u1/$node/$state": "ready",
        "pioreactor/u1/$node/actual": json.dumps({"experiment": None, "generation": None, "in_sync": True, "errors": [],
                                                   "jobs": {"stirring": {"state": "ready", "experiment": "e1", "settings": {}},
                                                            "od_blank": {"state": "disconnected", "experiment": "e1", "settings": {}}}}),
        "pioreactor/u1/e1/stirring/target_rpm": "450.0",
        "pioreactor/u1/e1/stirring/$state": "ready",
        "pioreactor/u1/e0/stirring/target_rpm": "999",  # an old experiment's leftovers
        "pioreactor/u2/$node/$state": "lost",
    }
    u1 = cluster_view.unit_view("u1", held, {"units": {"u1": {"rows": 3}}})
    assert u1["state"] == "ready" and u1["experiment"] == "e1" and u1["ingest"] == {"rows": 3}
    assert u1["jobs"] == {"stirring": {"state": "ready", "settings": {"target_rpm": 450.0}}}
    assert u1["actual_jobs"] == ["stirring"] and u1["in_sync"] is False  # runs a job nobody asked for
    u2 = cluster_view.unit_view("u2", held, None)
    assert u2["state"] == "lost" and not u2["reachable"] and u2["jobs"] == {}
    assert cluster_view.unit_view("u3", held, None)["state"] == "unknown"
