"""Job states and their legal transitions, as one table the job base consults.

Matches the reference system: ``init -> ready <-> sleeping -> disconnected``; ``lost`` is only ever
set by a last will or by the supervisor when it gives up on a job. ``disconnected`` is terminal.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    INIT = "init"
    READY = "ready"
    SLEEPING = "sleeping"
    DISCONNECTED = "disconnected"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


TRANSITIONS: dict[State, frozenset[State]] = {
    State.INIT: frozenset({State.READY, State.DISCONNECTED, State.LOST}),
    State.READY: frozenset({State.SLEEPING, State.DISCONNECTED, State.LOST}),
    State.SLEEPING: frozenset({State.READY, State.DISCONNECTED, State.LOST}),
    State.DISCONNECTED: frozenset(),
    State.LOST: frozenset(),
}

# What a user may request with `$state/set`.
REQUESTABLE: frozenset[State] = frozenset({State.READY, State.SLEEPING, State.DISCONNECTED})


def can_transition(current: State, new: State) -> bool:
    return new in TRANSITIONS[current]


def refusal(current: State, requested: str) -> str | None:
    """Why a ``$state/set`` request is refused, or None if it may be applied."""
    try:
        new = State(requested)
    except ValueError:
        allowed = ", ".join(sorted(s.value for s in REQUESTABLE))
        return f"unknown state {requested!r}; send one of {allowed}"
    if new not in REQUESTABLE:
        allowed = ", ".join(sorted(s.value for s in REQUESTABLE))
        return f"state {requested!r} cannot be requested; send one of {allowed}"
    if current == new:
        return None
    if not can_transition(current, new):
        if current == State.DISCONNECTED:
            return "the job is disconnected, which is final; start it again with `pio run`"
        return f"cannot go from {current.value} to {new.value}"
    return None
