"""When the supervisor restarts a crashed job, and after how long: pure data and pure functions.

Erlang/OTP-style restart intensity: more than ``max_restarts`` crashes within ``window_seconds`` and the
supervisor gives up (the job goes ``lost``) rather than crash-looping. Between restarts the delay backs
off exponentially, so a job that dies at once is not hammered; a run of ``healthy_after`` seconds counts
as recovery and puts the back-off back to ``base_delay``. Time is always passed in, never read.
"""

from __future__ import annotations

import math

import attrs


def _non_negative(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be finite and >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be finite and > 0, got {value!r}")


@attrs.frozen
class RestartPolicy:
    """How many crashes are tolerated per window, and the back-off between restarts."""

    max_restarts: int = attrs.field(
        default=5, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    window_seconds: float = attrs.field(default=600.0, validator=_positive)
    base_delay: float = attrs.field(default=1.0, validator=_non_negative)
    max_delay: float = attrs.field(default=60.0, validator=_non_negative)
    healthy_after: float = attrs.field(default=120.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.base_delay > self.max_delay:
            raise ValueError(f"base_delay {self.base_delay!r} is above max_delay {self.max_delay!r}")


@attrs.frozen
class CrashHistory:
    """What the supervisor remembers about one job: recent crash times, back-off step, last start."""

    crash_times: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    consecutive: int = 0
    last_start: float | None = None


@attrs.frozen
class RestartDecision:
    """Whether to restart, after how many seconds, why (human-readable), and the updated history."""

    restart: bool
    delay: float
    reason: str
    history: CrashHistory


def record_start(history: CrashHistory, now: float) -> CrashHistory:
    """Note that the job (re)started at ``now``, so its next crash can tell a healthy run from a flap."""
    return attrs.evolve(history, last_start=now)


def _backoff(policy: RestartPolicy, consecutive: int) -> float:
    exponent = consecutive - 1
    if exponent >= 1024:  # 2.0 ** 1024 overflows; the cap has long been reached anyway
        return policy.max_delay
    return min(policy.max_delay, policy.base_delay * 2.0**exponent)


def decide_restart(policy: RestartPolicy, history: CrashHistory, now: float) -> RestartDecision:
    """Decide what to do about a crash at ``now``; the returned history replaces the old one."""
    window = policy.window_seconds
    recent = tuple(t for t in (*history.crash_times, now) if now - t <= window)
    healthy = history.last_start is not None and now - history.last_start >= policy.healthy_after
    consecutive = (0 if healthy else history.consecutive) + 1
    new_history = CrashHistory(crash_times=recent, consecutive=consecutive, last_start=history.last_start)
    count = len(recent)
    if count > policy.max_restarts:
        reason = (
            f"crashed {count} times in {window:g} s (limit {policy.max_restarts}); giving up"
        )
        return RestartDecision(restart=False, delay=0.0, reason=reason, history=new_history)
    delay = _backoff(policy, consecutive)
    reason = f"crash {count} in {window:g} s; restarting in {delay:.1f} s"
    return RestartDecision(restart=True, delay=delay, reason=reason, history=new_history)
