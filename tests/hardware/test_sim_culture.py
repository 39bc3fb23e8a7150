"""The simulated culture: CTMI, exact Baranyi-logistic growth, lag, death, dosing and mass balance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.hardware.sim_culture import Culture, CultureParams, cardinal_temperature_factor

temperatures = st.floats(min_value=-10.0, max_value=60.0, allow_nan=False)
seconds = st.floats(min_value=0.0, max_value=4 * 3600.0, allow_nan=False)
amounts = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)


def rk4_reference(params: CultureParams, od: float, hours: float, temperature_c: float, steps: int) -> float:
    """Integrate the original (q, X) ODE with classical RK4: an independent check of the closed form."""
    mu = params.mu_max * params.temperature_factor(temperature_c)
    kd, k = params.death_rate, params.carrying_capacity
    q = 1.0 / math.expm1(params.mu_max * params.lag_hours)

    def f(q_: float, x_: float) -> tuple[float, float]:
        alpha = q_ / (1.0 + q_)
        return mu * q_, (mu * alpha * (1.0 - x_ / k) - kd) * x_

    h = hours / steps
    x = od
    for _ in range(steps):
        k1 = f(q, x)
        k2 = f(q + h / 2 * k1[0], x + h / 2 * k1[1])
        k3 = f(q + h / 2 * k2[0], x + h / 2 * k2[1])
        k4 = f(q + h * k3[0], x + h * k3[1])
        q += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        x += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return x


# -- temperature factor -----------------------------------------------------------------------------------


def test_ctmi_is_one_at_the_optimum_and_zero_outside_the_cardinal_range():
    p = CultureParams()
    assert p.temperature_factor(p.t_opt_c) == pytest.approx(1.0, abs=1e-12)
    for t in (p.t_min_c, p.t_max_c, p.t_min_c - 1, p.t_max_c + 0.1, -40.0, 100.0):
        assert p.temperature_factor(t) == 0.0
    # E. coli defaults: 37 C is just below the optimum.
    assert 0.95 < p.temperature_factor(37.0) < 1.0


@given(
    t_min=st.floats(min_value=-5.0, max_value=20.0),
    span=st.floats(min_value=5.0, max_value=50.0),
    opt_frac=st.floats(min_value=0.51, max_value=0.99),
    t=temperatures,
)
def test_ctmi_stays_in_unit_interval_and_peaks_at_the_optimum(t_min, span, opt_frac, t):
    t_max = t_min + span
    t_opt = t_min + opt_frac * span
    phi = cardinal_temperature_factor(t, t_min, t_opt, t_max)
    assert 0.0 <= phi <= 1.0
    assert phi <= cardinal_temperature_factor(t_opt, t_min, t_opt, t_max) + 1e-12


def test_ctmi_rises_below_and_falls_above_the_optimum():
    p = CultureParams()
    below = [p.temperature_factor(p.t_min_c + i * 0.5) for i in range(int((p.t_opt_c - p.t_min_c) / 0.5) + 1)]
    above = [p.temperature_factor(p.t_opt_c + i * 0.5) for i in range(int((p.t_max_c - p.t_opt_c) / 0.5) + 1)]
    assert below == sorted(below)
    assert above == sorted(above, reverse=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_min_c": 40.0},
        {"t_opt_c": 20.0},  # below the midpoint of 5 and 47: the CTMI would go negative
        {"t_max_c": 30.0},
        {"mu_max": -1.0},
        {"carrying_capacity": 0.0},
        {"initial_od": float("nan")},
        {"lag_hours": float("inf")},
    ],
)
def test_invalid_params_are_refused(kwargs):
    with pytest.raises(ValueError):
        CultureParams(**kwargs)


# -- growth -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature_c", [37.0, 30.0, 20.0, 45.0, 50.0])
@pytest.mark.parametrize("hours", [0.5, 2.0, 8.0])
def test_closed_form_matches_rk4_of_the_ode(temperature_c, hours):
    p = CultureParams(death_rate=0.05)
    culture = Culture(p)
    culture.advance(hours * 3600.0, temperature_c)
    expected = rk4_reference(p, p.initial_od, hours, temperature_c, steps=4000)
    assert culture.od == pytest.approx(expected, rel=1e-8)


@given(
    warmup=st.lists(st.tuples(seconds, temperatures), max_size=5),
    a=seconds,
    b=seconds,
    temperature=temperatures,
)
def test_advance_is_additive_for_a_constant_temperature(warmup, a, b, temperature):
    split, whole = Culture(), Culture()
    for dt, t in warmup:
        split.advance(dt, t)
        whole.advance(dt, t)
    split.advance(a, temperature)
    split.advance(b, temperature)
    whole.advance(a + b, temperature)
    assert split.od == pytest.approx(whole.od, rel=1e-9, abs=1e-300)
    assert split.log_q == pytest.approx(whole.log_q, rel=1e-12)


@given(st.lists(st.tuples(seconds, temperatures), min_size=1, max_size=20))
def test_od_stays_between_zero_and_carrying_capacity(schedule):
    culture = Culture()
    for dt, t in schedule:
        culture.advance(dt, t)
        assert 0.0 <= culture.od <= culture.params.carrying_capacity
        assert 0.0 <= culture.lag_alpha <= 1.0


def test_exponential_phase_grows_at_mu_max_times_phi_after_the_lag():
    p = CultureParams(carrying_capacity=1e15, initial_od=0.01, lag_hours=1.0, death_rate=0.02)
    for temperature_c in (37.0, 30.0, 25.0):
        culture = Culture(p)
        phi = p.temperature_factor(temperature_c)
        # Well past the lag (longer when colder: lag scales as 1/phi).
        culture.advance(15 * 3600.0 / phi, temperature_c)
        before = culture.od
        culture.advance(1800.0, temperature_c)
        measured = math.log(culture.od / before) / 0.5
        assert measured == pytest.approx(p.mu_max * phi - p.death_rate, rel=1e-6)


def test_lag_is_the_baranyi_lag_at_the_optimum_and_scales_with_phi():
    # Without a logistic brake or death, ln X(t) -> ln X0 + mu * (t - lag) once the lag is over.
    for temperature_c, factor in ((39.0, 1.0), (30.0, None)):
        p = CultureParams(carrying_capacity=1e12, death_rate=0.0, lag_hours=1.5, initial_od=0.01)
        phi = p.temperature_factor(temperature_c) if factor is None else factor
        mu = p.mu_max * phi
        culture = Culture(p)
        hours = 15.0 / phi
        culture.advance(hours * 3600.0, temperature_c)
        apparent_lag = hours - math.log(culture.od / p.initial_od) / mu
        assert apparent_lag == pytest.approx(p.lag_hours / phi, rel=1e-6)


def test_no_lag_means_fully_adapted_from_the_start():
    p = CultureParams(lag_hours=0.0, carrying_capacity=1e15, death_rate=0.0)
    culture = Culture(p)
    assert culture.lag_alpha == 1.0
    culture.advance(3600.0, p.t_opt_c)
    assert culture.od == pytest.approx(p.initial_od * math.exp(p.mu_max), rel=1e-12)


def test_death_only_outside_the_growth_range_and_the_lag_does_not_progress():
    p = CultureParams(death_rate=0.05)
    culture = Culture(p)
    log_q = culture.log_q
    culture.advance(10 * 3600.0, 50.0)
    assert culture.od == pytest.approx(p.initial_od * math.exp(-0.5), rel=1e-12)
    assert culture.log_q == log_q
    assert culture.true_growth_rate(50.0) == pytest.approx(-0.05)


def test_stationary_phase_settles_where_growth_balances_death():
    p = CultureParams()
    culture = Culture(p)
    culture.advance(48 * 3600.0, 37.0)
    mu = p.mu_max * p.temperature_factor(37.0)
    assert culture.od == pytest.approx(p.carrying_capacity * (1.0 - p.death_rate / mu), rel=1e-6)
    assert culture.true_growth_rate(37.0) == pytest.approx(0.0, abs=1e-6)


def test_true_growth_rate_is_the_instantaneous_log_derivative():
    culture = Culture()
    culture.advance(2.5 * 3600.0, 37.0)
    rate = culture.true_growth_rate(37.0)
    before = culture.od
    culture.advance(1.0, 37.0)
    assert math.log(culture.od / before) * 3600.0 == pytest.approx(rate, rel=1e-3)


def test_very_long_advance_stays_finite():
    culture = Culture()
    culture.advance(365 * 24 * 3600.0, 37.0)
    assert math.isfinite(culture.od)
    assert culture.lag_alpha == 1.0


def test_advance_refuses_bad_inputs():
    culture = Culture()
    for dt, t in ((-1.0, 37.0), (float("nan"), 37.0), (float("inf"), 37.0), (1.0, float("nan"))):
        with pytest.raises(ValueError):
            culture.advance(dt, t)


# -- dosing -----------------------------------------------------------------------------------------------


def test_media_dilutes_biomass_and_alt_fraction():
    culture = Culture(volume_ml=15.0)
    culture.add_alt_media(1.0)
    assert culture.alt_media_fraction == pytest.approx(1.0 / 16.0)
    od = culture.od
    culture.add_media(2.0)
    assert culture.volume_ml == pytest.approx(18.0)
    assert culture.od == pytest.approx(od * 16.0 / 18.0)
    assert culture.alt_media_fraction == pytest.approx(1.0 / 18.0)
    assert (culture.media_added_ml, culture.alt_media_added_ml) == (2.0, 1.0)


def test_waste_cannot_pull_below_the_efflux_tube():
    culture = Culture(volume_ml=15.0, efflux_volume_ml=15.0)
    culture.add_media(1.5)
    od, fraction = culture.od, culture.alt_media_fraction
    assert culture.remove_waste(1.0) == pytest.approx(1.0)
    assert culture.volume_ml == pytest.approx(15.5)
    assert culture.remove_waste(3.0) == pytest.approx(0.5)
    assert culture.volume_ml == 15.0
    assert culture.remove_waste(1.0) == 0.0
    assert (culture.od, culture.alt_media_fraction) == (od, fraction)
    assert culture.waste_removed_ml == pytest.approx(1.5)


def test_waste_removes_nothing_when_below_the_efflux_level():
    culture = Culture(volume_ml=12.0, efflux_volume_ml=15.0)
    assert culture.remove_waste(5.0) == 0.0
    assert culture.volume_ml == 12.0


def test_overflow_caps_volume_latches_and_records_the_spill():
    culture = Culture(volume_ml=15.0, max_volume_ml=20.0)
    od = culture.od
    culture.add_alt_media(7.0)
    assert culture.overflowed
    assert culture.volume_ml == 20.0
    assert culture.spilled_ml == pytest.approx(2.0)
    # Mixed before spilling: the concentrations are those of 22 ml.
    assert culture.od == pytest.approx(od * 15.0 / 22.0)
    assert culture.alt_media_fraction == pytest.approx(7.0 / 22.0)
    culture.remove_waste(5.0)
    assert culture.overflowed


@pytest.mark.parametrize("method", ["add_media", "add_alt_media", "remove_waste"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_negative_or_non_finite_amounts_raise(method, bad):
    culture = Culture()
    with pytest.raises(ValueError):
        getattr(culture, method)(bad)


def test_geometry_is_checked():
    with pytest.raises(ValueError):
        Culture(volume_ml=25.0, max_volume_ml=20.0)
    with pytest.raises(ValueError):
        Culture(efflux_volume_ml=21.0, max_volume_ml=20.0)


operations = st.lists(st.tuples(st.sampled_from(["media", "alt", "waste"]), amounts), max_size=60)


@given(operations)
def test_alt_media_mass_balance_including_spills(ops):
    """fraction x volume == alt added - alt removed (waste and spill), tracked here in ml of alt media."""
    culture = Culture(volume_ml=15.0, efflux_volume_ml=15.0, max_volume_ml=20.0)
    alt_in_vial = 0.0
    added = removed = 0.0
    for kind, ml in ops:
        volume = culture.volume_ml
        if kind == "waste":
            taken = culture.remove_waste(ml)
            out = alt_in_vial * taken / volume
            alt_in_vial -= out
            removed += out
        else:
            alt = ml if kind == "alt" else 0.0
            (culture.add_alt_media if kind == "alt" else culture.add_media)(ml)
            added += alt
            alt_in_vial += alt
            total = volume + ml
            if total > 20.0:
                out = alt_in_vial * (total - 20.0) / total
                alt_in_vial -= out
                removed += out
        content = culture.alt_media_fraction * culture.volume_ml
        assert math.isclose(content, alt_in_vial, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(content, added - removed, rel_tol=1e-9, abs_tol=1e-9)
        assert 0.0 <= culture.alt_media_fraction <= 1.0
        assert culture.volume_ml <= 20.0
