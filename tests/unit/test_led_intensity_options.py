"""led_intensity's options, parsed as the job host parses them: `--A 50` as in the reference, bounds,
and at least one channel."""

from __future__ import annotations

import pytest

from actors.job_host import initial_values
from actors.led_intensity import LedIntensity
from actors.settings import SettingError, index

SPECS = index(LedIntensity.settings)


def test_upper_case_channel_options_reach_the_lower_case_settings():
    values = initial_values(SPECS, {"A": "50", "d": "12.5"})
    assert (values["a"], values["b"], values["c"], values["d"]) == (50.0, None, None, 12.5)
    assert values["source_of_event"] == "led_intensity"
    LedIntensity.check(values, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["120", "-1", "bright"])
def test_out_of_range_or_non_numeric_intensities_are_refused(raw):
    with pytest.raises(SettingError, match="c:"):
        initial_values(SPECS, {"C": raw})


def test_no_channel_at_all_is_refused_with_an_example():
    with pytest.raises(SettingError, match="at least one channel.*--A 50"):
        LedIntensity.check(initial_values(SPECS, {}), None)  # type: ignore[arg-type]


def test_unknown_options_are_still_refused():
    with pytest.raises(SettingError, match="unknown option --E"):
        initial_values(SPECS, {"E": "5"})
