"""Who may use the dashboard and what they did: users, login sessions, API tokens, CSRF, roles, audit.

Plain functions over the leader database (tables from migrations/0002_web.sql). Nothing secret is
stored in clear: passwords as argon2 hashes (argon2-cffi), session and API tokens as their SHA-256
(they are 32 random bytes, so a fast hash is enough; a stolen database gives no usable token).

Roles are ordered: ``viewer`` reads, ``operator`` also runs jobs, doses and manages experiments,
``admin`` also manages users and deletes data. Times are passed in (epoch seconds) so the rules can be
tested without a clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
from collections import deque
from typing import Any, Iterable

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from actors.clock import utc_iso

ROLES = ("viewer", "operator", "admin")
SESSION_COOKIE = "pio_session"
SESSION_TTL_S = 12 * 3600.0  # sliding: every use pushes the expiry back
SESSION_REFRESH_S = 60.0  # write the new expiry at most once a minute per session
MIN_PASSWORD = 8
INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial_admin_password"
TOKEN_PREFIX = "pio_"

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(ValueError):
    """A user, password, role or token request that cannot be done; nothing was changed."""


@attrs.frozen
class Principal:
    """Who is calling: from a session cookie (``via='session'``, has a CSRF token) or an API token."""

    username: str
    role: str
    via: str
    csrf_token: str | None = None
    session_hash: str | None = None
    token_name: str | None = None

    def may(self, needed: str) -> bool:
        return role_allows(self.role, needed)


def role_allows(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters


def check_username(name: Any) -> str:
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise AuthError(f"{name!r} is not a usable user name; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role


def check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise AuthError("a password cannot start or end with spaces nor hold a line break")
    return password


# --- users --------------------------------------------------------------------------------------------

_USER_FIELDS = ("username", "role", "created_at", "disabled")


def _user(row: sqlite3.Row | tuple[Any, ...] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(zip(_USER_FIELDS, tuple(row)))
    out["disabled"] = bool(out["disabled"])
    return out


def get_user(conn: sqlite3.Connection, username: str) -> dict[str, Any] | None:
    return _user(conn.execute("SELECT username, role, created_at, disabled FROM users WHERE username = ?", (username,)).fetchone())


def list_users(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT username, role, created_at, disabled FROM users ORDER BY username").fetchall()
    return [u for u in (_user(r) for r in rows) if u is not None]


def _require_user(conn: sqlite3.Connection, username: str) -> dict[str, Any]:
    user = get_user(conn, username)
    if user is None:
        known = ", ".join(u["username"] for u in list_users(conn)) or "none"
        raise AuthError(f"no user {username!r}; users: {known}")
    return user


def create_user(conn: sqlite3.Connection, username: str, role: str, password: str, now: float) -> dict[str, Any]:
    check_username(username)
    check_role(role)
    check_password(password)
    if get_user(conn, username) is not None:
        raise AuthError(f"user {username!r} already exists; choose another name or change its password")
    conn.execute("INSERT INTO users (username, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                 (username, role, _hasher.hash(password), utc_iso(now)))
    return _require_user(conn, username)


def _admins(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT username FROM users WHERE role = 'admin' AND disabled = 0")]


def set_role(conn: sqlite3.Connection, username: str, role: str) -> dict[str, Any]:
    user = _require_user(conn, username)
    check_role(role)
    if user["role"] == "admin" and role != "admin" and _admins(conn) == [username]:
        raise AuthError(f"{username} is the last admin; make another user admin first")
    conn.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
    return _require_user(conn, username)


def set_password(conn: sqlite3.Connection, username: str, password: str) -> None:
    """New password; every session of the user ends (a changed password must lock out whoever had it)."""
    _require_user(conn, username)
    check_password(password)
    conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(password), username))
    conn.execute("DELETE FROM sessions WHERE username = ?", (username,))


def remove_user(conn: sqlite3.Connection, username: str) -> None:
    """Remove the user with their sessions and API tokens. The last admin stays."""
    user = _require_user(conn, username)
    if user["role"] == "admin" and _admins(conn) == [username]:
        raise AuthError(f"{username} is the last admin; make another user admin first")
    conn.execute("DELETE FROM users WHERE username = ?", (username,))


def authenticate(conn: sqlite3.Connection, username: Any, password: Any) -> dict[str, Any] | None:
    """The user if the password is theirs (and they are enabled), else None. Same cost either way."""
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    row = conn.execute("SELECT password_hash FROM users WHERE username = ? AND disabled = 0", (username,)).fetchone()
    stored = row[0] if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):  # parameters were raised since: upgrade on the way in
        conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(password), username))
    return get_user(conn, username)


def ensure_initial_admin(conn: sqlite3.Connection, leader_dir: str, now: float) -> str | None:
    """First start: with no user at all, create ``admin`` with a generated password written to
    ``<leader_dir>/initial_admin_password`` (0600). Returns that file's path when it created one."""
    if conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]:
        return None
    password = generate_password()
    path = os.path.join(leader_dir, INITIAL_PASSWORD_FILE)
    os.makedirs(leader_dir, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    os.replace(path + ".tmp", path)
    create_user(conn, INITIAL_ADMIN, "admin", password, now)
    return path


def forget_initial_password(leader_dir: str, username: str) -> None:
    """Once admin's password changes, the generated one on disk is stale: remove it."""
    if username == INITIAL_ADMIN:
        try:
            os.unlink(os.path.join(leader_dir, INITIAL_PASSWORD_FILE))
        except FileNotFoundError:
            pass


# --- sessions -----------------------------------------------------------------------------------------


def create_session(conn: sqlite3.Connection, username: str, now: float, client: str | None = None) -> tuple[str, str]:
    """A new login session: ``(cookie token, csrf token)``. Only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))  # housekeeping on every login
    conn.execute("INSERT INTO sessions (token_hash, username, csrf_token, created_at, expires_at, client) VALUES (?, ?, ?, ?, ?, ?)",
                 (sha256(token), username, csrf, utc_iso(now), now + SESSION_TTL_S, client))
    return token, csrf


def session_principal(conn: sqlite3.Connection, token: str, now: float) -> Principal | None:
    """The principal of a live session (its expiry slides forward), or None."""
    if not token:
        return None
    digest = sha256(token)
    row = conn.execute(
        "SELECT s.username, u.role, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.username = s.username "
        "WHERE s.token_hash = ? AND u.disabled = 0", (digest,)).fetchone()
    if row is None:
        return None
    username, role, csrf, expires_at = tuple(row)
    if expires_at < now:
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", (digest,))
        return None
    if now + SESSION_TTL_S - expires_at > SESSION_REFRESH_S:
        conn.execute("UPDATE sessions SET expires_at = ? WHERE token_hash = ?", (now + SESSION_TTL_S, digest))
    return Principal(username=username, role=role, via="session", csrf_token=csrf, session_hash=digest)


def end_session(conn: sqlite3.Connection, session_hash: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = ?", (session_hash,))


# --- API tokens ---------------------------------------------------------------------------------------


def create_token(conn: sqlite3.Connection, username: str, name: str, now: float) -> str:
    """A new API token for ``username``; the token itself is returned once and never stored."""
    _require_user(conn, username)
    if not isinstance(name, str) or not _TOKEN_NAME.match(name):
        raise AuthError(f"{name!r} is not a usable token name; use 1-64 letters, digits, '.', '_' or '-' (e.g. growth-script)")
    held = conn.execute("SELECT username FROM api_tokens WHERE name = ?", (name,)).fetchone()
    if held is not None:
        raise AuthError(f"a token named {name!r} already exists; choose another name or revoke it first")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_tokens (name, username, token_hash, created_at) VALUES (?, ?, ?, ?)",
                 (name, username, sha256(token), utc_iso(now)))
    return token


def token_owner(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT username FROM api_tokens WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def list_tokens(conn: sqlite3.Connection, username: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT name, username, created_at, last_used_at FROM api_tokens"
    rows = conn.execute(sql + (" WHERE username = ?" if username else "") + " ORDER BY name", (username,) if username else ()).fetchall()
    return [dict(zip(("name", "username", "created_at", "last_used_at"), tuple(r))) for r in rows]


def revoke_token(conn: sqlite3.Connection, name: str) -> None:
    if token_owner(conn, name) is None:
        known = ", ".join(t["name"] for t in list_tokens(conn)) or "none"
        raise AuthError(f"no API token named {name!r}; tokens: {known}")
    conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,))


def token_principal(conn: sqlite3.Connection, token: str, now: float) -> Principal | None:
    if not token:
        return None
    row = conn.execute(
        "SELECT t.name, t.username, u.role, t.last_used_at FROM api_tokens t JOIN users u ON u.username = t.username "
        "WHERE t.token_hash = ? AND u.disabled = 0", (sha256(token),)).fetchone()
    if row is None:
        return None
    name, username, role, last_used = tuple(row)
    stamp = utc_iso(now)
    if (last_used or "")[:16] != stamp[:16]:  # to the minute: a busy script must not write on every call
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (stamp, name))
    return Principal(username=username, role=role, via="token", token_name=name)


# --- audit --------------------------------------------------------------------------------------------

AUDIT_FIELDS = ("id", "timestamp", "username", "role", "method", "path", "action", "units", "details", "outcome", "error", "client")


def audit(
    conn: sqlite3.Connection,
    *,
    now: float,
    username: str | None,
    role: str | None,
    method: str,
    path: str,
    action: str,
    units: Iterable[str] = (),
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
    error: str | None = None,
    client: str | None = None,
) -> None:
    """One audit row: who did (or was refused) what, on which units, when, from where."""
    conn.execute(
        "INSERT INTO audit_log (timestamp, username, role, method, path, action, units, details, outcome, error, client) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (utc_iso(now), username, role, method, path, action, json.dumps(list(units)), json.dumps(details or {}, sort_keys=True),
         outcome, error, client),
    )


def read_audit(conn: sqlite3.Connection, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
    """Newest first."""
    sql = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit_log"
    params: list[Any] = []
    if before_id is not None:
        sql += " WHERE id < ?"
        params.append(before_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    out = []
    for r in rows:
        item = dict(zip(AUDIT_FIELDS, tuple(r)))
        item["units"] = json.loads(item["units"])
        item["details"] = json.loads(item["details"])
        out.append(item)
    return out


# --- login rate limit ---------------------------------------------------------------------------------


class LoginLimiter:
    """At most ``max_failures`` failed logins per key (user name + client address) in ``window_s``;
    past that the key is refused until its oldest failure leaves the window. Pure: times passed in."""

    def __init__(self, max_failures: int = 10, window_s: float = 300.0, max_keys: int = 10000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until the key may try again, or None when it may now."""
        times = self._recent(key, now)
        if len(times) < self.max_failures:
            return None
        return max(0.0, times[0] + self.window_s - now)

    def failed(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            # Bounded memory under a spray of names: forget keys whose failures are all old.
            for k in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
                del self._failures[k]
        times = self._recent(key, now)
        times.append(now)
        self._failures[key] = times

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

