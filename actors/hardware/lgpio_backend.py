"""PWM backend for the Raspberry Pi 5 (and Pi 4 on Bookworm): lgpio soft PWM plus kernel hardware PWM.

Why: pigpio cannot run on a Pi 5 (``gpioHardwareRevision`` rejects the BCM2712), and Pioreactor itself
runs this combination: ``lgpio.tx_pwm`` software PWM on any pin through the GPIO character device, and
the kernel's sysfs PWM (``/sys/class/pwm/pwmchipN``) for the hardware channels on GPIO 12 and 13.

Safety, as in the pigpio backend (zero at start, at close, and at interpreter exit), for the reasons
particular to this stack:

* sysfs hardware PWM lives in the kernel: if our process is SIGKILLed the pump on GPIO 12/13 keeps
  running. At start every configured hardware channel is set to duty 0 before anything else.
* lgpio soft PWM runs in a thread of *our* process; stopping it (``tx_pwm(..., 0, 0)``) leaves the line
  at whatever level the last pulse had, so we always ``gpio_write(pin, 0)`` after stopping. Claiming
  each line as an output at level 0 on start also forces a line left high by a dead process low.

Read-back: sysfs gives the kernel's duty back (``duty_cycle`` / ``period``, ns). lgpio has no read-back
call for soft PWM, so :meth:`LgpioPwmBackend.duty` reports the commanded duty rounded to lgpio's
microsecond pulse grid (the value the pin actually runs at, to within lgpio's timing).

Hall edges: ``gpio_claim_alert`` with ``FALLING_EDGE`` (lgpio delivers only the claimed edges to every
callback on the line, so claiming both edges would double-count) and ``lgpio.callback``.

Pin muxing is not done here: GPIO 12/13 must be routed to the PWM block by a device-tree overlay
(e.g. ``dtoverlay=pwm-2chan``), as for Pioreactor.

``lgpio`` is imported when the backend is constructed, never at module import.
"""

from __future__ import annotations

import atexit
import errno
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from actors import logs
from actors.hardware.description import HALL_SENSOR_PIN
from actors.hardware.pwm_backend import HardwareError, validate_duty

log = logs.get("lgpio_backend")

DEFAULT_SYSFS_ROOT = "/sys/class/pwm"
DEFAULT_HARDWARE_PINS = (12, 13)
# GPIO -> channel of the PWM chip: PWM0/PWM1 on a Pi 4 (chip 0), channels 0/1 of the RP1 chip on a Pi 5.
DEFAULT_HARDWARE_CHANNELS: dict[int, int] = {12: 0, 13: 1}
LGPIO_MIN_HZ, LGPIO_MAX_HZ = 0.1, 10000.0


class LgpioError(HardwareError):
    """An lgpio call or a sysfs PWM file operation failed."""


def default_gpiochip(model_path: str | Path = "/proc/device-tree/model", dev: str | Path = "/dev") -> int:
    """The gpiochip carrying the 40-pin header: 4 on a Pi 5 with kernels that expose the RP1 as
    ``gpiochip4`` (as Pioreactor assumes), else 0 (Pi 4, and Pi 5 kernels that renumbered it to 0)."""
    try:
        model = Path(model_path).read_text(errors="replace")
    except OSError:
        return 0
    if "Raspberry Pi 5" in model and Path(dev, "gpiochip4").exists():
        return 4
    return 0


def default_pwmchip(sysfs_root: str | Path = DEFAULT_SYSFS_ROOT) -> int:
    """The sysfs PWM chip for GPIO 12/13: the only one if there is one, else the 4-channel RP1 chip
    (a Pi 5 lists several chips; RP1's is ``pwmchip2`` on 6.6 kernels), else the lowest number."""
    chips: dict[int, int] = {}
    for path in Path(sysfs_root).glob("pwmchip*"):
        try:
            number = int(path.name[len("pwmchip") :])
        except ValueError:
            continue
        try:
            chips[number] = int((path / "npwm").read_text().strip())
        except (OSError, ValueError):
            chips[number] = 0
    if not chips:
        raise LgpioError(f"no PWM chip under {sysfs_root}; is the pwm overlay enabled in config.txt?")
    if len(chips) == 1:
        return next(iter(chips))
    four = [n for n, npwm in sorted(chips.items()) if npwm == 4]
    return four[0] if four else min(chips)


class _SysfsChannel:
    """One kernel PWM channel: ``pwmchipN/pwmM/{period,duty_cycle,enable}``, times in nanoseconds."""

    def __init__(self, chip_dir: Path, channel: int, timeout: float) -> None:
        self.chip_dir = chip_dir
        self.channel = channel
        self.dir = chip_dir / f"pwm{channel}"
        self.timeout = timeout
        self.period_ns = 0

    def export(self) -> None:
        """Create ``pwmM`` if needed and wait for it (and for udev to make it writable)."""
        if not self.dir.exists():
            try:
                (self.chip_dir / "export").write_text(f"{self.channel}\n")
            except OSError as e:
                if e.errno != errno.EBUSY:  # EBUSY: someone exported it between our check and write
                    raise LgpioError(f"cannot export PWM channel {self.channel} of {self.chip_dir}: {e}") from e
        deadline = time.monotonic() + self.timeout
        while not (self.dir / "duty_cycle").exists():
            if time.monotonic() > deadline:
                raise LgpioError(f"{self.dir} did not appear after export (is the pwm overlay loaded?)")
            time.sleep(0.005)

    def write(self, name: str, value: int) -> None:
        """Write one attribute, retrying while udev has not yet granted access after an export."""
        path = self.dir / name
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                path.write_text(f"{value}\n")
                return
            except PermissionError as e:
                if time.monotonic() > deadline:
                    raise LgpioError(f"no permission to write {path}: {e}") from e
                time.sleep(0.01)
            except OSError as e:
                raise LgpioError(f"cannot write {value} to {path}: {e}") from e

    def read(self, name: str) -> int:
        path = self.dir / name
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError) as e:
            raise LgpioError(f"cannot read {path}: {e}") from e

    def start(self, frequency: float) -> None:
        """Zero the duty first (a dead process may have left it running, and the kernel refuses a
        period shorter than the current duty), then set the period and enable at 0 %."""
        self.export()
        self.write("duty_cycle", 0)
        self.period_ns = round(1e9 / frequency)
        self.write("period", self.period_ns)
        self.write("enable", 1)

    def set_percent(self, duty: float) -> None:
        self.write("duty_cycle", round(duty / 100.0 * self.period_ns))

    def percent(self) -> float:
        if not self.read("enable"):
            return 0.0
        period = self.read("period")
        return 100.0 * self.read("duty_cycle") / period if period else 0.0

    def stop(self) -> None:
        """Duty 0, disable, unexport: the channel is left as the kernel had it before we came."""
        self.write("duty_cycle", 0)
        self.write("enable", 0)
        try:
            (self.chip_dir / "unexport").write_text(f"{self.channel}\n")
        except OSError as e:
            raise LgpioError(f"cannot unexport PWM channel {self.channel} of {self.chip_dir}: {e}") from e


class LgpioPwmBackend:
    """Soft PWM via lgpio on most pins, sysfs hardware PWM on ``hardware_pins``, hall edges via lgpio.

    ``chip`` is the gpiochip of the header (``None``: :func:`default_gpiochip`); ``pwmchip`` the sysfs
    PWM chip (``None``: :func:`default_pwmchip`, only consulted if a hardware pin is configured).
    """

    def __init__(
        self,
        *,
        chip: int | None = None,
        frequencies: Mapping[int, float],
        hall_pin: int | None = HALL_SENSOR_PIN,
        sysfs_root: str | Path = DEFAULT_SYSFS_ROOT,
        hardware_pins: Iterable[int] = DEFAULT_HARDWARE_PINS,
        pwmchip: int | None = None,
        hardware_channels: Mapping[int, int] | None = None,
        sysfs_timeout: float = 2.0,
    ) -> None:
        if not frequencies:
            raise ValueError("frequencies must name at least one PWM pin")
        if hall_pin is not None and hall_pin in frequencies:
            raise ValueError(f"GPIO {hall_pin} cannot be both a PWM output and the hall-sensor input")
        channels = dict(DEFAULT_HARDWARE_CHANNELS if hardware_channels is None else hardware_channels)
        hw = {pin for pin in hardware_pins if pin in frequencies}
        for pin in hw:
            if pin not in channels:
                raise ValueError(f"hardware pin GPIO {pin} has no PWM channel in {channels}")
        for pin, hz in frequencies.items():
            if pin not in hw and not LGPIO_MIN_HZ <= hz <= LGPIO_MAX_HZ:
                raise ValueError(f"lgpio soft PWM runs 0.1-10000 Hz; GPIO {pin} asks {hz} Hz")
            if hz <= 0:
                raise ValueError(f"frequency for GPIO {pin} must be > 0 Hz, got {hz}")

        self.frequencies: dict[int, float] = dict(frequencies)
        self.hall_pin = hall_pin
        self.hardware_pins = frozenset(hw)
        self.soft_pins = tuple(p for p in self.frequencies if p not in hw)
        self.chip = default_gpiochip() if chip is None else chip
        self._soft_duty: dict[int, float] = {}
        self._sysfs: dict[int, _SysfsChannel] = {}
        self._handle: int | None = None
        self._callback: Any = None
        self._claimed: list[int] = []
        self._edges = 0
        self._edge_lock = threading.Lock()
        self._closed = False

        try:
            import lgpio
        except ImportError as e:
            raise HardwareError("the lgpio module is not installed (pip install lgpio, or apt python3-lgpio)") from e
        self._lgpio: ModuleType = lgpio

        try:
            if hw:
                chip_dir = Path(sysfs_root) / f"pwmchip{default_pwmchip(sysfs_root) if pwmchip is None else pwmchip}"
                if not chip_dir.is_dir():
                    raise LgpioError(f"{chip_dir} does not exist; is the pwm overlay enabled in config.txt?")
                for pin in sorted(hw):
                    channel = _SysfsChannel(chip_dir, channels[pin], sysfs_timeout)
                    self._sysfs[pin] = channel
                    channel.start(self.frequencies[pin])  # duty 0 first: see _SysfsChannel.start
            self._handle = self._call("gpiochip_open", self.chip)
            for pin in self.soft_pins:
                self._call("gpio_claim_output", self._handle, pin, 0)  # drives the line low now
                self._claimed.append(pin)
                self._soft_duty[pin] = 0.0
            if hall_pin is not None:
                pull_up = getattr(lgpio, "SET_BIAS_PULL_UP", getattr(lgpio, "SET_PULL_UP", 0))
                self._call("gpio_claim_alert", self._handle, hall_pin, lgpio.FALLING_EDGE, pull_up)
                self._claimed.append(hall_pin)
                self._callback = self._call("callback", self._handle, hall_pin, lgpio.FALLING_EDGE, self._on_edge)
        except BaseException:
            self._release(raise_errors=False)
            raise
        atexit.register(self._close_at_exit)

    # -- PwmBackend ----------------------------------------------------------------------------------
    def set_duty(self, pin: int, duty: float) -> None:
        """Set ``pin`` to ``duty`` percent (sysfs: to the nanosecond; soft: lgpio's microsecond grid)."""
        value = validate_duty(duty)
        self._check_pin(pin)
        if pin in self._sysfs:
            self._sysfs[pin].set_percent(value)
            return
        assert self._handle is not None
        if value == 0.0:
            self._stop_soft(pin)
        else:
            self._call("tx_pwm", self._handle, pin, self.frequencies[pin], value)
        self._soft_duty[pin] = self._quantise(pin, value)

    def duty(self, pin: int) -> float:
        """sysfs pins: the duty the kernel holds. Soft pins: the commanded duty on lgpio's pulse grid."""
        self._check_pin(pin)
        if pin in self._sysfs:
            return self._sysfs[pin].percent()
        return self._soft_duty[pin]

    def hall_edges(self) -> int:
        """Falling edges seen on the hall-sensor pin since construction (0 without a hall pin)."""
        with self._edge_lock:
            return self._edges

    def close(self) -> None:
        """Zero every pin (soft: stop, then force low), free the lines and the chip. Idempotent; every
        step is attempted and the failures are raised together afterwards."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._release(raise_errors=True)

    # -- extras --------------------------------------------------------------------------------------
    def resolution_percent(self, pin: int) -> float:
        """Smallest duty change this backend can make on ``pin``, in percent."""
        self._check_pin(pin)
        if pin in self._sysfs:
            return 100.0 / self._sysfs[pin].period_ns
        return 100.0 / self._period_us(pin)

    def __enter__(self) -> LgpioPwmBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------
    def _close_at_exit(self) -> None:
        """Last-resort zeroing when the interpreter exits normally (the kernel keeps sysfs PWM running
        after SIGKILL: hence zero at start too)."""
        try:
            self.close()
        except HardwareError as e:
            log.error("lgpio backend could not zero its pins at exit: %s", e)

    def _on_edge(self, chip: int, gpio: int, level: int, timestamp_ns: int) -> None:
        """Runs in lgpio's notification thread. Level 2 is a watchdog timeout, not an edge."""
        if level == 0:
            with self._edge_lock:
                self._edges += 1

    def _period_us(self, pin: int) -> int:
        return max(1, round(1e6 / self.frequencies[pin]))

    def _quantise(self, pin: int, duty: float) -> float:
        period = self._period_us(pin)
        return 100.0 * round(duty / 100.0 * period) / period

    def _stop_soft(self, pin: int) -> None:
        assert self._handle is not None
        self._call("tx_pwm", self._handle, pin, 0, 0)
        self._call("gpio_write", self._handle, pin, 0)  # the stopped PWM may have left the line high

    def _check_pin(self, pin: int) -> None:
        if self._closed:
            raise LgpioError("the lgpio backend is closed")
        if pin not in self.frequencies:
            raise ValueError(f"GPIO {pin} is not a configured PWM pin ({sorted(self.frequencies)})")

    def _release(self, *, raise_errors: bool) -> None:
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except (HardwareError, OSError) as e:
                errors.append(f"{what}: {e}")

        for pin, channel in self._sysfs.items():
            if channel.period_ns:
                attempt(f"stop hardware PWM on GPIO {pin}", channel.stop)
        if self._callback is not None:
            attempt("cancel hall callback", self._callback.cancel)
            self._callback = None
        if self._handle is not None:
            for pin in self._claimed:
                if pin in self._soft_duty:
                    attempt(f"zero GPIO {pin}", self._stop_soft, pin)
                attempt(f"free GPIO {pin}", self._call, "gpio_free", self._handle, pin)
            attempt("close gpiochip", self._call, "gpiochip_close", self._handle)
            self._handle = None
        self._claimed = []
        if errors:
            log.error("lgpio backend release: %s", "; ".join(errors))
            if raise_errors:
                raise LgpioError("close could not release everything: " + "; ".join(errors))

    def _call(self, name: str, *args: Any) -> Any:
        """Run one lgpio call; turn an lgpio error (raised, or returned when ``lgpio.exceptions`` is
        off) into :class:`LgpioError`."""
        shown = ", ".join(getattr(a, "__name__", None) or repr(a) for a in args)
        where = f"lgpio {name}({shown}) on gpiochip{self.chip}"
        try:
            result = getattr(self._lgpio, name)(*args)
        except self._lgpio.error as e:
            raise LgpioError(f"{where} failed: {getattr(e, 'value', e)}") from e
        if isinstance(result, int) and result < 0:
            raise LgpioError(f"{where} failed: {self._lgpio.error_text(result)} (error {result})")
        return result
