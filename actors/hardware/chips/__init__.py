"""Chip drivers for the Pioreactor HAT, each taking an injected :class:`~actors.hardware.i2c.I2CBus`.

Why injected buses: the same driver code runs against ``/dev/i2c-1`` and against
:class:`~actors.hardware.sim_i2c.FakeI2CBus`, so tests and the simulator exercise the real bytes.

Why one :class:`ChipError`: a driver actor should not need to know errno values, blinka's
``ValueError("No I2C device at address")`` or which library raised what. Every bus failure leaves
this package as a ``ChipError`` naming the chip, its address and a reason a person can act on
(style rule 8: errors are translated at the hardware edge).

Modules: ``ads1x15`` (ADS1115/ADS1114 through the maintained Adafruit driver), ``pico`` (the HAT
MCU's ADC and LED outputs), ``dac43608`` (HAT 1.0 LED driver), ``tmp1075`` (heater-plate sensor).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from actors.hardware.i2c import I2CBus

# How long a driver waits for another driver to release the shared bus before giving up. Real
# transactions take well under a millisecond; a second means something is stuck holding the lock.
BUS_LOCK_TIMEOUT_S = 1.0

_REASONS = {
    getattr(errno, "EREMOTEIO", 121): "no acknowledge (NACK): the chip is absent, unpowered or at another address; "
    "check that the HAT is seated and that the HAT/model description matches the hardware",
    errno.ENXIO: "no such device on the bus; check the HAT and the address in the hardware description",
    errno.ETIMEDOUT: "bus timed out; SDA or SCL may be held low by a hung chip (power-cycle the HAT)",
    errno.EIO: "I/O error on the bus; check the HAT connection",
    errno.EAGAIN: "bus arbitration lost; retry",
    errno.EBUSY: "bus busy",
}


def reason_for(err: BaseException) -> str:
    """A readable reason for a bus error, keyed on errno where there is one."""
    if isinstance(err, OSError) and err.errno is not None:
        text = _REASONS.get(err.errno) or err.strerror or os.strerror(err.errno)
        return f"{text} (errno {err.errno})"
    return str(err) or type(err).__name__


class ChipError(Exception):
    """A chip could not be talked to. ``str()`` reads e.g. ``"TMP1075 at 0x4F: no acknowledge ..."``."""

    def __init__(self, chip: str, address: int, reason: str, *, errno: int | None = None) -> None:
        super().__init__(f"{chip} at 0x{address:02X}: {reason}")
        self.chip = chip
        self.address = address
        self.reason = reason
        self.errno = errno

    @classmethod
    def from_os_error(cls, chip: str, address: int, err: OSError) -> ChipError:
        return cls(chip, address, reason_for(err), errno=err.errno)

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable (Thespian pickles what crosses actor boundaries).
        return (_rebuild_chip_error, (self.chip, self.address, self.reason, self.errno))


def _rebuild_chip_error(chip: str, address: int, reason: str, err_no: int | None) -> ChipError:
    return ChipError(chip, address, reason, errno=err_no)


@contextmanager
def bus_transaction(bus: I2CBus, chip: str, address: int, *, lock_timeout: float = BUS_LOCK_TIMEOUT_S) -> Iterator[I2CBus]:
    """Hold the bus lock for one register exchange and turn ``OSError`` into :class:`ChipError`.

    Holding the lock across a write-then-read keeps another driver from moving a chip's register
    pointer in between.
    """
    deadline = time.monotonic() + lock_timeout
    while not bus.try_lock():
        if time.monotonic() > deadline:
            raise ChipError(chip, address, f"the I2C bus stayed locked for {lock_timeout:g} s; another driver is holding it")
        time.sleep(0.0001)
    try:
        yield bus
    except OSError as e:
        raise ChipError.from_os_error(chip, address, e) from e
    finally:
        bus.unlock()


class PhotodiodeAdc(Protocol):
    """What the OD reader needs from an ADC, whichever chip sits behind it.

    ``gain`` is the programmable gain (1 for chips without one); ``gains`` lists the settable ones.
    ``read_volts`` raises :class:`ChipError` when the bus fails.
    """

    chip: str
    address: int

    @property
    def gains(self) -> tuple[float, ...]: ...

    @property
    def gain(self) -> float: ...

    @gain.setter
    def gain(self, value: float) -> None: ...

    def read_volts(self, channel: int) -> float: ...


def check_pct(pct: float) -> float:
    """LED intensities are percent of the driver's span; refuse anything else loudly."""
    if not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0.0 <= pct <= 100.0:
        raise ValueError(f"intensity must be a number from 0 to 100 (percent), got {pct!r}")
    return float(pct)


__all__ = ["BUS_LOCK_TIMEOUT_S", "ChipError", "PhotodiodeAdc", "bus_transaction", "check_pct", "reason_for"]
