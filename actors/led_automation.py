"""``led_automation``: runs an LED policy (``light_dark_cycle``, ``silent`` or a plugin) on the node clock.

``pio run led_automation --automation-name light_dark_cycle --light-intensity 50
--light-duration-minutes 960 --dark-duration-minutes 480``

The policy (:class:`actors.automations.led.light_dark_cycle.LedPolicy`) says which intensities to set and
when to ask again; this job sets them through the LED driver and arms one one-shot timer for that exact
moment, counted on the node clock from the job's start (so a boundary is never smeared by a polling
tick). A settings change is handed to the policy at once: a new duration reschedules the next boundary,
a new intensity applies at once if lit. Every change is logged, published as ``latest_event``
(``ChangedLedIntensity``) and recorded as LED change events. LEDs this job set go off on sleep and stop;
on wake the policy is asked again, so the schedule resumes where the clock says it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors import topics
from actors.automations.base import AutomationJob, automation_class
from actors.automations.led.light_dark_cycle import LedDecision, LedPolicy
from actors.clock import utc_iso
from actors.job import JobContext
from actors.messages import NodeConfig
from actors.settings import SettingError

TIMER = "boundary"


class LedAutomation(AutomationJob):
    name = "led_automation"
    family = "led"

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        super().check(values, node)
        policy = automation_class(cls.family, values, node)
        given = {p.name: values[p.name] for p in policy.PARAMETERS if values.get(p.name) is not None}
        try:  # the policy's own checks (intensity range, durations), before anything is lit
            policy.from_parameters(given)
        except (TypeError, ValueError) as e:
            raise SettingError(str(e)) from None

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.policy: LedPolicy = self.policy_class.from_parameters(self.parameters())
        self.started_at = 0.0
        self.next_boundary: float | None = None  # minutes since the start
        self.applied: dict[str, float] = {}

    def _minutes(self) -> float:
        return (self.ctx.clock.now() - self.started_at) / 60.0

    def start(self) -> None:
        self.started_at = self.ctx.clock.now()
        self.ctx.ready()
        self._run(0.0)

    def _run(self, t_minutes: float) -> None:
        decision = self.policy.decide(t_minutes)
        self._apply(decision)
        self._arm(decision.next_boundary_minutes)

    def _apply(self, decision: LedDecision) -> None:
        changed = {c: v for c, v in decision.intensities if self.applied.get(c) != v}
        if not changed:
            return
        self._set(changed)
        self.report(decision.event)

    def _set(self, intensities: Mapping[str, float]) -> None:
        stamp = utc_iso(self.ctx.clock.now())
        where = topics.led_change_events_topic(self.ctx.unit, self.ctx.experiment)
        for channel, intensity in intensities.items():
            self.applied[channel] = intensity
            self.ctx.set_led(channel, intensity, lambda ok, error, c=channel: self._led_done(c, ok, error))
            event = {"channel": channel, "intensity": intensity, "source_of_event": self.name, "timestamp": stamp}
            self.ctx.publish_topic(where, event, qos=1)

    def _led_done(self, channel: str, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.log("ERROR", f"could not set LED {channel}: {error}")

    def _arm(self, boundary_minutes: float | None) -> None:
        self.next_boundary = boundary_minutes
        if boundary_minutes is None:
            self.ctx.cancel(TIMER)
            return
        due = self.started_at + boundary_minutes * 60.0
        self.ctx.after(max(0.0, due - self.ctx.clock.now()), self._at_boundary, name=TIMER)

    def _at_boundary(self) -> None:
        # Decide *at* the boundary: a timer that fires a hair early must not see the old phase again.
        t = self._minutes()
        if self.next_boundary is not None:
            t = max(t, self.next_boundary)
        self._run(t)

    # --- settings -------------------------------------------------------------------------------------

    def apply_setting(self, name: str, value: Any) -> Any:
        try:
            self.policy = self.policy.with_parameter(name, value, self._minutes())
        except ValueError as e:
            raise SettingError(str(e)) from None
        self._run(self._minutes())
        return value

    # --- lifecycle ------------------------------------------------------------------------------------

    def _all_off(self) -> None:
        self.ctx.cancel(TIMER)
        lit = {c: 0.0 for c, v in self.applied.items() if v != 0.0}
        if lit:
            self._set(lit)

    def on_sleep(self) -> None:
        self._all_off()

    def on_wake(self) -> None:
        self._run(self._minutes())

    def on_stop(self) -> None:
        self._all_off()
