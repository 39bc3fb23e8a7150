"""What every PWM backend shares: the :class:`PwmBackend` protocol, :class:`HardwareError` and duty checks.

Only the PWM driver actor calls a backend. The backends themselves live beside this module:
:mod:`~actors.hardware.pigpio_backend` (Pi 1-4, and every simulated unit, whose
:class:`~actors.hardware.sim_device.SimDevice` serves the pigpio protocol) and
:mod:`~actors.hardware.lgpio_backend` (Pi 5). There is deliberately no in-process simulated backend: a sim
unit goes through the same client code as a Pi, so the simulator cannot hide a backend bug.
"""

from __future__ import annotations

import math
from typing import Protocol


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
