"""An in-memory I2C bus and register-level models of the HAT's chips.

Why this exists: ``i2c-stub`` and other kernel fakes are unavailable on CI runners, and blinka's
``OS_AGNOSTIC_BOARD`` bus has no register semantics (hardware.md §2.1). A bus that duck-types
``busio.I2C`` plus chip models that decode the same bytes the silicon would let the *real* drivers
(the Adafruit ADS1x15 driver and ours) run unmodified: gain switching, scale factors, endianness and
the firmware-version branch are all exercised byte for byte.

These models live in the package, not under ``tests/``, because the simulated hardware backend uses
them: a simulated vessel supplies the analog inputs through the ``voltage``/``temperature``
callables, and reads LED intensities back through the models' attributes or callbacks.

Conventions shared by every model (the :class:`I2CTarget` protocol):

* ``write(data)`` is one write transaction, START to STOP. An empty write is an address-only
  probe and is acknowledged.
* ``read(count)`` is one read transaction; a read right after a write in
  ``writeto_then_readfrom`` behaves like a repeated start, which is all these chips care about.
* A model refuses bytes the silicon would not acknowledge by raising :func:`nack`, an
  ``OSError(121, 'Remote I/O error')``, exactly what Linux i2c-dev reports.
"""

from __future__ import annotations

import errno as _errno
import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import attrs

EREMOTEIO = getattr(_errno, "EREMOTEIO", 121)


def nack(detail: str = "", code: int = EREMOTEIO) -> OSError:
    """The error Linux i2c-dev raises when a chip does not acknowledge (``OSError(121, ...)``)."""
    err = OSError(code, os.strerror(code) if code != EREMOTEIO else "Remote I/O error")
    if detail:
        err.add_note(detail)
    return err


class I2CTarget(Protocol):
    """A device on the fake bus: it sees whole transactions, as a chip's I2C state machine does."""

    def write(self, data: bytes) -> None: ...

    def read(self, count: int) -> bytes: ...


@attrs.frozen(kw_only=True)
class Transaction:
    """One bus transaction, logged so tests can assert the exact bytes a driver sent."""

    address: int
    wrote: bytes | None
    read: bytes | None
    error: int | None = None


@attrs.define
class _Fault:
    remaining: int | None  # None: fail every transaction until cleared
    code: int


class FakeI2CBus:
    """Duck-types ``busio.I2C`` over a dict of address -> :class:`I2CTarget`.

    Faults: :meth:`nack_next` makes the next ``count`` transactions to an address fail (a glitch
    burst: loose cable, brown-out, a chip busy in reset); :meth:`fail_always` makes it fail until
    :meth:`clear_faults` (a dead or unplugged chip that still appears in the HAT description).
    An address with no device fails like a missing chip. ``strict_locking`` (on by default)
    rejects transactions made without holding the lock, catching drivers that skip ``try_lock``.
    """

    def __init__(self, devices: Mapping[int, I2CTarget] | None = None, *, strict_locking: bool = True) -> None:
        self.devices: dict[int, I2CTarget] = dict(devices or {})
        self.strict_locking = strict_locking
        self.log: list[Transaction] = []
        self._lock = threading.Lock()
        self._faults: dict[int, _Fault] = {}

    # -- wiring and faults --------------------------------------------------------------------

    def attach(self, address: int, device: I2CTarget) -> None:
        _check_address(address)
        self.devices[address] = device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def nack_next(self, address: int, count: int = 1, *, code: int = EREMOTEIO) -> None:
        """Fail the next ``count`` transactions to ``address`` with ``OSError(code)``."""
        self._faults[address] = _Fault(remaining=count, code=code)

    def fail_always(self, address: int, *, code: int = EREMOTEIO) -> None:
        """Fail every transaction to ``address`` until :meth:`clear_faults`."""
        self._faults[address] = _Fault(remaining=None, code=code)

    def clear_faults(self, address: int | None = None) -> None:
        if address is None:
            self._faults.clear()
        else:
            self._faults.pop(address, None)

    # -- busio.I2C ----------------------------------------------------------------------------

    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def deinit(self) -> None:
        self.unlock()

    def __enter__(self) -> FakeI2CBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.deinit()

    def scan(self) -> list[int]:
        """Addresses that acknowledge; a chip under :meth:`fail_always` does not."""
        self._check_locked("scan")
        return sorted(a for a in self.devices if not (a in self._faults and self._faults[a].remaining is None))

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        data = bytes(memoryview(buffer)[start:end])
        self._transact(address, data, None, lambda dev: dev.write(data))

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        view = memoryview(buffer)
        stop = len(view) if end is None else end
        count = stop - start
        got = self._transact(address, None, count, lambda dev: _pad(dev.read(count), count))
        view[start:stop] = got

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        data = bytes(memoryview(buffer_out)[out_start:out_end])
        view = memoryview(buffer_in)
        stop = len(view) if in_end is None else in_end
        count = stop - in_start

        def combined(dev: I2CTarget) -> bytes:
            dev.write(data)
            return _pad(dev.read(count), count)

        view[in_start:stop] = self._transact(address, data, count, combined)

    # -- internals ----------------------------------------------------------------------------

    def _check_locked(self, what: str) -> None:
        if self.strict_locking and not self._lock.locked():
            raise RuntimeError(f"FakeI2CBus.{what} called without holding the bus lock; call try_lock() first")

    def _transact(self, address: int, wrote: bytes | None, count: int | None, op: Callable[[I2CTarget], Any]) -> Any:
        self._check_locked("transaction")
        fault = self._faults.get(address)
        device = self.devices.get(address)
        code: int | None = None
        if fault is not None:
            code = fault.code
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[address]
        elif device is None:
            code = EREMOTEIO
        if code is not None:
            self.log.append(Transaction(address=address, wrote=wrote, read=None, error=code))
            raise nack(f"no acknowledge from 0x{address:02X}", code)
        assert device is not None
        try:
            result = op(device)
        except OSError as e:
            self.log.append(Transaction(address=address, wrote=wrote, read=None, error=e.errno))
            raise
        self.log.append(Transaction(address=address, wrote=wrote, read=bytes(result) if count is not None else None))
        return result


def _pad(data: bytes, count: int) -> bytes:
    # A target that stops driving SDA reads as 0xFF: the bus is pulled high.
    return bytes(data[:count]) + b"\xff" * max(0, count - len(data))


def _check_address(address: int) -> None:
    if not 0x08 <= address <= 0x77:
        raise ValueError(f"0x{address:02X} is not a usable 7-bit I2C address (0x08-0x77)")


def _word(value: int) -> bytes:
    return (value & 0xFFFF).to_bytes(2, "big")


# ---------------------------------------------------------------------------------------------
# ADS1115 / ADS1114
# ---------------------------------------------------------------------------------------------

ADS_CONVERSION, ADS_CONFIG, ADS_LO_THRESH, ADS_HI_THRESH = 0, 1, 2, 3
ADS_OS = 0x8000
ADS_MODE_SINGLE = 0x0100
# PGA field [11:9] -> full-scale range in volts (codes 101, 110 and 111 all mean ±0.256 V).
ADS_FULL_SCALE = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
# MUX field [14:12] -> (positive input, negative input or None for GND).
ADS_MUX: tuple[tuple[int, int | None], ...] = ((0, 1), (0, 3), (1, 3), (2, 3), (0, None), (1, None), (2, None), (3, None))
ADS_CONFIG_RESET = 0x8583  # datasheet reset value: single-shot, AIN0-AIN1, ±2.048 V, 128 SPS, comparator off


def ads_code(volts: float, full_scale: float) -> int:
    """Volts -> signed 16-bit code, ``clip(round(V/FSR·32767))`` (Pioreactor's raw/32767·FSR convention)."""
    if math.isnan(volts):
        return 0
    return max(-32768, min(32767, round(volts / full_scale * 32767)))


class ADS1115Model:
    """ADS1115 registers: pointer, config (OS/MUX/PGA/MODE/DR), conversion, comparator thresholds.

    A single-shot conversion (MODE=1 and OS written as 1) completes instantly: simulated time does
    not pass inside a bus transaction, so the driver's poll of the OS bit sees "done" at once. In
    continuous mode (MODE=0) the conversion register is re-sampled on every read, as if the chip had
    just finished a conversion. OS reads back 1 (idle) in single-shot mode and 0 (converting) in
    continuous mode. The data-rate field is stored and otherwise ignored.

    ``voltage(channel)`` gives AIN0..AIN3 in volts at the moment of conversion; differential MUX
    settings subtract the two inputs.
    """

    chip = "ADS1115"

    def __init__(self, voltage: Callable[[int], float]) -> None:
        self.voltage = voltage
        self.pointer = ADS_CONVERSION
        self.registers = {ADS_CONVERSION: 0, ADS_CONFIG: self._stored_config(ADS_CONFIG_RESET), ADS_LO_THRESH: 0x8000, ADS_HI_THRESH: 0x7FFF}
        self.conversions = 0

    @property
    def config(self) -> int:
        return self.registers[ADS_CONFIG]

    @property
    def continuous(self) -> bool:
        return not self.config & ADS_MODE_SINGLE

    @property
    def full_scale(self) -> float:
        return ADS_FULL_SCALE[(self.config >> 9) & 0x7]

    def _input_volts(self) -> float:
        positive, negative = ADS_MUX[(self.config >> 12) & 0x7]
        v = self.voltage(positive)
        return v - self.voltage(negative) if negative is not None else v

    def _convert(self) -> None:
        self.conversions += 1
        self.registers[ADS_CONVERSION] = ads_code(self._input_volts(), self.full_scale) & 0xFFFF

    def write(self, data: bytes) -> None:
        if not data:
            return  # address probe
        if data[0] & 0xFC:
            raise nack(f"{self.chip}: pointer byte 0x{data[0]:02X} has reserved bits set")
        self.pointer = data[0] & 0x03
        if len(data) < 3:
            return  # pointer-only write (or an incomplete word, which the chip discards)
        value = data[1] << 8 | data[2]
        if self.pointer == ADS_CONVERSION:
            return  # read-only
        if self.pointer == ADS_CONFIG:
            start = bool(value & ADS_OS)
            self.registers[ADS_CONFIG] = self._stored_config(value)
            if self.continuous or start:
                self._convert()
            return
        self.registers[self.pointer] = value

    def _stored_config(self, value: int) -> int:
        # OS is a command bit on write; on read it reports "idle" (1) in single-shot mode.
        value &= ~ADS_OS & 0xFFFF
        return value | (ADS_OS if value & ADS_MODE_SINGLE else 0)

    def read(self, count: int) -> bytes:
        if self.pointer == ADS_CONVERSION and self.continuous:
            self._convert()
        word = _word(self.registers[self.pointer])
        return (word * ((count + 1) // 2))[:count]


class ADS1114Model(ADS1115Model):
    """ADS1114: the ADS1115 register map with one input pair; the MUX bits do nothing.

    It always converts AIN0 relative to AIN1. We model AIN1 as tied to ground (an assumption about
    the Pioreactor v1.5 optics board), so the code follows ``voltage(0)``. MUX bits read back as
    written. Pioreactor runs these in continuous mode; both modes work here.
    """

    chip = "ADS1114"

    def _input_volts(self) -> float:
        return self.voltage(0)


# ---------------------------------------------------------------------------------------------
# Pioreactor HAT RP2040 ("pico") firmware: ADC and LED "DAC" at 0x2C
# ---------------------------------------------------------------------------------------------

PICO_VREF = 3.3
PICO_ADC_MAX = 4095  # 12-bit ADC
PICO_VERSION_REGISTER = 0x08


def pico_scale(firmware: tuple[int, int]) -> int:
    """Oversampling scale of the reported counts: 32 from firmware 0.4 on, 16 before."""
    return 32 if firmware >= (0, 4) else 16


class PicoModel:
    """The HAT MCU's I2C protocol: registers 0-3 LED duty, 4-7 ADC inputs 0-3, 8 firmware version.

    * ``[ch, value]`` with ch 0-3 sets LED channel ch to an 8-bit duty; recorded in
      :attr:`intensities` and passed to ``on_intensity(channel, value)``.
    * ``[ch + 4]`` then a 2-byte read returns ADC input ch as little-endian unsigned counts,
      ``round(V/3.3·4095·scale)`` with V clipped to 0-3.3 V (the ADC saturates at its reference).
    * ``[0x08]`` then a 2-byte read returns ``(minor, major)``.
    * Other pointers read as 0xFF 0xFF: the firmware answers rather than NACKs.

    Counts above 65535 (V > 1.65 V at scale 32) do not fit the 2-byte register. Firmware 0.5 sums
    1024 samples, shifts right by 5 and casts to ``uint16_t``, so the value wraps (Pioreactor/pico-build
    ``main.c``). ``overflow="wrap"`` (the default) reproduces that; ``"saturate"`` clamps at 0xFFFF
    for experiments. The firmware's exponential smoothing of pd channels is not modelled: reads are
    instant.
    """

    chip = "Pico"

    def __init__(
        self,
        voltage: Callable[[int], float],
        *,
        firmware: tuple[int, int] = (0, 5),
        on_intensity: Callable[[int, int], None] | None = None,
        overflow: Literal["wrap", "saturate"] = "wrap",
    ) -> None:
        self.voltage = voltage
        self.firmware = firmware
        self.on_intensity = on_intensity
        self.overflow = overflow
        self.pointer = 0xFF
        self.intensities: list[int] = [0, 0, 0, 0]

    @property
    def scale(self) -> int:
        return pico_scale(self.firmware)

    def counts(self, channel: int) -> int:
        v = self.voltage(channel)
        v = 0.0 if math.isnan(v) else min(max(v, 0.0), PICO_VREF)
        raw = round(v / PICO_VREF * PICO_ADC_MAX * self.scale)
        return min(raw, 0xFFFF) if self.overflow == "saturate" else raw & 0xFFFF

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] if data[0] <= PICO_VERSION_REGISTER else 0xFF
        if self.pointer <= 3:
            for value in data[1:]:
                self.intensities[self.pointer] = value
                if self.on_intensity is not None:
                    self.on_intensity(self.pointer, value)

    def read(self, count: int) -> bytes:
        if 4 <= self.pointer <= 7:
            word = self.counts(self.pointer - 4).to_bytes(2, "little")
        elif self.pointer == PICO_VERSION_REGISTER:
            word = bytes([self.firmware[1], self.firmware[0]])
        else:
            word = b"\xff\xff"
        return word[:count]


# ---------------------------------------------------------------------------------------------
# DAC43608 (HAT 1.0 LED driver)
# ---------------------------------------------------------------------------------------------

DAC43608_CONFIG = 0x01
DAC43608_STATUS = 0x02
DAC43608_BROADCAST = 0x03
DAC43608_CHANNEL_A = 0x08
DAC43608_CHANNELS = "ABCDEFGH"


def dac43608_word(code: int) -> bytes:
    """8-bit code -> the two data bytes: the code sits in bits 11:4 of the 16-bit word."""
    return bytes([code >> 4, (code & 0x0F) << 4])


class DAC43608Model:
    """DAC43608 8-channel LED current DAC: config register 1, data registers 8-15 (A-H).

    Data words carry the 8-bit code in bits 11:4 (``[code // 16, (code % 16) · 16]``). Config bits
    7:0 power channels H..A down when set; channel A is bit 0 (from our reading of the datasheet;
    confirm on a HAT 1.0). The reset state here is every channel powered down with code 0.
    :attr:`codes` and :attr:`powered` expose the outputs, and ``on_change(channel, code, powered)``
    is called on every change.
    """

    chip = "DAC43608"

    def __init__(self, *, on_change: Callable[[str, int, bool], None] | None = None) -> None:
        self.on_change = on_change
        self.pointer = DAC43608_CONFIG
        self.config = 0x00FF
        self.data = [0] * 8

    @property
    def codes(self) -> dict[str, int]:
        return {name: (word >> 4) & 0xFF for name, word in zip(DAC43608_CHANNELS, self.data)}

    @property
    def powered(self) -> dict[str, bool]:
        return {name: not self.config & (1 << i) for i, name in enumerate(DAC43608_CHANNELS)}

    def fraction(self, channel: str) -> float:
        """Output current as a fraction of the chip's full scale (0 when powered down)."""
        return self.codes[channel] / 255 if self.powered[channel] else 0.0

    def write(self, data: bytes) -> None:
        if not data:
            return
        command = data[0]
        if command not in (DAC43608_CONFIG, DAC43608_STATUS, DAC43608_BROADCAST) and not 8 <= command <= 15:
            raise nack(f"DAC43608: no register 0x{command:02X}")
        self.pointer = command
        if len(data) < 3:
            return
        before = (self.codes, self.powered)
        value = data[1] << 8 | data[2]
        if command == DAC43608_CONFIG:
            self.config = value
        elif command == DAC43608_BROADCAST:
            self.data = [value] * 8
        elif command >= DAC43608_CHANNEL_A:
            self.data[command - DAC43608_CHANNEL_A] = value
        self._notify(*before)

    def _notify(self, codes: dict[str, int], powered: dict[str, bool]) -> None:
        if self.on_change is None:
            return
        now_codes, now_powered = self.codes, self.powered
        for name in DAC43608_CHANNELS:
            if (codes[name], powered[name]) != (now_codes[name], now_powered[name]):
                self.on_change(name, now_codes[name], now_powered[name])

    def read(self, count: int) -> bytes:
        if self.pointer == DAC43608_CONFIG:
            word = _word(self.config)
        elif self.pointer >= DAC43608_CHANNEL_A:
            word = _word(self.data[self.pointer - DAC43608_CHANNEL_A])
        else:
            word = b"\x00\x00"
        return word[:count]


# ---------------------------------------------------------------------------------------------
# TMP1075 (heater-plate temperature sensor)
# ---------------------------------------------------------------------------------------------

TMP1075_TEMPERATURE = 0x00
TMP1075_LSB_C = 0.0625


def tmp1075_word(celsius: float) -> int:
    """°C -> the temperature register: 12-bit two's complement, left-justified, 0.0625 °C/LSB."""
    counts = max(-2048, min(2047, round(celsius / TMP1075_LSB_C)))
    return (counts & 0xFFF) << 4


class TMP1075Model:
    """TMP1075: pointer 0 = temperature (read-only), 1-3 = config and limits (plain storage here).

    ``temperature()`` is sampled at each read, so a simulated heater plate can drive it. Readings
    clip at the 12-bit range (-128 to +127.9375 °C).
    """

    chip = "TMP1075"

    def __init__(self, temperature: Callable[[], float]) -> None:
        self.temperature = temperature
        self.pointer = TMP1075_TEMPERATURE
        self.registers = {1: 0, 2: 0, 3: 0}

    def write(self, data: bytes) -> None:
        if not data:
            return
        if data[0] > 3:
            raise nack(f"TMP1075: no register 0x{data[0]:02X}")
        self.pointer = data[0]
        if len(data) >= 3 and self.pointer != TMP1075_TEMPERATURE:
            self.registers[self.pointer] = data[1] << 8 | data[2]

    def read(self, count: int) -> bytes:
        if self.pointer == TMP1075_TEMPERATURE:
            word = _word(tmp1075_word(self.temperature()))
        else:
            word = _word(self.registers[self.pointer])
        return word[:count]
