"""PWM backends: the only code that sets a duty cycle on a pin. Plain classes, no actors.

Only the PWM driver actor calls a backend. The simulated backend drives a simulated stirring motor
whose hall sensor the driver reads; the pigpio and lgpio backends slot in beside it.
"""

from __future__ import annotations

import math
from typing import Protocol

from actors.clock import Clock
from actors.hardware.description import PWM_PINS
from actors.hardware.sim_motor import StirMotor


class HardwareError(RuntimeError):
    """A PWM/GPIO backend could not do what was asked of the hardware (or its daemon/driver).

    The common base for every real backend's errors, so the PWM driver actor catches one type.
    """


def validate_duty(duty: float) -> float:
    """Refuse (never clamp) an out-of-range duty: it is a caller bug, and a clamped heater or pump
    command would hide it. The driver actor clamps deliberate requests before they get here."""
    try:
        value = float(duty)
    except (TypeError, ValueError) as e:
        raise ValueError(f"duty must be a number of percent, got {duty!r}") from e
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise ValueError(f"duty must be within 0-100 %, got {duty!r}")
    return value


class PwmBackend(Protocol):
    """Duty cycles are percent (0-100) on BCM pin numbers; ``duty`` reads back what the device holds."""

    def set_duty(self, pin: int, duty: float) -> None: ...

    def duty(self, pin: int) -> float: ...

    def hall_edges(self) -> int: ...

    def close(self) -> None: ...


class SimPwmBackend:
    """Pins kept in memory; the stirring pin turns a :class:`StirMotor` advanced by the node clock."""

    def __init__(self, clock: Clock, motor: StirMotor | None = None) -> None:
        self.clock = clock
        self.motor = motor or StirMotor()
        self.duties: dict[int, float] = {}
        self._last = clock.now()

    def _advance(self) -> None:
        now = self.clock.now()
        if now > self._last:
            self.motor.advance(now - self._last)
        self._last = max(self._last, now)

    def set_duty(self, pin: int, duty: float) -> None:
        duty = validate_duty(duty)
        self._advance()
        self.duties[pin] = duty
        if pin == PWM_PINS["stirring"]:
            self.motor.set_duty(duty)

    def duty(self, pin: int) -> float:
        return self.duties.get(pin, 0.0)

    def hall_edges(self) -> int:
        self._advance()
        return self.motor.hall_edges

    def set_fault(self, knob: str, on: bool) -> None:
        if knob != "stalled_motor":
            raise ValueError(f"unknown fault knob {knob!r}; known: stalled_motor")
        self._advance()
        self.motor.stalled = on

    def close(self) -> None:
        for pin in list(self.duties):
            self.set_duty(pin, 0.0)
