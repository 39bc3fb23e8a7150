"""The dosing_automation job: a dosing policy (turbidostat, chemostat, ..., or a plugin's) wired to the
unit's readings, the vial's books and its pumps.

``pio run dosing_automation --automation-name turbidostat --target-biomass 1.2 --exchange-volume-ml 1``

Inputs come from this node's own jobs through the bridge (control stays local): ``od_filtered`` and
``growth_rate`` from growth_rate_calculating, calibrated ``ods`` from od_reading, and the books
(``bioreactor/*``, kept by the monitor from the dosing events). The policy
(:mod:`actors.automations.dosing.policies`) decides; :mod:`actors.automations.dosing.subdosing` turns an
exchange into pump runs; this class runs them one at a time on the pumps it holds, publishes one dosing
event per run, and puts itself to sleep when an addition would reach the max fill.

Why the pumps are held for the job's whole life: an automation's exchanges must never interleave with
another job's pump runs on the same channel; a manual ``add_media`` while it runs is refused by the PWM
driver with the holder's name. Sleeping or stopping turns every pump off at once, and a run cut short
publishes the part it moved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from actors import topics
from actors.automations.base import AutomationJob, automation_class
from actors.automations.dosing.policies import Decision, DosingPolicy, Inputs, Reading, build
from actors.automations.dosing.subdosing import (
    MAX_SUBDOSE_ML,
    PAUSE_BETWEEN_SUBDOSES_S,
    WASTE_REMOVAL_MULTIPLIER,
    Dose,
    Pause,
    Step,
    first_unsafe_step,
    volume_after_step,
)
from actors.automations.events import DosingStopped, NoEvent
from actors.bioreactor import BioreactorState
from actors.calibration_store import CalibrationStore
from actors.calibrations import PUMP_BY_CHANNEL, CalibrationError, PumpCalibration, pump_ml_to_seconds
from actors.clock import utc_iso
from actors.hardware.hardware_access import node_description
from actors.job import JobContext
from actors.messages import NodeConfig
from actors.settings import Setting, SettingError

BOOK_FIELDS = tuple(f.name for f in attrs.fields(BioreactorState) if f.name not in ("max_fill_ml", "capacity_ml"))
SOURCE = "dosing_automation"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def model_books(node: NodeConfig) -> BioreactorState:
    """The books of a vial filled to its efflux level, from the vessel model (until the monitor's arrive)."""
    vessel = node_description(node).vessel
    return BioreactorState(
        current_volume_ml=vessel.default_efflux_tube_ml,
        efflux_tube_volume_ml=vessel.default_efflux_tube_ml,
        max_fill_ml=vessel.max_fill_ml,
        capacity_ml=vessel.capacity_ml,
    )


def pump_calibrations(policy_class: type[DosingPolicy], node: NodeConfig) -> dict[str, PumpCalibration]:
    """The active calibration of every pump the policy uses; ml dosing is refused without real ones."""
    store = CalibrationStore.for_node(node.state_dir)
    out = {}
    for pump in policy_class.pumps:
        try:
            cal = store.pump(PUMP_BY_CHANNEL[pump].device)
            pump_ml_to_seconds(cal, 1.0)  # refuses the default stand-in, saying how to calibrate
        except (CalibrationError, ValueError) as e:
            raise SettingError(f"{policy_class.name} doses by volume: {e}") from None
        out[pump] = cal
    return out


class DosingAutomation(AutomationJob):
    name = "dosing_automation"
    family = "dosing"
    settings = AutomationJob.settings + (
        Setting(name="max_subdose", datatype="float", startup=True, unit="ml", minimum=0.05, maximum=5, default=MAX_SUBDOSE_ML,
                description="larger exchanges are split into pieces of at most this"),
        Setting(name="waste_removal_multiplier", datatype="float", startup=True, minimum=1, maximum=5, default=WASTE_REMOVAL_MULTIPLIER,
                description="extra waste run after each piece, pins the level at the efflux tube"),
        Setting(name="pause_between_subdoses_seconds", datatype="float", startup=True, unit="s", minimum=0, maximum=600,
                default=PAUSE_BETWEEN_SUBDOSES_S),
    )

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        super().check(values, node)
        policy_class = automation_class(cls.family, values, node)
        params = {p.name: values[p.name] for p in policy_class.PARAMETERS if values.get(p.name) is not None}
        try:
            build(policy_class, model_books(node), **params)
        except ValueError as e:
            raise SettingError(str(e)) from None
        pump_calibrations(policy_class, node)

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.books = model_books(ctx.node)
        self.books_known = False
        self.policy: DosingPolicy = build(self.policy_class, self.books, **self.parameters())
        self.calibrations = pump_calibrations(self.policy_class, ctx.node)
        self.inputs = Inputs(bioreactor=self.books)
        self.plan: list[Step] = []
        self.level = 0.0  # the level this plan projects, step by step (the books may lag a dose behind)
        self.running: tuple[str, float, float, float] | None = None  # pump, started at, seconds, ml
        self.rerun = False
        self.waiting_logged = False

    # --- start and inputs --------------------------------------------------------------------------

    def start(self) -> None:
        ctx = self.ctx
        ctx.subscribe(topics.bioreactor_topic(ctx.unit, ctx.experiment, "+"), self._on_books)
        # Readings from before this start are not acted on (the reference ignores retained readings).
        ctx.subscribe(ctx.topic("growth_rate_calculating", "od_filtered"), self._on_od_filtered, retained=False)
        ctx.subscribe(ctx.topic("growth_rate_calculating", "growth_rate"), self._on_growth_rate, retained=False)
        ctx.subscribe(ctx.topic("od_reading", "ods"), self._on_ods, retained=False)
        self._acquire(list(self.policy.pumps))

    def _acquire(self, pumps: list[str]) -> None:
        if not pumps:
            self.ctx.ready()
            if not self.policy_class.triggered_by_readings:
                self._run()
            return

        def done(ok: bool, error: str | None) -> None:
            if not ok:
                self.ctx.fail(f"cannot drive the {pumps[0]} pump: {error}")
                return
            self._acquire(pumps[1:])

        self.ctx.acquire("pwm", pumps[0], done)

    def _on_books(self, topic: str, payload: str) -> None:
        field = topic.rsplit("/", 1)[-1]
        if field not in BOOK_FIELDS:
            return
        try:
            self.books = attrs.evolve(self.books, **{field: float(payload)})
        except ValueError as e:
            self.ctx.log("WARNING", f"ignored the books' {field}={payload!r}: {e}")
            return
        self.books_known = True
        self.inputs = attrs.evolve(self.inputs, bioreactor=self.books, bioreactor_timestamp=self.ctx.clock.now())

    def _on_od_filtered(self, _topic: str, payload: str) -> None:
        message = json.loads(payload)
        self._reading("normalized_od", Reading(message["od_filtered"], epoch(message["timestamp"])))

    def _on_growth_rate(self, _topic: str, payload: str) -> None:
        message = json.loads(payload)
        self.inputs = attrs.evolve(self.inputs, growth_rate=Reading(message["growth_rate"], epoch(message["timestamp"])))

    def _on_ods(self, _topic: str, payload: str) -> None:
        message = json.loads(payload)
        calibrated = [r for r in message["ods"].values() if r.get("calibrated")]
        if calibrated:  # "od" means calibrated OD; raw voltages are not comparable with a target
            self._reading("od", Reading(calibrated[0]["od"], epoch(message["timestamp"])))

    def _reading(self, signal: str, reading: Reading) -> None:
        self.inputs = attrs.evolve(self.inputs, **{signal: reading})
        if self.policy_class.triggered_by_readings:
            # Decide as of the reading's own time: the question is what the vial was like when it was
            # measured, and the other inputs are judged fresh or stale against that moment. (At real time
            # the two are milliseconds apart; at an accelerated clock, the pipeline's latency would
            # otherwise age every reading by minutes.)
            self._run(at=reading.timestamp)

    # --- deciding ----------------------------------------------------------------------------------

    def _run(self, at: float | None = None) -> None:
        if self.running is not None or self.plan:
            self.rerun = True  # one follow-up run once the pumps are done, as the reference queues
            return
        if not self.books_known and self.policy.doses:
            if not self.waiting_logged:
                self.ctx.log("WARNING", "waiting for the vial's books (bioreactor/current_volume_ml): is the monitor running?")
                self.waiting_logged = True
            self.ctx.after(5.0, self._run, name="next-run")
            return
        now = self.ctx.clock.now()
        decision = self.policy.decide(self.inputs, now if at is None else min(at, now))
        self._act(decision, now)

    def _act(self, decision: Decision, now: float) -> None:
        self.report(decision.event, quiet=isinstance(decision.event, NoEvent))
        for warning in decision.warnings:
            self.ctx.log("WARNING", warning)
        if decision.sleep:
            self.ctx.sleep()
            return
        if decision.next_check is not None:
            self.ctx.after(max(0.0, decision.next_check - now), self._run, name="next-run")
        if decision.exchange is not None:
            values = self.ctx.values
            self.plan = decision.exchange.plan(
                values["max_subdose"], values["waste_removal_multiplier"], values["pause_between_subdoses_seconds"]
            )
            self.level = self.books.current_volume_ml
            self._next_step()

    # --- running the plan --------------------------------------------------------------------------

    def _next_step(self) -> None:
        if not self.plan:
            self.policy.on_dosing_finished(self.ctx.clock.now())
            if self.rerun:
                self.rerun = False
                self._run()
            return
        step = self.plan[0]
        if isinstance(step, Pause):
            self.plan.pop(0)
            self.ctx.after(step.seconds, self._next_step, name="step")
            return
        if step.adds:
            level = max(self.level, self.books.current_volume_ml)
            if first_unsafe_step(level, [step], self.books.max_fill_ml, efflux_ml=self.books.efflux_tube_volume_ml) is not None:
                self.plan.clear()
                self.report(DosingStopped(
                    f"adding {step.ml:g} ml to {level:.2f} ml would reach the max fill {self.books.max_fill_ml:g} ml; "
                    "sleeping (remove liquid, then wake the automation)",
                    {"current_volume_ml": level, "max_fill_ml": self.books.max_fill_ml},
                ))
                self.ctx.sleep()
                return
        self._run_pump(step)

    def _run_pump(self, step: Dose) -> None:
        seconds = pump_ml_to_seconds(self.calibrations[step.pump], step.ml)
        self.running = (step.pump, self.ctx.clock.now(), seconds, step.ml)
        self.ctx.set_duty(step.pump, self.calibrations[step.pump].dc, seconds=seconds)
        self.ctx.after(seconds, self._pump_done, name="pump")

    def _pump_done(self) -> None:
        assert self.running is not None
        pump, started, seconds, ml = self.running
        self.ctx.set_duty(pump, 0.0)
        self.running = None
        step = self.plan.pop(0)
        self.level = volume_after_step(self.level, step, self.books.efflux_tube_volume_ml)
        self._dosing_event(pump, ml, started + seconds / 2)
        self._next_step()

    def _dosing_event(self, pump: str, ml: float, at: float) -> None:
        """``at``: the middle of the run, the best single time for when the liquid went in (a reading
        taken during the run saw part of it; the growth-rate filter places the dose at this time)."""
        payload = {"volume_change": ml, "event": PUMP_BY_CHANNEL[pump].event, "source_of_event": SOURCE, "timestamp": utc_iso(at)}
        self.ctx.publish_topic(topics.dosing_events_topic(self.ctx.unit, self.ctx.experiment), payload, qos=1)

    def _halt(self) -> None:
        """Every pump off now; a run cut short reports the part it moved."""
        for name in ("pump", "step", "next-run"):
            self.ctx.cancel(name)
        if self.running is not None:
            pump, started, seconds, ml = self.running
            self.ctx.set_duty(pump, 0.0)
            ran = min(seconds, max(0.0, self.ctx.clock.now() - started))
            if ran > 0:
                self._dosing_event(pump, ml * ran / seconds, started + ran / 2)
            self.running = None
        for pump in self.policy.pumps:
            self.ctx.set_duty(pump, 0.0)
        self.plan.clear()
        self.rerun = False

    # --- settings and lifecycle --------------------------------------------------------------------

    def apply_setting(self, name: str, value: Any) -> Any:
        if name not in {p.name for p in self.policy.PARAMETERS}:
            return value
        try:
            self.policy.update({name: value}, self.books)
        except ValueError as e:
            raise SettingError(str(e)) from None
        due = self.policy.next_due()
        if due is not None and self.running is None and not self.plan:
            self.ctx.after(max(0.0, due - self.ctx.clock.now()), self._run, name="next-run")
        return getattr(self.policy, name)

    def on_sleep(self) -> None:
        self._halt()

    def on_wake(self) -> None:
        if not self.policy_class.triggered_by_readings:
            self._run()

    def on_stop(self) -> None:
        self._halt()
