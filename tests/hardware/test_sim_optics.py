"""Simulated photodiodes: self-test thresholds, optical shape, noise statistics, determinism."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.hardware.sim_optics import CHANNELS, Optics, OpticsParams

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def optics(seed: int = 0, **overrides: object) -> Optics:
    return Optics(OpticsParams(**overrides), random.Random(seed))  # type: ignore[arg-type]


def readings(o: Optics, od: float, pct: float = 80.0, n: int = 40, temp: float = 25.0) -> dict[str, float]:
    """Mean of ``n`` samples per channel: one OD reading, as the OD job takes it."""
    samples = [o.voltages(od, pct, temp, i / 47.0) for i in range(n)]
    return {c: statistics.fmean(s[c] for s in samples) for c in samples[0]}


def test_all_channels_are_reported():
    assert set(optics().voltages(0.1, 80.0, 25.0, 0.0)) == set(CHANNELS) == {"REF", "45", "90", "135", "180"}


@given(seed=seeds)
def test_same_seed_same_sequence(seed):
    a, b = optics(seed, hum_amplitude_v=0.001), optics(seed, hum_amplitude_v=0.001)
    calls = [(0.05 * i, 80.0 if i % 7 else 0.0, 25.0 + i % 3, 0.3 * i) for i in range(200)]
    assert [a.voltages(*c) for c in calls] == [b.voltages(*c) for c in calls]


def test_different_seeds_differ():
    a, b = optics(1), optics(2)
    assert a.voltages(0.5, 80.0, 25.0, 0.0) != b.voltages(0.5, 80.0, 25.0, 0.0)


@settings(max_examples=50)
@given(seed=seeds)
def test_blank_is_below_the_self_test_thresholds(seed):
    """Pioreactor's blank self-test: 90 degrees <= 0.035 V and 135 degrees <= 0.15 V at the usual IR."""
    o = optics(seed)
    for _ in range(200):
        v = o.voltages(0.0, 80.0, 25.0, 0.0)
        assert v["90"] <= 0.035
        assert v["135"] <= 0.15
        assert v["45"] <= 0.035


@settings(max_examples=50)
@given(seed=seeds)
def test_ref_is_inside_the_self_test_window_at_80_percent(seed):
    o = optics(seed)
    for _ in range(200):
        ref = o.voltages(0.3, 80.0, 25.0, 0.0)["REF"]
        assert 0.01 <= ref <= 1.0
        assert ref < 0.256  # auto-IR keeps REF under the ADS1115's lowest full-scale range
    # 0.100 V from the LED (Mock_ADC: 0.100 V +- 0.0003 V per unit) over the 0.002 V dark offset.
    assert readings(o, 0.3)["REF"] == pytest.approx(0.102, rel=0.03)


@settings(max_examples=50)
@given(seed=seeds)
def test_fresh_culture_reads_a_few_tens_of_millivolts_at_90_degrees(seed):
    v90 = readings(optics(seed), 0.05)["90"]
    assert 0.01 <= v90 <= 0.06


def test_led_off_reads_the_dark_offset_only():
    o = optics(3)
    for od in (0.0, 0.5, 2.0):
        assert o.voltages(od, 0.0, 25.0, 1.0) == {c: 0.002 for c in CHANNELS}


def test_led_off_with_ambient_light_and_hum():
    o = optics(3, ambient_v=0.03, hum_amplitude_v=0.001, hum_hz=50.0)
    values = [o.voltages(1.0, 0.0, 25.0, i / 1000.0)["90"] for i in range(1000)]  # 50 whole hum periods
    assert max(values) < 0.080  # Pioreactor's ambient-light self-test limit
    assert statistics.fmean(values) == pytest.approx(0.032, abs=1e-6)
    assert max(values) - min(values) == pytest.approx(0.002, rel=0.02)


def test_scatter_rises_then_saturates_and_transmission_falls():
    o = Optics(OpticsParams.noiseless(), random.Random(0))
    ods = [0.1 * i for i in range(0, 80)]
    v90 = [o.mean_voltages(x, 80.0, 25.0)["90"] for x in ods]
    v180 = [o.mean_voltages(x, 80.0, 25.0)["180"] for x in ods]
    peak = max(range(len(ods)), key=v90.__getitem__)
    assert ods[peak] == pytest.approx(1.0 / o.params.a_90, abs=0.05)
    assert v90[: peak + 1] == sorted(v90[: peak + 1])
    assert v180 == sorted(v180, reverse=True)
    # Auto-IR assumes up to ~50x growth from a fresh culture stays under the 3.0 V warning.
    assert max(v90) < 3.0


def test_ratio_to_ref_cancels_led_temperature_drift():
    o = Optics(OpticsParams.noiseless(dark_offset_v=0.0), random.Random(0))
    cold = o.mean_voltages(0.8, 80.0, 20.0)
    warm = o.mean_voltages(0.8, 80.0, 40.0)
    assert warm["REF"] < cold["REF"]  # the IR LED dims as it warms
    assert warm["90"] / warm["REF"] == pytest.approx(cold["90"] / cold["REF"], rel=1e-12)


def test_signal_scales_with_ir_intensity():
    o = Optics(OpticsParams.noiseless(dark_offset_v=0.0), random.Random(0))
    half = o.mean_voltages(1.0, 40.0, 25.0)
    full = o.mean_voltages(1.0, 80.0, 25.0)
    for c in CHANNELS:
        assert full[c] == pytest.approx(2 * half[c], rel=1e-12)


def test_noiseless_voltages_equal_the_mean():
    o = Optics(OpticsParams.noiseless(), random.Random(5))
    assert o.voltages(0.7, 65.0, 30.0, 12.0) == o.mean_voltages(0.7, 65.0, 30.0)


def test_reading_noise_has_the_mock_adc_cv_and_weak_autocorrelation():
    o = optics(11, shock_probability=0.0)
    mean = o.mean_voltages(1.0, 80.0, 25.0)["90"] - 0.002
    samples = [o.voltages(1.0, 80.0, 25.0, 0.0)["90"] - 0.002 for _ in range(40 * 2000)]
    per_reading = [statistics.fmean(samples[i : i + 40]) for i in range(0, len(samples), 40)]
    assert statistics.pstdev(per_reading) / mean == pytest.approx(0.0056, rel=0.1)
    residuals = [s - mean for s in samples]
    lag1 = sum(a * b for a, b in zip(residuals, residuals[1:])) / sum(r * r for r in residuals)
    assert abs(lag1 - 0.02) < 0.02


def test_shocks_are_rare_and_a_few_sigma():
    # rho = 1 zeroes the AR(1) innovations (scale sqrt(1 - rho^2)) but keeps sigma, so every deviation
    # from the clean signal is a shock and can be counted and sized directly.
    p = OpticsParams(ar_rho=1.0, gain_sigma=0.0, dark_offset_v=0.0)
    o = Optics(p, random.Random(4))
    clean = o.mean_voltages(1.0, 80.0, 25.0)["90"]
    sigma = p.noise_cv * math.sqrt(p.samples_per_reading) * clean
    n = 100_000
    deviations = [o.voltages(1.0, 80.0, 25.0, 0.0)["90"] - clean for _ in range(n)]
    shocks = [abs(d) / sigma for d in deviations if d != 0.0]
    assert len(shocks) / n == pytest.approx(0.0073, rel=0.15)
    assert all(2.0 - 1e-9 <= s <= 5.0 + 1e-9 for s in shocks)


def test_unit_gains_are_lognormal_with_the_mock_adc_spread():
    logs = [math.log(optics(seed).gains["90"]) for seed in range(4000)]
    assert statistics.fmean(logs) == pytest.approx(0.0, abs=0.006)
    assert statistics.pstdev(logs) == pytest.approx(0.071, rel=0.05)


def test_voltages_are_never_negative():
    o = optics(9, hum_amplitude_v=0.01)
    for i in range(2000):
        assert min(o.voltages(0.0, 0.0 if i % 2 else 80.0, 25.0, i * 0.0037).values()) >= 0.0


@pytest.mark.parametrize(
    "args",
    [
        (-0.1, 80.0, 25.0, 0.0),
        (float("nan"), 80.0, 25.0, 0.0),
        (0.1, 101.0, 25.0, 0.0),
        (0.1, -1.0, 25.0, 0.0),
        (0.1, 80.0, float("nan"), 0.0),
        (0.1, 80.0, 25.0, float("inf")),
    ],
)
def test_bad_inputs_are_refused(args):
    with pytest.raises(ValueError):
        optics().voltages(*args)


def test_channel_subset_and_bad_channels():
    o = optics(channels=("REF", "90"))
    assert set(o.voltages(0.1, 80.0, 25.0, 0.0)) == {"REF", "90"}
    with pytest.raises(ValueError):
        OpticsParams(channels=("REF", "60"))
