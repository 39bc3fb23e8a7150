"""Growth-rate filter on synthetic nOD: accuracy, tracking, outliers, dosing, robustness; and the warm-up."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.growth_rate_filter import (
    POST_DOSE_OBSERVATIONS,
    Estimate,
    GrowthRateFilter,
    NormalizationFactors,
    dilution_log_shift,
    WarmUp,
    growth_rate_payload,
    od_filtered_payload,
)

DT = 5.0 / 3600.0  # the reference's 5 s reading interval, in hours


def exponential(mu: float, hours: float, noise: float, seed: int, start: float = 1.0) -> list[tuple[float, float]]:
    """(t_hours, nOD) every 5 s of exponential growth with relative Gaussian noise."""
    rng = random.Random(seed)
    steps = int(round(hours / DT))
    return [(k * DT, start * math.exp(mu * k * DT) * (1.0 + rng.gauss(0.0, noise))) for k in range(1, steps + 1)]


def run(f: GrowthRateFilter, data: list[tuple[float, float]]) -> list[tuple[float, Estimate]]:
    return [(t, f.update(nod, t)) for t, nod in data]


# -- accuracy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mu", [0.3, 0.8, 1.5])
def test_exponential_growth_rate_is_recovered_within_5_percent(mu, seed):
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    results = run(f, exponential(mu, 3.0, 0.005, seed))
    settled = [e.growth_rate for t, e in results if t >= 1.5]
    assert all(abs(r - mu) <= 0.05 * mu for r in settled), (min(settled), max(settled))
    assert not any(e.outlier for _, e in results)


def test_two_state_mode_also_recovers_the_rate():
    f = GrowthRateFilter(
        1.0, observation_noise=0.005, drift_process_noise=0.0, initial_drift_std=0.0, start_hours=0.0
    )
    results = run(f, exponential(0.8, 3.0, 0.005, seed=3))
    assert all(e.growth_rate_drift == 0.0 for _, e in results)
    assert all(abs(e.growth_rate - 0.8) <= 0.04 for t, e in results if t >= 1.5)


def test_rate_uncertainty_shrinks_as_data_arrive():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    results = run(f, exponential(0.8, 2.0, 0.005, seed=4))
    assert results[-1][1].rate_std < 0.1 * results[0][1].rate_std


def test_a_step_change_in_growth_rate_is_tracked():
    rng = random.Random(5)
    data, log_od = [], 0.0
    for k in range(1, int(round(5.0 / DT)) + 1):
        t = k * DT
        log_od += (0.4 if t <= 2.0 else 1.0) * DT
        data.append((t, math.exp(log_od) * (1.0 + rng.gauss(0.0, 0.005))))
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    results = run(f, data)
    before = [e.growth_rate for t, e in results if 1.5 <= t <= 2.0]
    after = [e.growth_rate for t, e in results if t >= 3.5]
    assert all(abs(r - 0.4) <= 0.03 for r in before)
    assert all(abs(r - 1.0) <= 0.05 for r in after)
    # and it gets most of the way within half an hour
    assert next(e.growth_rate for t, e in results if t >= 2.5) > 0.85


def test_scaling_the_input_does_not_change_the_rate():
    data = exponential(0.7, 1.0, 0.005, seed=6)
    a = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    b = GrowthRateFilter(37.0, observation_noise=0.005, start_hours=0.0)
    for t, nod in data:
        ea, eb = a.update(nod, t), b.update(37.0 * nod, t)
        assert eb.growth_rate == pytest.approx(ea.growth_rate, rel=1e-9, abs=1e-12)
        assert eb.od_filtered == pytest.approx(37.0 * ea.od_filtered, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3), seed=st.integers(0, 1000))
def test_rate_estimates_are_scale_invariant(scale, seed):
    data = exponential(0.9, 0.3, 0.01, seed)
    a = GrowthRateFilter(1.0, start_hours=0.0)
    b = GrowthRateFilter(scale, start_hours=0.0)
    for t, nod in data:
        assert b.update(scale * nod, t).growth_rate == pytest.approx(a.update(nod, t).growth_rate, abs=1e-9)


# -- outliers ------------------------------------------------------------------------------------------


def test_a_single_outlier_is_rejected_and_changes_nothing_but_time():
    data = exponential(0.8, 1.0, 0.005, seed=7)
    spike_at = 500
    with_spike = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    without = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    for i, (t, nod) in enumerate(data):
        if i == spike_at:
            e = with_spike.update(nod * 1.3, t)
            assert e.outlier and not e.skipped
            continue
        ea, eb = with_spike.update(nod, t), without.update(nod, t)
        assert ea.growth_rate == pytest.approx(eb.growth_rate, abs=1e-9)
        assert ea.od_filtered == pytest.approx(eb.od_filtered, rel=1e-9)


def test_a_downward_spike_is_rejected_too():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    run(f, exponential(0.8, 1.0, 0.005, seed=8))
    rate = f.growth_rate
    e = f.update(0.2, 1.0 + DT)
    assert e.outlier and e.growth_rate == pytest.approx(rate, abs=1e-3)


def test_a_sustained_unannounced_jump_is_accepted_as_a_level_shift():
    f = GrowthRateFilter(1.0, observation_noise=0.005, max_consecutive_outliers=5, start_hours=0.0)
    data = exponential(0.8, 1.5, 0.005, seed=9)
    flags = []
    for t, nod in data:
        e = f.update(nod if t < 1.0 else 0.7 * nod, t)
        if t >= 1.0:
            flags.append(e.outlier)
    assert flags[:4] == [True] * 4 and not any(flags[4:])
    assert f.od_filtered == pytest.approx(0.7 * math.exp(0.8 * data[-1][0]), rel=0.02)
    assert f.growth_rate == pytest.approx(0.8, abs=0.1)


def test_outlier_threshold_must_exceed_2():
    with pytest.raises(ValueError, match="> 2"):
        GrowthRateFilter(1.0, outlier_std_threshold=2.0)
    GrowthRateFilter(1.0, outlier_std_threshold=2.01)


# -- dosing --------------------------------------------------------------------------------------------


def _grow_then_dilute(f: GrowthRateFilter, announce: bool, factor: float = 0.8, mu: float = 0.8):
    data = exponential(mu, 3.0, 0.005, seed=10)
    out = []
    for t, nod in data:
        diluted = t > 2.0
        if announce and diluted and t - DT <= 2.0:
            f.dosing_event(2.0)
        out.append((t, f.update(factor * nod if diluted else nod, t)))
    return out


def test_a_dilution_right_after_a_dosing_event_is_accepted_and_does_not_crash_the_rate():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    results = _grow_then_dilute(f, announce=True)
    after = [(t, e) for t, e in results if t > 2.0]
    assert not after[0][1].outlier and not after[1][1].outlier
    # the level follows the dilution within two observations ...
    t2, e2 = after[1]
    assert e2.od_filtered == pytest.approx(0.8 * math.exp(0.8 * t2), rel=0.015)
    # ... while the rate is not pushed down (let alone negative) beyond a small margin
    assert min(e.growth_rate for _, e in after) >= 0.8 - 0.06
    assert all(abs(e.growth_rate - 0.8) <= 0.04 for t, e in after if t >= 2.5)
    assert not any(e.outlier for _, e in after)


def test_the_same_dilution_unannounced_is_first_rejected():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    results = _grow_then_dilute(f, announce=False)
    first_after = next(e for t, e in results if t > 2.0)
    assert first_after.outlier


def test_the_post_dose_window_is_exactly_two_observations():
    assert POST_DOSE_OBSERVATIONS == 2
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    data = exponential(0.8, 1.0, 0.005, seed=11)
    run(f, data)
    t = data[-1][0]
    level = math.exp(0.8 * t)
    f.dosing_event(t)
    assert f.post_dose_remaining == 2
    e1 = f.update(level * 0.9, t + DT)
    e2 = f.update(level * 0.45, t + 2 * DT)  # a wild jump, still inside the window: accepted
    assert not e1.outlier and not e2.outlier
    assert f.post_dose_remaining == 0
    e3 = f.update(level * 0.1, t + 3 * DT)  # third observation: gated again
    assert e3.outlier


def test_a_second_dose_restarts_the_window():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    f.update(1.0, DT)
    f.dosing_event(DT)
    f.update(1.0, 2 * DT)
    f.dosing_event(2 * DT)
    assert f.post_dose_remaining == 2


def test_skipped_observations_do_not_use_up_the_window():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0)
    f.dosing_event(0.0)
    assert f.update(0.0, DT).skipped
    assert f.post_dose_remaining == 2


# -- robustness ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.3, math.nan, math.inf, -math.inf])
def test_zero_negative_or_non_finite_observations_are_skipped(bad):
    f = GrowthRateFilter(1.0, start_hours=0.0)
    f.update(1.01, DT)
    before = (f.growth_rate, f.od_filtered, f.covariance, f.last_time_hours)
    e = f.update(bad, 2 * DT)
    assert e.skipped and not e.outlier
    assert (f.growth_rate, f.od_filtered, f.covariance, f.last_time_hours) == before


def test_out_of_order_observations_are_skipped():
    f = GrowthRateFilter(1.0, start_hours=0.0)
    f.update(1.01, 2 * DT)
    assert f.update(1.0, DT).skipped
    assert f.last_time_hours == 2 * DT


def test_a_long_gap_restarts_at_the_new_level_and_keeps_the_rate():
    f = GrowthRateFilter(1.0, observation_noise=0.005, start_hours=0.0, max_gap_hours=12.0)
    data = exponential(0.8, 1.0, 0.005, seed=12)
    run(f, data)
    rate = f.growth_rate
    e = f.update(5.0, data[-1][0] + 13.0)
    assert e.od_filtered == pytest.approx(5.0) and e.growth_rate == rate and not e.outlier


def test_first_update_without_a_start_time_sets_the_clock():
    f = GrowthRateFilter(1.0)
    e = f.update(1.0, 1234.5)
    assert f.last_time_hours == 1234.5 and e.growth_rate == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_nod": 0.0},
        {"initial_nod": -1.0},
        {"initial_nod": math.nan},
        {"observation_noise": 0.0},
        {"rate_process_noise": -1.0},
        {"rate_limits": (1.0, -1.0)},
        {"initial_rate": 10.0},
        {"max_consecutive_outliers": 0},
        {"start_hours": math.inf},
    ],
)
def test_bad_parameters_are_refused(kwargs):
    kwargs = {"initial_nod": 1.0, **kwargs}
    with pytest.raises(ValueError):
        GrowthRateFilter(**kwargs)


def test_non_finite_time_is_an_error():
    f = GrowthRateFilter(1.0)
    with pytest.raises(ValueError):
        f.update(1.0, math.nan)
    with pytest.raises(ValueError):
        f.dosing_event(math.inf)


any_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-0.05, max_value=0.05),  # noisy blank-subtracted OD around zero
    st.floats(min_value=0.5, max_value=2.0),
    st.just(0.0),
)
steps = st.lists(
    st.tuples(
        st.one_of(
            st.floats(min_value=0.0, max_value=0.01),
            st.floats(min_value=0.0, max_value=30.0),
            st.floats(min_value=0.0, max_value=1e5),
        ),
        any_value,
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    initial=st.floats(min_value=1e-300, max_value=1e300),
    noise=st.floats(min_value=1e-6, max_value=10.0),
    floor=st.floats(min_value=0.0, max_value=10.0),
    max_gap=st.sampled_from([0.01, 12.0, 1e6]),
)
def test_never_nan_never_non_positive(steps, initial, noise, floor, max_gap):
    f = GrowthRateFilter(
        initial, observation_noise=noise, observation_noise_floor=floor, max_gap_hours=max_gap, start_hours=0.0
    )
    t = 0.0
    low, high = f.rate_limits
    for dt, value, dose in steps:
        t += dt
        if dose:
            f.dosing_event(t)
        e = f.update(value, t)
        assert math.isfinite(e.growth_rate) and low <= e.growth_rate <= high
        assert math.isfinite(e.od_filtered) and e.od_filtered > 0
        assert math.isfinite(e.rate_std) and e.rate_std >= 0
        assert math.isfinite(e.growth_rate_drift)
        assert all(math.isfinite(c) for row in f.covariance for c in row)
        if not (isinstance(value, float) and math.isfinite(value) and value > 0):
            assert e.skipped


def test_payloads():
    e = Estimate(growth_rate=0.5, od_filtered=1.2, rate_std=0.01)
    assert growth_rate_payload(e, "T") == {"growth_rate": 0.5, "timestamp": "T"}
    assert od_filtered_payload(e, "T") == {"od_filtered": 1.2, "timestamp": "T"}


# -- warm-up -------------------------------------------------------------------------------------------


def test_warm_up_needs_exactly_n_usable_samples():
    w = WarmUp(10)
    for i in range(9):
        assert w.add({"2": 0.05, "3": 0.02}) is False
    assert w.collected == 9 and w.factors is None
    assert w.add({"2": 0.05, "3": 0.02}) is True
    assert w.complete
    assert w.factors is not None
    assert w.factors.means == {"2": pytest.approx(0.05), "3": pytest.approx(0.02)}
    assert w.factors.normalize({"2": 0.1, "3": 0.01}) == {"2": pytest.approx(2.0), "3": pytest.approx(0.5)}


def test_warm_up_mean_is_robust_to_one_spike():
    w = WarmUp(10)
    for v in [1.0] * 9 + [50.0]:
        w.add({"2": v})
    assert w.factors is not None and w.factors.means["2"] == pytest.approx(1.0)


def test_warm_up_skips_zero_negative_and_non_finite_samples():
    w = WarmUp(3)
    for v in [0.0, -0.01, math.nan, 1.0, 1.0]:
        w.add({"2": v})
    assert w.collected == 2 and not w.complete


def test_a_dose_during_warm_up_restarts_collection():
    w = WarmUp(10)
    for _ in range(6):
        w.add({"2": 1.0})
    w.dosing_event()
    assert w.collected == 0
    for _ in range(9):
        assert not w.add({"2": 0.8})
    assert w.add({"2": 0.8})
    assert w.factors is not None and w.factors.means["2"] == pytest.approx(0.8)


def test_a_known_dose_during_warm_up_rescales_what_was_collected():
    w = WarmUp(10)
    for _ in range(6):
        w.add({"2": 1.0})
    w.dosing_event(0.8)  # OD after / OD before
    assert w.collected == 6
    for _ in range(3):
        assert not w.add({"2": 0.8})
    assert w.add({"2": 0.8})
    assert w.factors is not None and w.factors.means["2"] == pytest.approx(0.8)


def test_a_dose_after_warm_up_changes_nothing():
    w = WarmUp(2)
    w.add({"2": 1.0})
    w.add({"2": 1.0})
    factors = w.factors
    w.dosing_event()
    assert w.complete and w.factors is factors


def test_restart_reuses_the_cached_normalisation():
    first = WarmUp(10)
    for v in [0.050, 0.051, 0.049, 0.050, 0.052, 0.050, 0.048, 0.050, 0.051, 0.049]:
        first.add({"2": v})
    assert first.factors is not None
    cached = first.factors.to_dict()  # what goes into the experiment cache (JSON-ready)
    again = WarmUp.restored(NormalizationFactors.from_dict(cached))
    assert again.complete and again.collected == 10
    assert again.add({"2": 0.2}) is True  # readings after the restart do not re-open collection
    # the culture has grown 4x since: nOD says so instead of resetting to 1.0
    assert again.factors is not None and again.factors.combine({"2": 0.2}) == pytest.approx(0.2 / 0.050, rel=0.01)


def test_channel_set_may_not_change_during_warm_up():
    w = WarmUp(5)
    w.add({"2": 1.0})
    with pytest.raises(ValueError, match="channels changed"):
        w.add({"2": 1.0, "3": 1.0})


def test_warm_up_variance_ignores_the_growth_trend():
    w = WarmUp(10)
    for i in range(10):
        w.add({"2": 1.0 + 0.002 * i})  # a clean 2 % rise, no noise
    assert w.factors is not None and w.factors.variances["2"] == pytest.approx(0.0, abs=1e-12)
    assert w.factors.observation_noise() == 1e-4  # floored, so the filter never gets zero noise


def test_warm_up_noise_estimate_is_close_to_the_truth():
    rng = random.Random(13)
    estimates = []
    for _ in range(200):
        w = WarmUp(10)
        while not w.add({"2": 0.05 * (1.0 + rng.gauss(0.0, 0.01))}):
            pass
        assert w.factors is not None
        estimates.append(w.factors.observation_noise())
    assert sum(estimates) / len(estimates) == pytest.approx(0.01, rel=0.15)


def test_combine_weights_channels_by_inverse_variance():
    factors = NormalizationFactors(means={"2": 1.0, "3": 1.0}, variances={"2": 1e-4, "3": 9e-4})
    # weights 1/1e-4 : 1/9e-4 = 9 : 1
    assert factors.combine({"2": 1.0, "3": 2.0}) == pytest.approx((9 * 1.0 + 1 * 2.0) / 10)
    assert factors.combine({"2": math.nan, "3": 2.0}) == pytest.approx(2.0)
    assert factors.combine({"4": 1.0}) is None
    assert factors.observation_noise() == pytest.approx(math.sqrt(1 / (1e4 + 1e4 / 9)))


@pytest.mark.parametrize(
    "data",
    [
        {"means": {"2": 0.0}, "variances": {"2": 0.0}},
        {"means": {"2": 1.0}, "variances": {"2": -1.0}},
        {"means": {"2": 1.0}, "variances": {"3": 0.0}},
        {"means": {}, "variances": {}},
        {"means": {"2": math.nan}, "variances": {"2": 0.0}},
    ],
)
def test_corrupt_cached_factors_are_refused(data):
    with pytest.raises(ValueError):
        NormalizationFactors.from_dict(data)


def test_warm_up_then_filter_end_to_end():
    """Raw OD (volts) -> warm-up -> filter: the normalisation constant does not bias the rate."""
    rng = random.Random(14)
    w = WarmUp()
    f = None
    estimates = []
    for k in range(1, int(2.0 / DT)):
        t = k * DT
        raw = {"2": 0.03 * math.exp(0.6 * t) * (1 + rng.gauss(0, 0.005))}
        if not w.complete:
            if w.add(raw):
                assert w.factors is not None
                f = GrowthRateFilter(1.0, observation_noise=w.factors.observation_noise(), start_hours=t)
            continue
        assert f is not None and w.factors is not None
        nod = w.factors.combine(raw)
        assert nod is not None
        estimates.append((t, f.update(nod, t)))
    assert all(abs(e.growth_rate - 0.6) <= 0.03 for t, e in estimates if t >= 1.0)
    assert estimates[-1][1].od_filtered == pytest.approx(math.exp(0.6 * estimates[-1][0]), rel=0.03)


# -- messages in, cache out -------------------------------------------------------------------------------

import json  # noqa: E402

from actors.growth_rate_filter import (  # noqa: E402
    GrowthRateCache,
    iso_to_hours,
    parse_dosing_event,
    parse_ods,
)


def test_iso_to_hours_reads_payload_timestamps():
    assert iso_to_hours("1970-01-01T01:00:00.000Z") == pytest.approx(1.0)
    assert iso_to_hours("1970-01-01T02:30:00+00:00") == pytest.approx(2.5)
    for bad in ("yesterday", None, 12.0):
        with pytest.raises(ValueError, match="ISO 8601"):
            iso_to_hours(bad)


def test_parse_ods_reads_every_channel_and_flags_unusable_ones():
    text = json.dumps({"timestamp": "1970-01-01T01:00:00.000Z", "ods": {"2": {"od": 0.5}, "3": {"od": 0.0}, "4": {"od": -1}}})
    obs = parse_ods(text)
    assert obs.t_hours == pytest.approx(1.0) and obs.ods == {"2": 0.5, "3": 0.0, "4": -1.0}
    assert obs.unusable_channels == ["3", "4"]


@pytest.mark.parametrize(
    "text",
    ["not json", "{}", json.dumps({"timestamp": "1970-01-01T00:00:00Z", "ods": {}}),
     json.dumps({"timestamp": "1970-01-01T00:00:00Z", "ods": {"2": {"od": "x"}}}),
     json.dumps({"ods": {"2": {"od": 0.1}}})],
)
def test_parse_ods_refuses_malformed_messages(text):
    with pytest.raises(ValueError):
        parse_ods(text)


def test_parse_dosing_event():
    dose = parse_dosing_event(json.dumps(
        {"volume_change": 1.5, "event": "add_media", "source_of_event": "turbidostat", "timestamp": "1970-01-01T01:00:00Z"}
    ))
    assert dose is not None and dose.t_hours == pytest.approx(1.0) and dose.volume_change == 1.5
    ignored = {"event": "add_media", "timestamp": "1970-01-01T01:00:00Z"}
    assert parse_dosing_event(json.dumps({**ignored, "volume_change": 0})) is None
    assert parse_dosing_event(json.dumps({**ignored, "volume_change": 1, "source_of_event": "pump_calibration"})) is None
    for bad in ({**ignored, "volume_change": -1}, {**ignored, "volume_change": True}, {"volume_change": 1, "timestamp": "1970-01-01T01:00:00Z"}):
        with pytest.raises(ValueError):
            parse_dosing_event(json.dumps(bad))


def test_growth_rate_cache_round_trips_and_clamps_the_initial_rate():
    factors = NormalizationFactors(means={"2": 0.1}, variances={"2": 1e-5})
    cache = GrowthRateCache(factors=factors, growth_rate=0.4, od_filtered=1.2, timestamp="1970-01-01T01:00:00.000Z")
    assert GrowthRateCache.from_dict(json.loads(json.dumps(cache.to_dict()))) == cache
    assert cache.initial_rate() == 0.4
    assert GrowthRateCache(factors=factors, growth_rate=9.0).initial_rate() == 5.0
    assert GrowthRateCache(factors=factors).initial_rate() == 0.0
    odd = GrowthRateCache.from_dict({"normalization": factors.to_dict(), "growth_rate": "fast", "od_filtered": -1})
    assert odd.growth_rate is None and odd.od_filtered is None
    for bad in ({}, {"normalization": {"means": {"2": 0.1}}}, {"normalization": {"means": {"2": 0}, "variances": {"2": 0}}}):
        with pytest.raises(ValueError):
            GrowthRateCache.from_dict(bad)


def test_a_restored_warm_up_with_the_cached_rate_continues_without_a_dip():
    factors = NormalizationFactors(means={"2": 0.1}, variances={"2": 2.5e-5})
    cache = GrowthRateCache.from_dict(GrowthRateCache(factors=factors, growth_rate=0.6).to_dict())
    warm_up = WarmUp.restored(cache.factors)
    assert warm_up.complete

    def worst_error(initial_rate: float) -> float:
        f = GrowthRateFilter(warm_up.factors.combine({"2": 0.3}), initial_rate=initial_rate, start_hours=0.0)
        rng = random.Random(3)
        errors = []
        for k in range(1, 11):  # the first minute after a restart
            t = k * DT
            nod = warm_up.factors.combine({"2": 0.3 * math.exp(0.6 * t) * (1 + rng.gauss(0, 0.005))})
            errors.append(abs(f.update(nod, t).growth_rate - 0.6))
        return max(errors)

    assert worst_error(cache.initial_rate()) < 0.1
    assert worst_error(0.0) > 0.4  # a restart from 0 would dip


def _grow(f: GrowthRateFilter, rate: float, start_h: float, end_h: float, step_h: float, level: float) -> float:
    """Noise-free exponential readings from ``start_h`` to ``end_h``; returns the final level (nOD)."""
    t = start_h
    while t < end_h - 1e-12:
        t += step_h
        level *= math.exp(rate * step_h)
        f.update(level, t)
    return level


def test_known_dilutions_every_few_minutes_leave_the_rate_estimate_unbiased():
    # A chemostat: 0.75 ml into 15 ml every 6 min, readings every minute; the culture grows at 0.5/h.
    f = GrowthRateFilter(1.0, 0.5, start_hours=0.0)
    shift = dilution_log_shift(15.0, 0.75)
    log_level = 0.0
    for minute in range(1, 600):
        log_level += 0.5 / 60
        f.update(math.exp(log_level), minute / 60)
        if minute % 6 == 0:  # the dose, half a minute after this reading
            log_level += shift
            f.dosing_event((minute + 0.5) / 60, shift)
    assert f.growth_rate == pytest.approx(0.5, abs=0.01)


def test_a_dose_reported_after_readings_that_saw_it_is_put_back_in_its_place():
    on_time = GrowthRateFilter(1.0, 0.5, start_hours=0.0)
    late = GrowthRateFilter(1.0, 0.5, start_hours=0.0)
    level = _grow(on_time, 0.5, 0.0, 1.0, 1 / 60, 1.0)
    _grow(late, 0.5, 0.0, 1.0, 1 / 60, 1.0)
    shift = dilution_log_shift(15.0, 3.0)
    on_time.dosing_event(1.0, shift)
    after = level * math.exp(shift)
    readings = []
    for i in range(1, 4):
        after *= math.exp(0.5 / 60)
        readings.append((after, 1.0 + i / 60))
    for nod, t in readings:
        on_time.update(nod, t)
        late.update(nod, t)  # these saw the dilution before its report arrived
    late.dosing_event(1.0, shift)
    assert late.growth_rate == pytest.approx(on_time.growth_rate, abs=1e-9)
    assert late.log_od == pytest.approx(on_time.log_od, abs=1e-9)


def test_dilution_log_shift_is_the_log_of_the_volume_ratio():
    assert dilution_log_shift(15.0, 0.0) == 0.0
    assert dilution_log_shift(15.0, 15.0) == pytest.approx(math.log(0.5))
    with pytest.raises(ValueError):
        dilution_log_shift(0.0, 1.0)
