"""A discrete PID controller shared by stirring and the thermostat.

Pure: no clock, no I/O. The caller passes the elapsed ``dt`` with each measurement, so the same code runs
at any time scale and in tests. Design choices, each to avoid a known failure of naive PIDs:

* the derivative acts on the measurement, not the error, so a setpoint change gives no output kick;
* the integral is held as the integral *term* (``ki`` already applied, in output units) and clamped to
  ``integral_limits``, so it cannot wind up while the output is saturated, and retuning ``ki`` does not
  make the output jump;
* the output is clamped to ``output_limits`` (e.g. 0..100 % duty).
"""

from __future__ import annotations

import math

import attrs

Limits = tuple[float | None, float | None]


def _check_limits(instance: object, attribute: attrs.Attribute, value: Limits) -> None:
    low, high = value
    if low is not None and high is not None and low > high:
        raise ValueError(f"{attribute.name}: lower limit {low!r} is above upper limit {high!r}")


def _clamp(value: float, limits: Limits) -> float:
    low, high = limits
    if low is not None and value < low:
        return float(low)
    if high is not None and value > high:
        return float(high)
    return value


@attrs.define
class PID:
    """``output = kp*e + ki*integral(e dt) - kd*d(measurement)/dt`` with ``e = setpoint - measurement``."""

    kp: float
    ki: float
    kd: float
    setpoint: float
    output_limits: Limits = attrs.field(default=(None, None), converter=tuple, validator=_check_limits)
    integral_limits: Limits = attrs.field(default=(None, None), converter=tuple, validator=_check_limits)

    _integral: float = attrs.field(default=0.0, init=False)
    _last_measurement: float | None = attrs.field(default=None, init=False)
    _components: tuple[float, float, float] = attrs.field(default=(0.0, 0.0, 0.0), init=False)

    @property
    def integral(self) -> float:
        """The current integral term (output units, after clamping)."""
        return self._integral

    @property
    def components(self) -> tuple[float, float, float]:
        """The (P, I, D) terms of the last update, for logging and tuning."""
        return self._components

    def update(self, measurement: float, dt: float) -> float:
        """Feed one measurement taken ``dt`` seconds after the previous one; return the new output."""
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be finite and > 0, got {dt!r}")
        if not math.isfinite(measurement):
            # A NaN would poison the integral for good; refuse it instead.
            raise ValueError(f"measurement must be finite, got {measurement!r}")
        error = self.setpoint - measurement
        p = self.kp * error
        self._integral = _clamp(self._integral + self.ki * error * dt, self.integral_limits)
        if self._last_measurement is None:
            d = 0.0
        else:
            d = -self.kd * (measurement - self._last_measurement) / dt
        self._last_measurement = measurement
        self._components = (p, self._integral, d)
        return _clamp(p + self._integral + d, self.output_limits)

    def reset(self) -> None:
        """Forget the integral and the previous measurement (e.g. after the job sleeps)."""
        self._integral = 0.0
        self._last_measurement = None
        self._components = (0.0, 0.0, 0.0)
