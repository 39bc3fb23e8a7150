"""A unit as the leader sees it, from what the broker holds for it: its `$node/$state` (last will
`lost`), its desired state (`$node/desired`), its own report (`$node/actual`) and its jobs' retained
settings. One view for `pios status` and the dashboard, so both say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from actors import topics

UNIT_STATES = ("ready", "lost", "disconnected")
RUNNING = ("init", "ready", "sleeping")


def parse_json(text: str | None) -> Any:
    """A retained JSON payload, or None when absent, empty or not JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def unit_view(unit: str, held: Mapping[str, str], ingest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{unit, state, reachable, experiment, in_sync, desired_jobs, actual_jobs, jobs, errors, ingest}``.

    ``in_sync``: the unit reports the desired generation and says it matches it; a unit with no desired
    state is in sync when it runs nothing. ``jobs``: each running job's state and settings (the node's
    report, then every retained setting the job published under its experiment)."""
    raw_state = held.get(topics.node_topic(unit, topics.STATE))
    desired = parse_json(held.get(topics.desired_topic(unit))) or None
    actual = parse_json(held.get(topics.actual_topic(unit))) or None
    actual_jobs = (actual or {}).get("jobs") or {}
    job_experiments = [j.get("experiment") for j in actual_jobs.values() if j.get("experiment") not in (None, topics.NO_EXPERIMENT)]
    experiment = (actual or {}).get("experiment") or (desired or {}).get("experiment") or (job_experiments[0] if job_experiments else None)
    jobs: dict[str, dict[str, Any]] = {}
    for job, info in sorted(actual_jobs.items()):
        if info.get("state") in (None, "disconnected"):
            continue
        entry = jobs[job] = {"state": info.get("state"), "settings": dict(info.get("settings") or {})}
        prefix = topics.job_topic(unit, info.get("experiment") or experiment or topics.NO_EXPERIMENT, job, "")
        for topic, payload in held.items():
            attr = topic[len(prefix):] if topic.startswith(prefix) else ""
            if attr and "/" not in attr and attr != topics.STATE:
                entry["settings"][attr] = topics.decode(payload)
    running = sorted(j for j, v in actual_jobs.items() if v.get("state") in RUNNING)
    in_sync = bool(actual and desired and actual.get("generation") == desired.get("generation") and actual.get("in_sync"))
    return {
        "unit": unit,
        "state": raw_state if raw_state in UNIT_STATES else "unknown",
        "reachable": raw_state == "ready",
        "experiment": experiment,
        "in_sync": in_sync if desired else not running,
        "desired_jobs": sorted((desired or {}).get("jobs", {})),
        "actual_jobs": running,
        "jobs": jobs,
        "errors": (actual or {}).get("errors", []) or [],
        "ingest": ((ingest or {}).get("units") or {}).get(unit),
    }
