"""ClusterWatch, pure: which units are up, from what they and the broker say, and the log lines when one
goes away or comes back.

Inputs are the retained node topics every unit keeps: ``$node/$state`` (``ready``; ``disconnected`` after a
clean stop; ``lost``, the broker's last will for a connection that died) and ``$node/actual`` (the node's
jobs against its desired state). A unit is ``ready`` only on its own word; ``lost`` heals by itself when
the unit reconnects and says ``ready`` again, which the node's bridge does on every reconnect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from actors import topics

UNKNOWN = "unknown"  # nothing heard from the unit since the leader started


@attrs.frozen(kw_only=True)
class UnitView:
    unit: str
    state: str = UNKNOWN
    since: str | None = None  # UTC ISO time the state was last seen to change
    in_sync: bool | None = None
    jobs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"unit": self.unit, "state": self.state, "since": self.since, "in_sync": self.in_sync, "jobs": list(self.jobs)}


class ClusterWatch:
    def __init__(self, units: Iterable[str]) -> None:
        self.units: dict[str, UnitView] = {u: UnitView(unit=u) for u in units}

    def observe(self, topic: str, payload: str, now_iso: str) -> str | None:
        """Fold in one message; return a log line when a unit's liveness changed."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != topics.ROOT or parts[2] != topics.NODE or parts[1] not in self.units:
            return None
        unit, attr = parts[1], parts[3]
        view = self.units[unit]
        if attr == topics.STATE:
            state = payload or UNKNOWN
            if state == view.state:
                return None
            self.units[unit] = attrs.evolve(view, state=state, since=now_iso)
            return _transition(unit, view.state, state)
        if attr == "actual":
            try:
                body = json.loads(payload) if payload else {}
            except ValueError:
                return None
            jobs = tuple(sorted(j for j, v in body.get("jobs", {}).items() if v.get("state") in ("init", "ready", "sleeping")))
            self.units[unit] = attrs.evolve(view, in_sync=body.get("in_sync"), jobs=jobs)
        return None

    def snapshot(self) -> list[dict[str, object]]:
        return [self.units[u].to_json() for u in sorted(self.units)]


def _transition(unit: str, old: str, new: str) -> str:
    if new == "lost":
        return f"WARNING {unit} went away: its connection to the broker died (lost)"
    if new == "disconnected":
        return f"INFO {unit} stopped cleanly (disconnected)"
    if new == "ready" and old in ("lost", "disconnected"):
        return f"INFO {unit} is back (ready; was {old})"
    if new == "ready":
        return f"INFO {unit} is up (ready)"
    return f"INFO {unit} is {new} (was {old})"
