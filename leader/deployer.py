"""From ``topology.yaml`` to what each unit should run, and what changes when it is applied. Pure.

A unit's *desired state* is the jobs of its experiment, with the experiment's settings and the unit's
overrides, as TEXT values exactly as ``pio run <job> --<setting> <value>`` takes them (the node's job
host parses them). The leader publishes it retained on ``pioreactor/<unit>/$node/desired``
(:func:`actors.topics.desired_topic`); the node keeps it and drives its jobs toward it.

``generation`` is the first 16 hex digits of the sha256 of the canonical JSON of the jobs: equal jobs give
an equal generation whoever computes it, and any change of a job or a setting gives another one.

:func:`plan` compares what the units hold now with what the file asks for; :func:`render` prints it
for ``pios apply --dry-run`` ("no changes" when nothing differs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from actors.topology import Topology, setting_text

Jobs = dict[str, dict[str, str]]  # job -> setting -> text value

# The experiment named in the desired state of a unit in no experiment (its jobs are none). The contract
# wants a name there, and the topology refuses experiment names starting with '_', so it is never a real one.
UNASSIGNED = "_unassigned"


def canonical_jobs(jobs: Mapping[str, Mapping[str, str]]) -> str:
    """One JSON spelling of ``jobs``: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(jobs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def generation_of(jobs: Mapping[str, Mapping[str, str]]) -> str:
    return hashlib.sha256(canonical_jobs(jobs).encode("utf-8")).hexdigest()[:16]


class DesiredStateError(ValueError):
    """A desired-state payload that cannot be used; the message says what is wrong with it."""


@attrs.frozen(kw_only=True)
class DesiredState:
    """What one unit should run. ``experiment`` is :data:`UNASSIGNED` for a unit in no experiment (no jobs)."""

    experiment: str
    jobs: Jobs
    generation: str
    issued_at: str | None = None  # UTC ISO time the leader published it (actors.clock.utc_iso); not compared

    @classmethod
    def of(cls, experiment: str, jobs: Mapping[str, Mapping[str, str]], issued_at: str | None = None) -> DesiredState:
        copy = {job: dict(settings) for job, settings in jobs.items()}
        return cls(experiment=experiment, jobs=copy, generation=generation_of(copy), issued_at=issued_at)

    def same_as(self, other: DesiredState | None) -> bool:
        """Same experiment and jobs: nothing to do (when it was issued does not matter)."""
        return other is not None and self.experiment == other.experiment and self.jobs == other.jobs

    def payload(self) -> str:
        """The retained MQTT payload (the contract: generation, experiment, jobs, issued_at)."""
        body = {"generation": self.generation, "experiment": self.experiment, "jobs": self.jobs, "issued_at": self.issued_at}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def parse(cls, payload: str | bytes | None) -> DesiredState | None:
        """A retained payload back into a DesiredState; None for an empty payload (no desired state).

        Values that are numbers or booleans are turned into their text (a hand-written payload), anything
        else that is not text is refused with a DesiredStateError naming the place."""
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if text is None or not text.strip():
            return None
        try:
            body = json.loads(text)
        except ValueError:
            raise DesiredStateError(f"desired state is not JSON: {text[:80]!r}") from None
        if not isinstance(body, dict):
            raise DesiredStateError("desired state must be a JSON object with generation, experiment, jobs, issued_at")
        generation = body.get("generation")
        if not isinstance(generation, str) or not generation:
            raise DesiredStateError("desired state: generation must be a non-empty string")
        experiment = body.get("experiment")
        if not isinstance(experiment, str) or not experiment:
            raise DesiredStateError(f"desired state: experiment must be a name, not {experiment!r}")
        issued_at = body.get("issued_at")
        if issued_at is not None and not isinstance(issued_at, str):
            raise DesiredStateError(f"desired state: issued_at must be a UTC ISO time string, not {issued_at!r}")
        raw_jobs = body.get("jobs", {})
        if not isinstance(raw_jobs, dict):
            raise DesiredStateError("desired state: jobs must be an object of job -> {setting: value}")
        jobs: Jobs = {}
        for job, settings in raw_jobs.items():
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                raise DesiredStateError(f"desired state: jobs.{job} must be an object of setting -> text value")
            jobs[job] = {}
            for name, value in settings.items():
                if isinstance(value, (bool, int, float, str)):
                    jobs[job][name] = value if isinstance(value, str) else setting_text(value)
                else:
                    raise DesiredStateError(f"desired state: jobs.{job}.{name} must be a text value, not {value!r}")
        return cls(experiment=experiment, jobs=jobs, generation=generation, issued_at=issued_at)


def desired_states(topology: Topology, issued_at: str | None = None) -> dict[str, DesiredState]:
    """Every declared unit's desired state; a unit in no experiment gets one with no jobs."""
    return {
        unit: DesiredState.of(topology.experiment_of(unit) or UNASSIGNED, topology.jobs_for(unit), issued_at)
        for unit in sorted(topology.units)
    }


# --- plan -----------------------------------------------------------------------------------------

ADD_UNIT, REMOVE_UNIT, EXPERIMENT, START, STOP, SET, UNSET = "add_unit", "remove_unit", "experiment", "start", "stop", "set", "unset"


@attrs.frozen(kw_only=True)
class Change:
    """One difference between what a unit holds and what it should hold.

    ``add_unit``: the unit has no desired state yet. ``remove_unit``: it is no longer in the topology (its
    desired state is cleared; its jobs are no longer managed). ``experiment``: old -> new. ``start``: a job
    with ``settings``. ``stop``: a job. ``set``: a setting old -> new (old None: newly given). ``unset``:
    a setting no longer given (old is what it was)."""

    unit: str
    kind: str
    job: str | None = None
    setting: str | None = None
    old: str | None = None
    new: str | None = None
    settings: tuple[tuple[str, str], ...] = ()


def plan(current: Mapping[str, DesiredState | None], new: Mapping[str, DesiredState]) -> list[Change]:
    """What applying ``new`` changes, unit by unit (sorted), jobs by name; empty when nothing differs.

    ``current``: each unit's desired state as held now (None: none published yet). Units in ``current``
    but not in ``new`` have left the topology."""
    changes: list[Change] = []
    for unit in sorted(set(current) | set(new)):
        old, wanted = current.get(unit), new.get(unit)
        if wanted is None:
            if old is not None:
                changes.append(Change(unit=unit, kind=REMOVE_UNIT, old=old.experiment))
            continue
        if old is None:
            changes.append(Change(unit=unit, kind=ADD_UNIT, new=wanted.experiment))
            old_jobs: Jobs = {}
        else:
            if old.experiment != wanted.experiment:
                changes.append(Change(unit=unit, kind=EXPERIMENT, old=old.experiment, new=wanted.experiment))
            old_jobs = old.jobs
        for job in sorted(set(old_jobs) | set(wanted.jobs)):
            if job not in wanted.jobs:
                changes.append(Change(unit=unit, kind=STOP, job=job))
            elif job not in old_jobs:
                changes.append(Change(unit=unit, kind=START, job=job, settings=tuple(sorted(wanted.jobs[job].items()))))
            else:
                before, after = old_jobs[job], wanted.jobs[job]
                for name in sorted(set(before) | set(after)):
                    if name not in after:
                        changes.append(Change(unit=unit, kind=UNSET, job=job, setting=name, old=before[name]))
                    elif before.get(name) != after[name]:
                        changes.append(Change(unit=unit, kind=SET, job=job, setting=name, old=before.get(name), new=after[name]))
    return changes


def render(changes: list[Change]) -> str:
    """The plan as ``pios apply --dry-run`` prints it: one block per unit, then a count."""
    if not changes:
        return "no changes"
    lines: list[str] = []
    units: list[str] = []
    for change in changes:
        if change.unit not in units:
            units.append(change.unit)
            lines.append(f"{change.unit}:")
        lines.append("  " + _line(change))
    n, u = len(changes), len(units)
    lines.append(f"{n} change{'s' if n != 1 else ''} on {u} unit{'s' if u != 1 else ''}")
    return "\n".join(lines)


def _line(c: Change) -> str:
    if c.kind == ADD_UNIT:
        return f"+ unit added ({_experiment(c.new)})"
    if c.kind == REMOVE_UNIT:
        return "- unit removed from the topology: its desired state is cleared, its jobs are no longer managed"
    if c.kind == EXPERIMENT:
        return f"~ experiment: {_experiment(c.old)} -> {_experiment(c.new)}"
    if c.kind == START:
        options = " ".join(f"{k}={v}" for k, v in c.settings)
        return f"+ start {c.job}" + (f"  {options}" if options else "")
    if c.kind == STOP:
        return f"- stop {c.job}"
    if c.kind == SET:
        return f"~ {c.job}.{c.setting}: {c.old if c.old is not None else '(default)'} -> {c.new}"
    if c.kind == UNSET:
        return f"~ {c.job}.{c.setting}: {c.old} -> (no longer set)"
    raise ValueError(f"unknown change kind {c.kind!r}")


def _experiment(name: str | None) -> str:
    return f"experiment {name}" if name not in (None, UNASSIGNED) else "no experiment"


def to_json(changes: list[Change]) -> list[dict[str, Any]]:
    """The plan as plain data (``pios apply --dry-run --json``)."""
    return [
        {k: v for k, v in attrs.asdict(c).items() if v not in (None, ())} | ({"settings": dict(c.settings)} if c.kind == START else {})
        for c in changes
    ]
