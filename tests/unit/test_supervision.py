"""The supervisor's restart decision: intensity/period limit and exponential back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.supervision import CrashHistory, RestartPolicy, decide_restart, record_start

policies = st.builds(
    lambda n, window, base, factor, healthy: RestartPolicy(
        max_restarts=n,
        window_seconds=window,
        base_delay=base,
        max_delay=base * factor,
        healthy_after=healthy,
    ),
    st.integers(min_value=0, max_value=10),
    st.floats(min_value=1.0, max_value=3600.0),
    st.floats(min_value=0.0, max_value=10.0),
    st.floats(min_value=1.0, max_value=100.0),
    st.floats(min_value=0.0, max_value=600.0),
)
runs = st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=40)


def simulate(policy: RestartPolicy, run_lengths: list[float]):
    """Start at t=0; each run lasts the given time, then crashes; restarted after the granted delay."""
    history = record_start(CrashHistory(), 0.0)
    now = 0.0
    out = []
    for run in run_lengths:
        now += run
        decision = decide_restart(policy, history, now)
        out.append((now, decision))
        if not decision.restart:
            break
        now += decision.delay
        history = record_start(decision.history, now)
    return out


@given(policies, runs)
def test_delay_within_base_and_max(policy, run_lengths):
    for _, decision in simulate(policy, run_lengths):
        if decision.restart:
            assert policy.base_delay <= decision.delay <= policy.max_delay


@given(policies, runs)
def test_never_more_than_max_restarts_granted_in_any_window(policy, run_lengths):
    granted = [t for t, d in simulate(policy, run_lengths) if d.restart]
    for i, start in enumerate(granted):
        in_window = [t for t in granted[i:] if t - start <= policy.window_seconds]
        assert len(in_window) <= policy.max_restarts


@given(policies, runs)
def test_delays_non_decreasing_for_quick_crashes(policy, run_lengths):
    quick = [min(r, policy.healthy_after * 0.99) for r in run_lengths]
    if policy.healthy_after == 0:
        return  # every run counts as healthy: nothing is "quick"
    delays = [d.delay for _, d in simulate(policy, quick) if d.restart]
    assert delays == sorted(delays)


@given(
    policy=policies.filter(lambda p: p.max_restarts >= 1),
    data=st.data(),
)
def test_long_healthy_run_resets_delay_to_base(policy, data):
    # Flap a few times (staying under the limit), then run healthily and crash once more.
    flaps = data.draw(st.integers(min_value=0, max_value=policy.max_restarts - 1))
    history = record_start(CrashHistory(), 0.0)
    now = 0.0
    for _ in range(flaps):
        now += 1e-3
        decision = decide_restart(policy, history, now)
        assert decision.restart
        now += decision.delay
        history = record_start(decision.history, now)
    # A margin well above float rounding, so the run really is at least healthy_after long.
    now += policy.healthy_after + data.draw(st.floats(min_value=1e-6, max_value=1000.0))
    decision = decide_restart(policy, history, now)
    assert decision.restart
    assert decision.delay == policy.base_delay
    assert decision.history.consecutive == 1


@given(policy=policies, data=st.data())
def test_crashes_older_than_window_are_forgotten(policy, data):
    old = data.draw(st.lists(st.floats(min_value=0.0, max_value=1000.0), max_size=50))
    later = 1000.0 + policy.window_seconds + data.draw(st.floats(min_value=1e-3, max_value=1000.0))
    history = CrashHistory(crash_times=tuple(sorted(old)), consecutive=len(old))
    decision = decide_restart(policy, history, later)
    assert decision.history.crash_times == (later,)
    assert decision.restart == (policy.max_restarts >= 1)


def test_defaults_worked_example():
    policy = RestartPolicy()
    history = record_start(CrashHistory(), 0.0)
    delays, reasons = [], []
    now = 0.0
    for _ in range(6):
        now += 1.0
        decision = decide_restart(policy, history, now)
        reasons.append(decision.reason)
        if decision.restart:
            delays.append(decision.delay)
            now += decision.delay
            history = record_start(decision.history, now)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert reasons[1] == "crash 2 in 600 s; restarting in 2.0 s"
    assert reasons[-1] == "crashed 6 times in 600 s (limit 5); giving up"
    assert not decision.restart


def test_backoff_caps_at_max_delay():
    policy = RestartPolicy(max_restarts=100, base_delay=1.0, max_delay=60.0)
    history = CrashHistory(consecutive=5000)
    decision = decide_restart(policy, history, 0.0)
    assert decision.restart and decision.delay == 60.0


def test_policy_validation():
    with pytest.raises(ValueError):
        RestartPolicy(base_delay=10.0, max_delay=5.0)
    with pytest.raises(ValueError):
        RestartPolicy(window_seconds=0.0)
    with pytest.raises((ValueError, TypeError)):
        RestartPolicy(max_restarts=-1)
