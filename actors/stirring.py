"""The stirring job: spins the stir bar at a target RPM, closed loop on the hall sensor.

Reference names and defaults: ``target_rpm`` (settable, RPM, default 500), ``duty_cycle`` (settable, %,
default 30), ``measured_rpm`` (``{measured_rpm, timestamp}``), ``use_rpm`` (closed loop on/off).
The decisions live in :mod:`actors.stirring_control`; this class only wires them to the context.
"""

from __future__ import annotations

from actors.clock import utc_iso
from actors.job import OTHERS, Job, JobContext
from actors.settings import Setting
from actors.stirring_control import KICK_DUTY, KICK_SECONDS, Step, StirringControl, rpm_from_edges

CHANNEL = "stirring"
MEASURE_EVERY_SECONDS = 5.0  # simulated seconds between RPM estimates (and closed-loop updates)


class Stirring(Job):
    name = "stirring"
    kill_priority = OTHERS
    settings = (
        Setting(name="target_rpm", datatype="float", settable=True, unit="RPM", minimum=0, maximum=5000, default=500.0),
        Setting(name="duty_cycle", datatype="float", settable=True, unit="%", minimum=0, maximum=100, default=30.0),
        Setting(name="measured_rpm", datatype="json"),
        Setting(name="use_rpm", datatype="boolean", startup=True, default=True, description="closed loop on measured RPM"),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        values = ctx.values
        self.control = StirringControl(target_rpm=values["target_rpm"], duty=values["duty_cycle"])
        self.last_count: tuple[int, float] | None = None

    def start(self) -> None:
        self.ctx.acquire("pwm", CHANNEL, self._acquired)

    def _acquired(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(f"cannot drive the stirring motor: {error}")
            return
        self._spin_up()
        self.ctx.ready()
        self.ctx.every(MEASURE_EVERY_SECONDS, self._measure, "measure")

    def _spin_up(self) -> None:
        """Kick at full power briefly to break stiction, then settle to the working duty."""
        if self.control.duty <= 0:
            self.ctx.set_duty(CHANNEL, 0.0)
            return
        self.ctx.set_duty(CHANNEL, KICK_DUTY)
        self.ctx.after(KICK_SECONDS, lambda: self.ctx.set_duty(CHANNEL, self.control.duty), name="kick")
        self.last_count = None

    def _measure(self) -> None:
        self.ctx.read_hall_edges(self._counted)

    def _counted(self, edges: int, at: float) -> None:
        previous, self.last_count = self.last_count, (edges, at)
        if previous is None:
            return
        rpm = rpm_from_edges(previous[0], previous[1], edges, at)
        if rpm is None:
            return
        self.ctx.update("measured_rpm", {"measured_rpm": round(rpm, 1), "timestamp": utc_iso(at)})
        if not self.ctx.values["use_rpm"]:
            return
        step = self.control.on_measurement(rpm, at - previous[1])
        if step.stalled:
            self.ctx.log("WARNING", "stirring stalled (0 RPM): kicking the stir bar")
        self._apply(step)

    def _apply(self, step: Step) -> None:
        self.ctx.update("duty_cycle", round(step.duty, 3))
        if step.kick:
            self._spin_up()
        else:
            self.ctx.set_duty(CHANNEL, step.duty)

    # --- settings hooks --------------------------------------------------------------------------

    def apply_target_rpm(self, value: float) -> float:
        default_duty = self._default_duty()
        self._apply(self.control.retarget(value, default_duty))
        return value

    def apply_duty_cycle(self, value: float) -> float:
        self.control.set_duty(value)
        self.ctx.set_duty(CHANNEL, value)
        return value

    def _default_duty(self) -> float:
        spec = next(s for s in self.settings if s.name == "duty_cycle")
        return float(spec.default)

    # --- lifecycle -------------------------------------------------------------------------------

    def on_sleep(self) -> None:
        self.ctx.set_duty(CHANNEL, 0.0)

    def on_wake(self) -> None:
        self._spin_up()

    def on_stop(self) -> None:
        self.ctx.set_duty(CHANNEL, 0.0)
