"""One pump action as arithmetic: which run a request means, and what to publish as it goes. Pure.

The pump jobs (:mod:`actors.pumps`) are a thin shell over this module: they turn a user's options into a
:class:`PumpPlan` with :func:`plan_pump_action` (the same call refuses bad requests up front), drive the
PWM channel on the node clock, and ask a :class:`Ledger` which dosing events to publish at each tick and
when stopped.

Publishing, and why it is exact:

* A run publishes a dosing event per sub-chunk of ``CHUNK_SECONDS`` (0.5 s) of pumping, so a pump
  stopped midway has published what it moved up to its last chunk, and the stop publishes the rest.
* What a pump has moved after ``t`` seconds on is :meth:`PumpPlan.volume_at` ``(t)``: the requested total
  spread evenly over the run for a fixed run (``--ml`` or ``--duration``), the calibrated rate times
  ``t`` for a continuous one. Each value is correctly rounded from the exact rational product.
* Each published chunk is ``volume_at(b) - volume_at(a)`` between two sample points ``a < b``. The sample
  points are the chunk grid ``h, 2h, 3h...`` (then the stop time), so for every chunk but the first
  ``b <= 2a``, and the volumes obey the same bound. By Sterbenz's lemma such a float difference is exact,
  so the chunks telescope: their exact sum (``math.fsum``) is ``volume_at(last sample)``, the requested
  ``ml`` bit for bit for a finished fixed run, and the moved volume for a stopped one. Several late ticks
  are published as several chunks, never merged, to keep that bound.

Circulation (``circulate_media``): waste runs the whole time while media is pulsed for a fraction of each
one-second period, so media comes in more slowly than waste goes out and the level stays pinned at the
efflux tube. The reference's fraction is 0.85; with real calibrations of both pumps it is scaled by the
ratio of their rates so the margin holds for the pumps actually fitted.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import attrs

from actors.calibrations import PumpCalibration, is_default, poly_eval, pump_ml_to_seconds, pump_seconds_to_ml

CHUNK_SECONDS = 0.5
"""Pumping time per published dosing event (the reference's sub-chunk)."""
DEFAULT_SOURCE_OF_EVENT = "CLI"
"""The reference's default ``source_of_event`` for a pump run from the command line."""
CALIBRATION_SOURCE = "pump_calibration"
"""Runs into a beaker while calibrating: the vial's books ignore them, and the max-fill check does too."""
CIRCULATION_PERIOD_S = 1.0
DEFAULT_MEDIA_FRACTION = 0.85
"""Seconds of media per second of waste while circulating (the reference's default)."""
MAX_MEDIA_FRACTION = 0.95
"""Never pulse media more than this, whatever the calibrations say: keeps waste ahead of media."""

Mode = Literal["ml", "duration", "continuously"]
ADDING_EVENTS = ("add_media", "add_alt_media")


def _fmt(x: float) -> str:
    return f"{x:g}"


def _amount(name: str, value: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"--{name} {value!r} is not a finite number; send a number of {unit} >= 0")
    if value < 0:
        raise ValueError(f"--{name} {_fmt(value)} is negative; send a number of {unit} >= 0")
    return float(value)


def choose_mode(ml: float | None, duration: float | None, continuously: bool) -> Mode:
    """Which of the three ways to run a pump was asked for; exactly one must be."""
    given = [name for name, on in (("--ml", ml is not None), ("--duration", duration is not None), ("--continuously", continuously)) if on]
    if len(given) != 1:
        what = "none was given" if not given else f"got {' and '.join(given)}"
        raise ValueError(f"give exactly one of --ml <ml>, --duration <seconds> or --continuously ({what})")
    if ml is not None:
        _amount("ml", ml, "ml")
        return "ml"
    if duration is not None:
        _amount("duration", duration, "seconds")
        return "duration"
    return "continuously"


def ml_per_second(cal: PumpCalibration) -> float:
    """The calibration's average flow over the range it recorded (1 s for the default, which is linear
    through 0): what a continuous run or a circulation books per second of pumping."""
    span = max(cal.recorded_x) if cal.recorded_x else 1.0
    rate = poly_eval(cal.curve, span) / span
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"calibration {cal.name!r} of {cal.device} gives no positive flow; recalibrate it")
    return rate


@attrs.frozen(kw_only=True)
class PumpPlan:
    """One run: ``seconds`` of pumping (None: until stopped) moving ``ml`` (None when continuous) at duty
    ``duty`` %; ``rate`` is ml per second for continuous runs."""

    mode: Mode
    seconds: float | None
    ml: float | None
    rate: float
    duty: float
    source_of_event: str

    def volume_at(self, on_seconds: float) -> float:
        """Millilitres moved after ``on_seconds`` of pumping (clamped to the run)."""
        t = max(0.0, float(on_seconds))
        if self.seconds is None:
            return float(Fraction(self.rate) * Fraction(t))
        if self.seconds == 0 or self.ml is None:
            return 0.0
        t = min(t, self.seconds)
        return float(Fraction(self.ml) * Fraction(t) / Fraction(self.seconds))


def continuous_inflow_problem(device: str, event: str, cal: PumpCalibration) -> str | None:
    if event in ADDING_EVENTS and is_default(cal):
        return (
            f"continuous {event} needs a pump calibration of {device} to know when the vial reaches its max fill; "
            f"calibrate it first with `pio calibrations run --device {device}` and make it active "
            "(or use --duration, which works without one)"
        )
    return None


def plan_pump_action(
    *,
    device: str,
    event: str,
    cal: PumpCalibration,
    max_fill_ml: float,
    ml: float | None = None,
    duration: float | None = None,
    continuously: bool = False,
    source_of_event: str = DEFAULT_SOURCE_OF_EVENT,
    duty_cycle: float | None = None,
) -> PumpPlan:
    """The run a request means, or ``ValueError`` saying what to send instead.

    Refuses: not exactly one of ml / duration / continuously; negative or non-finite amounts; ``ml`` (and
    continuous inflow) on the default calibration; an addition larger than the vial's max fill (a beaker
    under calibration excepted); a duty override together with ``ml`` (the calibration holds only at its
    own duty).
    """
    mode = choose_mode(ml, duration, continuously)
    duty = cal.dc
    if duty_cycle is not None:
        if not (math.isfinite(duty_cycle) and 0 < duty_cycle <= 100):
            raise ValueError(f"--duty-cycle {duty_cycle!r} is out of range; send a number in (0, 100]")
        if mode == "ml":
            raise ValueError(
                f"--duty-cycle cannot be combined with --ml: calibration {cal.name!r} holds at {cal.dc:g} %; "
                "drop --duty-cycle, or use --duration"
            )
        duty = float(duty_cycle)
    into_vial = event in ADDING_EVENTS and source_of_event != CALIBRATION_SOURCE
    if mode == "continuously":
        problem = continuous_inflow_problem(device, event, cal)
        if problem:
            raise ValueError(problem)
        return PumpPlan(mode=mode, seconds=None, ml=None, rate=ml_per_second(cal), duty=duty, source_of_event=source_of_event)
    if mode == "ml":
        assert ml is not None
        if into_vial and ml > max_fill_ml:
            raise ValueError(
                f"--ml {_fmt(ml)} is more than the vial can take (max fill {_fmt(max_fill_ml)} ml); send at most {_fmt(max_fill_ml)}"
            )
        seconds = pump_ml_to_seconds(cal, ml) if ml > 0 else 0.0
        return PumpPlan(mode=mode, seconds=seconds, ml=ml, rate=ml_per_second(cal), duty=duty, source_of_event=source_of_event)
    assert duration is not None
    moved = pump_seconds_to_ml(cal, duration)
    if into_vial and moved > max_fill_ml:
        raise ValueError(
            f"--duration {_fmt(duration)} would add about {moved:.3g} ml, more than the vial can take (max fill "
            f"{_fmt(max_fill_ml)} ml); send a shorter duration"
        )
    return PumpPlan(mode=mode, seconds=float(duration), ml=moved, rate=ml_per_second(cal), duty=duty, source_of_event=source_of_event)


def grid_point(k: int, chunk_seconds: float = CHUNK_SECONDS) -> float:
    return k * chunk_seconds


@attrs.define
class Ledger:
    """What one pump of a run has published, and what to publish next.

    ``volume_at`` is the plan's moved-volume function of on-time; ``end`` is the on-time at which the run
    ends (None: open). Sample points are the chunk grid up to ``end``; a stop adds its own time.
    """

    plan: PumpPlan
    chunk_seconds: float = CHUNK_SECONDS
    end: float | None = None
    sampled_at: float = 0.0
    published_ml: float = 0.0
    chunks: int = 0
    closed: bool = False

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.chunk_seconds) and self.chunk_seconds > 0):
            raise ValueError(f"chunk_seconds must be > 0, got {self.chunk_seconds!r}")
        if self.end is None and self.plan.seconds is not None:
            self.end = self.plan.seconds

    def _advance(self, t: float) -> float:
        volume = self.plan.volume_at(t)
        chunk = volume - self.published_ml  # exact (module docstring)
        self.sampled_at, self.published_ml = t, volume
        return chunk

    def due(self, on_seconds: float) -> list[float]:
        """The chunks whose grid points (capped at the end) have passed by ``on_seconds`` of pumping."""
        if self.closed:
            return []
        out = []
        limit = on_seconds if self.end is None else min(on_seconds, self.end)
        while True:
            nxt = grid_point(self.chunks + 1, self.chunk_seconds)
            if self.end is not None:
                nxt = min(nxt, self.end)
            if nxt > limit or nxt <= self.sampled_at:
                if self.end is not None and self.sampled_at >= self.end:
                    self.closed = True
                break
            self.chunks += 1
            out.append(self._advance(nxt))
        return [c for c in out if c > 0]

    def stop(self, on_seconds: float) -> list[float]:
        """Every chunk still owed when the pump stops after ``on_seconds`` on: grid chunks, then the part
        since the last grid point. The ledger is closed afterwards (later calls return nothing)."""
        if self.closed:
            return []
        t = max(0.0, on_seconds if self.end is None else min(on_seconds, self.end))
        out = self.due(t)
        if not self.closed and t > self.sampled_at:
            out += [c for c in [self._advance(t)] if c > 0]
        self.closed = True
        return out

    def finish(self) -> list[float]:
        """The rest of a run that reached its end (a fixed run's planned seconds)."""
        assert self.end is not None, "an open run ends with stop(on_seconds)"
        return self.stop(self.end)


def inflow_seconds_left(projected_ml: float, max_fill_ml: float, rate: float) -> float:
    """How many more seconds continuous inflow may run before the vial reaches its max fill by the books
    (0 when it is there already)."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be > 0 ml/s, got {rate!r}")
    return max(0.0, (max_fill_ml - projected_ml) / rate)


def projected_volume(start_books_ml: float, latest_books_ml: float | None, moved_ml: float) -> float:
    """The vial's volume as a continuous inflow sees it: the books, or the books at the start plus what this
    run has moved if the books have not caught up yet (the monitor lags, or does not run)."""
    own = start_books_ml + moved_ml
    return own if latest_books_ml is None else max(own, latest_books_ml)


# -- circulation -------------------------------------------------------------------------------------------


def media_fraction(media: PumpCalibration, waste: PumpCalibration) -> float:
    """Seconds of media per second of waste: 0.85, scaled by the waste/media rate ratio when both pumps
    are really calibrated, never above :data:`MAX_MEDIA_FRACTION`."""
    if is_default(media) or is_default(waste):
        return DEFAULT_MEDIA_FRACTION
    scaled = DEFAULT_MEDIA_FRACTION * ml_per_second(waste) / ml_per_second(media)
    return min(MAX_MEDIA_FRACTION, scaled)


@attrs.frozen(kw_only=True)
class CirculationPlan:
    """``duration`` seconds of waste with media pulsed on for ``fraction`` of each ``period``."""

    duration: float
    fraction: float
    period: float = CIRCULATION_PERIOD_S

    def __attrs_post_init__(self) -> None:
        _amount("duration", self.duration, "seconds")
        if not (0 < self.fraction <= 1) or not (self.period > 0):
            raise ValueError(f"fraction must be in (0, 1] and period > 0, got {self.fraction!r}, {self.period!r}")

    def media_on_seconds(self, t: float) -> float:
        """Seconds media has been on after ``t`` seconds of circulation."""
        t = min(max(0.0, t), self.duration)
        k = math.floor(t / self.period)
        return k * self.pulse + min(t - k * self.period, self.pulse_in(k))

    @property
    def pulse(self) -> float:
        """Seconds media is on in each full period."""
        return self.fraction * self.period

    def pulse_in(self, k: int) -> float:
        """Seconds media is on in period ``k``: a last, shorter period gets the same fraction of its own
        length, so media stays behind waste however short the circulation."""
        rest = self.duration - k * self.period
        return self.pulse if rest >= self.period else self.fraction * max(0.0, rest)

    def edges(self) -> list[tuple[float, bool]]:
        """``(time, media on?)`` switching times from the start; the last one turns media off."""
        out: list[tuple[float, bool]] = []
        k = 0
        while k * self.period < self.duration:
            start = k * self.period
            out.append((start, True))
            out.append((start + self.pulse_in(k), False))
            k += 1
        return out

    @property
    def media_seconds(self) -> float:
        return self.media_on_seconds(self.duration)
