"""How a dosing automation turns "exchange X ml" into pump runs (pioreactor.md §3.2 "How dosing executes").

Pure: no clock, no I/O, no pumps. :func:`plan_exchange` returns the ordered list of pump runs and pauses;
the dosing actor executes it one step at a time, checking the books before every addition with
:func:`first_unsafe_step`. Keeping the plan a value makes the order, the totals and the overflow checks
testable without a pump in sight.

The order, the reference's:

1. Waste must cover the additions (``waste >= media + alt media``): an exchange never adds more than it
   takes out. Fed-batch, which only adds, asks for that explicitly (``allow_net_addition=True``).
2. If the additions exceed ``max_subdose`` (1 ml), the whole exchange (media, alt media *and* waste) is
   halved, and each half halved again, until one piece fits. Small pieces keep the peak volume at
   ``volume + max_subdose`` whatever the exchange, so a 5 ml exchange in an 18 ml-max vial at 15 ml is safe.
3. Each piece: media, pause, alt media, pause (so the drop mixes before waste pulls liquid out), then the
   piece's waste, then the piece's *extra* waste ``waste * waste_removal_multiplier``. The extra run sucks
   air once the level is at the needle, which pins the volume at the efflux level whatever the pumps'
   calibration errors. Pieces are separated by a pause.

Why halving and not ``ceil(total / max_subdose)`` equal parts: halving is what the reference does, and in
binary floating point ``x / 2**k`` is exact, so every piece is exactly ``x / 2**k`` and ``2**k`` pieces
sum to ``x`` exactly (``math.fsum`` of the pieces is the request, bit for bit). Equal parts of ``x / n``
for ``n`` not a power of two round, and the remainder would have to be patched into one piece. The price:
pieces are between ``max_subdose / 2`` and ``max_subdose``, so up to twice as many as strictly needed.
"""

from __future__ import annotations

import math
from fractions import Fraction
from collections.abc import Sequence
from typing import Literal

import attrs

Pump = Literal["media", "alt_media", "waste"]
PUMPS: tuple[str, ...] = ("media", "alt_media", "waste")

MAX_SUBDOSE_ML = 1.0
WASTE_REMOVAL_MULTIPLIER = 2.0
PAUSE_BETWEEN_SUBDOSES_S = 5.0
MAX_PIECES = 1024
"""Refuse plans that would split into more pieces than this: such an exchange is a typo, not a dose."""
_WASTE_SLACK = 1e-9
"""Relative slack on ``waste >= additions``: ``v*f + v*(1-f)`` can round a hair above ``v``."""


@attrs.frozen
class Dose:
    """Run ``pump`` until it has moved ``ml``. ``extra`` marks the pinning waste run after an exchange."""

    pump: Pump
    ml: float
    extra: bool = False

    @property
    def adds(self) -> bool:
        """True for media and alt media: the steps that can raise the level."""
        return self.pump != "waste"


@attrs.frozen
class Pause:
    """Wait ``seconds`` with every pump off (mixing time between sub-doses)."""

    seconds: float


Step = Dose | Pause


def _check_ml(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise ValueError(f"{name} must be a number of ml, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite volume, got {value!r}")
    if value < 0:
        raise ValueError(
            f"{name} is negative ({value:g} ml); volumes are amounts to pump and must be >= 0 "
            "(to take liquid out, ask for waste, not a negative addition)"
        )
    return float(value)


def _pieces(additions: float, max_subdose: float) -> int:
    """How many halvings-worth of pieces the reference recursion would produce: a power of two."""
    pieces = 1
    # Dividing by a power of two is exact, so this tests exactly what the recursion tests at each depth.
    while additions / pieces > max_subdose:
        pieces *= 2
        if pieces > MAX_PIECES:
            raise ValueError(
                f"an exchange adding {additions:g} ml would need more than {MAX_PIECES} sub-doses of at most "
                f"{max_subdose:g} ml; ask for a smaller exchange or raise max_subdose"
            )
    return pieces


def _split(ml: float, pieces: int) -> list[float]:
    """``pieces`` parts of ``ml`` whose exact sum is ``ml``.

    ``pieces`` is a power of two, so ``ml / pieces`` is exact and all parts are equal, except for
    subnormal volumes (below 1e-308 ml, where halving drops bits); there the last part takes the
    remainder, computed exactly.
    """
    part = ml / pieces
    if part * pieces == ml:
        return [part] * pieces
    # Exact rational remainder: float arithmetic is not (``part * (pieces - 1)`` and ``ml - part`` can land
    # in a coarser binade and round). The remainder is a multiple of the smallest subnormal and tiny, so
    # it converts back to a float exactly.
    rest = float(Fraction(ml) - (pieces - 1) * Fraction(part))
    return [part] * (pieces - 1) + [rest]


def plan_exchange(
    media_ml: float,
    alt_media_ml: float,
    waste_ml: float,
    max_subdose: float = MAX_SUBDOSE_ML,
    waste_removal_multiplier: float = WASTE_REMOVAL_MULTIPLIER,
    *,
    pause_between_subdoses_s: float = PAUSE_BETWEEN_SUBDOSES_S,
    allow_net_addition: bool = False,
) -> list[Step]:
    """The pump runs and pauses for one exchange, in execution order. Zero-volume runs are left out.

    Raises ``ValueError`` for negative or non-finite volumes, for waste that does not cover the additions
    (unless ``allow_net_addition``), and for settings that cannot make a plan.
    """
    media_ml = _check_ml("media_ml", media_ml)
    alt_media_ml = _check_ml("alt_media_ml", alt_media_ml)
    waste_ml = _check_ml("waste_ml", waste_ml)
    if not (math.isfinite(max_subdose) and max_subdose > 0):
        raise ValueError(f"max_subdose must be a finite volume > 0 ml, got {max_subdose!r}")
    if not (math.isfinite(waste_removal_multiplier) and waste_removal_multiplier >= 0):
        raise ValueError(
            f"waste_removal_multiplier must be finite and >= 0, got {waste_removal_multiplier!r}"
        )
    if not (math.isfinite(pause_between_subdoses_s) and pause_between_subdoses_s >= 0):
        raise ValueError(
            f"pause_between_subdoses_s must be finite and >= 0, got {pause_between_subdoses_s!r}"
        )
    additions = media_ml + alt_media_ml
    if not allow_net_addition and waste_ml < additions * (1.0 - _WASTE_SLACK):
        raise ValueError(
            f"waste_ml={waste_ml:g} does not cover the additions ({media_ml:g} media + {alt_media_ml:g} alt "
            f"media = {additions:g} ml); an exchange must remove at least what it adds, so send "
            f"waste_ml >= {additions:g}"
        )
    pieces = _pieces(additions, max_subdose)
    extra_ml = waste_ml * waste_removal_multiplier
    media_parts = _split(media_ml, pieces)
    alt_parts = _split(alt_media_ml, pieces)
    waste_parts = _split(waste_ml, pieces)
    extra_parts = _split(extra_ml, pieces)
    steps: list[Step] = []
    for index in range(pieces):
        piece: list[Step] = []
        if media_parts[index] > 0:
            piece += [Dose("media", media_parts[index]), Pause(pause_between_subdoses_s)]
        if alt_parts[index] > 0:
            piece += [Dose("alt_media", alt_parts[index]), Pause(pause_between_subdoses_s)]
        if waste_parts[index] > 0:
            piece.append(Dose("waste", waste_parts[index]))
        if extra_parts[index] > 0:
            piece.append(Dose("waste", extra_parts[index], extra=True))
        if steps and piece:
            steps.append(Pause(pause_between_subdoses_s))
        steps.extend(piece)
    # Zero-second pauses say nothing; drop them so a plan with no pause setting is just the pump runs.
    return [s for s in steps if not (isinstance(s, Pause) and s.seconds == 0)]


def totals(steps: Sequence[Step]) -> dict[str, float]:
    """Exact (``math.fsum``) millilitres per pump; extra waste is reported under ``"extra_waste"``."""
    parts: dict[str, list[float]] = {"media": [], "alt_media": [], "waste": [], "extra_waste": []}
    for step in steps:
        if isinstance(step, Dose):
            parts["extra_waste" if step.extra else step.pump].append(step.ml)
    return {name: math.fsum(values) for name, values in parts.items()}


def _check_level(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite volume >= 0 ml, got {value!r}")
    return float(value)


def volume_after_step(current_ml: float, step: Step, efflux_ml: float | None) -> float:
    """The level after one step: additions add, waste drains to the efflux level (never below it).

    ``efflux_ml=None`` means the needle's level is unknown, so waste is assumed to remove nothing: the
    worst case for overflow.
    """
    if isinstance(step, Pause):
        return current_ml
    if step.adds:
        return current_ml + step.ml
    if efflux_ml is None or current_ml <= efflux_ml:
        return current_ml
    return max(efflux_ml, current_ml - step.ml)


def volume_trajectory(current_ml: float, steps: Sequence[Step], efflux_ml: float | None) -> list[float]:
    """The projected level after each step (same length as ``steps``)."""
    level = _check_level("current volume", current_ml)
    if efflux_ml is not None:
        _check_level("efflux volume", efflux_ml)
    out = []
    for step in steps:
        level = volume_after_step(level, step, efflux_ml)
        out.append(level)
    return out


def project_volume(current_ml: float, steps: Sequence[Step], efflux_ml: float | None) -> float:
    """The projected level once every step has run (``current_ml`` for an empty plan)."""
    trajectory = volume_trajectory(current_ml, steps, efflux_ml)
    return trajectory[-1] if trajectory else _check_level("current volume", current_ml)


def first_unsafe_step(
    current_ml: float,
    steps: Sequence[Step],
    max_fill_ml: float,
    *,
    efflux_ml: float | None = None,
    calibration_margin: float = 0.0,
) -> int | None:
    """Index of the first addition after which the projected level would reach ``max_fill_ml``; else None.

    "Reach", as the reference: a step is safe only if the level stays strictly below the max fill. The
    dosing actor calls this before each addition with the books' current volume and the remaining steps,
    and goes to sleep instead of running an unsafe one. ``calibration_margin`` (e.g. 0.1) judges each
    addition by its worst case, a pump delivering that much more than its calibration says. Without
    ``efflux_ml`` waste is assumed to remove nothing (see :func:`volume_after_step`).
    """
    level = _check_level("current volume", current_ml)
    if not (math.isfinite(max_fill_ml) and max_fill_ml > 0):
        raise ValueError(f"max_fill_ml must be a finite volume > 0 ml, got {max_fill_ml!r}")
    if not (math.isfinite(calibration_margin) and calibration_margin >= 0):
        raise ValueError(f"calibration_margin must be finite and >= 0, got {calibration_margin!r}")
    if efflux_ml is not None:
        _check_level("efflux volume", efflux_ml)
    for index, step in enumerate(steps):
        if isinstance(step, Dose) and step.adds:
            if level + step.ml * (1.0 + calibration_margin) >= max_fill_ml:
                return index
        level = volume_after_step(level, step, efflux_ml)
    return None
