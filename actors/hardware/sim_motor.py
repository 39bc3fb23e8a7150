"""A simulated stirring fan: a DC motor spinning magnets under the vial, read by a hall sensor.

Pure model, no I/O and no clock: the owner passes ``dt`` to :meth:`StirMotor.advance`. The speed
follows a first-order lag towards a steady state that is linear in PWM duty above a dead band, with
stiction (a stopped motor needs a larger duty to break away than to keep turning) and a ``stalled``
fault knob (a jammed stir bar). Integration is exact for a constant duty, so a run does not depend on
how the owner slices time, and the hall sensor gives one edge per whole revolution.
"""

from __future__ import annotations

import math

import attrs
from actors.validators import finite_non_negative, finite_positive


@attrs.define(kw_only=True)
class StirMotor:
    """Speed model ``tau * rpm' = rpm_ss(duty) - rpm`` with dead band, stiction, saturation, stall."""

    rpm_per_percent: float = attrs.field(default=28.0, validator=finite_positive)
    dead_duty: float = attrs.field(default=12.0, validator=finite_non_negative)
    time_constant: float = attrs.field(default=0.7, validator=finite_positive)
    breakaway_duty: float = attrs.field(default=25.0, validator=finite_non_negative)
    stopped_rpm: float = attrs.field(default=1.0, validator=finite_non_negative)
    max_rpm: float = attrs.field(default=3000.0, validator=finite_positive)

    duty: float = attrs.field(default=0.0, init=False)
    rpm: float = attrs.field(default=0.0, init=False)
    revolutions: float = attrs.field(default=0.0, init=False)
    stalled: bool = attrs.field(default=False, init=False)

    @property
    def stopped(self) -> bool:
        """Below this speed static friction holds the bar: only a breakaway duty can start it."""
        return self.rpm < self.stopped_rpm

    @property
    def hall_edges(self) -> int:
        """Cumulative hall-sensor edges: one per completed revolution."""
        return math.floor(self.revolutions)

    def set_duty(self, duty: float) -> None:
        """Set the PWM duty cycle in percent; out-of-range values are clamped like the real PWM."""
        if math.isnan(duty):
            raise ValueError("duty must be a number, got NaN")
        self.duty = min(100.0, max(0.0, float(duty)))

    def steady_state_rpm(self, duty: float) -> float:
        """Speed the motor would settle at under ``duty``, given its current state (stopped, stalled).

        A sub-breakaway duty whose running speed would be under ``stopped_rpm`` cannot keep the bar
        turning either, so it settles at 0 too; this keeps the model independent of how time is sliced.
        """
        if math.isnan(duty):
            raise ValueError("duty must be a number, got NaN")
        duty = min(100.0, max(0.0, float(duty)))
        if self.stalled:
            return 0.0
        running = min(self.max_rpm, self.rpm_per_percent * max(0.0, duty - self.dead_duty))
        if duty < self.breakaway_duty and (self.stopped or running < self.stopped_rpm):
            return 0.0
        return running

    def advance(self, dt: float) -> None:
        """Move the model ``dt`` seconds forward at the current duty, integrating the lag exactly."""
        if math.isnan(dt) or dt < 0:
            raise ValueError(f"dt must be >= 0, got {dt!r}")
        if not math.isfinite(dt):
            raise ValueError(f"dt must be finite, got {dt!r}")
        if dt == 0:
            return
        target = self.steady_state_rpm(self.duty)
        start = self.rpm
        tau = self.time_constant
        decay = math.exp(-dt / tau)
        rpm = target + (start - target) * decay
        # Rounding must never overshoot: the exact solution moves monotonically from start to target.
        rpm = min(max(start, target), max(min(start, target), rpm))
        # Integral of rpm over the interval, in minutes -> revolutions; -expm1(-x) = 1 - e^-x, accurately.
        turned = (target * dt + (start - target) * tau * -math.expm1(-dt / tau)) / 60.0
        self.rpm = rpm
        self.revolutions += max(0.0, turned)
