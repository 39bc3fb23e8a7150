"""The two-node heater/liquid model: the reference's numbers, exact integration, sensor, disconnect fault."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.hardware.sim_thermal import PlateSensorError, Thermal, ThermalParams

duties = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
steps = st.floats(min_value=0.0, max_value=2000.0, allow_nan=False)
schedules = st.lists(st.tuples(duties, steps), max_size=10)


def rk4(
    params: ThermalParams, plate: float, liquid: float, duty: float, dt: float, n: int
) -> tuple[float, float]:
    """Independent RK4 integration of the two ODEs as written in hardware.md §4.2."""
    p = params

    def f(th: float, tl: float) -> tuple[float, float]:
        q_hl = (th - tl) / p.r_plate_liquid_k_per_w
        dh = (p.heater_max_w * duty / 100 - q_hl - (th - p.ambient_c) / p.r_plate_ambient_k_per_w)
        dl = q_hl - (tl - p.ambient_c) / p.r_liquid_ambient_k_per_w
        return dh / p.plate_capacity_j_per_k, dl / p.liquid_capacity_j_per_k

    h = dt / n
    for _ in range(n):
        k1 = f(plate, liquid)
        k2 = f(plate + h / 2 * k1[0], liquid + h / 2 * k1[1])
        k3 = f(plate + h / 2 * k2[0], liquid + h / 2 * k2[1])
        k4 = f(plate + h * k3[0], liquid + h * k3[1])
        plate += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        liquid += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return plate, liquid


def test_time_constants_are_43_and_690_seconds():
    fast, slow = ThermalParams().time_constants()
    assert fast == pytest.approx(43.0, abs=1.0)
    assert slow == pytest.approx(690.0, abs=5.0)


def test_per_five_second_sample_exponents_match_the_reference():
    # hardware.md: q = -0.115 and p = -0.0072 per 5 s sample
    # (Pioreactor's fitted priors: q -0.13 to -0.16, p 0 to -0.01).
    fast, slow = ThermalParams().eigenvalues()
    assert 5 * fast == pytest.approx(-0.115, abs=0.001)
    assert 5 * slow == pytest.approx(-0.0072, abs=0.0001)


def test_full_duty_settles_the_plate_near_66_c():
    t = Thermal()
    assert t.steady_state(100.0)[0] == pytest.approx(66.0, abs=0.5)
    t.advance(20 * 690.0, 100.0)
    assert t.plate_c == pytest.approx(t.steady_state(100.0)[0], abs=1e-3)
    assert t.liquid_c == pytest.approx(t.steady_state(100.0)[1], abs=1e-3)


def test_about_45_percent_holds_the_liquid_at_37_c():
    t = Thermal()
    t.advance(10 * 3600.0, 45.0)
    assert t.liquid_c == pytest.approx(37.0, abs=0.1)
    assert t.plate_c > t.liquid_c  # the sensor reads hotter than the culture


def test_zero_duty_stays_at_ambient_and_cools_back_to_it():
    t = Thermal()
    t.advance(1000.0, 0.0)
    assert (t.plate_c, t.liquid_c) == pytest.approx((22.0, 22.0), abs=1e-12)
    t.advance(1000.0, 100.0)
    t.advance(20 * 690.0, 0.0)
    assert (t.plate_c, t.liquid_c) == pytest.approx((22.0, 22.0), abs=1e-3)


@pytest.mark.parametrize("duty", [0.0, 27.0, 45.0, 100.0])
@pytest.mark.parametrize("dt", [5.0, 53.0, 600.0])
def test_exact_solution_matches_rk4(duty, dt):
    p = ThermalParams()
    t = Thermal(p, plate_c=50.0, liquid_c=30.0)
    t.advance(dt, duty)
    plate, liquid = rk4(p, 50.0, 30.0, duty, dt, n=20000)
    assert t.plate_c == pytest.approx(plate, abs=1e-9)
    assert t.liquid_c == pytest.approx(liquid, abs=1e-9)


@given(warmup=schedules, duty=duties, a=steps, b=steps)
def test_splitting_dt_gives_the_same_result(warmup, duty, a, b):
    split, whole = Thermal(), Thermal()
    for d, dt in warmup:
        split.advance(dt, d)
        whole.advance(dt, d)
    split.advance(a, duty)
    split.advance(b, duty)
    whole.advance(a + b, duty)
    assert split.plate_c == pytest.approx(whole.plate_c, abs=1e-9)
    assert split.liquid_c == pytest.approx(whole.liquid_c, abs=1e-9)


def test_many_small_steps_equal_one_big_step():
    split, whole = Thermal(), Thermal()
    for _ in range(3600):
        split.advance(1.0, 45.0)
    whole.advance(3600.0, 45.0)
    assert split.plate_c == pytest.approx(whole.plate_c, abs=1e-9)
    assert split.liquid_c == pytest.approx(whole.liquid_c, abs=1e-9)


@given(schedules)
def test_temperatures_stay_between_ambient_and_the_full_duty_steady_state(schedule):
    t = Thermal()
    top_plate, top_liquid = t.steady_state(100.0)
    for duty, dt in schedule:
        t.advance(dt, duty)
        # Either node may be the hotter one (the liquid lags when the heater switches off).
        assert t.liquid_c >= 22.0 - 1e-9 and t.plate_c >= 22.0 - 1e-9
        assert t.plate_c <= top_plate + 1e-9
        assert t.liquid_c <= top_liquid + 1e-9


def test_propagator_is_identity_at_zero_and_a_semigroup():
    t = Thermal()
    ((a, b), (c, d)) = t.propagator(0.0)
    assert (a, b, c, d) == pytest.approx((1.0, 0.0, 0.0, 1.0), abs=1e-15)
    p1, p2, p12 = t.propagator(17.0), t.propagator(230.0), t.propagator(247.0)
    product = [[sum(p2[i][k] * p1[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
    for i in range(2):
        for j in range(2):
            assert product[i][j] == pytest.approx(p12[i][j], abs=1e-14)


def test_duty_is_clamped_and_nan_refused():
    over, full = Thermal(), Thermal()
    over.advance(100.0, 250.0)
    full.advance(100.0, 100.0)
    assert over.plate_c == full.plate_c
    under = Thermal()
    under.advance(100.0, -5.0)
    assert under.plate_c == 22.0
    with pytest.raises(ValueError):
        Thermal().advance(1.0, float("nan"))
    for dt in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Thermal().advance(dt, 10.0)


def test_sensor_reading_is_quantised_noisy_and_deterministic():
    t = Thermal(plate_c=40.03)
    reads = [t.sensor_reading(random.Random(7)) for _ in range(3)]
    assert reads[0] == reads[1] == reads[2]
    rng = random.Random(1)
    values = [t.sensor_reading(rng) for _ in range(20000)]
    for v in values:
        assert (v / 0.0625) == pytest.approx(round(v / 0.0625), abs=1e-9)
    assert statistics.fmean(values) == pytest.approx(40.03, abs=0.002)
    assert 0.03 < statistics.pstdev(values) < 0.045  # 0.03 C noise plus the 0.0625 C step (sd 0.018)


def test_ambient_can_change_during_a_run():
    t = Thermal()
    t.ambient_c = 30.0
    t.advance(20 * 690.0, 0.0)
    assert (t.plate_c, t.liquid_c) == pytest.approx((30.0, 30.0), abs=1e-3)
    assert t.steady_state(100.0)[0] == pytest.approx(30.0 + 44.444, abs=0.01)


def test_disconnected_plate_does_not_heat_and_its_sensor_fails():
    t = Thermal(plate_disconnected=True)
    t.advance(3600.0, 100.0)
    assert (t.plate_c, t.liquid_c) == (22.0, 22.0)
    with pytest.raises(PlateSensorError) as caught:
        t.sensor_reading(random.Random(0))
    assert isinstance(caught.value, OSError)
    t.plate_disconnected = False
    t.advance(600.0, 100.0)
    assert t.plate_c > 50.0
    assert math.isfinite(t.sensor_reading(random.Random(0)))
