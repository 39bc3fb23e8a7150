"""Opening a node's hardware: the one place that turns a :class:`HardwareConfig` and the validated
hardware description into backends and chip drivers. Only driver actors call it.

A sim unit is reached exactly like a Pi: PWM and GPIO through the real ``pigpio`` client (pointed at the
simulated device's pigpio port), chips through our chip drivers on an I2C bus (over loopback to the
simulated device). So drivers and safety code are the same in simulation and on hardware.
"""

from __future__ import annotations

from typing import Any

from actors.hardware.description import HardwareDescription, load
from actors.hardware.i2c import I2CBus
from actors.messages import HardwareConfig, NodeConfig

_LETTERS = "ABCDEFGH"
SIM_HAT = "1.2"  # the HAT a simulated unit emulates


def description(hw: HardwareConfig) -> HardwareDescription:
    return load(hw.hat, hw.model)


def node_description(node: NodeConfig) -> HardwareDescription:
    """The description a node runs with: its HAT (the emulated one on a sim unit) and vessel model.
    Jobs read their vessel's volumes and limits from it (``.vessel``, ``.safety``)."""
    return load(SIM_HAT if node.hardware == "sim" else node.hardware, node.model)


def open_i2c(hw: HardwareConfig) -> I2CBus:
    if hw.i2c_port is not None:
        from actors.hardware.sim_i2c_server import RemoteI2CBus

        return RemoteI2CBus("127.0.0.1", hw.i2c_port)
    from actors.hardware.i2c import open_real_bus

    return open_real_bus(hw.i2c_bus)


def is_raspberry_pi_5(model_file: str = "/proc/device-tree/model") -> bool:
    """pigpiod does not run on a Pi 5 (BCM2712): there the PWM goes through lgpio and sysfs instead."""
    try:
        with open(model_file, "rb") as f:
            return b"Raspberry Pi 5" in f.read()
    except OSError:
        return False


def open_pwm(hw: HardwareConfig, desc: HardwareDescription) -> Any:
    frequencies = {ch.pin: int(round(ch.hz)) for ch in desc.pwm.channels.values()}
    if hw.i2c_port is None and is_raspberry_pi_5():
        from actors.hardware.lgpio_backend import LgpioPwmBackend

        return LgpioPwmBackend(frequencies=frequencies, hall_pin=desc.gpio.hall_sensor, hardware_pins=desc.pwm.hardware_pins)
    from actors.hardware.pigpio_backend import PigpioPwmBackend

    return PigpioPwmBackend(hw.pigpio_host, hw.pigpio_port, frequencies=frequencies, hall_pin=desc.gpio.hall_sensor)


def adc_chips(bus: I2CBus, desc: HardwareDescription) -> dict[str, tuple[Any, int]]:
    """Signal name -> (chip driver, input on that chip); chips shared by several signals are built once."""
    from actors.hardware.chips.ads1x15 import ADS1114Adc, ADS1115Adc
    from actors.hardware.chips.pico import PicoAdc

    built: dict[int, Any] = {}
    out: dict[str, tuple[Any, int]] = {}
    for signal, spec in desc.adc.items():
        chip = built.get(spec.address)
        if chip is None:
            if spec.chip == "ads1115":
                chip = ADS1115Adc(bus, spec.address)
            elif spec.chip == "ads1114":
                chip = ADS1114Adc(bus, spec.address)
            else:
                chip = PicoAdc(bus, spec.address)
            built[spec.address] = chip
        out[signal] = (chip, spec.channel)
    return out


def led_chip(bus: I2CBus, desc: HardwareDescription) -> Any:
    from actors.hardware.chips.dac43608 import DAC43608
    from actors.hardware.chips.pico import PicoDac

    if desc.leds.chip == "dac43608":
        return DAC43608(bus, desc.leds.address)
    return PicoDac(bus, desc.leds.address)


def led_output(desc: HardwareDescription, pocket: str) -> str:
    """The chip output letter that drives LED pocket ``pocket`` (A-D)."""
    return _LETTERS[desc.leds.channels[pocket]]


def temperature_chip(bus: I2CBus, desc: HardwareDescription) -> Any:
    from actors.hardware.chips.tmp1075 import TMP1075

    return TMP1075(bus, desc.temperature.address)
