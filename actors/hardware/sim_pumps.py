"""A simulated peristaltic pump: flow from PWM duty, a per-pump gain error, and two fault modes.

Pure model, no I/O and no clock. hardware.md §4.2::

    Q(d) = Q_100 * (1 + gain_error) * g(d)        g(d) = max(0, (d - d_0) / (100 - d_0)),  g(100) = 1

``Q_100`` is the *nominal* flow at 100 % duty (Pioreactor's default calibration, 0.0911 ml/s); the gain
error is how far this particular pump and tubing are from it, drawn once from the seed (uniform within
+-``max_gain_error``, 8 % by default, inside the reference's 5-10 %). It is the error a calibration exists
to remove, and the reason volume guards need a margin. Below the dead duty ``d_0`` the motor cannot turn
the rollers. The model is linear in duty between ``d_0`` and 100 %; Pioreactor calibrates at 100 %.

Faults: ``stuck_on`` (a welded driver or a PWM left running by a crashed client: full flow whatever the
duty) and ``clogged`` (no flow whatever the duty). If both are set, the clog wins: nothing can pass.
"""

from __future__ import annotations

import math
import random

import attrs
from actors.validators import finite_positive

DEFAULT_ML_PER_SECOND = 0.0911
"""Pioreactor's default calibration at 100 % duty (actions/pump.py ``get_default_calibration``)."""


def _gain_error(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value > -1.0):
        raise ValueError(f"{attribute.name} must be finite and > -1 (a fraction), got {value!r}")


def _dead_duty(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value < 100):
        raise ValueError(f"{attribute.name} must be in [0, 100), got {value!r}")


def _fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen(kw_only=True)
class PumpParams:
    """What a family of pumps shares; each pump draws its own gain error from these."""

    ml_per_second_at_100: float = attrs.field(default=DEFAULT_ML_PER_SECOND, validator=finite_positive)
    dead_duty: float = attrs.field(default=10.0, validator=_dead_duty)
    max_gain_error: float = attrs.field(default=0.08, validator=_fraction)


@attrs.define
class SimPump:
    """One pump. ``flow_ml`` is a pure query: the owner adds or removes the liquid it returns."""

    name: str
    ml_per_second_at_100: float = attrs.field(default=DEFAULT_ML_PER_SECOND, validator=finite_positive)
    gain_error: float = attrs.field(default=0.0, validator=_gain_error)
    dead_duty: float = attrs.field(default=10.0, kw_only=True, validator=_dead_duty)
    stuck_on: bool = attrs.field(default=False, kw_only=True)
    clogged: bool = attrs.field(default=False, kw_only=True)

    @classmethod
    def from_rng(cls, name: str, rng: random.Random, params: PumpParams | None = None) -> SimPump:
        """A pump whose gain error is drawn from ``rng`` (one uniform draw)."""
        params = params or PumpParams()
        gain_error = rng.uniform(-params.max_gain_error, params.max_gain_error)
        return cls(
            name,
            ml_per_second_at_100=params.ml_per_second_at_100,
            gain_error=gain_error,
            dead_duty=params.dead_duty,
        )

    @property
    def actual_ml_per_second_at_100(self) -> float:
        """The true flow at full duty: what a perfect calibration of this pump would measure."""
        return self.ml_per_second_at_100 * (1.0 + self.gain_error)

    def relative_flow(self, duty: float) -> float:
        """``g(d)``: 0 up to the dead duty, then linear to 1 at 100 %. Duty is clamped like the PWM."""
        if math.isnan(duty):
            raise ValueError("duty must be a number, got NaN")
        duty = min(100.0, max(0.0, float(duty)))
        return max(0.0, (duty - self.dead_duty) / (100.0 - self.dead_duty))

    def flow_ml_per_second(self, duty: float) -> float:
        """The flow this pump delivers at ``duty``, faults included."""
        g = self.relative_flow(duty)
        if self.clogged:
            return 0.0
        if self.stuck_on:
            return self.actual_ml_per_second_at_100
        return self.actual_ml_per_second_at_100 * g

    def flow_ml(self, duty: float, dt: float) -> float:
        """Millilitres moved in ``dt`` seconds at a constant ``duty``."""
        if not (math.isfinite(dt) and dt >= 0):
            raise ValueError(f"dt must be finite and >= 0, got {dt!r}")
        return self.flow_ml_per_second(duty) * dt
