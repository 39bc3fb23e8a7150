"""The dashboard's HTTP API: JSON routes under ``/api`` (documented in docs/api.md).

Every route declares the role it needs (:func:`route`); actuations and admin changes are audited,
refusals included. Bodies are validated here, against the job catalog, before anything reaches a unit:
a bad request is a 400 saying what to send instead, and nothing is sent. Actuations go to the units
as the leader's commands (``$node/command``, :class:`leader.cluster_client.ClusterClient`), exactly as
``pios run|kill|set`` sends them.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import json
import math
import os
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from actors import topics
from actors.settings import Setting, SettingError
from leader import datasets as ds
from leader import experiments as ex
from leader.cluster_view import unit_view
from leader.web import auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COMMAND_TIMEOUT_S = 15.0
CLUSTER_CACHE_S = 1.0  # concurrent pages share one look at the broker per second
MAX_POINTS = 10000
DEFAULT_POINTS = 1000
MAX_LOG_LIMIT = 1000
PUMPS = {"media": "add_media", "alt_media": "add_alt_media", "waste": "remove_waste"}
LED_CHANNELS = ("A", "B", "C", "D")
EXPORT_KEEP_S = 3600.0  # an export's zip is kept this long after it finished


class ApiError(Exception):
    """A request refused with ``status`` and ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


# --- the catalog: jobs, their settings, automations and their parameters --------------------------------


def _load_class(source: str) -> Any:
    module, _, attr = source.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=1)
def job_classes() -> dict[str, Any]:
    """Job name -> class, for the built-ins and pip plugins (drop-in files live on the units)."""
    from actors.registry import BUILTIN_JOBS, ENTRY_POINT_GROUP

    sources = dict(BUILTIN_JOBS)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        sources[ep.name] = ep.value
    out = {}
    for name, source in sorted(sources.items()):
        try:
            out[name] = _load_class(source)
        except Exception:  # a broken plugin must not take the dashboard down
            continue
    return out


def _family(cls: Any) -> str | None:
    from actors.automations.base import AutomationJob

    return cls.family if isinstance(cls, type) and issubclass(cls, AutomationJob) else None


@functools.lru_cache(maxsize=8)
def automation_classes(family: str) -> dict[str, Any]:
    from actors.automations.registry import available

    out = {}
    for name, source in sorted(available(family, None).items()):
        if source.startswith("file:"):
            continue
        try:
            out[name] = _load_class(source)
        except Exception:
            continue
    return out


def setting_json(s: Setting) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype, "settable": s.settable, "startup": s.startup, "unit": s.unit,
            "minimum": s.minimum, "maximum": s.maximum, "default": s.default, "description": s.description,
            "choices": list(s.choices) if s.choices is not None else None}


def _parameter_settings(cls: Any) -> list[Setting]:
    from actors.automations.base import parameter_setting

    return [parameter_setting(p) for p in cls.PARAMETERS]


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    """What the browser's forms are built from: every job's settings, every automation's parameters."""
    jobs = {name: {"settings": [setting_json(s) for s in cls.settings], "automation_family": _family(cls)}
            for name, cls in job_classes().items()}
    automations: dict[str, Any] = {}
    for name, cls in job_classes().items():
        family = _family(cls)
        if family is None:
            continue
        automations[name] = {}
        for auto_name, auto_cls in automation_classes(family).items():
            params = []
            for p, s in zip(auto_cls.PARAMETERS, _parameter_settings(auto_cls)):
                params.append({**setting_json(s), "required": p.required})
            automations[name][auto_name] = {"parameters": params}
    return {"jobs": jobs, "automations": automations}


def _as_text(value: Any, where: str) -> str:
    """A form value as the text `pio run` takes (the command contract carries text)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return json.dumps(value)
    raise ApiError(400, f"{where} is {json.dumps(value)}; send a string, a number or true/false")


def unknown_job(job: str) -> ApiError:
    return ApiError(400, f"unknown job {job!r}; jobs: {', '.join(job_classes())}")


def validate_run(job: str, options: Any) -> dict[str, str]:
    """The options of a run, as text, checked against the job's settings (and, for an automation,
    the chosen automation's parameters). Raises ApiError(400) naming what to send instead."""
    cls = job_classes().get(job)
    if cls is None:
        raise unknown_job(job)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ApiError(400, 'options must be an object of setting -> value, e.g. {"target_rpm": 500}')
    texts = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise ApiError(400, "option names must be strings")
        texts[key.strip().replace("-", "_")] = _as_text(value, f"option {key}")
    specs = {s.name: s for s in cls.settings}
    family = _family(cls)
    if family is not None:
        autos = automation_classes(family)
        name = texts.get("automation_name")
        if not name:
            raise ApiError(400, f"{job} needs options.automation_name; one of: {', '.join(autos)}")
        if name not in autos:
            raise ApiError(400, f"unknown {family} automation {name!r}; {family} automations are: {', '.join(autos)}")
        auto = autos[name]
        for s in _parameter_settings(auto):
            specs[s.name] = s
        missing = [p.name for p in auto.PARAMETERS if p.required and p.name not in texts]
        if missing:
            raise ApiError(400, f"automation {name} needs {', '.join(missing)}; add {', '.join(f'options.{m}' for m in missing)}")
    allowed = sorted(n for n, s in specs.items() if s.settable or s.startup)
    for key, text in texts.items():
        spec = specs.get(key)
        if spec is None or not (spec.settable or spec.startup):
            raise ApiError(400, f"{job} has no option {key!r}; its options are: {', '.join(allowed) or 'none'}")
        try:
            spec.parse(text)
        except SettingError as e:
            raise ApiError(400, str(e)) from None
    return texts


def validate_setting(job: str, setting: Any, value: Any) -> tuple[str, str]:
    """``(setting, value text)`` for a change of a running job's setting, or ApiError(400)."""
    cls = job_classes().get(job)
    if cls is None:
        raise unknown_job(job)
    if not isinstance(setting, str) or not setting.strip():
        raise ApiError(400, 'send {"setting": <name>, "value": <value>}, e.g. {"setting": "target_rpm", "value": 600}')
    setting = setting.strip()
    if value is None:
        raise ApiError(400, f"send the new value of {setting} as value")
    text = _as_text(value, "value")
    candidates = [s for s in cls.settings if s.name == setting]
    family = _family(cls)
    if family is not None:
        candidates += [s for a in automation_classes(family).values() for s in _parameter_settings(a) if s.name == setting]
    settable = [s for s in candidates if s.settable]
    if not settable:
        names = sorted({s.name for s in cls.settings if s.settable}
                       | ({s.name for a in automation_classes(family).values() for s in _parameter_settings(a) if s.settable} if family else set()))
        why = "is read-only" if candidates else "is not a setting of it"
        raise ApiError(400, f"{setting} {why}; settable settings of {job}: {', '.join(names) or 'none'}")
    errors = []
    for spec in settable:
        try:
            spec.parse(text)
            return setting, text
        except SettingError as e:
            errors.append(str(e))
    raise ApiError(400, errors[0])


def validate_dose(body: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    pump = body.get("pump")
    if pump not in PUMPS:
        raise ApiError(400, f"pump must be one of: {', '.join(PUMPS)}; e.g. {{\"pump\": \"media\", \"ml\": 1}}")
    given = [k for k in ("ml", "duration") if body.get(k) is not None]
    if len(given) != 1:
        raise ApiError(400, "give exactly one of ml (volume, mL) or duration (seconds), e.g. {\"pump\": \"media\", \"ml\": 1}")
    key = given[0]
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ApiError(400, f"{key} must be a positive number ({'mL' if key == 'ml' else 's'}), got {json.dumps(value)}")
    return PUMPS[pump], {key: json.dumps(value), "source_of_event": "manual"}


def validate_leds(body: Mapping[str, Any]) -> tuple[str, float]:
    channel = body.get("channel")
    if not isinstance(channel, str) or channel.upper() not in LED_CHANNELS:
        raise ApiError(400, f"channel must be one of {', '.join(LED_CHANNELS)}; e.g. {{\"channel\": \"A\", \"intensity\": 50}}")
    value = body.get("intensity")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
        raise ApiError(400, f"intensity must be a number from 0 to 100 (%), got {json.dumps(value)}")
    return channel.upper(), float(value)


# --- the units' view, from what the broker retains ------------------------------------------------------


# --- the route table ------------------------------------------------------------------------------------

routes = web.RouteTableDef()


def route(method: str, path: str, role: str, audit_action: str | None = None) -> Callable[[Handler], Handler]:
    """Register a handler needing ``role``; with ``audit_action`` every call (refusals too) is audited."""

    def deco(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            principal: auth.Principal = request["principal"]
            request["audit"] = {"action": audit_action, "units": _units_of(request), "details": {}, "error": None}
            try:
                if not principal.may(role):
                    raise ApiError(403, f"this needs the {role} role; {principal.username} is {principal.role}", needed_role=role)
                response = await fn(request)
            except ApiError as e:
                if audit_action:
                    await write_audit(request, "error", e.message)
                raise
            if audit_action:
                ok = response.status < 400
                await write_audit(request, "ok" if ok else "error", None if ok else request["audit"]["error"])
            return response

        wrapper.needed_role = role  # type: ignore[attr-defined]
        routes.route(method, path)(wrapper)
        return wrapper

    return deco


def _units_of(request: web.Request) -> list[str]:
    unit = request.match_info.get("unit")
    return [unit] if unit else []


async def write_audit(request: web.Request, outcome: str, error: str | None = None, *, action: str | None = None,
                      principal: auth.Principal | None = None, details: dict[str, Any] | None = None) -> None:
    entry = request.get("audit") or {}
    who = principal or request.get("principal")
    await request.app["db"].write(
        auth.audit, now=time.time(), username=who.username if who else None, role=who.role if who else None,
        method=request.method, path=request.path, action=action or entry.get("action") or "unknown",
        units=entry.get("units", []), details=details if details is not None else entry.get("details", {}),
        outcome=outcome, error=error, client=request.remote,
    )


async def json_body(request: web.Request, example: str) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, f"the body is not JSON; send a JSON object, e.g. {example}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object; send e.g. {example}")
    return body


def _string(body: Mapping[str, Any], name: str, example: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"{name} must be a non-empty string; send e.g. {example}")
    return value


def _int_query(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}={text!r} is not a whole number; send {name} from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name}={value} is out of range; send {name} from {lo} to {hi}")
    return value


def _units_query(request: web.Request) -> list[str]:
    return [u.strip() for u in request.query.get("units", "").split(",") if u.strip()]


def _now_iso() -> str:
    from actors.clock import utc_iso

    return utc_iso(time.time())


def _unit(request: web.Request) -> str:
    unit = request.match_info["unit"]
    known = request.app["topology"].units
    if unit not in known:
        raise ApiError(404, f"unknown unit {unit!r}; units: {', '.join(sorted(known))}")
    return unit


async def _experiment(request: web.Request, name: str) -> dict[str, Any]:
    try:
        return await request.app["db"].read(ex.get, name)
    except ex.ExperimentError as e:
        raise ApiError(404, str(e)) from None


# --- login, logout, me ----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    """POST /api/login: the only /api route open without a session."""
    app = request.app
    body = await json_body(request, '{"username": "admin", "password": "..."}')
    username = _string(body, "username", '{"username": "admin", "password": "..."}')
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, 'password must be a non-empty string; send {"username": ..., "password": ...}')
    key = f"{username}|{request.remote}"
    limiter: auth.LoginLimiter = app["login_limiter"]
    request["audit"] = {"action": "login", "units": [], "details": {"username": username}}
    wait = limiter.retry_after(key, time.time())
    if wait is not None:
        await write_audit(request, "error", "too many failed logins")
        return web.json_response({"error": f"too many failed logins for {username}; try again in {math.ceil(wait)} s"},
                                 status=429, headers={"Retry-After": str(math.ceil(wait))})
    user = await app["db"].write(auth.authenticate, username, password)
    if user is None:
        limiter.failed(key, time.time())
        await write_audit(request, "error", "wrong user name or password")
        raise ApiError(401, "wrong user name or password")
    limiter.succeeded(key)
    token, csrf = await app["db"].write(auth.create_session, username, time.time(), request.remote)
    principal = auth.Principal(username=user["username"], role=user["role"], via="session")
    await write_audit(request, "ok", principal=principal)
    response = web.json_response({"username": user["username"], "role": user["role"], "csrf_token": csrf})
    response.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
    return response


@route("POST", "/api/logout", "viewer")
async def logout(request: web.Request) -> web.Response:
    principal: auth.Principal = request["principal"]
    if principal.session_hash:
        await request.app["db"].write(auth.end_session, principal.session_hash)
    response = web.json_response({"ok": True})
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    return response


@route("GET", "/api/me", "viewer")
async def me(request: web.Request) -> web.Response:
    p: auth.Principal = request["principal"]
    return web.json_response({"username": p.username, "role": p.role, "via": p.via, "csrf_token": p.csrf_token,
                              "cluster": request.app["topology"].cluster})


# --- units, catalog, actuation --------------------------------------------------------------------------


async def cluster_view(app: web.Application) -> dict[str, Any]:
    """Every unit's view, one look at the broker per CLUSTER_CACHE_S shared by concurrent requests."""
    cache = app["cache"]
    async with cache["lock"]:
        cached = cache.get("cluster")
        if cached and time.monotonic() - cached[0] < CLUSTER_CACHE_S:
            return cached[1]
        filters = [topics.node_topic("+", "+"), f"{topics.ROOT}/+/+/+/+"]

        def fetch() -> dict[str, str]:
            with app["cluster_client"]() as client:
                return client.retained(filters, settle_s=0.25)

        try:
            held = await asyncio.get_running_loop().run_in_executor(None, fetch)
        except ConnectionError as e:
            raise ApiError(503, f"cannot read the units' state: {e}") from None
        ingest = app["ingest_health"]()
        units = [unit_view(u, held, ingest) for u in sorted(app["topology"].units)]
        view = {"units": units, "ingest": ingest}
        cache["cluster"] = (time.monotonic(), view)
        return view


@route("GET", "/api/units", "viewer")
async def units_list(request: web.Request) -> web.Response:
    return web.json_response((await cluster_view(request.app))["units"])


@route("GET", "/api/units/{unit}", "viewer")
async def unit_get(request: web.Request) -> web.Response:
    unit = _unit(request)
    view = await cluster_view(request.app)
    return web.json_response(next(u for u in view["units"] if u["unit"] == unit))


@route("GET", "/api/catalog", "viewer")
async def catalog_get(request: web.Request) -> web.Response:
    return web.json_response(catalog())


@route("GET", "/api/cluster", "viewer")
async def cluster_get(request: web.Request) -> web.Response:
    view = await cluster_view(request.app)
    ingest = view["ingest"] or {}
    rows = [{k: u[k] for k in ("unit", "reachable", "state", "experiment", "desired_jobs", "actual_jobs", "in_sync", "errors", "ingest")}
            for u in view["units"]]
    return web.json_response({"units": rows, "ingest": {k: v for k, v in ingest.items() if k != "units"} if ingest else None})


async def send_command(request: web.Request, unit: str, action: dict[str, Any]) -> web.Response:
    """One command to one unit; 200 when it did it, 409 with its refusal, 504 when it did not answer."""
    app = request.app
    request["audit"]["details"] = {k: v for k, v in action.items() if k != "action"} | {"command": action["action"]}
    timeout = app["command_timeout"]

    def send() -> Any:
        with app["cluster_client"]() as client:
            return client.command([unit], action, timeout=timeout)[0]

    try:
        result = await asyncio.get_running_loop().run_in_executor(None, send)
    except ConnectionError as e:
        request["audit"]["error"] = str(e)
        return error_response(503, f"cannot reach the units: {e}")
    app["cache"].pop("cluster", None)  # the next view shows the change
    if result.ok:
        return web.json_response({"unit": unit, "ok": True})
    request["audit"]["error"] = result.error
    if (result.error or "").startswith("no answer within"):
        return error_response(504, result.error or "no answer", unit=unit)
    return error_response(409, f"{unit} refused: {result.error}", unit=unit)


def _job(request: web.Request) -> str:
    job = request.match_info["job"]
    if job not in job_classes():
        raise unknown_job(job)
    return job


@route("POST", "/api/units/{unit}/jobs/{job}/run", "operator", "run")
async def job_run(request: web.Request) -> web.Response:
    unit, job = _unit(request), _job(request)
    body = await json_body(request, '{"options": {"target_rpm": 500}}') if request.can_read_body else {}
    options = validate_run(job, body.get("options"))
    return await send_command(request, unit, {"action": "run", "job": job, "options": options})


@route("POST", "/api/units/{unit}/jobs/{job}/stop", "operator", "stop")
async def job_stop(request: web.Request) -> web.Response:
    unit, job = _unit(request), _job(request)
    return await send_command(request, unit, {"action": "kill", "job": job})


@route("POST", "/api/units/{unit}/jobs/{job}/pause", "operator", "pause")
async def job_pause(request: web.Request) -> web.Response:
    unit, job = _unit(request), _job(request)
    return await send_command(request, unit, {"action": "set", "job": job, "setting": topics.STATE, "value": "sleeping"})


@route("POST", "/api/units/{unit}/jobs/{job}/resume", "operator", "resume")
async def job_resume(request: web.Request) -> web.Response:
    unit, job = _unit(request), _job(request)
    return await send_command(request, unit, {"action": "set", "job": job, "setting": topics.STATE, "value": "ready"})


@route("PATCH", "/api/units/{unit}/jobs/{job}/settings", "operator", "set")
async def job_settings(request: web.Request) -> web.Response:
    unit, job = _unit(request), _job(request)
    body = await json_body(request, '{"setting": "target_rpm", "value": 600}')
    setting, value = validate_setting(job, body.get("setting"), body.get("value"))
    return await send_command(request, unit, {"action": "set", "job": job, "setting": setting, "value": value})


@route("POST", "/api/units/{unit}/dose", "operator", "dose")
async def dose(request: web.Request) -> web.Response:
    unit = _unit(request)
    job, options = validate_dose(await json_body(request, '{"pump": "media", "ml": 1}'))
    return await send_command(request, unit, {"action": "run", "job": job, "options": options})


@route("POST", "/api/units/{unit}/leds", "operator", "leds")
async def leds(request: web.Request) -> web.Response:
    unit = _unit(request)
    channel, intensity = validate_leds(await json_body(request, '{"channel": "A", "intensity": 50}'))
    options = {channel.lower(): json.dumps(intensity), "source_of_event": "manual"}
    return await send_command(request, unit, {"action": "run", "job": "led_intensity", "options": options})


# --- experiments, time series, dosing events, logs -------------------------------------------------------


def _experiment_error(e: Exception) -> ApiError:
    text = str(e)
    return ApiError(404 if text.startswith("unknown experiment") else 400, text)


@route("GET", "/api/experiments", "viewer")
async def experiments_list(request: web.Request) -> web.Response:
    return web.json_response(await request.app["db"].read(ex.list_experiments))


@route("POST", "/api/experiments", "operator", "experiment_create")
async def experiment_create(request: web.Request) -> web.Response:
    example = '{"experiment": "growth_2025-01", "description": "E. coli at 37 C"}'
    body = await json_body(request, example)
    name = _string(body, "experiment", example)
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise ApiError(400, f"description must be a string; send e.g. {example}")
    request["audit"]["details"] = {"experiment": name, "description": description}
    try:
        created = await request.app["db"].write(ex.create, name, description, _now_iso())
    except ex.ExperimentError as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(created, status=201)


@route("POST", "/api/experiments/{name}/units", "operator", "experiment_assign")
async def experiment_assign(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    example = '{"units": ["sim01", "sim02"]}'
    body = await json_body(request, example)
    units = body.get("units")
    if not isinstance(units, list) or not units or not all(isinstance(u, str) for u in units):
        raise ApiError(400, f"units must be a non-empty list of unit names; send e.g. {example}")
    known = request.app["topology"].units
    unknown = [u for u in units if u not in known]
    if unknown:
        raise ApiError(400, f"unknown unit {unknown[0]!r}; units: {', '.join(sorted(known))}")
    request["audit"]["units"] = list(units)
    request["audit"]["details"] = {"experiment": name}
    try:
        moves = await request.app["db"].write(ex.assign, name, units, _now_iso())
    except ex.ExperimentError as e:
        raise _experiment_error(e) from None
    return web.json_response({"experiment": name, "moves": moves})


@route("POST", "/api/experiments/{name}/end", "operator", "experiment_end")
async def experiment_end(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request["audit"]["details"] = {"experiment": name}
    try:
        units = await request.app["db"].write(ex.end, name, _now_iso())
    except ex.ExperimentError as e:
        raise _experiment_error(e) from None
    request["audit"]["units"] = units
    return web.json_response({"experiment": name, "unassigned": units})


@route("DELETE", "/api/experiments/{name}", "admin", "experiment_delete")
async def experiment_delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request["audit"]["details"] = {"experiment": name}
    await _experiment(request, name)
    if request.query.get("confirm") != name:
        raise ApiError(400, f"deleting {name} removes all its data; confirm with ?confirm={name}")
    try:
        deleted = await request.app["db"].write(ex.delete, name)
    except ex.ExperimentError as e:
        raise _experiment_error(e) from None
    request["audit"]["details"]["rows_deleted"] = sum(deleted.values())
    return web.json_response({"experiment": name, "rows_deleted": deleted})


@route("GET", "/api/experiments/{name}/timeseries/{series}", "viewer")
async def timeseries_get(request: web.Request) -> web.Response:
    try:
        from leader.web import timeseries
    except ImportError:
        raise ApiError(503, "time series are not available in this installation (leader/web/timeseries.py is missing)") from None
    name, series = request.match_info["name"], request.match_info["series"]
    await _experiment(request, name)
    text = request.query.get("lookback_hours")
    lookback: float | None = None
    if text:
        try:
            lookback = float(text)
        except ValueError:
            raise ApiError(400, f"lookback_hours={text!r} is not a number; send hours, e.g. lookback_hours=24, or leave it out for all") from None
        if not math.isfinite(lookback) or lookback <= 0:
            raise ApiError(400, f"lookback_hours must be a positive number of hours, got {text}")
    points = _int_query(request, "points", DEFAULT_POINTS, 2, MAX_POINTS)
    units = _units_query(request) or None

    def query(conn: Any) -> Any:
        return timeseries.query(conn, name, series, lookback, points, units)

    try:
        result = await request.app["db"].read(query)
    except timeseries.TimeseriesError as e:
        raise ApiError(400, str(e)) from None
    response = web.json_response(result)
    response.enable_compression()  # gzip when the browser accepts it: a chart's JSON shrinks ~3x
    return response


@route("GET", "/api/experiments/{name}/dosing_events", "viewer")
async def dosing_events(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _experiment(request, name)
    limit = _int_query(request, "limit", 10000, 1, 100000)
    units = _units_query(request)

    def read(conn: Any) -> list[dict[str, Any]]:
        sql = "SELECT pioreactor_unit, timestamp, event, volume_change_ml, source_of_event FROM dosing_events WHERE experiment = ?"
        params: list[Any] = [name]
        if units:
            sql += f" AND pioreactor_unit IN ({','.join('?' * len(units))})"
            params += units
        rows = conn.execute(sql + " ORDER BY timestamp DESC LIMIT ?", (*params, limit)).fetchall()
        fields = ("unit", "timestamp", "event", "volume_change_ml", "source_of_event")
        return [dict(zip(fields, tuple(r))) for r in reversed(rows)]

    return web.json_response({"experiment": name, "events": await request.app["db"].read(read)})


@route("GET", "/api/logs", "viewer")
async def logs_get(request: web.Request) -> web.Response:
    experiment = request.query.get("experiment") or None
    units = _units_query(request)
    level = request.query.get("level") or None
    if level is not None:
        try:
            allowed = ds.levels_from(level)
        except ds.DatasetError as e:
            raise ApiError(400, str(e)) from None
    before = _int_query(request, "before_id", None, 1, 2**62)
    limit = _int_query(request, "limit", 100, 1, MAX_LOG_LIMIT) or 100

    def read(conn: Any) -> list[dict[str, Any]]:
        where, params = [], []
        if experiment is not None:
            where.append("experiment = ?")
            params.append(experiment)
        if units:
            where.append(f"pioreactor_unit IN ({','.join('?' * len(units))})")
            params += units
        if level is not None and allowed[0] != ds.LEVELS[0]:
            where.append(f"UPPER(level) IN ({','.join('?' * len(allowed))})")
            params += list(allowed)
        if before is not None:
            where.append("rowid < ?")
            params.append(before)
        sql = f"SELECT {', '.join(ds.LOG_FIELDS)} FROM logs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = conn.execute(sql + " ORDER BY rowid DESC LIMIT ?", (*params, limit)).fetchall()
        out = []
        for r in rows:
            item = dict(zip(ds.LOG_FIELDS, tuple(r)))
            item["id"] = item.pop("rowid")
            item["unit"] = item.pop("pioreactor_unit")
            out.append(item)
        return out

    rows = await request.app["db"].read(read)
    return web.json_response({"logs": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None})


# --- export ---------------------------------------------------------------------------------------------


@route("POST", "/api/exports", "viewer")
async def export_start(request: web.Request) -> web.Response:
    from leader import database
    from leader.export import ExportError, export

    app = request.app
    example = '{"experiment": "demo", "datasets": ["od_readings"], "start": "2025-01-31T14:00:00Z", "partition_by_unit": false}'
    body = await json_body(request, example)
    name = _string(body, "experiment", example)
    await _experiment(request, name)
    chosen = body.get("datasets")
    if chosen is not None and (not isinstance(chosen, list) or not all(isinstance(d, str) for d in chosen)):
        raise ApiError(400, f"datasets must be a list of dataset names: {', '.join(ds.BY_NAME)}")
    start, end = _string(body, "start", example, required=False), _string(body, "end", example, required=False)
    partition = body.get("partition_by_unit", False)
    if not isinstance(partition, bool):
        raise ApiError(400, "partition_by_unit must be true or false")
    try:
        ds.select(chosen)
        lo = ds.parse_bound(start, "start") if start else None
        hi = ds.parse_bound(end, "end") if end else None
    except ds.DatasetError as e:
        raise ApiError(400, str(e)) from None
    if lo and hi and lo >= hi:
        raise ApiError(400, f"start {start} is not before end {end}; the export takes rows with start <= timestamp < end")
    _prune_exports(app)
    export_id = uuid.uuid4().hex
    folder = os.path.join(app["leader_dir"], "exports")
    os.makedirs(folder, exist_ok=True)
    job: dict[str, Any] = {"id": export_id, "experiment": name, "state": "running", "rows_done": 0, "rows_total": None,
                           "error": None, "path": os.path.join(folder, f"{export_id}.zip"), "finished": None,
                           "username": request["principal"].username}
    app["exports"][export_id] = job

    def progress(done: int, total: int) -> None:
        job["rows_done"], job["rows_total"] = done, total

    def work() -> None:
        try:
            conn = database.connect(app["db"].path, readonly=True)
            try:
                export(conn, name, job["path"], datasets=chosen, start=start, end=end, partition_by_unit=partition, progress=progress)
            finally:
                conn.close()
            job["state"] = "done"
        except (ExportError, ds.DatasetError) as e:
            job["state"], job["error"] = "failed", str(e)
        except Exception as e:  # the database vanished, the disk is full...
            job["state"], job["error"] = "failed", f"{type(e).__name__}: {e}"
        job["finished"] = time.monotonic()

    threading.Thread(target=work, name=f"export-{export_id[:8]}", daemon=True).start()
    return web.json_response({"id": export_id}, status=202)


def _prune_exports(app: web.Application) -> None:
    for export_id, job in list(app["exports"].items()):
        if job["finished"] is not None and time.monotonic() - job["finished"] > EXPORT_KEEP_S:
            try:
                os.unlink(job["path"])
            except FileNotFoundError:
                pass
            del app["exports"][export_id]


def _export_job(request: web.Request) -> dict[str, Any]:
    job = request.app["exports"].get(request.match_info["id"])
    if job is None:
        raise ApiError(404, f"no export {request.match_info['id']!r}; start one with POST /api/exports")
    return job


@route("GET", "/api/exports/{id}", "viewer")
async def export_status(request: web.Request) -> web.Response:
    job = _export_job(request)
    return web.json_response({k: job[k] for k in ("id", "experiment", "state", "rows_done", "rows_total", "error")})


@route("GET", "/api/exports/{id}/download", "viewer")
async def export_download(request: web.Request) -> web.StreamResponse:
    job = _export_job(request)
    if job["state"] != "done":
        raise ApiError(409, f"export {job['id']} is {job['state']}" + (f": {job['error']}" if job["error"] else "; poll GET /api/exports/{id} until it is done"))
    return web.FileResponse(job["path"], headers={"Content-Type": "application/zip",
                                                  "Content-Disposition": f'attachment; filename="{job["experiment"]}.zip"'})


# --- users, tokens, audit -------------------------------------------------------------------------------


async def _auth_write(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return await request.app["db"].write(fn, *args)
    except auth.AuthError as e:
        raise ApiError(404 if str(e).startswith("no user") or str(e).startswith("no API token") else 400, str(e)) from None


@route("GET", "/api/users", "admin")
async def users_list(request: web.Request) -> web.Response:
    return web.json_response(await request.app["db"].read(auth.list_users))


@route("POST", "/api/users", "admin", "user_add")
async def user_add(request: web.Request) -> web.Response:
    example = '{"username": "alice", "role": "operator", "password": "at least 8 characters"}'
    body = await json_body(request, example)
    username = _string(body, "username", example)
    role = body.get("role")
    password = body.get("password")
    generated = password is None
    if generated:
        password = auth.generate_password()
    request["audit"]["details"] = {"username": username, "role": role}
    user = await _auth_write(request, auth.create_user, username, role, password, time.time())
    return web.json_response({**user, **({"password": password} if generated else {})}, status=201)


@route("PATCH", "/api/users/{name}", "admin", "user_change")
async def user_change(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await json_body(request, '{"role": "viewer"} or {"password": "..."}')
    role, password = body.get("role"), body.get("password")
    if role is None and password is None:
        raise ApiError(400, 'send the role and/or the password to change, e.g. {"role": "viewer"}')
    request["audit"]["details"] = {"username": name, "role": role, "password_changed": password is not None}
    try:
        if password is not None:
            auth.check_password(password)
        if role is not None:
            auth.check_role(role)
    except auth.AuthError as e:
        raise ApiError(400, str(e)) from None
    user = None
    if role is not None:
        user = await _auth_write(request, auth.set_role, name, role)
    if password is not None:
        await _auth_write(request, auth.set_password, name, password)
        auth.forget_initial_password(request.app["leader_dir"], name)
    user = user or await request.app["db"].read(auth.get_user, name)
    return web.json_response(user)


@route("DELETE", "/api/users/{name}", "admin", "user_remove")
async def user_remove(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request["audit"]["details"] = {"username": name}
    await _auth_write(request, auth.remove_user, name)
    return web.json_response({"removed": name})


@route("GET", "/api/tokens", "operator")
async def tokens_list(request: web.Request) -> web.Response:
    p: auth.Principal = request["principal"]
    return web.json_response(await request.app["db"].read(auth.list_tokens, None if p.role == "admin" else p.username))


@route("POST", "/api/tokens", "operator", "token_create")
async def token_create(request: web.Request) -> web.Response:
    body = await json_body(request, '{"name": "growth-script"}')
    name = _string(body, "name", '{"name": "growth-script"}')
    p: auth.Principal = request["principal"]
    request["audit"]["details"] = {"name": name}
    token = await _auth_write(request, auth.create_token, p.username, name, time.time())
    return web.json_response({"name": name, "username": p.username, "token": token}, status=201)


@route("DELETE", "/api/tokens/{name}", "operator", "token_revoke")
async def token_revoke(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    p: auth.Principal = request["principal"]
    request["audit"]["details"] = {"name": name}
    owner = await request.app["db"].read(auth.token_owner, name)
    if owner is None:
        raise ApiError(404, f"no API token named {name!r}")
    if owner != p.username and p.role != "admin":
        raise ApiError(403, f"token {name} is {owner}'s; only they or an admin may revoke it", needed_role="admin")
    await _auth_write(request, auth.revoke_token, name)
    return web.json_response({"revoked": name})


@route("GET", "/api/audit", "admin")
async def audit_get(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", 100, 1, 1000) or 100
    before = _int_query(request, "before_id", None, 1, 2**62)
    return web.json_response(await request.app["db"].read(auth.read_audit, limit, before))


# --- live updates ---------------------------------------------------------------------------------------


@route("GET", "/api/ws", "viewer")
async def websocket(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None:  # a page of another site must not open a socket with this user's cookie
        from urllib.parse import urlsplit

        if urlsplit(origin).netloc.lower() != request.host.lower():
            raise ApiError(403, f"WebSocket from another origin ({origin}) refused; open the dashboard at {request.host}")
    relay = request.app.get("relay")
    if relay is None:
        raise ApiError(503, "live updates are not available (the relay is not running)")
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    await relay.handle(ws)
    return ws
