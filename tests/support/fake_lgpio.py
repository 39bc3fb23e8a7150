"""Test doubles for the Pi 5 PWM stack: a fake ``lgpio`` module and a temp-dir sysfs PWM tree.

Why: ``lgpio`` needs ``/dev/gpiochip*`` and the sysfs PWM class needs a kernel driver; neither exists on
a CI machine. These fakes keep the *rules* the backend has to live with, so tests can catch it breaking
them:

``FakeLgpio`` (inject with ``monkeypatch.setitem(sys.modules, "lgpio", FakeLgpio())``) follows the
lgpio Python API (joan2937/lg ``PY_LGPIO/lgpio_extra.py``):

* ``gpiochip_open`` returns ``index | chip << 16`` and ``callback`` recovers the chip as ``handle >> 16``;
* a line belongs to one handle (``GPIO_BUSY`` for another claimer); writes need an output claim;
* ``tx_pwm(handle, gpio, frequency, duty)`` runs 0.1-10000 Hz at 0-100 %, frequency 0 stops it.
  Stopping leaves the line wherever the last pulse left it; the fake takes the worst case (high,
  ``stop_level``) whenever the duty was strictly between 0 and 100 -- which is why a backend must
  ``gpio_write(pin, 0)`` after stopping;
* alerts: only the edges named in ``gpio_claim_alert``'s event flags are generated, and lgpio's
  notification thread hands every event on a line to *every* callback on that line, whatever edge the
  callback was registered with (so claiming both edges and registering a falling-edge callback would
  double-count);
* errors: with ``exceptions`` True (lgpio's default) a negative status raises ``error(text)``,
  otherwise it is returned. The numbers are lgpio's; the texts are short paraphrases (backends must not
  depend on them).

Events are delivered synchronously in the caller's thread (:meth:`FakeLgpio.fire_edges`), which keeps
counts deterministic; real lgpio delivers them from its own thread, so backends must lock anyway.

``SysfsPwmTree`` builds the kernel's layout (Documentation/ABI/testing/sysfs-class-pwm) under a
temporary root: ``pwmchipN/{npwm,export,unexport}`` and, once exported, ``pwmchipN/pwmM/{period,
duty_cycle,enable,polarity}`` with times in nanoseconds. Plain files cannot react to writes, so
:meth:`SysfsPwmTree.kernel` runs a small thread that plays the kernel's part for ``export`` and
``unexport`` (through FIFOs, so no write is lost; asynchronously, unlike the kernel, so tests wait for
the directory to come and go) and records any moment it sees ``duty_cycle > period`` (a write the
kernel would refuse).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# lgpio error numbers (lgpio_extra.py)
BAD_HANDLE = -5
GPIO_IN_USE = -11
BAD_GPIO_NUMBER = -73
CANNOT_OPEN_CHIP = -78
GPIO_BUSY = -79
GPIO_NOT_ALLOCATED = -80
BAD_PWM_FREQ = -102
BAD_PWM_DUTY = -103
GPIO_NOT_AN_OUTPUT = -104

_TEXTS = {
    BAD_HANDLE: "unknown handle",
    GPIO_IN_USE: "GPIO already in use",
    BAD_GPIO_NUMBER: "GPIO not valid for gpiochip",
    CANNOT_OPEN_CHIP: "can not open gpiochip",
    GPIO_BUSY: "GPIO busy",
    GPIO_NOT_ALLOCATED: "GPIO not allocated",
    BAD_PWM_FREQ: "bad PWM frequency",
    BAD_PWM_DUTY: "bad PWM dutycycle",
    GPIO_NOT_AN_OUTPUT: "GPIO not an output",
}


class LgpioFakeError(Exception):
    """Stands in for ``lgpio.error``: the message travels in ``value``, as lgpio does."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


@dataclass
class FakeLine:
    """One GPIO line as the fake chip holds it."""

    owner: int | None = None  # handle that claimed it
    mode: str = "free"  # free | input | output | alert
    level: int = 0
    lflags: int = 0
    eflags: int = 0
    pwm: tuple[float, float] | None = None  # (frequency Hz, duty %) while tx_pwm runs

    @property
    def output_percent(self) -> float:
        """What the pin outputs as a duty: the running PWM's duty, else 0 or 100 from the level."""
        if self.pwm is not None:
            return self.pwm[1]
        return 100.0 if self.level else 0.0


class FakeCallback:
    """What ``lgpio.callback`` returns: ``cancel()``, plus the default tally when ``func`` is None."""

    def __init__(self, owner: FakeLgpio, chip: int, gpio: int, edge: int, func: Callable[..., Any] | None) -> None:
        self._owner = owner
        self.chip, self.gpio, self.edge = chip, gpio, edge
        self.count = 0
        self.func = func if func is not None else self._tally
        self.cancelled = False

    def _tally(self, chip: int, gpio: int, level: int, timestamp: int) -> None:
        self.count += 1

    def tally(self) -> int:
        return self.count

    def cancel(self) -> None:
        self.cancelled = True
        if self in self._owner.callbacks:
            self._owner.callbacks.remove(self)


class FakeLgpio(types.ModuleType):
    """A module object that behaves like ``lgpio`` for one or more gpiochips of ``lines`` lines."""

    RISING_EDGE = 1
    FALLING_EDGE = 2
    BOTH_EDGES = 3
    SET_ACTIVE_LOW = 4
    SET_OPEN_DRAIN = 8
    SET_OPEN_SOURCE = 16
    SET_BIAS_PULL_UP = 32
    SET_BIAS_PULL_DOWN = 64
    SET_BIAS_DISABLE = 128
    TX_PWM = 0
    TX_WAVE = 1

    def __init__(self, chips: tuple[int, ...] = (0, 4), lines: int = 54, stop_level: int = 1) -> None:
        super().__init__("lgpio")
        self.error = LgpioFakeError
        self.exceptions = True
        self.chips = chips
        self.lines = lines
        self.stop_level = stop_level
        self.handles: dict[int, int] = {}  # handle -> chip
        self.line_state: dict[tuple[int, int], FakeLine] = {}
        self.callbacks: list[FakeCallback] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.external: dict[tuple[int, int], int] = {}  # lines driven from outside (sensors)
        self._ids = itertools.count()
        self._clock_ns = 1_700_000_000_000_000_000

    # -- helpers for tests ---------------------------------------------------------------------------
    def line(self, chip: int, gpio: int) -> FakeLine:
        return self.line_state.setdefault((chip, gpio), FakeLine())

    def output_percent(self, chip: int, gpio: int) -> float:
        return self.line(chip, gpio).output_percent

    def names_called(self) -> list[str]:
        return [name for name, _ in self.calls]

    def fire_alert(self, chip: int, gpio: int, level: int, timestamp_ns: int | None = None) -> bool:
        """Drive ``gpio`` to ``level`` from outside; if the line is claimed for alerts on that edge,
        hand the event to every callback on the line. Returns whether an event was generated."""
        line = self.line(chip, gpio)
        self.external[(chip, gpio)] = level
        if line.level == level:
            return False
        line.level = level
        edge = self.RISING_EDGE if level else self.FALLING_EDGE
        if line.mode != "alert" or not line.eflags & edge:
            return False
        if timestamp_ns is None:
            self._clock_ns += 1000
            timestamp_ns = self._clock_ns
        for cb in list(self.callbacks):
            if cb.chip == chip and cb.gpio == gpio:
                cb.func(chip, gpio, level, timestamp_ns)
        return True

    def fire_edges(self, chip: int, gpio: int, count: int, period_ns: int = 10_000_000) -> int:
        """``count`` pulses (falling, then rising half a period later); returns the falling-edge events
        generated (0 if the line is not claimed for falling-edge alerts)."""
        if self.line(chip, gpio).level == 0:
            self.fire_alert(chip, gpio, 1)
        fired = 0
        for _ in range(count):
            self._clock_ns += period_ns // 2
            fired += self.fire_alert(chip, gpio, 0, self._clock_ns)
            self._clock_ns += period_ns - period_ns // 2
            self.fire_alert(chip, gpio, 1, self._clock_ns)
        return fired

    # -- lgpio API -----------------------------------------------------------------------------------
    def error_text(self, code: int) -> str:
        return _TEXTS.get(code, f"unknown error {code}")

    def _status(self, code: int) -> int:
        if code < 0 and self.exceptions:
            raise LgpioFakeError(self.error_text(code))
        return code

    def _line_for(self, handle: int, gpio: int, *, claim: bool = False) -> FakeLine | int:
        """The line if ``handle`` may use it, else the lgpio error number."""
        if handle not in self.handles:
            return BAD_HANDLE
        if not 0 <= gpio < self.lines:
            return BAD_GPIO_NUMBER
        line = self.line(self.handles[handle], gpio)
        if claim:
            if line.owner not in (None, handle):
                return GPIO_BUSY
        elif line.owner != handle:
            return GPIO_NOT_ALLOCATED
        return line

    def gpiochip_open(self, gpiochip: int) -> int:
        self.calls.append(("gpiochip_open", (gpiochip,)))
        if gpiochip not in self.chips:
            return self._status(CANNOT_OPEN_CHIP)
        handle = next(self._ids) | (gpiochip << 16)
        self.handles[handle] = gpiochip
        return handle

    def gpiochip_close(self, handle: int) -> int:
        self.calls.append(("gpiochip_close", (handle,)))
        if handle not in self.handles:
            return self._status(BAD_HANDLE)
        for line in self.line_state.values():
            if line.owner == handle:
                self._release_line(line)
        del self.handles[handle]
        return 0

    def _claim(self, handle: int, gpio: int, mode: str, lflags: int, level: int | None) -> int:
        line = self._line_for(handle, gpio, claim=True)
        if isinstance(line, int):
            return self._status(line)
        line.owner, line.mode, line.lflags, line.pwm = handle, mode, lflags, None
        if level is not None:
            line.level = 1 if level else 0
        else:
            key = (self.handles[handle], gpio)
            if key in self.external:
                line.level = self.external[key]
            elif lflags & self.SET_BIAS_PULL_UP:
                line.level = 1
            elif lflags & self.SET_BIAS_PULL_DOWN:
                line.level = 0
        return 0

    def gpio_claim_output(self, handle: int, gpio: int, level: int = 0, lFlags: int = 0) -> int:
        self.calls.append(("gpio_claim_output", (handle, gpio, level, lFlags)))
        return self._claim(handle, gpio, "output", lFlags, level)

    def gpio_claim_input(self, handle: int, gpio: int, lFlags: int = 0) -> int:
        self.calls.append(("gpio_claim_input", (handle, gpio, lFlags)))
        return self._claim(handle, gpio, "input", lFlags, None)

    def gpio_claim_alert(
        self, handle: int, gpio: int, eFlags: int, lFlags: int = 0, notify_handle: int | None = None
    ) -> int:
        self.calls.append(("gpio_claim_alert", (handle, gpio, eFlags, lFlags)))
        status = self._claim(handle, gpio, "alert", lFlags, None)
        if status == 0:
            self.line(self.handles[handle], gpio).eflags = eFlags
        return status

    def _release_line(self, line: FakeLine) -> None:
        self._stop_pwm(line)
        line.owner, line.mode, line.eflags = None, "free", 0  # the kernel keeps the last level

    def gpio_free(self, handle: int, gpio: int) -> int:
        self.calls.append(("gpio_free", (handle, gpio)))
        line = self._line_for(handle, gpio)
        if isinstance(line, int):
            return self._status(line)
        self._release_line(line)
        return 0

    def gpio_read(self, handle: int, gpio: int) -> int:
        self.calls.append(("gpio_read", (handle, gpio)))
        line = self._line_for(handle, gpio)
        if isinstance(line, int):
            return self._status(line)
        return line.level

    def gpio_write(self, handle: int, gpio: int, level: int) -> int:
        self.calls.append(("gpio_write", (handle, gpio, level)))
        line = self._line_for(handle, gpio)
        if isinstance(line, int):
            return self._status(line)
        if line.mode != "output":
            return self._status(GPIO_NOT_AN_OUTPUT)
        line.level = 1 if level else 0  # a running tx_pwm keeps toggling regardless
        return 0

    def _stop_pwm(self, line: FakeLine) -> None:
        if line.pwm is not None:
            duty = line.pwm[1]
            line.level = 0 if duty <= 0 else 1 if duty >= 100 else self.stop_level
            line.pwm = None

    def tx_pwm(
        self,
        handle: int,
        gpio: int,
        pwm_frequency: float,
        pwm_duty_cycle: float,
        pulse_offset: int = 0,
        pulse_cycles: int = 0,
    ) -> int:
        self.calls.append(("tx_pwm", (handle, gpio, pwm_frequency, pwm_duty_cycle)))
        line = self._line_for(handle, gpio)
        if isinstance(line, int):
            return self._status(line)
        if line.mode != "output":
            return self._status(GPIO_NOT_AN_OUTPUT)
        if pwm_frequency == 0:
            self._stop_pwm(line)
            return 0
        if not 0.1 <= pwm_frequency <= 10000:
            return self._status(BAD_PWM_FREQ)
        if not 0 <= pwm_duty_cycle <= 100:
            return self._status(BAD_PWM_DUTY)
        line.pwm = (float(pwm_frequency), float(pwm_duty_cycle))
        if pwm_duty_cycle in (0, 100):
            line.level = 1 if pwm_duty_cycle else 0
        return 1  # entries left in the PWM queue

    def callback(self, handle: int, gpio: int, edge: int = 1, func: Callable[..., Any] | None = None) -> FakeCallback:
        self.calls.append(("callback", (handle, gpio, edge)))
        cb = FakeCallback(self, handle >> 16, gpio, edge, func)
        self.callbacks.append(cb)
        return cb


@dataclass
class SysfsPwmTree:
    """A sysfs PWM class directory under ``root``; ``chips`` maps pwmchip number -> npwm."""

    root: Path
    chips: Mapping[int, int] = field(default_factory=lambda: {0: 2})
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for chip, npwm in self.chips.items():
            d = self.chip_dir(chip)
            d.mkdir(parents=True, exist_ok=True)
            (d / "npwm").write_text(f"{npwm}\n")
            (d / "export").write_text("")
            (d / "unexport").write_text("")

    def chip_dir(self, chip: int) -> Path:
        return self.root / f"pwmchip{chip}"

    def channel_dir(self, chip: int, channel: int) -> Path:
        return self.chip_dir(chip) / f"pwm{channel}"

    def export(self, chip: int, channel: int, *, period: int = 0, duty_cycle: int = 0, enable: int = 0) -> Path:
        """Create ``pwmM`` as the kernel does on export (all zero), or with the values a previous,
        now-dead owner left behind. Built in a temp dir and renamed in, so readers never see half."""
        final = self.channel_dir(chip, channel)
        if final.exists():
            return final
        tmp = Path(tempfile.mkdtemp(dir=self.chip_dir(chip), prefix=".export-"))
        for name, value in (("period", period), ("duty_cycle", duty_cycle), ("enable", enable)):
            (tmp / name).write_text(f"{value}\n")
        (tmp / "polarity").write_text("normal\n")
        os.replace(tmp, final)
        return final

    def unexport(self, chip: int, channel: int) -> None:
        shutil.rmtree(self.channel_dir(chip, channel), ignore_errors=True)

    def values(self, chip: int, channel: int) -> dict[str, int] | None:
        """``period``/``duty_cycle``/``enable`` of an exported channel, or None if not exported."""
        d = self.channel_dir(chip, channel)
        if not d.is_dir():
            return None
        try:
            return {name: int((d / name).read_text().strip() or 0) for name in ("period", "duty_cycle", "enable")}
        except (OSError, ValueError):
            return None

    def percent(self, chip: int, channel: int) -> float:
        """The duty the channel outputs: 0 unless exported, enabled and with a period."""
        v = self.values(chip, channel)
        if not v or not v["enable"] or not v["period"]:
            return 0.0
        return 100.0 * v["duty_cycle"] / v["period"]

    @contextmanager
    def kernel(self, poll_s: float = 0.001) -> Iterator[SysfsPwmTree]:
        """Run the kernel's side of ``export``/``unexport`` while the block runs.

        For the duration, ``export`` and ``unexport`` become FIFOs that this thread keeps open, so every
        write is seen in order (the kernel handles each write; a polled regular file would lose the
        first of two quick writes). Outside the block they are plain files that nothing answers.
        """
        stop = threading.Event()
        fifos: list[tuple[int, int, str, int, Callable[[int, int], Any], bytearray]] = []
        for chip, npwm in self.chips.items():
            for name, action in (("export", self.export), ("unexport", self.unexport)):
                path = self.chip_dir(chip) / name
                path.unlink()
                os.mkfifo(path)
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # O_RDWR: never blocks, writers never block
                fifos.append((fd, chip, name, npwm, action, bytearray()))

        def handle(chip: int, name: str, npwm: int, action: Callable[[int, int], Any], text: str) -> None:
            try:
                channel = int(text)
            except ValueError:
                self.errors.append(f"pwmchip{chip}/{name}: not a number: {text!r}")
                return
            if not 0 <= channel < npwm:
                self.errors.append(f"pwmchip{chip}/{name}: channel {channel} >= npwm {npwm}")
                return
            action(chip, channel)

        def run() -> None:
            while not stop.wait(poll_s):
                for fd, chip, name, npwm, action, buf in fifos:
                    try:
                        buf += os.read(fd, 4096)
                    except BlockingIOError:
                        pass
                    while b"\n" in buf:
                        line, _, rest = bytes(buf).partition(b"\n")
                        buf[:] = rest
                        if line.strip():
                            handle(chip, name, npwm, action, line.decode().strip())
                for chip, npwm in self.chips.items():
                    for channel in range(npwm):
                        v = self.values(chip, channel)
                        if v and v["duty_cycle"] > v["period"]:
                            self.violations.append(f"pwmchip{chip}/pwm{channel}: duty_cycle > period: {v}")

        thread = threading.Thread(target=run, name="fake-sysfs-pwm-kernel", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)
            for fd, chip, name, _npwm, _action, _buf in fifos:
                os.close(fd)
                path = self.chip_dir(chip) / name
                path.unlink()
                path.write_text("")
