"""The clock: simulated time, timestamps, drift-free periodic schedules."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.clock import Clock, Ticker, utc_iso


def test_timestamps_are_utc_iso_with_milliseconds_and_z():
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"
    assert utc_iso(1700000000.1234) == "2023-11-14T22:13:20.123Z"


def test_time_scale_makes_simulated_time_run_faster():
    anchor = time.time() - 10.0
    clock = Clock(time_scale=60.0, anchor=anchor)
    assert clock.now() - anchor == pytest.approx(600.0, abs=1.0)
    assert clock.real_delay(60.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        Clock(time_scale=0)


@given(st.floats(0.01, 100), st.lists(st.floats(0, 5), max_size=30))
def test_ticker_never_drifts_and_never_schedules_in_the_past(period, handling_delays):
    ticker = Ticker(period, start=0.0)
    now = 0.0
    for delay in handling_delays:
        wait = ticker.next_delay(now)
        assert wait > 0
        due = now + wait
        # Ticks land on the grid start + k*period, whatever the handling delays were.
        k = round(due / period)
        assert due == pytest.approx(k * period, rel=1e-9, abs=1e-9)
        now = due + delay
