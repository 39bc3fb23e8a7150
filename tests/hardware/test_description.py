"""HAT and model descriptions: every shipped pair loads, the model layer wins, and broken files are
refused with the file, the line, the key path and a hint, all problems at once."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

from actors.hardware import description
from actors.hardware.description import (
    HALL_SENSOR_PIN,
    PWM_PINS,
    HardwareDescriptionError,
    available_hats,
    available_models,
    data_directory,
    load,
    load_hat,
)

HATS = ["1.0", "1.1", "1.2"]
MODELS = ["pioreactor_20ml_1.0", "pioreactor_20ml_1.5", "pioreactor_40ml_1.0", "pioreactor_40ml_1.5"]
# The v1.5 photodiode ADS1114s sit at 0x48/0x49, where HAT 1.0 has its ADS1115 and DAC43608.
IMPOSSIBLE = {("1.0", "pioreactor_20ml_1.5"), ("1.0", "pioreactor_40ml_1.5")}


def test_shipped_files_are_listed():
    assert available_hats() == HATS
    assert available_models() == MODELS


@pytest.mark.parametrize("hat", HATS)
@pytest.mark.parametrize("model", MODELS)
def test_every_shipped_combination_loads_or_is_refused_for_an_address_clash(hat, model):
    if (hat, model) in IMPOSSIBLE:
        with pytest.raises(HardwareDescriptionError) as info:
            load(hat, model)
        assert info.value.problems
        assert all("cannot share an address" in p.hint for p in info.value.problems)
        return
    desc = load(hat, model)
    assert desc.hat_version == hat and desc.model.id == model
    assert set(desc.pwm.channels) == {"stirring", "media", "alt_media", "waste", "heater"}
    assert set(desc.adc) == {"pd1", "pd2", "aux", "version"}
    assert desc.leds.ir == "A" and desc.safety.ir_led_max_intensity_pct == 90
    assert desc.vessel.max_fill_ml < desc.vessel.capacity_ml
    assert desc.sources[0].endswith(f"hats/{hat}.yaml") and desc.sources[1].endswith(f"models/{model}.yaml")


@pytest.mark.parametrize("hat", HATS)
def test_every_hat_loads_alone(hat):
    assert load_hat(hat).version == hat


def test_pwm_constants_keep_todays_values():
    assert PWM_PINS == {"stirring": 17, "media": 13, "alt_media": 16, "waste": 12, "heater": 18}
    assert list(PWM_PINS) == ["stirring", "media", "alt_media", "waste", "heater"]
    assert HALL_SENSOR_PIN == 21


def test_hat_1_2_values():
    desc = load("1.2", "pioreactor_40ml_1.0")
    assert {n: (c.connector, c.pin, c.hz, c.hardware) for n, c in desc.pwm.channels.items()} == {
        "stirring": (1, 17, 200, False),
        "media": (2, 13, 250, True),
        "alt_media": (3, 16, 250, False),
        "waste": (4, 12, 250, True),
        "heater": (5, 18, 16, False),
    }
    assert {s: (a.chip, a.address, a.channel) for s, a in desc.adc.items()} == {
        "version": ("pico", 0x2C, 0),
        "aux": ("pico", 0x2C, 1),
        "pd1": ("pico", 0x2C, 2),
        "pd2": ("pico", 0x2C, 3),
    }
    assert (desc.leds.chip, desc.leds.address, desc.leds.channels) == ("pico", 0x2C, {"A": 0, "B": 1, "C": 2, "D": 3})
    assert (desc.temperature.chip, desc.temperature.address) == ("tmp1075", 0x4F)
    assert (desc.gpio.hall_sensor, desc.gpio.status_led, desc.gpio.button) == (21, 23, 4)
    assert (desc.i2c.bus, desc.i2c.sda, desc.i2c.scl) == (1, 2, 3)
    assert desc.i2c_devices() == {0x2C: "pico", 0x4F: "tmp1075"}


def test_hat_1_0_values():
    desc = load("1.0", "pioreactor_20ml_1.0")
    assert {s: (a.chip, a.address, a.channel) for s, a in desc.adc.items()} == {
        "pd1": ("ads1115", 0x48, 1),
        "pd2": ("ads1115", 0x48, 0),
        "version": ("ads1115", 0x48, 2),
        "aux": ("ads1115", 0x48, 3),
    }
    assert (desc.leds.chip, desc.leds.address) == ("dac43608", 0x49)
    assert (desc.gpio.hall_sensor, desc.gpio.button, desc.gpio.mcu_swclk) == (25, 24, None)


@pytest.mark.parametrize(
    ("model", "limits", "capacity", "max_fill"),
    [
        ("pioreactor_20ml_1.0", (63, 65, 66), 20, 18),
        ("pioreactor_20ml_1.5", (78, 80, 85), 20, 18),
        ("pioreactor_40ml_1.0", (78, 80, 85), 40, 36),
        ("pioreactor_40ml_1.5", (78, 80, 85), 40, 36),
    ],
)
def test_model_values(model, limits, capacity, max_fill):
    desc = load("1.2", model)
    s = desc.safety
    assert (s.heater_reduce_above_c, s.heater_disable_above_c, s.heater_shutdown_above_c) == limits
    assert (desc.vessel.capacity_ml, desc.vessel.max_fill_ml, desc.vessel.default_efflux_tube_ml) == (capacity, max_fill, 15)


def test_the_model_overrides_the_hat():
    desc = load("1.2", "pioreactor_40ml_1.5")
    assert {s: (a.chip, a.address, a.channel) for s, a in desc.adc.items()} == {
        "version": ("pico", 0x2C, 0),  # still from the HAT
        "aux": ("pico", 0x2C, 1),
        "pd1": ("ads1114", 0x48, 0),  # from the model
        "pd2": ("ads1114", 0x49, 0),
    }
    assert desc.i2c_devices() == {0x2C: "pico", 0x48: "ads1114", 0x49: "ads1114", 0x4F: "tmp1075"}


def test_the_loader_is_cached_and_values_are_frozen():
    desc = load("1.2", "pioreactor_40ml_1.5")
    assert load("1.2", "pioreactor_40ml_1.5") is desc
    with pytest.raises(AttributeError):
        desc.hat_version = "1.1"  # type: ignore[misc]


def test_hats_and_models_are_package_data():
    assert (resources.files("actors.hardware.hats") / "1.2.yaml").is_file()
    assert (resources.files("actors.hardware.models") / "pioreactor_40ml_1.5.yaml").is_file()
    assert (data_directory() / "hats" / "1.0.yaml").is_file()


# ---------------------------------------------------------------------------------------------
# Loading from a directory: deep merge and broken copies
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the shipped hats/ and models/ that a test may break."""
    src = Path(str(data_directory()))
    for folder in ("hats", "models"):
        (tmp_path / folder).mkdir()
        for f in (src / folder).glob("*.yaml"):
            shutil.copy(f, tmp_path / folder / f.name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems_of(tree: Path, hat: str = "1.2", model: str = "pioreactor_40ml_1.0") -> list[description.Problem]:
    with pytest.raises(HardwareDescriptionError) as info:
        load(hat, model, directory=tree)
    return info.value.problems


def only(problems: list[description.Problem]) -> description.Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_an_unchanged_copy_loads_from_a_directory(tree):
    desc = load("1.2", "pioreactor_40ml_1.5", directory=tree)
    assert desc.sources == (str(tree / "hats" / "1.2.yaml"), str(tree / "models" / "pioreactor_40ml_1.5.yaml"))
    assert available_hats(tree) == HATS and available_models(str(tree)) == MODELS


def test_a_model_overriding_one_leaf_keeps_the_rest_of_the_hat_mapping(tree):
    model = tree / "models" / "pioreactor_40ml_1.0.yaml"
    model.write_text(model.read_text() + "\npwm:\n  channels:\n    stirring: {hz: 100}\n")
    desc = load("1.2", "pioreactor_40ml_1.0", directory=tree)
    stirring = desc.pwm.channels["stirring"]
    assert (stirring.connector, stirring.pin, stirring.hz) == (1, 17, 100.0)
    assert desc.pwm.channels["heater"].hz == 16


def test_syntax_error(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "  sda: 2", "  sda: [2")
    p = only(problems_of(tree))
    assert p.file == str(hat) and p.line is not None
    assert "not valid YAML" in p.message and "fix the syntax" in p.hint


def test_unknown_key_suggests_the_close_one(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "heater:    {connector: 5, pin: 18, hz: 16}", "heater:    {connector: 5, pin: 18, hzz: 16}")
    problems = problems_of(tree)
    unknown = next(p for p in problems if p.path == "pwm.channels.heater.hzz")
    assert unknown.file == str(hat) and unknown.line == line_of(hat, "heater:")
    assert "unknown key 'hzz'" in unknown.message and "did you mean 'hz'?" in unknown.hint
    missing = next(p for p in problems if p.path == "pwm.channels.heater.hz")
    assert "missing required entry 'hz'" in missing.message and "add `hz: 250`" in missing.hint


def test_wrong_type(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "hall_sensor: 21", "hall_sensor: twenty-one")
    p = only(problems_of(tree))
    assert (p.file, p.line, p.path) == (str(hat), line_of(hat, "hall_sensor"), "gpio.hall_sensor")
    assert "expected a whole number" in p.message and "hall_sensor: 21" in p.hint
    assert str(p) == f"{hat}:{p.line}: gpio.hall_sensor: {p.message}; {p.hint}"


def test_a_mapping_where_a_value_belongs(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "  scl: 3", "  scl: {pin: 3}")
    p = only(problems_of(tree))
    assert p.path == "i2c.scl" and "got a mapping" in p.message


def test_unquoted_version_is_refused_with_a_quoting_hint(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, 'version: "1.2"', "version: 1.2")
    p = only(problems_of(tree))
    assert p.path == "hat.version" and "quote it" in p.hint


def test_pin_out_of_range(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "status_led: 23", "status_led: 40")
    p = only(problems_of(tree))
    assert p.path == "gpio.status_led" and "out of range" in p.message and "0-27" in p.hint


def test_duplicate_pin_names_the_first_user(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "alt_media: {connector: 3, pin: 16", "alt_media: {connector: 3, pin: 17")
    p = only(problems_of(tree))
    assert p.path == "pwm.channels.alt_media.pin" and p.line == line_of(hat, "alt_media:")
    assert "GPIO 17 is already used by pwm.channels.stirring.pin (1.2.yaml:" in p.message
    assert "each pin drives one thing" in p.hint


def test_duplicate_connector(tree):
    edit(tree / "hats" / "1.2.yaml", "waste:     {connector: 4", "waste:     {connector: 3")
    p = only(problems_of(tree))
    assert p.path == "pwm.channels.waste.connector" and "also assigned to pwm.channels.alt_media" in p.message


def test_hardware_pwm_pins_on_one_block(tree):
    edit(tree / "hats" / "1.2.yaml", "hardware_pins: [12, 13]", "hardware_pins: [12, 18]")
    p = only(problems_of(tree))
    assert p.path == "pwm.hardware_pins[1]" and "shares PWM0 with GPIO 12" in p.message


def test_missing_required_pwm_channel(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "    heater:    {connector: 5, pin: 18, hz: 16}\n", "")
    p = only(problems_of(tree))
    assert p.file == str(hat) and p.path == "pwm.channels.heater"
    assert "missing required entry 'heater'" in p.message and "add `heater: {connector: 2, pin: 13, hz: 250}`" in p.hint


def test_missing_model_section_is_reported_in_the_model_file(tree):
    model = tree / "models" / "pioreactor_40ml_1.0.yaml"
    text = model.read_text()
    model.write_text(text[: text.index("safety:")])
    p = only(problems_of(tree))
    assert p.file == str(model) and p.path == "safety"
    assert "missing required entry 'safety'" in p.message and "heater_reduce_above_c" in p.hint


def test_missing_schema_line(tree):
    model = tree / "models" / "pioreactor_40ml_1.0.yaml"
    edit(model, "schema: 1\n", "")
    p = only(problems_of(tree))
    assert (p.file, p.path) == (str(model), "schema") and "schema: 1" in p.hint


def test_address_out_of_range_and_unknown_chip(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "  address: 0x4F", "  address: 0x80")
    edit(hat, "  chip: tmp1075", "  chip: tmp1057")
    problems = {p.path: p for p in problems_of(tree)}
    assert set(problems) == {"temperature.address", "temperature.chip"}
    assert "0x80 is out of range" in problems["temperature.address"].message
    assert "0x08 to 0x77" in problems["temperature.address"].hint
    assert "did you mean 'tmp1075'?" in problems["temperature.chip"].hint


def test_adc_channel_the_chip_does_not_have(tree):
    model = tree / "models" / "pioreactor_40ml_1.5.yaml"
    edit(model, "pd2: {chip: ads1114, address: 0x49, channel: 0}", "pd2: {chip: ads1114, address: 0x49, channel: 1}")
    p = only(problems_of(tree, model="pioreactor_40ml_1.5"))
    assert (p.file, p.path) == (str(model), "adc.pd2.channel")
    assert "ads1114 has no input 1" in p.message and "inputs 0" not in p.hint and "input 0" in p.hint


def test_two_signals_on_one_input(tree):
    edit(tree / "hats" / "1.2.yaml", "pd2:     {chip: pico, address: 0x2C, channel: 3}", "pd2:     {chip: pico, address: 0x2C, channel: 2}")
    p = only(problems_of(tree))
    assert p.path == "adc.pd2.channel" and "already adc.pd1.channel" in p.message


def test_unknown_adc_signal_and_led_pocket(tree):
    hat = tree / "hats" / "1.2.yaml"
    edit(hat, "  pd1: ", "  pd9: ")
    edit(hat, "ir: A", "ir: E")
    problems = {p.path: p for p in problems_of(tree)}
    assert "unknown name 'pd9'" in problems["adc.pd9"].message
    assert "missing required entry 'pd1'" in problems["adc.pd1"].message
    assert "use one of: A, B, C, D" in problems["leds.ir"].hint


def test_heater_limits_out_of_order(tree):
    model = tree / "models" / "pioreactor_40ml_1.0.yaml"
    edit(model, "heater_shutdown_above_c: 85", "heater_shutdown_above_c: 79")
    p = only(problems_of(tree))
    assert (p.file, p.path) == (str(model), "safety.heater_shutdown_above_c") and "reduce < disable < shutdown" in p.hint


def test_max_fill_above_capacity(tree):
    edit(tree / "models" / "pioreactor_40ml_1.0.yaml", "max_fill_ml: 36", "max_fill_ml: 45")
    p = only(problems_of(tree))
    assert p.path == "vessel.max_fill_ml" and "exceeds the capacity" in p.message


def test_section_in_the_wrong_layer(tree):
    hat = tree / "hats" / "1.2.yaml"
    hat.write_text(hat.read_text() + "\nvessel:\n  capacity_ml: 40\n")
    p = only(problems_of(tree))
    assert (p.file, p.path) == (str(hat), "vessel") and "move it to a model file" in p.hint


def test_file_name_and_declared_version_disagree(tree):
    edit(tree / "hats" / "1.2.yaml", 'version: "1.2"', 'version: "1.1"')
    p = only(problems_of(tree))
    assert p.path == "hat.version" and "named 1.2.yaml" in p.message


def test_unknown_hat_and_model_list_what_exists(tree):
    problems = problems_of(tree, hat="2.0", model="pioreactor_80ml_1.0")
    assert len(problems) == 2
    assert "no description for HAT version '2.0'" in problems[0].message and "1.0, 1.1, 1.2" in problems[0].hint
    assert "no description for model 'pioreactor_80ml_1.0'" in problems[1].message and "pioreactor_40ml_1.5" in problems[1].hint


def test_every_problem_in_both_files_is_reported_at_once(tree):
    hat = tree / "hats" / "1.2.yaml"
    model = tree / "models" / "pioreactor_40ml_1.0.yaml"
    edit(hat, "hall_sensor: 21", "hall_sensor: 99")
    edit(hat, "media:     {connector: 2, pin: 13, hz: 250}", "media:     {connector: 2, pin: 13, hz: fast}")
    edit(model, "capacity_ml: 40", "capacity: 40")
    with pytest.raises(HardwareDescriptionError) as info:
        load("1.2", "pioreactor_40ml_1.0", directory=tree)
    by_path = {p.path: p.file for p in info.value.problems}
    assert by_path == {
        "gpio.hall_sensor": str(hat),
        "pwm.channels.media.hz": str(hat),
        "vessel.capacity": str(model),
        "vessel.capacity_ml": str(model),
    }
    text = str(info.value)
    assert text.startswith("invalid hardware description (4 problems):")
    assert all(e in text for e in info.value.errors)


def test_load_hat_validates_without_a_model(tree):
    edit(tree / "hats" / "1.1.yaml", "button: 4", "button: 23")
    with pytest.raises(HardwareDescriptionError, match=r"gpio\.button: GPIO 23 is already used by gpio\.status_led"):
        load_hat("1.1", directory=tree)
