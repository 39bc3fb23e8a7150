"""The I2C bus seam: the protocol our chip drivers are written against, and the one way to open a real bus.

Why a protocol: chip drivers take the bus as a constructor argument, so the same byte-level driver
code runs against the Pi's ``/dev/i2c-1`` in production and against
:class:`actors.hardware.sim_i2c.FakeI2CBus` in tests and in the simulator. The method set is exactly
what ``busio.I2C`` offers, so the maintained Adafruit drivers (``adafruit_ads1x15``) accept either.

Why blinka is imported only inside :func:`open_real_bus`: off a Pi, ``import board`` either picks a
board without I2C pins or fails outright (``gpiod`` missing, see hardware.md §2.1). Nothing in this
module, in ``chips/`` or in ``sim_i2c`` imports ``board``; a test proves it by inspecting
``sys.modules``. :func:`open_real_bus` does not import ``board`` either: it opens the Linux i2c-dev
bus by number through blinka's generic-Linux class, which is what ``busio.I2C`` uses underneath on
a Pi, and so it needs no board detection at all (which on a Pi 5 needs ``BLINKA_FORCECHIP`` tricks).
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, Protocol, runtime_checkable

# The Pioreactor HAT sits on the Pi's primary I2C bus (SDA GPIO 2, SCL GPIO 3).
DEFAULT_BUS_NUMBER = 1

ENABLE_I2C_HINT = (
    "enable I2C on the Raspberry Pi with `sudo raspi-config nonint do_i2c 0` "
    "(or add `dtparam=i2c_arm=on` to /boot/firmware/config.txt) and reboot; "
    "off a Pi, use the simulated hardware (`hardware: sim` in topology.yaml)"
)


@runtime_checkable
class I2CBus(Protocol):
    """The ``busio.I2C`` method set our drivers use; buffers are bytes-like, addresses 7-bit.

    Callers hold the lock (``try_lock`` ... ``unlock``) around every transaction, as the Adafruit
    drivers do, so two drivers sharing one bus never interleave a multi-step register exchange.
    Failed transfers raise ``OSError`` (errno 121, EREMOTEIO, when a chip does not acknowledge).
    """

    def try_lock(self) -> bool: ...

    def unlock(self) -> None: ...

    def scan(self) -> list[int]: ...

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None: ...

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None: ...

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
    ) -> None: ...


class I2CUnavailableError(RuntimeError):
    """This machine cannot open the requested I2C bus; the message says why and how to fix it."""


class _LockedLinuxBus:
    """Adds ``try_lock``/``unlock`` to blinka's generic-Linux I2C, which lacks them.

    Why not ``busio.I2C``: that class finds its bus from ``board.SCL``/``board.SDA``, which means
    importing ``board`` and trusting board detection; opening by bus number avoids both. The
    underlying calls are the same ones ``busio.I2C`` makes on Linux.
    """

    def __init__(self, linux_i2c: Any, bus_number: int) -> None:
        self._bus = linux_i2c
        self.bus_number = bus_number
        self._lock = threading.Lock()

    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def scan(self) -> list[int]:
        return list(self._bus.scan())

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._bus.writeto(address, buffer, start=start, end=end)

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._bus.readfrom_into(address, buffer, start=start, end=end)

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
        # One combined I2C_RDWR transfer (repeated start), which the ADS1x15 pointer reads rely on.
        self._bus.writeto_then_readfrom(
            address, buffer_out, buffer_in, out_start=out_start, out_end=out_end, in_start=in_start, in_end=in_end
        )

    def __repr__(self) -> str:
        return f"<I2C bus /dev/i2c-{self.bus_number}>"


def open_real_bus(bus_number: int = DEFAULT_BUS_NUMBER) -> I2CBus:
    """Open ``/dev/i2c-<bus_number>``; raise :class:`I2CUnavailableError` with a fix when we can't.

    The device node is checked before blinka is imported, so on a laptop or CI runner this fails
    fast and imports nothing from blinka. Blinka's own message for a missing bus ("No Hardware I2C
    on (scl,sda)") points at pins rather than at the disabled interface, hence our wording.
    """
    device = f"/dev/i2c-{bus_number}"
    if not os.path.exists(device):
        raise I2CUnavailableError(f"I2C is not available on this machine: {device} does not exist; {ENABLE_I2C_HINT}")
    try:
        from adafruit_blinka.microcontroller.generic_linux.i2c import I2C as LinuxI2C
    except ImportError as e:  # blinka or Adafruit_PureIO not installed
        raise I2CUnavailableError(
            f"I2C is not available on this machine: cannot import blinka's Linux I2C support ({e}); "
            "install the project with its hardware dependencies (`pip install -e .`)"
        ) from e
    try:
        return _LockedLinuxBus(LinuxI2C(bus_number), bus_number)
    except PermissionError as e:
        raise I2CUnavailableError(
            f"I2C bus {device} exists but this user may not open it ({e.strerror}); "
            "add the service user to the `i2c` group (`sudo adduser $USER i2c`) and log in again"
        ) from e
    except (OSError, RuntimeError) as e:
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        if isinstance(e, OSError) and e.errno == errno.ENOENT:
            reason = f"{device} vanished"
        raise I2CUnavailableError(f"I2C is not available on this machine: opening {device} failed ({reason}); {ENABLE_I2C_HINT}") from e
