"""How a node follows its desired state: parsing the leader's payloads and planning actions (pure).

The leader publishes each unit's *desired state* (which jobs run, in which experiment, with which
settings as text) and sends *commands* (run, kill, set). This module reads both payloads and, given the
jobs a node actually runs, plans the actions that bring it to its desired state:

- start what is desired and not running;
- stop what is not desired, but only jobs a desired state started or adopted (``managed``): a job a
  user started by hand and that no desired state ever named is left alone, and so are long-running jobs
  (the monitor) and one-shot actions (a pump run), which are never stopped half-way by a plan;
- a changed settable setting of a running job is applied in place (``Set``), never by a restart;
- a changed startup-only option (``automation_name``, ``use_rpm``) or experiment needs a restart:
  ``Stop`` then ``Start`` with the desired options.

No actors, MQTT, clocks or files here: the supervisor reads the clock and the disk and calls these.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Union

import attrs

# States in which a job counts as running (its supervisor keeps it, or restarts it after a crash).
RUNNING_STATES = frozenset({"init", "ready", "sleeping"})
# States in which a running job counts as settled, for ``in_sync``.
SETTLED_STATES = frozenset({"ready", "sleeping"})
ACTIONS = ("run", "kill", "set")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")  # no '/', '+', '#', '$': each is a topic level


class DesiredError(ValueError):
    """A desired-state payload the node refuses; the message is one line saying what is wrong."""


class CommandError(ValueError):
    """A command the node refuses; ``command_id`` is set when the payload had a usable id to answer."""

    def __init__(self, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.command_id = command_id


# --- desired state ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Desired:
    generation: str
    experiment: str
    jobs: Mapping[str, Mapping[str, str]]  # job -> setting -> text, as `pio run <job> --<setting> <text>` takes
    issued_at: str | None = None

    def same_as(self, other: "Desired | None") -> bool:
        """The same instruction (a re-delivery after a reconnect, a second apply): issued_at aside."""
        return other is not None and (self.generation, self.experiment, self.jobs) == (other.generation, other.experiment, other.jobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "experiment": self.experiment,
            "jobs": {j: dict(s) for j, s in self.jobs.items()},
            "issued_at": self.issued_at,
        }


def _text(value: Any, where: str) -> str:
    """A setting value as text. The contract sends text; plain JSON scalars are taken as their text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        return json.dumps(value)
    raise DesiredError(f"{where} is {json.dumps(value)}; send the value as text, as `pio run` takes it (e.g. \"500\")")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DesiredError(f"{what} {json.dumps(name)} is not a valid name; use letters, digits and '_'")
    return name


def parse_desired(payload: str | bytes) -> Desired | None:
    """The leader's retained payload -> a :class:`Desired`; ``None`` for an empty payload (no desired
    state). Raises :class:`DesiredError` with a one-line reason for anything malformed."""
    text = (payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload).strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DesiredError(f"desired state is not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise DesiredError("desired state must be a JSON object {generation, experiment, jobs, issued_at}")
    unknown = sorted(set(data) - {"generation", "experiment", "jobs", "issued_at"})
    if unknown:
        raise DesiredError(f"desired state has unknown field(s) {', '.join(unknown)}; fields are generation, experiment, jobs, issued_at")
    generation = data.get("generation")
    if not isinstance(generation, str) or not generation.strip():
        raise DesiredError("desired state needs a non-empty text 'generation'")
    experiment = _check_name(data.get("experiment"), "experiment")
    issued_at = data.get("issued_at")
    if issued_at is not None and not isinstance(issued_at, str):
        raise DesiredError("desired state 'issued_at' must be a UTC ISO timestamp text")
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, dict):
        raise DesiredError("desired state needs 'jobs': an object {job: {setting: text}} ({} for no jobs)")
    jobs: dict[str, dict[str, str]] = {}
    for job, settings in raw_jobs.items():
        _check_name(job, "job")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise DesiredError(f"job {job}: settings must be an object {{setting: text}}, not {json.dumps(settings)}")
        jobs[job] = {_check_name(k, f"job {job}: setting"): _text(v, f"job {job}: {k}") for k, v in settings.items()}
    return Desired(generation=generation.strip(), experiment=experiment, jobs=jobs, issued_at=issued_at)


# --- what the node runs, and the plan -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Running:
    """One job as the node's supervisor knows it."""

    state: str
    experiment: str
    settings: Mapping[str, str]  # startup options as given, settable values as last reported (text)
    settable: frozenset[str] = frozenset()  # names a `/set` can change in place
    managed: bool = False  # started or adopted by a desired state
    long_running: bool = False  # the monitor: never stopped by a plan
    one_shot: bool = False  # a pump run, od_blank: never stopped half-way, never started by a plan


@attrs.frozen
class Start:
    job: str
    options: Mapping[str, str]


@attrs.frozen
class Stop:
    job: str


@attrs.frozen
class Set:
    job: str
    setting: str
    value: str


Action = Union[Start, Stop, Set]


def same_value(a: str | None, b: str | None) -> bool:
    """Whether two setting texts mean the same value: ``500`` and ``500.0``, ``True`` and ``true``,
    JSON with and without spaces. The node reports values in its own encoding, the leader sends what a
    user typed; comparing the texts would re-apply equal values at every reconcile."""
    if a is None or b is None:
        return a is b
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    low_a, low_b = a.lower(), b.lower()
    if low_a in ("true", "false") and low_b in ("true", "false"):
        return low_a == low_b
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def running(actual: Mapping[str, Running], job: str) -> bool:
    r = actual.get(job)
    return r is not None and r.state in RUNNING_STATES


def plan(desired: Desired | None, actual: Mapping[str, Running], one_shot: frozenset[str] = frozenset()) -> list[Action]:
    """The actions that bring ``actual`` to ``desired``, in a stable order: stops of jobs no longer
    desired first (pumps off before anything new starts), then per desired job (sorted by name) a start,
    a restart (Stop then Start) or in-place Sets. ``one_shot`` names jobs known to be one-shot actions,
    which a desired state cannot keep running and a plan never starts. No desired state: nothing."""
    if desired is None:
        return []
    actions: list[Action] = []
    for job in sorted(actual):
        r = actual[job]
        if job in desired.jobs or not r.managed or r.long_running or r.one_shot or r.state not in RUNNING_STATES:
            continue
        actions.append(Stop(job))
    for job in sorted(desired.jobs):
        options = desired.jobs[job]
        if job in one_shot:
            continue
        if not running(actual, job):
            actions.append(Start(job, dict(options)))
            continue
        r = actual[job]
        changed = {k: v for k, v in sorted(options.items()) if not same_value(r.settings.get(k), v)}
        if r.experiment != desired.experiment or any(k not in r.settable for k in changed):
            actions += [Stop(job), Start(job, dict(options))]
        else:
            actions += [Set(job, k, v) for k, v in changed.items()]
    return actions


def restarts(actions: list[Action]) -> set[str]:
    """Jobs the plan stops and starts again (a startup option or the experiment changed)."""
    started = {a.job for a in actions if isinstance(a, Start)}
    return {a.job for a in actions if isinstance(a, Stop) and a.job in started}


def in_sync(desired: Desired | None, actual: Mapping[str, Running], one_shot: frozenset[str] = frozenset()) -> bool:
    """Nothing left to do and every desired job settled (ready or sleeping). No desired state: True."""
    if desired is None:
        return True
    if plan(desired, actual, one_shot):
        return False
    return all(actual[j].state in SETTLED_STATES for j in desired.jobs if j not in one_shot)


def describe(action: Action) -> str:
    """One log line per action."""
    if isinstance(action, Start):
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(action.options.items()))
        return f"starting {action.job}" + (f" {opts}" if opts else "")
    if isinstance(action, Stop):
        return f"stopping {action.job}"
    return f"setting {action.job} {action.setting} to {action.value}"


# --- commands -----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Command:
    id: str
    expires_at: float
    action: str  # run | kill | set
    job: str | None  # None: kill every job but the long-running ones (`pio kill --all`)
    options: Mapping[str, str] = attrs.field(factory=dict)
    setting: str | None = None
    value: str | None = None
    experiment: str | None = None


def parse_command(payload: str | bytes, now: float) -> Command:
    """A command payload -> :class:`Command`, checked against ``now`` (real epoch seconds). Raises
    :class:`CommandError` (with the command's id when it has one) if it is malformed or expired."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CommandError(f"command is not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise CommandError("command must be a JSON object {id, expires_at, action, job, ...}")
    cid = data.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise CommandError("command needs a non-empty text 'id'")

    def refuse(message: str) -> CommandError:
        return CommandError(message, command_id=cid)

    expires_at = data.get("expires_at")
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at):
        raise refuse("command needs 'expires_at': epoch seconds (a number)")
    if expires_at < now:
        raise refuse(f"command expired {now - expires_at:.1f} s before it reached the unit; send it again")
    action = data.get("action")
    if action not in ACTIONS:
        raise refuse(f"unknown action {json.dumps(action)}; send one of: {', '.join(ACTIONS)}")
    job = data.get("job")
    if job is None and action != "kill":
        raise refuse(f"a {action} command needs 'job'")
    if job is not None:
        if not isinstance(job, str) or not _NAME.match(job):
            raise refuse(f"job {json.dumps(job)} is not a valid job name")
    experiment = data.get("experiment")
    if experiment is not None and (not isinstance(experiment, str) or not _NAME.match(experiment)):
        raise refuse(f"experiment {json.dumps(experiment)} is not a valid name")
    try:
        if action == "run":
            raw = data.get("options") or {}
            if not isinstance(raw, dict):
                raise refuse("'options' must be an object {setting: text}")
            options = {_check_name(k, "option"): _text(v, f"option {k}") for k, v in raw.items()}
            return Command(id=cid, expires_at=float(expires_at), action=action, job=job, options=options, experiment=experiment)
        if action == "set":
            setting = data.get("setting")
            if not isinstance(setting, str) or not setting.strip():
                raise refuse("a set command needs 'setting' (a setting name, or $state)")
            if "value" not in data:
                raise refuse("a set command needs 'value' (text)")
            value = _text(data["value"], "value")
            return Command(id=cid, expires_at=float(expires_at), action=action, job=job, setting=setting.strip(), value=value)
    except DesiredError as e:
        raise refuse(str(e)) from None
    return Command(id=cid, expires_at=float(expires_at), action=action, job=job)
