"""The dashboard server: an aiohttp application serving the pages (``leader/web/static``), the JSON API
(``/api``, leader/web/api.py) and the live WebSocket (``/api/ws``, leader/web/live.py).

The leader daemon runs it in a thread with its own asyncio loop (:func:`run_in_thread`). Every ``/api``
request but the login carries a session cookie or an API token; pages are served to anyone (the page
shows a login form). Database work runs in worker threads so a slow query never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Callable

from aiohttp import web

from leader import credentials, database
from leader.web import api, auth

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
INGEST_FILE = "ingest.json"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


class Db:
    """The leader database for the web server: one writer connection behind a lock, and a fresh
    read-only connection per read (WAL: reads never wait for the ingest's writes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = database.connect(path)
        self.lock = threading.Lock()

    def _write(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self.lock:
            return fn(self.conn, *args, **kwargs)

    def _read(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        conn = database.connect(self.path, readonly=True)
        try:
            return fn(conn, *args, **kwargs)
        finally:
            conn.close()

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._write, fn, args, kwargs)

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._read, fn, args, kwargs)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


# --- middlewares ----------------------------------------------------------------------------------------


@web.middleware
async def security_headers(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
    except api.ApiError as e:
        response = api.error_response(e.status, e.message, **e.extra)
    if not response.prepared:  # a WebSocket or a file already sent its headers
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def api_errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Under /api every error is JSON ``{"error": ...}``: refusals, unknown routes, and our own bugs."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except api.ApiError as e:
        return api.error_response(e.status, e.message, **e.extra)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        hint = {404: f"no route {request.method} {request.path}; see docs/api.md",
                405: f"{request.method} is not allowed on {request.path}; see docs/api.md"}.get(e.status, e.reason)
        return api.error_response(e.status, hint)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("error in %s %s", request.method, request.path)
        return api.error_response(500, f"internal error ({type(e).__name__}); the leader's log has the details")


@web.middleware
async def authentication(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """/api needs a session cookie or ``Authorization: Bearer <token>``; writes with a cookie need the
    session's CSRF token in ``X-CSRF-Token`` (a token is exempt: no browser sends it by itself)."""
    if not request.path.startswith("/api/") or (request.path == "/api/login" and request.method == "POST"):
        return await handler(request)
    db: Db = request.app["db"]
    header = request.headers.get("Authorization", "")
    now = time.time()
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise api.ApiError(401, "Authorization must be 'Bearer <token>'; create a token with POST /api/tokens or `pios tokens create`")
        principal = await db.write(auth.token_principal, token.strip(), now)
        if principal is None:
            raise api.ApiError(401, "unknown or revoked API token; create a new one (POST /api/tokens or `pios tokens create`)")
    else:
        cookie = request.cookies.get(auth.SESSION_COOKIE, "")
        principal = await db.write(auth.session_principal, cookie, now) if cookie else None
        if principal is None:
            raise api.ApiError(401, "not logged in (or the session expired); log in with POST /api/login {username, password}")
        if request.method not in SAFE_METHODS and request.headers.get("X-CSRF-Token", "") != principal.csrf_token:
            request["audit"] = {"action": "csrf_refused", "units": [], "details": {}}
            await api.write_audit(request, "error", "missing or wrong X-CSRF-Token", principal=principal)
            raise api.ApiError(403, "missing or wrong X-CSRF-Token header; send the csrf_token from POST /api/login or GET /api/me")
    request["principal"] = principal
    return await handler(request)


# --- pages ----------------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    path = os.path.join(request.app["static_dir"], "index.html")
    if not os.path.isfile(path):
        return web.Response(status=503, text="the dashboard pages are not installed (leader/web/static/index.html is missing); the API is at /api\n")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.StreamResponse:
    root = os.path.realpath(request.app["static_dir"])
    path = os.path.realpath(os.path.join(root, request.match_info["path"]))
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        raise web.HTTPNotFound(text="no such file\n")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


# --- the application ------------------------------------------------------------------------------------


def _broker_login(leader_dir: str, topology: Any) -> tuple[str | None, str | None]:
    """The leader's broker identity (as `pios` uses it): generated credentials, else the topology's."""
    stored = credentials.load(leader_dir)
    if credentials.LEADER in stored:
        return credentials.LEADER, stored[credentials.LEADER]
    return topology.broker.username, topology.broker.password


def _ingest_file_reader(leader_dir: str) -> Callable[[], dict[str, Any] | None]:
    import json

    def read() -> dict[str, Any] | None:
        try:
            with open(os.path.join(leader_dir, INGEST_FILE), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    return read


def make_app(
    leader_dir: str,
    topology: Any,
    *,
    ingest_health: Callable[[], dict[str, Any] | None] | None = None,
    command_timeout: float = api.COMMAND_TIMEOUT_S,
    static_dir: str | None = None,
    log_line: Callable[[str], None] | None = None,
) -> web.Application:
    """The dashboard for the leader whose files are in ``leader_dir`` and whose cluster is ``topology``.

    On first use (no user at all) it creates ``admin`` with a generated password in
    ``<leader_dir>/initial_admin_password``."""
    from leader.cluster_client import ClusterClient

    say = log_line or (lambda line: log.info("%s", line))
    app = web.Application(middlewares=[security_headers, api_errors, authentication], client_max_size=1024 * 1024)
    db = Db(database.default_path(leader_dir))
    created = db._write(auth.ensure_initial_admin, (leader_dir, time.time()), {})
    if created:
        say(f"INFO created dashboard user admin; its password is in {created}")
    username, password = _broker_login(leader_dir, topology)
    app["db"] = db
    app["leader_dir"] = leader_dir
    app["topology"] = topology
    app["static_dir"] = static_dir or STATIC_DIR
    app["command_timeout"] = command_timeout
    app["ingest_health"] = ingest_health or _ingest_file_reader(leader_dir)
    app["cluster_client"] = lambda: ClusterClient(topology.broker.host, topology.broker.port, username, password)
    app["cache"] = {}  # mutable state of a running app: the cluster view and its lock
    app["exports"] = {}
    app["login_limiter"] = auth.LoginLimiter()
    app["broker_login"] = (topology.broker.host, topology.broker.port, username, password)

    async def startup(app: web.Application) -> None:
        app["cache"]["lock"] = asyncio.Lock()
        try:
            from leader.web import live
        except ImportError:
            say("WARNING live updates unavailable: leader/web/live.py is missing")
            return
        relay = live.Relay(topology.broker.host, topology.broker.port, username, password)
        try:
            await relay.start()
        except Exception as e:  # the dashboard still serves history and controls without it
            say(f"ERROR live updates unavailable: the relay did not start ({e})")
            return
        app["relay"] = relay

    async def cleanup(app: web.Application) -> None:
        relay = app.get("relay")
        if relay is not None:
            await relay.stop()
        db.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/api/login", api.login)
    app.router.add_routes(api.routes)
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)
    return app


class WebServer:
    """A running dashboard: its own asyncio loop in a daemon thread. ``stop()`` ends it."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
            self.loop.run_until_complete(site.start())
        except BaseException as e:  # the port is taken, the address is not ours...
            self._error = e
            self._started.set()
            try:
                self.loop.run_until_complete(self.runner.cleanup())
            finally:
                self.loop.close()
            return
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

    def start(self, timeout: float = 15.0) -> WebServer:
        self.thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the dashboard did not start within {timeout:g} s")
        if self._error is not None:
            raise OSError(f"the dashboard cannot listen on {self.host}:{self.port}: {self._error}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)


def run_in_thread(app: web.Application, host: str, port: int) -> WebServer:
    """Serve ``app`` on ``host:port`` from a thread of its own; returns once it listens."""
    return WebServer(app, host, port).start()
