"""The thermostat holding 37 C for hours on the simulated plate and liquid, in a discrete-event loop.

What runs: the reference cadence (:class:`TemperatureCycle`: heater off, 21 plate readings 5 s apart,
infer, heat for the rest of the 200 s), the liquid inferred from those readings
(:func:`infer_liquid_temperature`), the thermostat deciding on the estimate, and the heater driver's
safety decision (:func:`heater_decision`) applied every 5 s on a fresh plate reading, as
``actors/hardware/pwm_driver.py`` does (plate read every 5 s, 10 s look-ahead, 60 % cap). Only the
simulator knows the true liquid temperature; the controller never sees it.

Two findings these tests pin down, each with its own test:

1. With the simulator's default 5 W heater the target is out of reach. The heater can only heat during
   95 s of every 200 s, so holding 37 C from a 22 C room needs about 95 % duty while heating, and the
   driver caps the duty at 60 %: the liquid settles near 31.7 C. The main scenarios therefore use a
   10 W heater [assumption: a real heater with power in hand over the cadence]; at 5 W they would only
   show the cap.
2. The same cadence makes the liquid swing about 1.1 C peak to peak within each cycle even under a
   perfectly steady duty (it warms while heating, cools through the 105 s window), so "within 0.5 C at
   every instant" cannot hold. The thermostat regulates the inferred temperature at the end of the
   window, the cycle's low point, so the swing sits above the target. Over 30 seeds of 6 h: liquid
   36.59-38.01 C after the first hour, cycle averages within 0.45 C of 37, the regulated low point
   within 0.17 C, the inference within 0.24 C of the truth. The strict-xfail test states the original
   criterion and will fail loudly (XPASS) if a change of cadence or model ever makes it true.
"""

from __future__ import annotations

import random
import time

import attrs
import pytest

from actors.automations.temperature import TemperatureCycle, Thermostat
from actors.hardware.safety import HEATER_MAX_DUTY, LIMITS_DEFAULT, HeaterLimits, heater_decision
from actors.hardware.sim_thermal import Thermal, ThermalParams
from actors.temperature_inference import Heating, PlateModel, infer_liquid_temperature

TARGET_C = 37.0
DRIVER_READ_EVERY_S = 5.0  # actors/hardware/temperature_driver.py PLATE_EVERY_SECONDS
DRIVER_HORIZON_S = 10.0  # actors/hardware/pwm_driver.py HEATER_HORIZON
HEATER_10W = ThermalParams(heater_max_w=10.0)


@attrs.frozen
class Inference:
    at_s: float
    estimate_c: float
    true_c: float
    quality: str


@attrs.define
class Run:
    """Everything the loop saw: the true liquid every 5 s, each inference, each driver decision."""

    liquid: list[tuple[float, float]] = attrs.Factory(list)
    inferences: list[Inference] = attrs.Factory(list)
    decisions: list[tuple[float, float, float, str]] = attrs.Factory(list)  # (plate, requested, applied, tier)
    max_plate_c: float = 0.0
    wall_s: float = 0.0

    def liquid_after(self, t_s: float) -> list[float]:
        return [c for t, c in self.liquid if t >= t_s]

    def cycle_means_after(self, t_s: float, period_s: float) -> list[float]:
        buckets: dict[int, list[float]] = {}
        for t, c in self.liquid:
            if t >= t_s:
                buckets.setdefault(int(t // period_s), []).append(c)
        return [sum(v) / len(v) for k, v in sorted(buckets.items()) if len(v) >= period_s / DRIVER_READ_EVERY_S - 1]


def model_for(params: ThermalParams) -> PlateModel:
    return PlateModel.from_constants(
        heater_max_w=params.heater_max_w,
        plate_capacity_j_per_k=params.plate_capacity_j_per_k,
        liquid_capacity_j_per_k=params.liquid_capacity_j_per_k,
        r_plate_liquid_k_per_w=params.r_plate_liquid_k_per_w,
        r_plate_ambient_k_per_w=params.r_plate_ambient_k_per_w,
        r_liquid_ambient_k_per_w=params.r_liquid_ambient_k_per_w,
    )


def run_thermostat(
    params: ThermalParams,
    hours: float,
    *,
    seed: int = 0,
    limits: HeaterLimits = LIMITS_DEFAULT,
    ambient_changes: tuple[tuple[float, float], ...] = (),
) -> Run:
    """Simulate ``hours`` of the temperature job. ``ambient_changes``: (at_s, room C) steps."""
    started = time.perf_counter()
    thermal = Thermal(params)
    rng = random.Random(seed)
    cycle = TemperatureCycle()
    thermostat = Thermostat(TARGET_C, limits)
    model = model_for(params)
    run = Run()
    pending = sorted(ambient_changes)
    now = 0.0
    applied = 0.0
    heating = Heating(duty_pct=0.0, seconds=0.0)

    def advance(seconds: float, duty: float) -> None:
        nonlocal now
        while pending and pending[0][0] <= now:
            thermal.ambient_c = pending.pop(0)[1]
        thermal.advance(seconds, duty)
        now += seconds
        run.liquid.append((now, thermal.liquid_c))
        run.max_plate_c = max(run.max_plate_c, thermal.plate_c)

    while now < hours * 3600.0:
        # Heater off; the readings the inference uses.
        times, readings = [], []
        for step in cycle.steps(now):
            if step.action == "read_plate":
                if step.at_s > now:
                    advance(step.at_s - now, 0.0)
                times.append(now)
                readings.append(thermal.sensor_reading(rng))
            elif step.action == "infer_and_heat":
                advance(step.at_s - now, 0.0)
        estimate = infer_liquid_temperature(times, readings, model, heating=heating)
        # The true liquid at the last reading is what the estimate claims to be.
        true_at_estimate = next(c for t, c in reversed(run.liquid) if t <= estimate.at_s)
        run.inferences.append(Inference(estimate.at_s, estimate.liquid_c, true_at_estimate, estimate.quality))
        requested, _ = thermostat.decide(estimate.liquid_c, applied)
        # Heating phase: the driver re-decides on every plate reading.
        lowest = requested
        for _ in range(int(round(cycle.on_duration_s / DRIVER_READ_EVERY_S))):
            plate = thermal.sensor_reading(rng)
            decision = heater_decision(plate, requested, limits, horizon_s=DRIVER_HORIZON_S)
            run.decisions.append((plate, requested, decision.duty, decision.tier))
            applied = decision.duty
            lowest = min(lowest, applied)
            advance(DRIVER_READ_EVERY_S, applied)
        heating = Heating(duty_pct=lowest, seconds=cycle.on_duration_s)
    run.wall_s = time.perf_counter() - started
    return run


@pytest.fixture(scope="module")
def six_hours() -> Run:
    return run_thermostat(HEATER_10W, hours=6.0)


SETTLED_S = 3600.0


def test_inferred_temperature_is_what_the_liquid_was(six_hours):
    assert all(i.quality == "ok" for i in six_hours.inferences)
    errors = [abs(i.estimate_c - i.true_c) for i in six_hours.inferences]
    assert max(errors) < 0.3


def test_the_regulated_temperature_settles_on_target(six_hours):
    settled = [i for i in six_hours.inferences if i.at_s >= SETTLED_S]
    assert len(settled) >= 80
    assert max(abs(i.true_c - TARGET_C) for i in settled) < 0.3


def test_cycle_averages_stay_within_half_a_degree(six_hours):
    means = six_hours.cycle_means_after(SETTLED_S, TemperatureCycle().period_s)
    assert len(means) >= 80
    assert max(abs(m - TARGET_C) for m in means) < 0.5


def test_the_liquid_stays_within_the_cadence_swing_of_the_target(six_hours):
    liquid = six_hours.liquid_after(SETTLED_S)
    assert min(liquid) > TARGET_C - 0.5
    assert max(liquid) < TARGET_C + 1.2


@pytest.mark.xfail(
    strict=True,
    reason="the reference cadence makes the liquid swing ~1.1 C within each cycle (module docstring)",
)
def test_the_liquid_stays_within_half_a_degree_at_every_instant(six_hours):
    liquid = six_hours.liquid_after(SETTLED_S)
    assert max(abs(c - TARGET_C) for c in liquid) < 0.5


def test_the_heater_never_passes_the_driver_limits(six_hours):
    assert six_hours.decisions
    for plate, requested, applied, tier in six_hours.decisions:
        assert applied == heater_decision(plate, requested, LIMITS_DEFAULT, horizon_s=DRIVER_HORIZON_S).duty
        assert 0.0 <= applied <= HEATER_MAX_DUTY
        assert tier == "ok"
    assert six_hours.max_plate_c < LIMITS_DEFAULT.reduce_c


def test_runs_fast(six_hours):
    assert six_hours.wall_s < 30.0


def test_recovers_after_the_room_cools():
    # 22 -> 20 C. (At 18 C even the 10 W heater needs the full 60 % cap and settles 0.4 C short.)
    run = run_thermostat(HEATER_10W, hours=6.0, seed=1, ambient_changes=((3 * 3600.0, 20.0),))
    after = [i for i in run.inferences if i.at_s >= 4.5 * 3600.0]
    assert all(i.quality == "ok" for i in run.inferences)
    assert max(abs(i.true_c - TARGET_C) for i in after) < 0.3
    assert max(abs(i.estimate_c - i.true_c) for i in run.inferences) < 0.3


def test_the_default_5w_heater_cannot_hold_37_under_the_cadence_and_the_cap():
    run = run_thermostat(ThermalParams(), hours=4.0, seed=2)
    liquid = run.liquid_after(2 * 3600.0)
    assert max(liquid) < 33.0
    late = [d for d in run.decisions[len(run.decisions) // 2 :]]
    assert all(applied == HEATER_MAX_DUTY for _, _, applied, _ in late)
    assert all(requested > HEATER_MAX_DUTY for _, requested, _, _ in late)


def test_the_reference_cadence_alone_makes_the_liquid_swing_about_1_c():
    """A steady duty that holds the cycle average at 37 C: the swing is the cadence's, not the PID's."""
    cycle = TemperatureCycle()

    def periodic(duty: float) -> list[float]:
        thermal = Thermal(HEATER_10W)
        for _ in range(60):
            thermal.advance(cycle.off_duration_s, 0.0)
            thermal.advance(cycle.on_duration_s, duty)
        samples = []
        for seconds, d in ((cycle.off_duration_s, 0.0), (cycle.on_duration_s, duty)):
            for _ in range(int(seconds)):
                thermal.advance(1.0, d)
                samples.append(thermal.liquid_c)
        return samples

    low, high = 0.0, 100.0
    for _ in range(30):
        mid = (low + high) / 2
        samples = periodic(mid)
        if sum(samples) / len(samples) < TARGET_C:
            low = mid
        else:
            high = mid
    samples = periodic(low)
    assert sum(samples) / len(samples) == pytest.approx(TARGET_C, abs=0.01)
    assert max(samples) - min(samples) > 1.0
