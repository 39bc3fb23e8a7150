"""Stirring control, pure: RPM from hall-edge counts, closed-loop duty, start kick and stall recovery.

Reference behaviour: PID on measured RPM (Kp 0.005 %/RPM, output limited to ±7.5 % duty per update),
a 100 % kick on start, and on a stall (0 RPM with a non-zero target) a kick followed by
``min(1.01 * duty, 60 %)`` so recovery cannot spiral to full power. A target change rescales the duty
proportionally at once (RPM is close to linear in duty), and the PID trims from there.
"""

from __future__ import annotations

import attrs

from actors.pid import PID

KICK_DUTY = 100.0
KICK_SECONDS = 0.5
MAX_DUTY_AFTER_STALL = 60.0


def rpm_from_edges(edges_before: int, t_before: float, edges_after: int, t_after: float) -> float | None:
    """One hall edge per revolution; None when no time has passed."""
    dt = t_after - t_before
    if dt <= 0:
        return None
    return max(0, edges_after - edges_before) * 60.0 / dt


@attrs.frozen
class Step:
    """What to do after a measurement: the new duty, and whether to kick first."""

    duty: float
    kick: bool = False
    stalled: bool = False


class StirringControl:
    def __init__(self, target_rpm: float, duty: float, kp: float = 0.005, ki: float = 0.0, kd: float = 0.0) -> None:
        self.duty = duty
        self.pid = PID(kp, ki, kd, setpoint=target_rpm, output_limits=(-7.5, 7.5))

    @property
    def target_rpm(self) -> float:
        return self.pid.setpoint

    def on_measurement(self, rpm: float, dt: float) -> Step:
        if self.target_rpm <= 0:
            self.duty = 0.0
            return Step(duty=0.0)
        if rpm <= 0 and self.duty > 0:
            self.duty = min(1.01 * self.duty, MAX_DUTY_AFTER_STALL)
            self.pid.reset()
            return Step(duty=self.duty, kick=True, stalled=True)
        self.duty = _clamp(self.duty + self.pid.update(rpm, dt))
        return Step(duty=self.duty)

    def retarget(self, target_rpm: float, default_duty: float) -> Step:
        """New target: rescale the duty proportionally (or start from ``default_duty`` when stopped)."""
        old = self.target_rpm
        self.pid.setpoint = target_rpm
        self.pid.reset()
        if target_rpm <= 0:
            self.duty = 0.0
            return Step(duty=0.0)
        if old > 0 and self.duty > 0:
            self.duty = _clamp(self.duty * target_rpm / old)
            return Step(duty=self.duty)
        self.duty = default_duty
        return Step(duty=self.duty, kick=True)

    def set_duty(self, duty: float) -> None:
        self.duty = _clamp(duty)
        self.pid.reset()


def _clamp(duty: float) -> float:
    return max(0.0, min(100.0, duty))
