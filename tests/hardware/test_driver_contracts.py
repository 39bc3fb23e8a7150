"""One contract per chip-driver kind, run against every backend of that kind that this repo has.

Why a contract and not more chip tests: the driver actors are written against a *kind* (an ADC's
``read_volts``, an LED driver's ``set_intensity``, a thermometer's ``read_celsius``), and which chip sits
behind it depends on the HAT and vessel model. Whatever the chip, and whether the bus is the in-process
:class:`FakeI2CBus` or the :class:`RemoteI2CBus` a simulated unit's drivers use, the actor must be able to
count on the same things. Byte layouts, gains, firmware scales and other chip details are
``test_i2c_chips.py``'s business; this file only states what every backend of a kind must do.

The contracts:

* ADC (``PhotodiodeAdc``): a read matches the input voltage to within half a code at several voltages;
  inputs are independent (no stale conversion, no wrong input selected); a chip that NACKs or is absent
  raises :class:`ChipError` naming the chip and its address; the read after a transient NACK succeeds.
* LED (``set_intensity``): the chip outputs the intensity, to the nearest code, on each channel; 0 % is
  off; an out-of-range or NaN intensity is refused with ``ValueError`` before anything reaches the bus;
  a NACK raises :class:`ChipError`.
* Temperature: readings within one LSB (0.0625 °C), below 0 °C included; a NACK raises :class:`ChipError`.

Faults are injected on the :class:`FakeI2CBus` that holds the chip models. Through the remote bus they
travel the same way a failed transfer would from the simulated unit: as ``OSError(121)`` over the wire.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from actors.hardware.chips import ChipError
from actors.hardware.chips.ads1x15 import ADS1114Adc, ADS1115Adc
from actors.hardware.chips.dac43608 import DAC43608, PIOREACTOR_SPAN
from actors.hardware.chips.pico import ADC_MAX, LED_CHANNELS, LED_MAX_CODE, VREF_V, PicoAdc, PicoDac
from actors.hardware.chips.tmp1075 import LSB_C, TMP1075
from actors.hardware.i2c import I2CBus
from actors.hardware.sim_i2c import (
    EREMOTEIO,
    ADS1114Model,
    ADS1115Model,
    DAC43608Model,
    FakeI2CBus,
    I2CTarget,
    PicoModel,
    TMP1075Model,
)
from actors.hardware.sim_i2c_server import LOOPBACK, I2CServer, RemoteI2CBus

# Inputs every ADC backend must read. Kept below ~1.65 V: above that the HAT MCU's 16-bit reply wraps
# (see chips/pico.py), which is a documented limit of that chip, not something this contract covers.
SAMPLE_VOLTS = (0.0, 0.002, 0.1, 0.5, 1.0, 1.6)
LED_LEVELS = (100.0, 66.7, 50.0, 33.3, 12.5, 5.0, 1.0, 0.5)
BAD_INTENSITIES = (-0.1, -5.0, 100.01, 250.0, math.nan, math.inf, -math.inf)
TEMPERATURES_C = (-40.0, -12.3, -0.0625, -0.01, 0.0, 0.04, 22.4, 37.0, 84.9, 125.0)
FAULTS = ("nack", "absent")


def no_sleep(_: float) -> None:
    """The ADS1114 driver waits for a conversion after a gain change; the model converts instantly."""


# -- the buses ---------------------------------------------------------------------------------------------
@attrs.frozen
class Wiring:
    """``models`` is where the chip models sit and faults are injected; ``bus`` is what drivers are given."""

    models: FakeI2CBus
    bus: I2CBus


@pytest.fixture(params=["fake", "remote"])
def wiring(request: pytest.FixtureRequest) -> Iterator[Wiring]:
    """The in-process fake bus, and the loopback bus a simulated unit's drivers use, over the same models."""
    models = FakeI2CBus()
    if request.param == "fake":
        yield Wiring(models, models)
        return
    with I2CServer(models) as server, RemoteI2CBus(LOOPBACK, server.port) as remote:
        yield Wiring(models, remote)


def break_chip(models: FakeI2CBus, address: int, fault: str) -> None:
    """``nack``: the chip is on the bus but does not acknowledge; ``absent``: nothing answers there."""
    if fault == "nack":
        models.fail_always(address)
    else:
        models.detach(address)


def assert_names(err: ChipError, chip: str, address: int) -> None:
    """The operator reads ``"<chip> at 0x<address>: <reason>"``; the actor reads the attributes."""
    assert (err.chip, err.address) == (chip, address)
    assert str(err).startswith(f"{chip} at 0x{address:02X}: ")


def assert_within(actual: float, expected: float, tolerance: float, what: str) -> None:
    assert abs(actual - expected) <= tolerance + 1e-12, (
        f"{what}: read {actual!r}, expected {expected!r} ± {tolerance:g}"
    )


# == ADC kind ==============================================================================================
@attrs.frozen
class AdcKind:
    chip: str  # the name its ChipError carries
    inputs: tuple[tuple[int, int], ...]  # (address, channel) for every input the rig wires
    model: Callable[[Callable[[int], float]], I2CTarget]
    driver: Callable[[I2CBus, int], Any]
    lsb_v: Callable[[Any], float]  # one code, in volts, at the driver's current setting


def _ads_lsb(adc: Any) -> float:
    return float(adc.full_scale_v) / 32767


ADCS = {
    "ads1115": AdcKind("ADS1115", tuple((0x48, ch) for ch in range(4)), ADS1115Model, ADS1115Adc, _ads_lsb),
    # Two single-input chips on one bus, as the v1.5 optics wire them (pd1 at 0x48, pd2 at 0x49).
    "ads1114": AdcKind(
        "ADS1114", ((0x48, 0), (0x49, 0)), ADS1114Model, lambda bus, a: ADS1114Adc(bus, a, sleep=no_sleep), _ads_lsb
    ),
    "pico": AdcKind(
        "Pico", tuple((0x2C, ch) for ch in range(4)), PicoModel, PicoAdc, lambda adc: VREF_V / ADC_MAX / adc.scale
    ),
}


class AdcRig:
    """An ADC kind on a bus: ``volts`` drives every input, ``read`` goes through the driver."""

    def __init__(self, kind: AdcKind, wiring: Wiring) -> None:
        self.kind = kind
        self.wiring = wiring
        self.inputs = kind.inputs
        self.volts: dict[tuple[int, int], float] = {inp: 0.0 for inp in kind.inputs}
        addresses = sorted({address for address, _ in kind.inputs})
        for address in addresses:
            wiring.models.attach(address, kind.model(self._input_reader(address)))
        self.adcs = {address: kind.driver(wiring.bus, address) for address in addresses}  # may probe: models first

    def _input_reader(self, address: int) -> Callable[[int], float]:
        return lambda channel: self.volts.get((address, channel), 0.0)

    def read(self, inp: tuple[int, int]) -> float:
        address, channel = inp
        return float(self.adcs[address].read_volts(channel))

    def assert_reads(self, inp: tuple[int, int]) -> None:
        """Half a code: an ideal converter rounds to the nearest one."""
        lsb = self.kind.lsb_v(self.adcs[inp[0]])
        assert_within(self.read(inp), self.volts[inp], lsb / 2, f"{self.kind.chip} input {inp}")


@pytest.fixture(params=list(ADCS))
def adc(request: pytest.FixtureRequest, wiring: Wiring) -> AdcRig:
    return AdcRig(ADCS[request.param], wiring)


def test_adc_reads_match_the_input_within_its_resolution(adc: AdcRig) -> None:
    for inp in adc.inputs:
        for volts in SAMPLE_VOLTS:
            adc.volts[inp] = volts
            adc.assert_reads(inp)


def test_adc_inputs_are_independent(adc: AdcRig) -> None:
    """Move one input at a time and read them all, in order: a stale conversion or a wrong input shows."""
    levels = {inp: 0.1 * (i + 1) for i, inp in enumerate(adc.inputs)}
    for moved in adc.inputs:
        adc.volts.update(levels)
        adc.volts[moved] = 1.5
        for inp in adc.inputs:
            adc.assert_reads(inp)


@pytest.mark.parametrize("fault", FAULTS)
def test_adc_fault_raises_chip_error_naming_chip_and_address(adc: AdcRig, fault: str) -> None:
    inp = adc.inputs[-1]
    address, channel = inp
    adc.read(inp)
    break_chip(adc.wiring.models, address, fault)
    with pytest.raises(ChipError) as info:
        # Absent: a driver built now, as at node start (an ADS1x15 driver probes the address when built).
        driver = adc.kind.driver(adc.wiring.bus, address) if fault == "absent" else adc.adcs[address]
        driver.read_volts(channel)
    assert_names(info.value, adc.kind.chip, address)
    if fault == "nack":
        assert info.value.errno == EREMOTEIO


# adafruit-ads1x15 sets its "last input read" before writing the config; in continuous mode a failed first
# exchange leaves the chip's pointer on the config register while the next read takes the no-pointer fast
# path, so every later read returns the config word as a conversion. ADS1114Adc does not recover from it.


@pytest.mark.parametrize("when", ["first_read", "after_a_read"])
def test_adc_read_after_a_transient_nack_succeeds(adc: AdcRig, when: str) -> None:
    """A glitch on the bus costs one reading, never the ones after it; on a driver's very first exchange too."""
    inp = adc.inputs[-1]
    adc.volts[inp] = 0.75
    if when == "after_a_read":
        adc.assert_reads(inp)
    adc.wiring.models.nack_next(inp[0])
    with pytest.raises(ChipError):
        adc.read(inp)
    for _ in range(2):
        adc.assert_reads(inp)


# == LED kind ==============================================================================================
@attrs.frozen
class LedKind:
    chip: str
    address: int
    channels: tuple[str, ...]
    step_pct: float  # one output code, in percent of the driver's span
    model: Callable[[], Any]
    driver: Callable[[I2CBus, int], Any]
    output_pct: Callable[[Any, str], float]  # what the chip model outputs on a channel, in percent


def _dac43608_output(model: DAC43608Model, channel: str) -> float:
    return model.codes[channel] * 100.0 / PIOREACTOR_SPAN if model.powered[channel] else 0.0


def _pico_output(model: PicoModel, channel: str) -> float:
    return model.intensities[LED_CHANNELS.index(channel)] * 100.0 / LED_MAX_CODE


LEDS = {
    "dac43608": LedKind(
        "DAC43608", 0x49, tuple("ABCDEFGH"), 100.0 / PIOREACTOR_SPAN, DAC43608Model, DAC43608, _dac43608_output
    ),
    "pico": LedKind(
        "Pico", 0x2C, LED_CHANNELS, 100.0 / LED_MAX_CODE, lambda: PicoModel(lambda ch: 0.0), PicoDac, _pico_output
    ),
}


class LedRig:
    def __init__(self, kind: LedKind, wiring: Wiring) -> None:
        self.kind = kind
        self.wiring = wiring
        self.model = kind.model()
        wiring.models.attach(kind.address, self.model)
        self.driver = kind.driver(wiring.bus, kind.address)

    def output(self, channel: str) -> float:
        return self.kind.output_pct(self.model, channel)

    def assert_outputs(self, wanted: dict[str, float]) -> None:
        for channel, pct in wanted.items():
            assert_within(self.output(channel), pct, self.kind.step_pct / 2, f"{self.kind.chip} channel {channel}")


@pytest.fixture(params=list(LEDS))
def led(request: pytest.FixtureRequest, wiring: Wiring) -> LedRig:
    return LedRig(LEDS[request.param], wiring)


def test_led_chip_outputs_each_channel_intensity(led: LedRig) -> None:
    """All channels at once, each at its own level, twice over: a crossed or dropped channel shows."""
    for shift in (0, len(LED_LEVELS) // 2):
        levels = LED_LEVELS[shift:] + LED_LEVELS[:shift]
        wanted = dict(zip(led.kind.channels, levels))
        for channel, pct in wanted.items():
            led.driver.set_intensity(channel, pct)
        led.assert_outputs(wanted)


def test_led_zero_percent_is_off(led: LedRig) -> None:
    for channel in led.kind.channels:
        led.driver.set_intensity(channel, 80.0)
    for i, channel in enumerate(led.kind.channels):
        led.driver.set_intensity(channel, 0)
        assert led.output(channel) == 0.0, f"{led.kind.chip} channel {channel} still lit at 0 %"
        led.assert_outputs({other: 80.0 for other in led.kind.channels[i + 1 :]})  # the rest stay lit


def test_led_refuses_bad_intensities_and_writes_nothing(led: LedRig) -> None:
    channel = led.kind.channels[1]
    led.driver.set_intensity(channel, 40.0)
    sent = len(led.wiring.models.log)
    for bad in BAD_INTENSITIES:
        with pytest.raises(ValueError):
            led.driver.set_intensity(channel, bad)
    assert len(led.wiring.models.log) == sent, "a refused intensity reached the bus"
    led.assert_outputs({channel: 40.0})


@pytest.mark.parametrize("fault", FAULTS)
def test_led_fault_raises_chip_error(led: LedRig, fault: str) -> None:
    break_chip(led.wiring.models, led.kind.address, fault)
    with pytest.raises(ChipError) as info:
        led.driver.set_intensity(led.kind.channels[0], 30.0)
    assert_names(info.value, led.kind.chip, led.kind.address)
    assert info.value.errno == EREMOTEIO
    led.wiring.models.clear_faults()
    led.wiring.models.attach(led.kind.address, led.model)
    led.driver.set_intensity(led.kind.channels[0], 30.0)  # and it works once the chip answers again
    led.assert_outputs({led.kind.channels[0]: 30.0})


# == Temperature kind ======================================================================================
TMP_ADDRESS = 0x4F


class ThermometerRig:
    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.celsius = 20.0
        self.model = TMP1075Model(lambda: self.celsius)
        wiring.models.attach(TMP_ADDRESS, self.model)
        self.driver = TMP1075(wiring.bus, TMP_ADDRESS)


@pytest.fixture
def thermometer(wiring: Wiring) -> ThermometerRig:
    return ThermometerRig(wiring)


def test_temperature_reads_within_one_lsb_including_below_zero(thermometer: ThermometerRig) -> None:
    for celsius in TEMPERATURES_C:
        thermometer.celsius = celsius
        assert_within(thermometer.driver.read_celsius(), celsius, LSB_C, "TMP1075")


@pytest.mark.parametrize("fault", FAULTS)
def test_temperature_fault_raises_chip_error(thermometer: ThermometerRig, fault: str) -> None:
    break_chip(thermometer.wiring.models, TMP_ADDRESS, fault)
    with pytest.raises(ChipError) as info:
        thermometer.driver.read_celsius()
    assert_names(info.value, "TMP1075", TMP_ADDRESS)
    assert info.value.errno == EREMOTEIO
