"""The temperature and LED automation families as the jobs and plugins see them: registry entries,
parameters, construction from a run's values, settings changes while running. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.automations.base import parameter_setting
from actors.automations.events import ChangedLedIntensity, NoEvent, UpdatedHeaterDC
from actors.automations.led.light_dark_cycle import LedDecision, LedPolicy, LightDarkCycle, SilentLeds
from actors.automations.registry import BUILTIN, find
from actors.automations.temperature.thermostat import OnlyRecordTemperature, TemperaturePolicy, Thermostat
from actors.hardware.safety import HEATER_MAX_DUTY, LIMITS_20ML_V1_0, LIMITS_DEFAULT


@pytest.mark.parametrize("family", ["temperature", "led"])
def test_every_builtin_of_the_family_declares_itself(family):
    base = {"temperature": TemperaturePolicy, "led": LedPolicy}[family]
    for name in BUILTIN[family]:
        cls = find(family, name, None)
        assert issubclass(cls, base)
        assert cls.family == family and cls.name == name
        for p in cls.PARAMETERS:
            parameter_setting(p)  # every parameter becomes a valid job setting


def test_thermostat_target_is_a_required_settable_temperature():
    (target,) = Thermostat.PARAMETERS
    assert (target.name, target.type, target.required, target.settable) == ("target_temperature", "float", True, True)
    assert OnlyRecordTemperature.PARAMETERS == () and not OnlyRecordTemperature.heats and Thermostat.heats


def test_thermostat_from_parameters_never_asks_above_the_driver_cap():
    thermostat = Thermostat.from_parameters({"target_temperature": 37.0}, LIMITS_DEFAULT)
    duty = 0.0
    for _ in range(10):  # far below target: the duty climbs by at most 25 % a step, up to the cap
        new, event = thermostat.decide(22.0, duty)
        assert isinstance(event, UpdatedHeaterDC)
        assert new - duty <= 25.0 + 1e-9
        duty = new
    assert duty == HEATER_MAX_DUTY


def test_thermostat_target_change_is_clamped_to_the_model_limit_with_a_note():
    thermostat = Thermostat.from_parameters({"target_temperature": 37.0}, LIMITS_20ML_V1_0)
    value, note = thermostat.set_parameter("target_temperature", 70.0)
    assert value == 63.0 and "63" in note
    value, note = thermostat.set_parameter("target_temperature", 35.0)
    assert value == 35.0 and note is None and thermostat.target_temperature == 35.0
    with pytest.raises(ValueError):
        thermostat.set_parameter("target_temperature", float("nan"))


@given(st.floats(min_value=-50, max_value=200, allow_nan=False))
def test_a_target_in_force_is_always_within_zero_and_the_reduce_limit(requested):
    thermostat = Thermostat.from_parameters({"target_temperature": 30.0}, LIMITS_DEFAULT)
    value, note = thermostat.set_parameter("target_temperature", requested)
    assert 0.0 <= value <= LIMITS_DEFAULT.reduce_c
    assert (note is None) == (value == requested)


def test_only_record_temperature_builds_from_no_parameters_and_turns_the_heater_off():
    policy = OnlyRecordTemperature.from_parameters({}, LIMITS_DEFAULT)
    assert policy.decide(30.0, 0.0) == (0.0, NoEvent("liquid at 30.00 C (only recording temperature)"))
    duty, event = policy.decide(30.0, 40.0)
    assert duty == 0.0 and isinstance(event, UpdatedHeaterDC)


def test_a_plugin_policy_needs_only_decide():
    class AlwaysTen(TemperaturePolicy):
        name = "always_ten"

        def decide(self, liquid_c_estimate, current_duty):
            return 10.0, NoEvent("ten")

    policy = AlwaysTen.from_parameters({}, LIMITS_DEFAULT)
    assert policy.decide(20.0, 0.0)[0] == 10.0
    assert policy.set_parameter("anything", 3.0) == (3.0, None)
    policy.reset()


def test_light_dark_cycle_parameters_have_the_reference_names_and_defaults():
    params = {p.name: p for p in LightDarkCycle.PARAMETERS}
    assert set(params) == {"light_intensity", "light_duration_minutes", "dark_duration_minutes"}
    assert all(p.settable and not p.required and p.type == "float" for p in params.values())
    default = LightDarkCycle.from_parameters({})
    assert (default.light_intensity, default.light_duration_minutes, default.dark_duration_minutes) == (
        params["light_intensity"].default,
        params["light_duration_minutes"].default,
        params["dark_duration_minutes"].default,
    )
    assert default.channels == ("C", "D")


def test_light_dark_cycle_settings_changes():
    cycle = LightDarkCycle.from_parameters({"light_intensity": 40, "light_duration_minutes": 1.0, "dark_duration_minutes": 1.0})
    brighter = cycle.with_parameter("light_intensity", 70.0, 0.2)
    assert brighter.decide(0.2).intensities == (("C", 70.0), ("D", 70.0))
    shorter = brighter.with_parameter("light_duration_minutes", 0.5, 0.2)
    assert shorter.decide(0.2).next_boundary_minutes == 0.5
    # Already lit longer than the new duration: the phase ends now.
    now_dark = brighter.with_parameter("light_duration_minutes", 0.1, 0.2)
    assert now_dark.decide(0.2).intensities == (("C", 0.0), ("D", 0.0))
    longer_dark = shorter.with_parameter("dark_duration_minutes", 2.0, 0.3)
    assert longer_dark.next_boundary(0.6) == 2.5
    with pytest.raises(ValueError):
        cycle.with_parameter("light_intensity", 150.0, 0.0)
    with pytest.raises(ValueError):
        cycle.with_parameter("colour", 1.0, 0.0)


@given(
    st.floats(min_value=0.01, max_value=100, allow_nan=False),
    st.floats(min_value=0.01, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=300, allow_nan=False),
    st.floats(min_value=0.01, max_value=100, allow_nan=False),
)
def test_a_duration_setting_is_exactly_a_retime(light, dark, now, new_light):
    cycle = LightDarkCycle(50.0, light, dark)
    assert cycle.with_parameter("light_duration_minutes", new_light, now) == cycle.retime(now, light_duration=new_light)


def test_silent_leds_set_nothing_and_never_wake():
    decision = SilentLeds.from_parameters({}).decide(12.0)
    assert decision == LedDecision(lit=False, intensities=(), next_boundary_minutes=None, event=NoEvent("LEDs left as they are"))
    assert isinstance(LightDarkCycle(10, 1, 1).decide(0).event, ChangedLedIntensity)
