"""The monitor's pure core: check thresholds, the one error code a node shows, warn-once logging,
statistics parsing and the status-LED blink patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.node_health import (
    ErrorCode,
    HealthLog,
    aux_rail_volts,
    blink_pattern,
    check_broker,
    check_cpu_temperature,
    check_disk,
    check_hat,
    check_power,
    computer_statistics,
    count_blinks,
    error_code,
    parse_meminfo,
    parse_thermal_zone,
)

GB = 1024**3


# -- checks -------------------------------------------------------------------------------------------


def test_disk_warns_below_3_gb_free_with_code_3():
    assert check_disk(3 * GB, 32 * GB).ok is True
    assert check_disk(3 * GB - 1, 32 * GB).failed
    low = check_disk(GB // 2, 32 * GB)
    assert low.failed and low.error_code == ErrorCode.DISK_ALMOST_FULL == 3
    assert "0.50 GB free of 32.0 GB" in low.message


def test_cpu_temperature_warns_above_80_and_is_skipped_without_a_sensor():
    assert check_cpu_temperature(80.0).ok is True
    hot = check_cpu_temperature(80.1)
    assert hot.failed and "80.1" in hot.message and hot.error_code == ErrorCode.OK  # a warning, no code
    absent = check_cpu_temperature(None)
    assert absent.ok is None and "skipped" in absent.message


def test_power_warns_at_or_below_4_80_v_with_code_7():
    assert aux_rail_volts(0.67) == pytest.approx(5.0)
    assert check_power(4.81).ok is True
    at = check_power(4.80)
    assert at.failed and at.error_code == ErrorCode.VOLTAGE_PROBLEM == 7 and "4.80 V" in at.message
    skipped = check_power(None, "no analog input 'aux'")
    assert skipped.ok is None and "no analog input" in skipped.message


def test_broker_link_gives_code_2_and_the_hat_check_says_what_to_do():
    assert check_broker(True).ok is True
    down = check_broker(False, "the broker at leader:1883")
    assert down.failed and down.error_code == 2 and "leader:1883" in down.message
    assert check_broker(None).ok is None
    assert check_hat(True).ok is True
    missing = check_hat(False, "I2C NACK at 0x2C")
    assert missing.failed and "0x2C" in missing.message and "seated" in missing.message


def test_the_node_shows_the_lowest_failing_code_and_0_when_healthy():
    healthy = [check_disk(10 * GB, 32 * GB), check_power(5.0), check_broker(True)]
    assert error_code(healthy) == 0
    both = [check_disk(GB, 32 * GB), check_power(4.5), check_broker(False)]
    assert error_code(both) == 2
    assert error_code([check_power(4.5), check_disk(GB, 32 * GB)]) == 3
    assert error_code([check_cpu_temperature(95.0)]) == 0  # a warning without a code


# -- warn once per change -----------------------------------------------------------------------------


def test_a_failing_check_is_warned_about_once_and_its_recovery_once():
    log = HealthLog()
    log, lines = log.update([check_power(5.0), check_cpu_temperature(None)])
    assert lines == [("INFO", "no CPU temperature sensor on this machine: skipped")]
    log, lines = log.update([check_power(5.0), check_cpu_temperature(None)])
    assert lines == []
    log, lines = log.update([check_power(4.5)])
    assert [level for level, _ in lines] == ["WARNING"] and "4.50 V" in lines[0][1]
    log, lines = log.update([check_power(4.5)])
    assert lines == []
    log, lines = log.update([check_power(4.4)])  # fails differently: said again, with the new value
    assert [level for level, _ in lines] == ["WARNING"] and "4.40 V" in lines[0][1]
    log, lines = log.update([check_power(5.0)])
    assert lines == [("INFO", "power recovered: supply rail at 5.00 V")]
    log, lines = log.update([check_power(5.01)])  # healthy values that wobble say nothing
    assert lines == []


@given(st.lists(st.floats(min_value=4.0, max_value=5.5, allow_nan=False), max_size=30))
def test_warnings_never_outnumber_changes_of_verdict(rails):
    log, warnings = HealthLog(), 0
    results = [check_power(round(v, 2)) for v in rails]
    for r in results:
        log, lines = log.update([r])
        warnings += sum(1 for level, _ in lines if level == "WARNING")
    changes = sum(1 for a, b in zip([None, *results], results) if b.failed and (a is None or a.message != b.message))
    assert warnings == changes


# -- statistics -----------------------------------------------------------------------------------------


def test_meminfo_and_thermal_zone_parse_and_statistics_payload():
    mem = parse_meminfo("MemTotal:        1000 kB\nMemAvailable:     250 kB\nHugePages_Total:       0\nbroken\n")
    assert mem == {"MemTotal": 1024000, "MemAvailable": 256000, "HugePages_Total": 0}
    assert parse_thermal_zone("48312\n") == pytest.approx(48.312)
    assert parse_thermal_zone("garbage") is None
    stats = computer_statistics(
        disk_free_bytes=GB, disk_total_bytes=4 * GB, cpu_temperature_c=None, load_average=(0.5, 0.25, 0.125),
        memory=mem, timestamp="2024-01-01T00:00:00.000Z",
    )
    assert stats["disk_usage_percent"] == 75.0 and stats["memory_usage_percent"] == 75.0
    assert stats["cpu_temperature_celsius"] is None and stats["load_average"] == [0.5, 0.25, 0.12]
    assert computer_statistics(
        disk_free_bytes=0, disk_total_bytes=0, cpu_temperature_c=50.0, load_average=(0, 0, 0), memory={}, timestamp="t"
    )["memory_usage_percent"] is None


# -- blink patterns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", range(1, 9))
def test_error_n_is_2_s_on_then_n_short_blinks_then_a_pause(code):
    steps = blink_pattern(code)
    assert steps[0] == (True, 2.0)
    assert count_blinks(steps) == (1, code)
    assert steps[-1][0] is False and steps[-1][1] >= 1.0  # dark before it repeats, so N can be counted
    assert all(seconds > 0 for _, seconds in steps)
    assert all(a[0] != b[0] for a, b in zip(steps, steps[1:]))  # on and off alternate


def test_okay_is_4_double_blinks():
    steps = blink_pattern(0)
    assert count_blinks(steps) == (0, 8)
    on_times = [s for on, s in steps if on]
    assert max(on_times) < 0.5
    gaps = [s for on, s in steps if not on]
    assert gaps[0] < gaps[1]  # short gap inside a double, longer gap between doubles


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_blink_pattern_refuses_what_is_not_a_code(bad):
    with pytest.raises(ValueError, match="whole number"):
        blink_pattern(bad)
