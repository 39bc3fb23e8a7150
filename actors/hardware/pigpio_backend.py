"""PWM backend for Raspberry Pi 1-4 through the pigpio daemon (``pigpiod``).

Why pigpio: its DMA-timed soft PWM runs on any GPIO at stable frequencies without kernel overlays, and
one daemon connection also delivers hall-sensor edges with microsecond ticks. It does not run on a Pi 5
(see :mod:`actors.hardware.lgpio_backend`).

Why the care below:

* ``pigpio.pi()`` does not raise when the daemon is absent; it sets ``connected = False`` and the
  first call later dies with an ``AttributeError``. We check and raise :class:`PigpiodNotRunning` at
  construction, naming the fix.
* ``pigpiod`` owns the PWM, not the client: when a client dies its PWM keeps running. So every
  configured pin is zeroed when the backend starts (a crashed predecessor may have left a pump on),
  again on :meth:`PigpioPwmBackend.close`, and at interpreter exit as a last resort.
* pigpio duty cycles are integers over a per-pin range (default 255). We set the range to ``steps``
  (1000 by default, 0.1 % per step) so percent maps to whole steps and reads back exactly.
  The daemon's *real* range (200 kHz / frequency) can be coarser than ``steps`` (800 at 250 Hz);
  pigpio then scales our steps onto it, so the waveform's resolution is ``100 / min(steps, real)``.
* pigpio snaps the frequency to a fixed table (16 Hz becomes 20 Hz); :attr:`frequencies` holds what
  the daemon actually runs and a snap is logged.
* Every pigpio failure (an error code, or the connection dropping) becomes one :class:`PigpioError`
  with the call, its arguments and pigpio's own text.

Soft PWM on every pin, by choice: GPIO 12/13 could use ``hardware_PWM``, but 12 shares channel PWM0
with 18 (the heater) and 13 shares PWM1 with 19, so a hardware-PWM pin can retune or restart another
channel's pin; soft PWM at the HAT's 16-250 Hz is DMA-timed and accurate, gives one range/readback
path for all pins, and sidesteps the analog-audio conflict. Hardware PWM left on by some other program
is still stopped at start (``hardware_PWM(pin, 0, 0)``) before the pin is zeroed.

``pigpio`` is imported when the backend is constructed, never at module import, so this module loads on
machines without it.
"""

from __future__ import annotations

import atexit
import math
import struct
import threading
from collections.abc import Mapping
from types import ModuleType, TracebackType
from typing import Any

from actors import logs
from actors.hardware.pwm_backend import HardwareError, validate_duty
from actors.hardware.description import HALL_SENSOR_PIN

log = logs.get("pigpio_backend")

DEFAULT_STEPS = 1000
_HW_PWM_PINS = (12, 13, 18, 19)
_PI_NOT_PWM_GPIO = -92  # pigpio.h error numbers, kept here so the logic does not hinge on client names
_PI_HPWM_ILLEGAL = -100


class PigpioError(HardwareError):
    """A pigpio call failed. ``code`` is pigpio's negative error number when the daemon returned one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class PigpiodNotRunning(PigpioError, ConnectionError):
    """Nothing answered at the daemon's address (pigpio itself only sets ``pi.connected = False``)."""


class PigpioPwmBackend:
    """Soft PWM on the configured BCM pins plus a falling-edge counter on the hall-sensor pin.

    ``frequencies`` maps each PWM pin to its requested frequency in Hz; ``steps`` is the pigpio range
    (25-40000) used for every pin. ``hall_pin=None`` disables edge counting.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8888,
        *,
        frequencies: Mapping[int, int],
        hall_pin: int | None = HALL_SENSOR_PIN,
        steps: int = DEFAULT_STEPS,
    ) -> None:
        if not frequencies:
            raise ValueError("frequencies must name at least one PWM pin")
        for pin, hz in frequencies.items():
            if not 0 <= pin <= 31:
                raise ValueError(f"pigpio PWM pins are GPIO 0-31, got {pin}")
            if hz <= 0 or hz != int(hz):
                raise ValueError(f"pigpio frequencies are whole Hz > 0; GPIO {pin} asks {hz!r}")
        if hall_pin is not None and hall_pin in frequencies:
            raise ValueError(f"GPIO {hall_pin} cannot be both a PWM output and the hall-sensor input")
        if not 25 <= steps <= 40000:
            raise ValueError(f"steps must be within pigpio's range 25-40000, got {steps}")

        self.host = host
        self.port = port
        self.requested_frequencies: dict[int, int] = {pin: int(hz) for pin, hz in frequencies.items()}
        self.frequencies: dict[int, int] = {}
        self.real_ranges: dict[int, int] = {}
        self.hall_pin = hall_pin
        self.steps = steps
        self._edges = 0
        self._edge_lock = threading.Lock()
        self._callback: Any = None
        self._closed = False

        try:
            import pigpio
        except ImportError as e:
            raise HardwareError("the pigpio client is not installed (pip install pigpio)") from e
        self._pigpio: ModuleType = pigpio
        self._codes = self._error_codes(pigpio)

        self._pi: Any = pigpio.pi(host, port, show_errors=False)
        if not self._pi.connected:
            self._pi.stop()
            raise PigpiodNotRunning(f"pigpiod is not running at {host}:{port}; start it with `sudo pigpiod -l`")
        try:
            self._zero_all()
            for pin, hz in self.requested_frequencies.items():
                actual = self._call("set_PWM_frequency", pin, hz)
                self.frequencies[pin] = actual
                if actual != hz:
                    log.warning("GPIO %d: pigpio runs %d Hz, not the requested %d Hz (fixed table)", pin, actual, hz)
                self.real_ranges[pin] = self._call("set_PWM_range", pin, steps)
                if self.real_ranges[pin] < steps:
                    log.info(
                        "GPIO %d at %d Hz: pigpio has %d real steps, so the output moves in %.3g %% steps",
                        pin,
                        actual,
                        self.real_ranges[pin],
                        100.0 / self.real_ranges[pin],
                    )
            if hall_pin is not None:
                self._call("set_mode", hall_pin, pigpio.INPUT)
                self._call("set_pull_up_down", hall_pin, pigpio.PUD_UP)
                self._callback = self._call("callback", hall_pin, pigpio.FALLING_EDGE, self._on_edge)
        except BaseException:
            self._stop_client()
            raise
        atexit.register(self._close_at_exit)

    # -- PwmBackend ----------------------------------------------------------------------------------
    def set_duty(self, pin: int, duty: float) -> None:
        """Set ``pin`` to ``duty`` percent, rounded to the nearest of ``steps`` steps."""
        value = validate_duty(duty)
        self._check_pin(pin)
        self._call("set_PWM_dutycycle", pin, round(value * self.steps / 100.0))

    def duty(self, pin: int) -> float:
        """The duty the daemon holds for ``pin`` now, in percent (0 if the pin is not PWMing, e.g. a
        mode change by another client switched it off)."""
        self._check_pin(pin)
        try:
            raw: int = self._call("get_PWM_dutycycle", pin)
        except PigpioError as e:
            if e.code == _PI_NOT_PWM_GPIO:
                return 0.0
            raise
        return raw * 100.0 / self.steps

    def hall_edges(self) -> int:
        """Falling edges seen on the hall-sensor pin since construction (0 without a hall pin)."""
        with self._edge_lock:
            return self._edges

    def close(self) -> None:
        """Zero every pin, then release the connection. Idempotent.

        Every pin is attempted even if one fails; the connection is released either way, and the
        failures are raised together afterwards.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        errors: list[str] = []
        for pin in self.requested_frequencies:
            try:
                self._call("set_PWM_dutycycle", pin, 0)
            except PigpioError as e:
                errors.append(str(e))
        self._stop_client()
        if errors:
            raise PigpioError("close could not zero every pin: " + "; ".join(errors))

    # -- extras --------------------------------------------------------------------------------------
    def resolution_percent(self, pin: int) -> float:
        """Smallest duty change :meth:`duty` can report for ``pin`` (percent per step)."""
        self._check_pin(pin)
        return 100.0 / self.steps

    def __enter__(self) -> PigpioPwmBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------
    def _close_at_exit(self) -> None:
        """Last-resort zeroing when the interpreter exits normally (not on SIGKILL: hence zero at start)."""
        try:
            self.close()
        except HardwareError as e:
            log.error("pigpio backend could not zero its pins at exit: %s", e)

    def _on_edge(self, gpio: int, level: int, tick: int) -> None:
        """Runs in pigpio's notification thread."""
        with self._edge_lock:
            self._edges += 1

    def _check_pin(self, pin: int) -> None:
        if self._closed:
            raise PigpioError(f"the pigpio backend for {self.host}:{self.port} is closed")
        if pin not in self.requested_frequencies:
            raise ValueError(f"GPIO {pin} is not a configured PWM pin ({sorted(self.requested_frequencies)})")

    def _zero_all(self) -> None:
        """Put every configured pin at 0 %, first stopping a hardware-PWM channel that a previous
        program left on one of our pins (a no-op when the pin is not in hardware-PWM mode)."""
        for pin in self.requested_frequencies:
            if pin in _HW_PWM_PINS:
                try:
                    self._call("hardware_PWM", pin, 0, 0)
                except PigpioError as e:
                    # pigpiod -t 0 uses the PWM peripheral as its clock: then no hardware PWM can be on.
                    if e.code != _PI_HPWM_ILLEGAL:
                        raise
            self._call("set_PWM_dutycycle", pin, 0)

    def _stop_client(self) -> None:
        """Cancel the edge callback and close both sockets, tolerating an already-dead connection."""
        if self._callback is not None:
            try:
                self._callback.cancel()
            except (OSError, AttributeError, struct.error, self._pigpio.error):
                pass
            self._callback = None
        try:
            self._pi.stop()
        except (OSError, AttributeError):
            pass

    @staticmethod
    def _error_codes(pigpio: ModuleType) -> dict[str, int]:
        """pigpio's exceptions carry only text; map the text back to the error number and name."""
        codes: dict[str, int] = {}
        for name in dir(pigpio):
            value = getattr(pigpio, name)
            if name.startswith("PI_") and isinstance(value, int) and value < 0:
                codes.setdefault(pigpio.error_text(value), value)
        return codes

    def _call(self, method: str, *args: Any) -> Any:
        """Run one client call; turn every failure into a :class:`PigpioError`."""
        shown = ", ".join(repr(a) if not callable(a) else getattr(a, "__name__", "func") for a in args)
        where = f"pigpio {method}({shown}) on {self.host}:{self.port}"
        try:
            result = getattr(self._pi, method)(*args)
        except self._pigpio.error as e:
            text = str(e.value)
            code = self._codes.get(text)
            raise PigpioError(f"{where} failed: {text} (error {code})", code) from e
        except struct.error as e:
            if "unpack" in str(e):  # recv() returned fewer than 16 bytes: the daemon hung up
                raise PigpioError(f"{where} failed: lost the connection to pigpiod ({e})") from e
            raise PigpioError(f"{where} failed: an argument does not fit pigpio's uint32 ({e})") from e
        except (OSError, AttributeError) as e:  # the socket is broken, closed, or already None
            raise PigpioError(f"{where} failed: lost the connection to pigpiod ({e!r})") from e
        if isinstance(result, int) and result < 0:  # pigpio.exceptions was switched off by someone
            text = self._pigpio.error_text(result)
            raise PigpioError(f"{where} failed: {text} (error {result})", result)
        return result
