"""``temperature_automation``: the heater, the liquid temperature inferred from the plate, and a policy.

``pio run temperature_automation --automation-name thermostat --target-temperature 37``

The job holds the PWM channel ``heater`` and follows the reference cadence, as data
(:class:`actors.automations.temperature.thermostat.TemperatureCycle`): every 200 s (225 s on the 20 ml
v1.0) the heater goes off, the plate is read 21 (29) times 5 s apart, the liquid temperature is inferred
from how the plate cools (:mod:`actors.temperature_inference`) and published as ``temperature``
``{temperature, timestamp}``; then the policy decides the heater duty for the rest of the period, which
is published as ``heater_duty_cycle`` (read-only). The heater's safety tiers (reduce, disable, shutdown
and the hard duty cap) are the PWM driver's; this job only asks.

Heat is never restored by a job that is not running: sleep and stop put the heater at 0 and drop the
cycle in progress (its readings and its pending inference); waking starts a fresh cycle, so the heater
stays off until the next inference decides again. A fit the inference flags as poor is logged and not
published, and the duty stays as it was; a window with too few readings turns the heater off until the
next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.automations.base import AutomationJob, automation_class
from actors.automations.temperature.thermostat import TemperatureCycle, TemperaturePolicy
from actors.clock import utc_iso
from actors.hardware.hardware_access import node_description
from actors.hardware.safety import HeaterLimits
from actors.job import HEATING, JobContext
from actors.messages import NodeConfig
from actors.settings import Setting, SettingError
from actors.temperature_inference import MIN_READINGS, Heating, infer_liquid_temperature

HEATER = "heater"
CYCLE_TIMER = "cycle"


def heater_limits(node: NodeConfig) -> tuple[HeaterLimits, str, str]:
    """The vessel model's heater limits, name and version (from the node's hardware description)."""
    desc = node_description(node)
    s = desc.safety
    limits = HeaterLimits(s.heater_reduce_above_c, s.heater_disable_above_c, s.heater_shutdown_above_c)
    return limits, desc.model.name, desc.model.version


class TemperatureAutomation(AutomationJob):
    name = "temperature_automation"
    family = "temperature"
    kill_priority = HEATING
    settings = AutomationJob.settings + (
        Setting(name="temperature", datatype="json", description="inferred liquid temperature {temperature, timestamp}"),
        Setting(name="heater_duty_cycle", datatype="float", unit="%", description="heater duty of the heating phase"),
    )

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        super().check(values, node)
        policy = automation_class(cls.family, values, node)
        given = {p.name: values[p.name] for p in policy.PARAMETERS if values.get(p.name) is not None}
        try:  # the policy's own checks, before the heater is touched
            policy.from_parameters(given, heater_limits(node)[0])
        except (TypeError, ValueError) as e:
            raise SettingError(str(e)) from None

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        limits, model, version = heater_limits(ctx.node)
        self.cycle = TemperatureCycle.for_model(model, version)
        self.policy: TemperaturePolicy = self.policy_class.from_parameters(self.parameters(), limits)
        self.duty = 0.0  # the heating phase's duty, as asked of the driver
        self.generation = 0  # one per cycle; replies and timers of an abandoned cycle are dropped
        self.readings: list[tuple[float, float]] = []
        self.heating: Heating | None = None  # how the heater ran before the current window, when known
        self.active = False
        self.stirring_state: str | None = None
        self.warned_stirring = False

    # --- start ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.ctx.acquire("pwm", HEATER, self._acquired)

    def _acquired(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(f"cannot drive the heater: {error}")
            return
        note = getattr(self.policy, "target_note", None)
        if note:
            self.ctx.log("WARNING", note)
            self.ctx.update("target_temperature", self.policy.target_temperature)  # type: ignore[attr-defined]
        self._set_heater(0.0)
        self.ctx.subscribe(self.ctx.topic("stirring", "$state"), self._stirring)
        self.ctx.ready()
        self._resume()

    def _resume(self) -> None:
        self.active = True
        self.heating = None
        self._new_cycle()
        self.ctx.every(self.cycle.period_s, self._new_cycle, CYCLE_TIMER)

    def _stirring(self, _topic: str, payload: str) -> None:
        self.stirring_state = payload
        if payload == "ready":
            self.warned_stirring = False

    # --- the cycle --------------------------------------------------------------------------------------

    def _new_cycle(self) -> None:
        self.generation += 1
        generation = self.generation
        if self.duty > 0:
            self.heating = Heating(duty_pct=self.duty, seconds=self.cycle.on_duration_s)
        self.readings = []
        self.ctx.set_duty(HEATER, 0.0)  # the window: the plate cools so the liquid can be inferred
        for step in self.cycle.steps(0.0):
            if step.action == "read_plate":
                self.ctx.after(step.at_s, lambda g=generation: self._read(g), name=f"read-{step.index}")
            elif step.action == "infer_and_heat":
                self.ctx.after(step.at_s, lambda g=generation: self._infer_and_heat(g), name="infer")

    def _read(self, generation: int) -> None:
        if generation != self.generation:
            return
        asked = self.ctx.clock.now()
        self.ctx.read_temperature(lambda celsius, error: self._plate(generation, asked, celsius, error))

    def _plate(self, generation: int, asked: float, celsius: float | None, error: str | None) -> None:
        if generation != self.generation or not self.active:
            return
        if celsius is None:
            self.ctx.log("WARNING", f"heater plate reading failed: {error}")
            return
        # The sensor was read between the request and the reply; the midpoint is the best guess of when.
        # A reply that is not later than the previous one (replies reordered, or bunched behind a stall)
        # cannot be placed in time: drop it rather than feed the fit a guess.
        at = (asked + self.ctx.clock.now()) / 2.0
        if self.readings and at <= self.readings[-1][0]:
            return
        self.readings.append((at, float(celsius)))

    def _infer_and_heat(self, generation: int) -> None:
        if generation != self.generation or not self.active:
            return  # slept or stopped since: never restore heat
        if len(self.readings) < MIN_READINGS:
            self.ctx.log("ERROR", f"only {len(self.readings)} plate readings in the window; heater off until the next one")
            self._set_heater(0.0)
            return
        times, plate = zip(*self.readings)
        try:
            estimate = infer_liquid_temperature(times, plate, heating=self.heating)
        except ValueError as e:  # readings bunched by a stalled process: not a window to fit
            self.ctx.log("WARNING", f"liquid temperature not inferred ({e}); heater kept at {self.duty:g} %")
            self._set_heater(self.duty)
            return
        if estimate.quality != "ok":
            self.ctx.log("WARNING", f"liquid temperature not inferred ({estimate.reason}); heater kept at {self.duty:g} %")
            self._set_heater(self.duty)
            return
        liquid = estimate.liquid_c
        self.ctx.update("temperature", {"temperature": round(liquid, 3), "timestamp": utc_iso(estimate.at_s)})
        self._check_stirring()
        duty, event = self.policy.decide(liquid, self.duty)
        self._set_heater(duty)
        self.report(event)

    def _check_stirring(self) -> None:
        if self.policy.heats and self.stirring_state != "ready" and not self.warned_stirring:
            self.warned_stirring = True
            self.ctx.log("WARNING", "stirring is not running: the liquid heats unevenly and its inferred temperature is less reliable; start stirring")

    def _set_heater(self, duty: float) -> None:
        self.duty = duty
        self.ctx.set_duty(HEATER, duty)
        self.ctx.update("heater_duty_cycle", round(duty, 3))

    # --- settings -------------------------------------------------------------------------------------

    def apply_setting(self, name: str, value: Any) -> Any:
        try:
            value, note = self.policy.set_parameter(name, value)
        except ValueError as e:
            raise SettingError(str(e)) from None
        if note:
            self.ctx.log("WARNING", note)
        return value

    # --- lifecycle ------------------------------------------------------------------------------------

    def _pause(self) -> None:
        self.active = False
        self.generation += 1
        self.ctx.cancel(CYCLE_TIMER)
        self._set_heater(0.0)

    def on_sleep(self) -> None:
        self._pause()

    def on_wake(self) -> None:
        self.policy.reset()  # the pause was not one inference: no derivative across it
        self._resume()

    def on_stop(self) -> None:
        self._pause()
