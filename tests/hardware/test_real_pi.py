"""Checks that only a real Raspberry Pi with a Pioreactor HAT can answer; skipped everywhere else.

Why: every other hardware test runs against fakes and register models we wrote from datasheets. These
are the few facts only the silicon can confirm: the chips answer at the addresses the hardware
description says, pigpiod really holds our pins at 0 after the backend starts, and the TMP1075 and the
ADC return physically plausible values (a room-temperature plate, a 5 V supply rail).

They run only when ``/dev/i2c-1`` exists AND a pigpiod answers on 127.0.0.1:8888 (a short TCP connect);
otherwise the whole module is skipped with the reason, so they can never pass off a Pi. Run them on a
bench unit with no experiment running (the PWM test zeroes every output):
``pytest -m hardware -rs tests/hardware/test_real_pi.py``.

Which hardware: the HAT version comes from the HAT EEPROM (``/proc/device-tree/hat/product_ver``, read
the way Pioreactor reads it), else the ``PIO_HAT`` environment variable, else 1.2. The vessel model is
``PIO_MODEL`` (default ``pioreactor_20ml_1.0``, which adds no chips to the HAT's); set it on a v1.5
unit so that the scan also expects its photodiode ADCs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from actors.hardware import hardware_access
from actors.hardware.description import HardwareDescription, load
from actors.hardware.i2c import I2CBus
from actors.hardware.pigpio_backend import PigpioPwmBackend
from actors.hardware.sim_device import AUX_DIVIDER
from actors.messages import HardwareConfig

I2C_DEVICE = "/dev/i2c-1"
PIGPIOD_HOST, PIGPIOD_PORT = "127.0.0.1", 8888
CONNECT_TIMEOUT_S = 0.5
HAT_PRODUCT_VER = Path("/proc/device-tree/hat/product_ver")
DEFAULT_HAT = "1.2"
DEFAULT_MODEL = "pioreactor_20ml_1.0"
ROOM_C = (10.0, 40.0)  # a plate at room temperature; a plate still warm from heating reads above
RAIL_V = (4.6, 5.5)  # a healthy 5 V supply (Pioreactor warns below 4.8 V)


def _pigpiod_answers() -> bool:
    try:
        with socket.create_connection((PIGPIOD_HOST, PIGPIOD_PORT), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _why_not_a_pi() -> str | None:
    """None on a Pi with the HAT's bus and pigpiod up; otherwise every reason these tests cannot run."""
    missing = []
    if not os.path.exists(I2C_DEVICE):
        missing.append(f"{I2C_DEVICE} does not exist")
    if not _pigpiod_answers():
        missing.append(f"no pigpiod answers on {PIGPIOD_HOST}:{PIGPIOD_PORT}")
    if not missing:
        return None
    return "needs a Raspberry Pi with a Pioreactor HAT and pigpiod running: " + "; ".join(missing)


NOT_A_PI = _why_not_a_pi()
pytestmark = [pytest.mark.hardware, pytest.mark.skipif(NOT_A_PI is not None, reason=NOT_A_PI or "")]


def detected_hat() -> str:
    """The HAT version: EEPROM product_ver (e.g. ``"0x0012"`` -> ``"1.2"``), else ``PIO_HAT``, else 1.2.

    A product_ver that is there but unreadable fails the test: guessing would check the wrong addresses.
    """
    try:
        text = HAT_PRODUCT_VER.read_text(errors="replace").strip("\x00 \n")
    except FileNotFoundError:
        return os.environ.get("PIO_HAT", DEFAULT_HAT)
    if len(text) < 2 or not text[-2:].isdigit():
        raise AssertionError(f"cannot read a HAT version from {HAT_PRODUCT_VER}: {text!r}")
    return f"{text[-2]}.{text[-1]}"


@pytest.fixture(scope="module")
def desc() -> HardwareDescription:
    return load(detected_hat(), os.environ.get("PIO_MODEL", DEFAULT_MODEL))


@pytest.fixture(scope="module")
def bus(desc: HardwareDescription) -> I2CBus:
    """The bus the way a driver actor opens it (``hardware_access``), so the production path is what runs."""
    return hardware_access.open_i2c(HardwareConfig(hat=desc.hat_version, model=desc.model.id, i2c_bus=desc.i2c.bus))


def test_bus_scan_shows_every_chip_the_description_expects(desc: HardwareDescription, bus: I2CBus) -> None:
    assert bus.try_lock(), "the I2C bus lock is held"
    try:
        found = set(bus.scan())
    finally:
        bus.unlock()
    missing = [f"0x{address:02X} ({chip})" for address, chip in desc.i2c_devices().items() if address not in found]
    assert not missing, (
        f"HAT {desc.hat_version} with {desc.model.id}: nothing answers at {', '.join(missing)}; the bus shows "
        f"{[f'0x{a:02X}' for a in sorted(found)]} (is the HAT seated, and are PIO_HAT/PIO_MODEL right?)"
    )


def test_pigpio_backend_zeroes_every_pwm_pin_at_start(desc: HardwareDescription) -> None:
    frequencies = {ch.pin: int(round(ch.hz)) for ch in desc.pwm.channels.values()}
    with PigpioPwmBackend(
        PIGPIOD_HOST, PIGPIOD_PORT, frequencies=frequencies, hall_pin=desc.gpio.hall_sensor
    ) as backend:
        held = {name: backend.duty(ch.pin) for name, ch in desc.pwm.channels.items()}  # read from the daemon
    assert held == {name: 0.0 for name in desc.pwm.channels}, f"pigpiod holds non-zero duties after start: {held}"


def test_tmp1075_reads_a_plausible_room_temperature(desc: HardwareDescription, bus: I2CBus) -> None:
    celsius = hardware_access.temperature_chip(bus, desc).read_celsius()
    low, high = ROOM_C
    assert low <= celsius <= high, f"heater plate reads {celsius} °C; expected room temperature ({low}-{high} °C)"


def test_adc_reads_a_plausible_5v_rail_on_aux(desc: HardwareDescription, bus: I2CBus) -> None:
    chip, channel = hardware_access.adc_chips(bus, desc)["aux"]
    rail = chip.read_volts(channel) / AUX_DIVIDER
    low, high = RAIL_V
    assert low <= rail <= high, f"aux on {chip!r} input {channel} gives a {rail:.2f} V rail; expected {low}-{high} V"
