"""The ``light_dark_cycle`` LED automation as a pure schedule: which phase, what intensity, when next.

Reference behaviour (pioreactor.md §3.2): LED channels C and D, on at ``light_intensity`` for
``light_duration_minutes`` then off for ``dark_duration_minutes``, repeating; the job starts in light;
it fires one-shot timers at the exact phase boundaries (not a polling tick, which would smear every
switch by up to a tick); changing a duration reschedules at once; fractions of minutes are allowed.

Time is minutes since the job started, passed in by the caller; nothing here reads a clock. The job
asks :meth:`LightDarkCycle.decide` at start and at every boundary, applies the intensities, and sets a
timer for the returned ``next_boundary_minutes``.

Why boundaries are computed, never accumulated: adding durations one cycle at a time drifts by a rounding
error per cycle (a 0.1 + 0.2 minute cycle is not exactly 0.3); a schedule that runs for weeks is instead
computed from the start of its current *epoch* as ``start + k * period (+ light)``, with ``k`` found by
division and then corrected by direct comparison. Each boundary is then within a few roundings of exact
(about 1e-10 minute after a year), and :meth:`state_at` and :meth:`next_boundary` compare against the
same computed numbers, so they cannot disagree at a boundary.

Retiming keeps the current phase and its start, and gives it the new duration: if the phase has already
lasted that long, it ends *now*. The change starts a new epoch (at the current phase's start, or now);
the epochs before it are kept, so the schedule stays a record of the past: ``state_at`` of an earlier
time is what happened then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from actors.automations.events import AutomationEvent, ChangedLedIntensity, NoEvent
from actors.automations.parameters import Parameter

LED_CHANNELS: tuple[str, ...] = ("A", "B", "C", "D")
DEFAULT_CHANNELS: tuple[str, ...] = ("C", "D")


def _check_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_durations(light: float, dark: float) -> tuple[float, float]:
    light = _check_number("light_duration_minutes", light)
    dark = _check_number("dark_duration_minutes", dark)
    if light < 0 or dark < 0:
        raise ValueError(f"durations must be >= 0 minutes, got light {light:g} and dark {dark:g}")
    if light == 0 and dark == 0:
        raise ValueError("light and dark durations cannot both be 0 minutes")
    return light, dark


def _check_intensity(value: float) -> float:
    value = _check_number("light_intensity", value)
    if not 0 <= value <= 100:
        raise ValueError(f"light_intensity must be in 0..100 %, got {value:g}")
    return value


def _channels(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"channels must be a sequence of LED channel names, got the string {value!r}")
    channels = tuple(value)
    if not channels:
        raise ValueError("channels must name at least one LED channel")
    for c in channels:
        if c not in LED_CHANNELS:
            raise ValueError(f"unknown LED channel {c!r}; channels are {', '.join(LED_CHANNELS)}")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels {channels!r} name a channel twice")
    return channels


@attrs.frozen
class Epoch:
    """From ``start`` (minutes) the cycle runs with these durations, beginning with the phase ``lit``.

    ``changed_at`` is when the setting change that created the epoch was made (``start`` itself, or
    later when a retime kept the phase that was running). If one duration is 0 the light never changes
    and ``lit`` says which it is.
    """

    start: float
    lit: bool
    light_minutes: float
    dark_minutes: float
    changed_at: float

    @property
    def constant(self) -> bool:
        return self.light_minutes == 0 or self.dark_minutes == 0

    def phase(self, t: float) -> tuple[bool, float, float | None]:
        """At ``t >= start``: (lit, start of the current phase, end of it or ``None`` if it never ends)."""
        if self.constant:
            return self.lit, self.start, None
        first = self.light_minutes if self.lit else self.dark_minutes
        period = self.light_minutes + self.dark_minutes
        k = math.floor((t - self.start) / period)
        # Division can land one cycle off next to a boundary; correct by comparing the boundaries
        # themselves, computed the same way every time, so phase and boundary never disagree.
        while k > 0 and t < self.start + k * period:
            k -= 1
        while t >= self.start + (k + 1) * period:
            k += 1
        cycle_start = self.start + k * period
        middle = cycle_start + first
        if t < middle:
            return self.lit, cycle_start, middle
        return not self.lit, middle, self.start + (k + 1) * period


@attrs.frozen(kw_only=True)
class LedDecision:
    """What to do at ``t``: set these intensities, then wake at ``next_boundary_minutes`` (``None``: never)."""

    lit: bool
    intensities: tuple[tuple[str, float], ...]
    next_boundary_minutes: float | None
    event: AutomationEvent


class LedPolicy:
    """The base of every LED automation: what the LED job asks at its start, at each wake-up it was told
    and after each settings change.

    Subclass it, set ``name`` and ``PARAMETERS``, and implement :meth:`decide`. Time is minutes since
    the job started. A policy may be an immutable value: :meth:`with_parameter` returns the policy to use
    from then on (``self`` after changing itself, or a new one).
    """

    family: ClassVar[str] = "led"
    name: ClassVar[str] = ""
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> LedPolicy:
        """Build the policy for a run from its parameter values by name. Default: keyword arguments."""
        return cls(**parameters)

    def decide(self, t_minutes: float) -> LedDecision:
        """Intensities to set at ``t_minutes`` (channels not named are left alone) and when to ask again."""
        raise NotImplementedError

    def with_parameter(self, name: str, value: Any, t_minutes: float) -> LedPolicy:
        """A settable parameter changed at ``t_minutes``; raise ``ValueError`` to refuse. Default: store it."""
        setattr(self, name, value)
        return self


class SilentLeds(LedPolicy):
    """``silent``: leaves the LEDs as they are and never wakes up."""

    name = "silent"

    def decide(self, t_minutes: float) -> LedDecision:
        return LedDecision(lit=False, intensities=(), next_boundary_minutes=None, event=NoEvent("LEDs left as they are"))


DEFAULT_LIGHT_INTENSITY = 50.0
DEFAULT_LIGHT_MINUTES = 16 * 60.0
DEFAULT_DARK_MINUTES = 8 * 60.0
"""A 16 h light / 8 h dark day at 50 % [assumption: the reference's form defaults, not in its docs]."""


@attrs.frozen(init=False)
class LightDarkCycle(LedPolicy):
    """Alternating light and dark phases on ``channels``, starting in light at minute 0.

    Change it with :meth:`retime` and :meth:`with_intensity`, which return a new schedule (a value the
    job can hold and replace). ``epochs`` is the schedule's history: each runs from where a change of
    durations took effect until the next one; a phase whose light a change left as it was runs on
    across the epochs' seam.
    """

    name: ClassVar[str] = "light_dark_cycle"
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = (
        Parameter("light_intensity", "float", "%", DEFAULT_LIGHT_INTENSITY, description="LEDs C and D during light, 0-100"),
        Parameter("light_duration_minutes", "float", "min", DEFAULT_LIGHT_MINUTES, description="length of each light phase"),
        Parameter("dark_duration_minutes", "float", "min", DEFAULT_DARK_MINUTES, description="length of each dark phase"),
    )

    light_intensity: float
    channels: tuple[str, ...]
    epochs: tuple[Epoch, ...]

    def __init__(
        self,
        light_intensity: float,
        light_duration_minutes: float,
        dark_duration_minutes: float,
        channels: Iterable[str] = DEFAULT_CHANNELS,
    ) -> None:
        light, dark = _check_durations(light_duration_minutes, dark_duration_minutes)
        first = Epoch(0.0, light > 0, light, dark, 0.0)
        self.__attrs_init__(_check_intensity(light_intensity), _channels(channels), (first,))

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> LightDarkCycle:
        return cls(
            float(parameters.get("light_intensity", DEFAULT_LIGHT_INTENSITY)),
            float(parameters.get("light_duration_minutes", DEFAULT_LIGHT_MINUTES)),
            float(parameters.get("dark_duration_minutes", DEFAULT_DARK_MINUTES)),
        )

    def with_parameter(self, name: str, value: Any, t_minutes: float) -> LightDarkCycle:
        """A settings change at ``t_minutes``: a duration retimes from then on, an intensity applies at once."""
        if name == "light_intensity":
            return self.with_intensity(value)
        if name == "light_duration_minutes":
            return self.retime(t_minutes, light_duration=value)
        if name == "dark_duration_minutes":
            return self.retime(t_minutes, dark_duration=value)
        raise ValueError(f"light_dark_cycle has no parameter {name!r}")

    def _with_epochs(self, epochs: tuple[Epoch, ...]) -> LightDarkCycle:
        new = object.__new__(LightDarkCycle)
        new.__attrs_init__(self.light_intensity, self.channels, epochs)
        return new

    @property
    def light_duration_minutes(self) -> float:
        return self.epochs[-1].light_minutes

    @property
    def dark_duration_minutes(self) -> float:
        return self.epochs[-1].dark_minutes

    def _before(self, k: int) -> tuple[bool, float]:
        """(lit, phase start) of the phase in force just before epoch ``k`` began, by epoch ``k - 1``."""
        boundary = self.epochs[k].start
        previous = self.epochs[k - 1]
        lit, start, _ = previous.phase(boundary)
        if start < boundary:
            return lit, start
        # The epoch began on one of the previous epoch's own boundaries: the phase before is the other
        # one; look it up at its middle so that its start comes from the same arithmetic as always.
        length = previous.dark_minutes if lit else previous.light_minutes
        lit, start, _ = previous.phase(max(previous.start, boundary - length / 2.0))
        return lit, start

    def _phase(self, t: float) -> tuple[bool, float, float | None]:
        """(lit, phase start, phase end) at ``t``.

        A later epoch's start ends the phase if the light changes there; where it does not (a change of
        settings that kept the light as it was), the phase runs on into that epoch, and likewise back
        into earlier ones, so a phase is always a maximal stretch of one light state and every boundary
        really flips the light.
        """
        t = _check_number("t", t)
        if t < 0:
            raise ValueError(f"t must be >= 0 minutes since the start, got {t:g}")
        index = 0
        for i, epoch in enumerate(self.epochs):
            if epoch.start <= t:
                index = i
            else:
                break
        lit, start, end = self.epochs[index].phase(t)
        j = index
        while j + 1 < len(self.epochs) and (end is None or end >= self.epochs[j + 1].start):
            following = self.epochs[j + 1]
            if following.lit != lit:
                end = following.start
                break
            end = following.phase(following.start)[2]
            j += 1
        k = index
        while k > 0 and start == self.epochs[k].start:
            before_lit, before_start = self._before(k)
            if before_lit != lit:
                break
            start = before_start
            k -= 1
        return lit, start, end

    def state_at(self, t_minutes_since_start: float) -> tuple[bool, float]:
        """Whether the LEDs are lit at ``t`` and their intensity (0 in the dark).

        A boundary belongs to the phase it starts: at exactly ``light_duration_minutes`` it is dark.
        """
        lit = self._phase(t_minutes_since_start)[0]
        return lit, self.light_intensity if lit else 0.0

    def next_boundary(self, t: float) -> float | None:
        """The first phase change strictly after ``t`` (minutes), or ``None`` if the light never changes."""
        return self._phase(t)[2]

    def phase_start(self, t: float) -> float:
        """When the phase in force at ``t`` began, in minutes since the start."""
        return self._phase(t)[1]

    def retime(
        self,
        now: float,
        light_duration: float | None = None,
        dark_duration: float | None = None,
    ) -> LightDarkCycle:
        """New durations from ``now`` on (``None`` keeps one): the current phase keeps its start and takes
        its new duration, ending at ``now`` if it has already lasted that long.

        ``now`` cannot be before the previous change: the past is not rewritten. Two changes at the same
        instant compose: the second acts on the schedule the first produced.
        """
        now = _check_number("now", now)
        if now < self.epochs[-1].changed_at:
            raise ValueError(
                f"cannot retime at {now:g} min, before the previous change at {self.epochs[-1].changed_at:g} min"
            )
        light, dark = _check_durations(
            self.light_duration_minutes if light_duration is None else light_duration,
            self.dark_duration_minutes if dark_duration is None else dark_duration,
        )
        lit, start, _ = self._phase(now)
        if light == 0 or dark == 0:
            target = light > 0
            switch = target != lit
            new = Epoch(now, target, light, dark, now) if switch else Epoch(start, lit, light, dark, now)
        else:
            switch = now - start >= (light if lit else dark)
            new = Epoch(now, not lit, light, dark, now) if switch else Epoch(start, lit, light, dark, now)
        # Epochs before the new one's start stay as they were; one starting at the same instant is
        # superseded (whatever it said about the moments from its start on is now said by the new one).
        kept = tuple(e for e in self.epochs if e.start < new.start)
        return self._with_epochs((*kept, new))

    def with_intensity(self, light_intensity: float) -> LightDarkCycle:
        """The same schedule at a new intensity (a setting; the job applies it at once if lit)."""
        new = object.__new__(LightDarkCycle)
        new.__attrs_init__(_check_intensity(light_intensity), self.channels, self.epochs)
        return new

    def intensities_at(self, t: float) -> tuple[tuple[str, float], ...]:
        """The intensity each of ``channels`` should have at ``t``."""
        _, intensity = self.state_at(t)
        return tuple((c, intensity) for c in self.channels)

    def decide(self, t: float) -> LedDecision:
        """What the job does at ``t`` (start, a boundary, or a settings change): set, then sleep until next."""
        lit, intensity = self.state_at(t)
        nxt = self.next_boundary(t)
        channels = "/".join(self.channels)
        if nxt is None:
            when = "no further change"
        else:
            when = f"next change at {nxt:g} min"
        message = f"{'light' if lit else 'dark'} phase: LEDs {channels} at {intensity:g} % ({when})"
        intensities = self.intensities_at(t)
        return LedDecision(
            lit=lit,
            intensities=intensities,
            next_boundary_minutes=nxt,
            event=ChangedLedIntensity(message, {"intensities": dict(intensities)}),
        )
