"""Dosing policies closed around the real simulator: turbidostat, chemostat and fed-batch, for simulated days.

A small discrete-event loop stands in for the dosing actor. Every 5 simulated seconds it takes one OD
reading from ``vessel.photodiode_voltages()`` (90 degree over REF, normalised by the mean of the first 10
readings, as growth_rate_calculating does), hands it to the policy, turns the policy's exchanges into pump
runs with ``plan_exchange`` and records every run as a ``DosingEvent`` in ``BioreactorState``.

Why the pumps are driven by PWM and not by the culture's exact ``add_media``: the policy and the books
only know the *nominal* calibration (0.0911 ml/s), and the simulated pumps are off from it by a seeded gain
error (here -1 % media, +2 % waste), as real uncalibrated tubing is. Running each pump for
``ml / 0.0911`` seconds lets that error reach the vial, so "the books match the vial" is a claim about the
extra-waste pinning, not a tautology. OD keeps being read while the pumps run, as od_reading does.

The vessel sits at 37 C by setting the thermal ambient to 37 C: the heater loop is not under test here.
Each reading is one whole OD reading (``samples_per_reading=1``: the 0.56 % reading noise of Mock_ADC,
shocks included), not one raw ADC sample.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque

import attrs
import pytest

from actors.automations.dosing.policies import (
    Chemostat,
    DosingPolicy,
    FedBatch,
    Inputs,
    Reading,
    Turbidostat,
)
from actors.automations.dosing.subdosing import Dose, Pause, Step, first_unsafe_step
from actors.bioreactor import BioreactorState, DosingEvent
from actors.hardware.sim_optics import OpticsParams
from actors.hardware.sim_pumps import DEFAULT_ML_PER_SECOND
from actors.hardware.sim_thermal import ThermalParams
from actors.hardware.vessel import Vessel, VesselParams

OD_INTERVAL_S = 5.0
BASELINE_READINGS = 10
IR_PCT = 80.0
WALL_LIMIT_S = 30.0
EVENT_NAMES = {"media": "add_media", "alt_media": "add_alt_media", "waste": "remove_waste"}


@attrs.define
class Sample:
    t: float
    nod: float | None
    true_od: float
    vessel_ml: float
    books_ml: float
    dosing: bool
    true_growth_rate: float
    calibrated_od: float | None


class Rig:
    """The simulated vessel, the books, and a stand-in dosing actor running one policy."""

    def __init__(
        self, policy: DosingPolicy, *, event_driven: bool, seed: int = 0, initial_volume_ml: float = 15.0
    ):
        self.vessel = Vessel(
            VesselParams(
                thermal=ThermalParams(ambient_c=37.0),
                optics=OpticsParams(samples_per_reading=1),
                seed=seed,
                initial_volume_ml=initial_volume_ml,
            )
        )
        self.books = BioreactorState(
            current_volume_ml=initial_volume_ml,
            efflux_tube_volume_ml=self.vessel.params.efflux_ml,
            max_fill_ml=self.vessel.params.max_fill_ml,
            capacity_ml=self.vessel.params.capacity_ml,
        )
        self.policy = policy
        self.event_driven = event_driven
        self.t = 0.0
        self.events: list[DosingEvent] = []
        self.executed: list[Dose] = []
        self.planned: list[Step] = []
        self.samples: list[Sample] = []
        self.decisions: list[tuple[float, object]] = []
        self.exchange_times: list[float] = []
        self.warnings: list[str] = []
        self.max_vessel_ml = self.vessel.volume_ml
        self.slept_at: float | None = None
        self._steps: deque[Step] = deque()
        self._step: Step | None = None
        self._step_end: float | None = None
        self._pending = False
        self._next_check: float | None = 0.0
        self._next_read = 0.0
        self._ratios: list[float] = []
        self._baseline: float | None = None
        self._latest: Reading | None = None
        self._cal0: float | None = None
        # Dark offsets with the IR LED off, then the LED on for good (od_reading's dark-offset step).
        dark = self.vessel.photodiode_voltages()
        self._dark90, self._dark_ref = dark["90"], dark["REF"]
        self.vessel.set_led(self.vessel.params.ir_led_channel, IR_PCT)

    @property
    def dosing(self) -> bool:
        return self._step is not None

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self, until_s: float) -> None:
        while True:
            candidates = [self._next_read]
            if self._step_end is not None:
                candidates.append(self._step_end)
            if self._next_check is not None and self.slept_at is None:
                candidates.append(self._next_check)
            t_next = min(candidates)
            if t_next > until_s:
                self.vessel.advance(until_s - self.t)
                self.t = until_s
                return
            self.vessel.advance(t_next - self.t)
            self.t = t_next
            self.max_vessel_ml = max(self.max_vessel_ml, self.vessel.volume_ml)
            trigger = False
            if self._step_end is not None and self.t >= self._step_end:
                self._finish_step()
            if self.t >= self._next_read:
                self._read()
                self._next_read += OD_INTERVAL_S
                trigger = self.event_driven and self._latest is not None
            if self._next_check is not None and self.t >= self._next_check:
                trigger = True
            if trigger and self.slept_at is None:
                if self.dosing:
                    self._pending = True  # the reference queues one follow-up run while one is in progress
                else:
                    self._consult()

    def _read(self) -> None:
        v = self.vessel.photodiode_voltages()
        ratio = v["90"] / v["REF"]
        nod = None
        if self._baseline is None:
            self._ratios.append(ratio)
            if len(self._ratios) == BASELINE_READINGS:
                self._baseline = statistics.fmean(self._ratios)
        else:
            nod = ratio / self._baseline
            self._latest = Reading(nod, self.t)
        self.samples.append(
            Sample(
                t=self.t,
                nod=nod,
                true_od=self.vessel.od,
                vessel_ml=self.vessel.volume_ml,
                books_ml=self.books.current_volume_ml,
                dosing=self.dosing,
                true_growth_rate=self.vessel.culture.true_growth_rate(self.vessel.liquid_c),
                calibrated_od=self._calibrated_od(v),
            )
        )

    def _calibrated_od(self, v: dict[str, float]) -> float | None:
        """OD from the 90 degree signal through the optics curve: the test's stand-in for an OD calibration.

        The dark-corrected ratio is proportional to ``X exp(-a X)``; one point (the inoculum OD, known to
        the experimenter, with the first reading) fixes the constant, and bisection on the rising branch
        inverts it.
        """
        if not self._ratios:
            return None
        ratio = (v["90"] - self._dark90) / (v["REF"] - self._dark_ref)
        if self._cal0 is None:
            self._cal0 = ratio
        a = self.vessel.params.optics.a_90
        x0 = self.vessel.params.culture.initial_od
        target = ratio / self._cal0 * x0 * math.exp(-a * x0)
        lo, hi = 0.0, 1.0 / a
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if mid * math.exp(-a * mid) < target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _consult(self) -> None:
        inputs = Inputs(bioreactor=self.books, bioreactor_timestamp=self.t, normalized_od=self._latest)
        decision = self.policy.decide(inputs, self.t)
        self.decisions.append((self.t, decision))
        self.warnings.extend(decision.warnings)
        self._next_check = decision.next_check
        if decision.sleep:
            self._sleep()
            return
        if decision.exchange is None:
            return
        plan = decision.exchange.plan()
        if (
            first_unsafe_step(
                self.books.current_volume_ml,
                plan,
                self.books.max_fill_ml,
                efflux_ml=self.books.efflux_tube_volume_ml,
            )
            is not None
        ):
            self._sleep()
            return
        self.exchange_times.append(self.t)
        self.planned.extend(plan)
        self._steps.extend(plan)
        self._start_next_step()

    def _sleep(self) -> None:
        self.slept_at = self.t
        self._steps.clear()
        for pump in EVENT_NAMES:
            self.vessel.set_pwm(pump, 0.0)

    def _start_next_step(self) -> None:
        while self._steps:
            step = self._steps.popleft()
            if isinstance(step, Pause):
                self._step, self._step_end = step, self.t + step.seconds
                return
            if (
                step.adds
                and first_unsafe_step(self.books.current_volume_ml, [step], self.books.max_fill_ml)
                is not None
            ):
                self._sleep()
                break
            self.vessel.set_pwm(step.pump, 100.0)
            self._step, self._step_end = step, self.t + step.ml / DEFAULT_ML_PER_SECOND
            return
        self._step = self._step_end = None
        self.policy.on_dosing_finished(self.t)
        if self._pending and self.slept_at is None:
            self._pending = False
            self._consult()

    def _finish_step(self) -> None:
        step = self._step
        if isinstance(step, Dose):
            self.vessel.set_pwm(step.pump, 0.0)
            event = DosingEvent(
                volume_change=step.ml,
                event=EVENT_NAMES[step.pump],
                source_of_event=self.policy.name,
                timestamp=self.t,
            )
            self.events.append(event)
            self.executed.append(step)
            self.books = self.books.apply(event)
        self._start_next_step()


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _check_books(rig: Rig) -> str:
    """Every pump run is a dosing event, the books fold them, and the books match the vial at rest.

    Returns a summary of the volume agreement, at rest and mid-exchange (where the books lag the pump
    that is running, and the pumps' gain errors have not yet been pinned away by the extra waste)."""
    assert len(rig.events) == len(rig.executed) == sum(isinstance(s, Dose) for s in rig.planned)
    replay = BioreactorState(
        current_volume_ml=rig.vessel.params.initial_volume_ml,
        efflux_tube_volume_ml=rig.vessel.params.efflux_ml,
        max_fill_ml=rig.vessel.params.max_fill_ml,
        capacity_ml=rig.vessel.params.capacity_ml,
    ).apply_all(rig.events)
    assert replay == rig.books
    media = math.fsum(e.volume_change for e in rig.events if e.event == "add_media")
    assert media == math.fsum(s.ml for s in rig.planned if isinstance(s, Dose) and s.pump == "media")
    assert rig.books.cumulative_media_added_ml == pytest.approx(media, rel=1e-12)
    at_rest = [s for s in rig.samples if not s.dosing]
    worst = max(abs(s.books_ml - s.vessel_ml) / s.vessel_ml for s in at_rest)
    assert worst <= 0.01, f"books and vial differ by {worst:.2%} at rest"
    assert not rig.vessel.overflowed
    assert rig.max_vessel_ml <= rig.vessel.params.max_fill_ml
    in_flight = [abs(s.books_ml - s.vessel_ml) / s.vessel_ml for s in rig.samples if s.dosing]
    return (
        f"books vs vial: worst {worst:.3%} at rest, {max(in_flight, default=0.0):.2%} mid-exchange; "
        f"{len(rig.events)} dosing events; peak vial {rig.max_vessel_ml:.3f} ml"
    )


def _od_at_normalized(rig: Rig, nod: float) -> float:
    """The true OD at which this unit's noise-free reading would normalise to ``nod`` (bisection)."""
    lo, hi = 0.0, 1.0 / rig.vessel.params.optics.a_90
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        v = rig.vessel.optics.mean_voltages(mid, IR_PCT, rig.vessel.liquid_c)
        if v["90"] / v["REF"] / rig._baseline < nod:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_turbidostat_holds_od_within_10_percent_for_48_hours(record_property):
    """0.5 ml exchanges: each dilutes 3.2 %, and a reading up to ~3 % high (noise, shocks) can trigger
    early, so the true OD spans about -6 % to +0.5 % of the target's. With 1 ml exchanges (6.25 % per
    dilution) the same noise takes it to -9.3..-10.1 % over seeds 0-2, at the edge of the 10 % band."""
    target = 8.0
    rig = Rig(Turbidostat(target_biomass=target, exchange_volume_ml=0.5), event_driven=True)
    _, wall = _timed(lambda: rig.run(48 * 3600.0 + 12 * 3600.0))
    first = rig.exchange_times[0]
    held = [s for s in rig.samples if s.nod is not None and first < s.t <= first + 48 * 3600.0]
    assert held[-1].t - first > 47.9 * 3600.0
    deviation = max(abs(s.nod - target) / target for s in held)
    od_target = _od_at_normalized(rig, target)
    true_deviation = max(abs(s.true_od - od_target) / od_target for s in held)
    books = _check_books(rig)
    record_property("first_dilution_h", first / 3600.0)
    record_property("max_nod_deviation", deviation)
    record_property("max_true_od_deviation", true_deviation)
    record_property("exchanges", len(rig.exchange_times))
    record_property("wall_s", wall)
    print(
        f"\nturbidostat: first dilution at {first / 3600:.2f} h, {len(rig.exchange_times)} exchanges, "
        f"max |nOD - target|/target {deviation:.2%}, max |OD - OD(target)|/OD(target) {true_deviation:.2%} "
        f"(OD(target) = {od_target:.3f}), wall {wall:.2f} s\n  {books}"
    )
    assert deviation <= 0.10
    assert true_deviation <= 0.10
    assert wall < WALL_LIMIT_S


def test_chemostat_growth_rate_settles_at_the_dilution_rate(record_property):
    policy = Chemostat(exchange_volume_ml=1.0, duration=20.0)
    rig = Rig(policy, event_driven=False)
    _, wall = _timed(lambda: rig.run(36 * 3600.0))
    dilution = policy.dilution_rate_per_hour(rig.books.current_volume_ml)
    window = [s for s in rig.samples if s.t >= 30 * 3600.0]
    true_rate = statistics.fmean(s.true_growth_rate for s in window)
    # The same rate from the OD alone: the log-slope of calibrated OD between exchanges, readings taken
    # while the pumps were running or within 30 s after them left out.
    ends = [t for t in rig.exchange_times if t >= 30 * 3600.0]
    slopes = []
    for start, stop in zip(ends, ends[1:], strict=False):
        pts = [
            (s.t, math.log(s.calibrated_od))
            for s in window
            if start + 120.0 <= s.t < stop and not s.dosing and s.calibrated_od
        ]
        slopes.append(statistics.linear_regression([p[0] for p in pts], [p[1] for p in pts]).slope * 3600.0)
    estimated = statistics.fmean(slopes)
    # What the vial really sees: each pulse multiplies biomass by V / (V + actual ml), and the actual ml
    # is the nominal 1 ml times this pump's gain error, which the policy and the books cannot know.
    media_gain = rig.vessel.pumps["media"].gain_error
    pulsed = math.log1p(1.0 * (1.0 + media_gain) / 15.0) / (policy.duration / 60.0)
    books = _check_books(rig)
    record_property("dilution_rate", dilution)
    record_property("true_rate", true_rate)
    record_property("od_estimate", estimated)
    record_property("wall_s", wall)
    print(
        f"\nchemostat: D = {dilution:.4f}/h, true growth rate {true_rate:.4f}/h "
        f"({true_rate / dilution - 1:+.2%}), OD-slope estimate {estimated:.4f}/h "
        f"({estimated / dilution - 1:+.2%}), true OD {window[-1].true_od:.3f}, wall {wall:.2f} s\n  "
        f"(pulse dilution with this vial's media pump, gain {media_gain:+.2%}: {pulsed:.4f}/h)\n  {books}"
    )
    assert true_rate == pytest.approx(dilution, rel=0.10)
    assert estimated == pytest.approx(dilution, rel=0.15)
    assert wall < WALL_LIMIT_S


def test_fed_batch_sleeps_before_max_fill(record_property):
    policy = FedBatch(dosing_volume_ml=0.75, duration=30.0)
    rig = Rig(policy, event_driven=False)
    _, wall = _timed(lambda: rig.run(6 * 3600.0))
    assert rig.slept_at is not None
    assert len(rig.exchange_times) == 3  # 15 -> 15.75 -> 16.5 -> 17.25; the next would reach 18
    assert rig.books.current_volume_ml == pytest.approx(17.25)
    assert rig.vessel.volume_ml < rig.vessel.params.max_fill_ml
    assert all(e.event == "add_media" for e in rig.events)
    assert all(e.timestamp <= rig.slept_at for e in rig.events)
    last = rig.decisions[-1][1]
    assert last.sleep and last.event.event_name == "DosingStopped"
    assert any("near the max fill" in w for w in rig.warnings)
    books = _check_books(rig)
    record_property("slept_at_h", rig.slept_at / 3600.0)
    record_property("wall_s", wall)
    print(
        f"\nfed_batch: slept at {rig.slept_at / 3600:.2f} h with books {rig.books.current_volume_ml:.2f} ml, "
        f"vial {rig.vessel.volume_ml:.3f} ml, wall {wall:.2f} s\n  {books}"
    )
    assert wall < WALL_LIMIT_S
