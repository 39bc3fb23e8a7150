"""A fake ``pigpiod`` that speaks the real pigpio socket protocol: the unmodified pigpio client
(``pigpio.pi``) drives it exactly as it drives the daemon on a Raspberry Pi.

Two users: tests (the PWM backend's protocol and contract suites) and the simulated unit
(:mod:`actors.hardware.sim_device`), where it is the PWM/GPIO half of the simulated device. That is why
it lives in the package rather than under ``tests/``; ``tests/support/fake_pigpiod.py`` re-exports it.

Why a fake daemon rather than a mocked client: the PWM backend's bugs live in the bytes it sends and in
how pigpio's own rules answer them (frequency snapping, ranges, error codes, notification frames). A
mock of ``pigpio.pi`` would only echo our assumptions back; this server makes the real client do real
I/O against the daemon's rules.

Specification (joan2937/pigpio, pigpio.c v79, read as the reference; no code is copied):

* Socket framing -- ``pthSocketThreadHandler``: each request is four little-endian uint32
  ``cmd, p1, p2, p3`` followed by ``p3`` extension bytes; the response echoes ``cmd, p1, p2`` and puts
  the result in the fourth word (negative = error code). ``NOIB`` is answered on the socket it arrives on
  with the notification handle, and that socket then carries 12-byte ``gpioReport_t`` frames
  (``uint16 seqno, uint16 flags, uint32 tick, uint32 level``). When a socket closes, the daemon runs
  ``closeOrphanedNotifications`` for it and nothing else: GPIO and PWM state stay as they were.
* Command dispatch and permission checks -- ``myDoCommand`` / ``myPermit``.
* ``gpioSetMode`` / ``gpioGetMode`` (mode change switches the pin's PWM function off: ``switchFunctionOff``),
  ``gpioSetPullUpDown``, ``gpioRead``, ``gpioWrite`` (leaves PWM mode), ``gpioRead_Bits_0_31``.
* Soft PWM -- ``gpioPWM`` (dutycycle 0..range, else ``PI_BAD_DUTYCYCLE``), ``gpioGetPWMdutycycle``
  (``PI_NOT_PWM_GPIO`` unless PWMing), ``gpioSetPWMrange`` (25..40000, rescales a running dutycycle,
  returns the *real* range of the current frequency), ``gpioGetPWMrange``, ``gpioGetPWMrealRange``,
  ``gpioSetPWMfrequency`` (closest entry of the fixed table for the 5 us sample rate, ties to the higher
  frequency; default index 5 = 800 Hz), ``gpioGetPWMfrequency``. Real range = 200 kHz / frequency.
* Hardware PWM -- ``gpioHardwarePWM``: GPIO 12/13/18/19 only (``PI_NOT_HPWM_GPIO``), duty 0..1,000,000,
  ``real_range = round(PLLD / (2 f))`` and the reported frequency is recomputed from it. 12 and 18 share
  channel PWM0, 13 and 19 share PWM1: the frequency and duty live on the channel, so setting one pin
  changes what the other reports and outputs (if that pin is in hardware-PWM mode). Frequency 0 stops the
  whole channel. (Compute-module-only pins 40/41/45/52/53 are not modelled: they answer -95.)
* ``gpioSetWatchdog`` (validation only), ``gpioHardwareRevision``, ``gpioVersion`` (79), ``gpioTick``,
  ``gpioNotifyOpenInBand`` / ``gpioNotifyBegin`` / ``gpioNotifyPause`` / ``gpioNotifyClose`` (32 slots).

Error numbers are the ones pigpio.h defines; the client turns them into text itself
(``pigpio.error_text``), so tests see the real exception messages.

Not modelled: waveforms, scripts, servo pulses, serial/I2C/SPI over pigpio, pipe notifications (``NO``),
watchdog and keep-alive reports, real signal timing. Soft-PWM pins do not emit edge reports while they
toggle. Unknown commands answer ``PI_UNKNOWN_COMMAND`` so a test that relies on them fails loudly.

Edges for the hall sensor are pushed with :meth:`FakePigpiod.inject_edges`. Their ticks are synthetic
(``period_us`` apart, microseconds wrapping at 2**32, like the daemon's) and never run backwards;
``tick_start`` starts the clock anywhere, e.g. just below the wrap, and ``realtime_tick=False`` stops it
following wall time so that only injected edges move it (deterministic wrap tests).

Stop clients before the daemon: the pigpio 1.78 client's notification thread spins on ``recv`` returning
``b''`` if the daemon goes away under it.

Hooks for a simulated device (what a pin is wired to):

* ``on_pwm(pin, duty_percent)`` is called whenever what a pin *outputs* changes: soft PWM gives
  ``dutycycle / range * 100``, hardware PWM ``duty / 1e6 * 100`` (0 once frequency 0 stops its channel,
  and both pins of a shared channel are reported), a pin written with ``write`` gives 0 or 100 (a pump
  wired to a pin set high runs flat out), anything else 0. It runs inside the command, under the
  daemon's state lock, so hooks see changes in the order clients made them; a hook must not block on
  a thread that is waiting for this daemon. A hook that raises is logged; the command still succeeds
  (the daemon did change the pin).
* :meth:`FakePigpiod.add_edge_source` turns a cumulative edge count (a hall sensor's revolutions) into
  pulses on a GPIO: a background thread polls every ``edge_poll_s`` real seconds and streams the new
  edges as notification frames (line low, then high again: one falling edge per count) to every client
  watching that GPIO, batched into one ``send`` per client. New edges are spread evenly over the ticks
  since the previous poll. At most ``max_edge_burst`` go out per poll; the rest wait for the next poll,
  so a jump of simulated time becomes a bounded stream instead of one enormous burst.
* ``tick_clock`` (seconds, e.g. the simulated node clock) makes the tick follow that clock instead of
  wall time, so tick differences between hall edges are simulated microseconds and an RPM computed
  from them is the simulated RPM whatever the time scale.

A client that stops reading its notification socket for ``send_timeout_s`` loses that notification
(the socket is shut down, since a half-sent frame has corrupted its stream) rather than blocking the
whole daemon; the real daemon also drops reports a client cannot take.
"""

from __future__ import annotations

import enum
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from actors import logs
from actors.hardware.loopback_server import LOOPBACK, Connection, LoopbackServer, recv_exact

log = logs.get("sim_pigpiod")

# -- command numbers (pigpio.h / pigpio.py _PI_CMD_*) -------------------------------------------------
MODES, MODEG, PUD, READ, WRITE, PWM, PRS, PFS = 0, 1, 2, 3, 4, 5, 6, 7
WDOG, BR1, TICK, HWVER, NB, NP, NC, PRG, PFG, PRRG, PIGPV = 9, 10, 16, 17, 19, 20, 21, 22, 23, 24, 26
GDC, HP, NOIB = 83, 86, 99

# -- error numbers (pigpio.h) -------------------------------------------------------------------------
PI_BAD_USER_GPIO = -2
PI_BAD_GPIO = -3
PI_BAD_MODE = -4
PI_BAD_LEVEL = -5
PI_BAD_PUD = -6
PI_BAD_DUTYCYCLE = -8
PI_BAD_WDOG_TIMEOUT = -15
PI_BAD_DUTYRANGE = -21
PI_NO_HANDLE = -24
PI_BAD_HANDLE = -25
PI_NOT_PERMITTED = -41
PI_UNKNOWN_COMMAND = -88
PI_NOT_PWM_GPIO = -92
PI_NOT_HPWM_GPIO = -95
PI_BAD_HPWM_FREQ = -96
PI_BAD_HPWM_DUTY = -97

# -- constants ----------------------------------------------------------------------------------------
PIGPIO_VERSION = 79
MAX_GPIO = 53
MAX_USER_GPIO = 31
NOTIFY_SLOTS = 32
MAX_EXTENSION = 1 << 16  # the daemon's CMD_MAX_EXTENSION: a larger p3 makes it drop the connection
MAX_WDOG_MS = 60000
MIN_RANGE, MAX_RANGE, DEFAULT_RANGE = 25, 40000, 255
HW_PWM_RANGE = 1_000_000
SAMPLE_RATE_HZ = 200_000  # 5 us sampling, pigpiod's default -s 5
PWM_FREQUENCIES = (8000, 4000, 2000, 1600, 1000, 800, 500, 400, 320, 250, 200, 160, 100, 80, 50, 40, 20, 10)
DEFAULT_FREQ_INDEX = 5  # 800 Hz

INPUT, OUTPUT, ALT0, ALT5 = 0, 1, 4, 2
HW_PWM_CHANNEL = {12: 0, 18: 0, 13: 1, 19: 1}
HW_PWM_ALT = {12: ALT0, 13: ALT0, 18: ALT5, 19: ALT5}
BCM2711 = 3  # processor field of a new-style revision code
TICK_WRAP = 1 << 32

# Commands that can change what a pin outputs; after each, the ``on_pwm`` hook is brought up to date.
_OUTPUT_COMMANDS = frozenset({MODES, WRITE, PWM, PRS, HP})
DEFAULT_EDGE_POLL_S = 0.005
DEFAULT_MAX_EDGE_BURST = 2000
DEFAULT_SEND_TIMEOUT_S = 2.0

_REQUEST = struct.Struct("<IIII")
_RESPONSE = struct.Struct("<IIIi")
_REPORT = struct.Struct("<HHII")


def real_range(frequency: int) -> int:
    """Soft-PWM steps per period at ``frequency`` (pigpio's ``pwmRealRange`` for the 5 us sample rate)."""
    return SAMPLE_RATE_HZ // frequency


def snap_frequency(requested: int) -> int:
    """Index into :data:`PWM_FREQUENCIES` that ``gpioSetPWMfrequency`` picks for ``requested`` Hz."""
    if requested > PWM_FREQUENCIES[0]:
        return 0
    if requested < PWM_FREQUENCIES[-1]:
        return len(PWM_FREQUENCIES) - 1
    best, index = None, 0
    for i, f in enumerate(PWM_FREQUENCIES):
        diff = abs(requested - f)
        if best is None or diff < best:  # strict: a tie keeps the earlier (higher) frequency
            best, index = diff, i
    return index


class Kind(enum.Enum):
    """What drives a pin (pigpio's ``gpioInfo[].is``)."""

    UNDEFINED = "undefined"
    WRITE = "write"
    PWM = "soft"
    HW_PWM = "hardware"


@dataclass
class _Pin:
    mode: int = INPUT
    kind: Kind = Kind.UNDEFINED
    width: int = 0
    range: int = DEFAULT_RANGE
    freq_index: int = DEFAULT_FREQ_INDEX
    pud: int = 0
    watchdog_ms: int = 0


@dataclass
class _HwChannel:
    frequency: int = 0
    duty: int = 0
    real_range: int = 0
    enabled: bool = False


@dataclass(frozen=True)
class PwmPin:
    """What the daemon holds for one PWM-driven pin (soft or hardware)."""

    kind: str  # "soft" or "hardware"
    dutycycle: int  # raw units: 0..range for soft, 0..1,000,000 for hardware
    range: int
    frequency: int
    running: bool  # the pin is actually outputting a waveform with a non-zero duty

    @property
    def fraction(self) -> float:
        """Duty as a fraction 0..1 of what the pin outputs right now (0 when stopped)."""
        return self.dutycycle / self.range if self.running else 0.0


@dataclass
class _Notify:
    """An in-band notification: its frames go out on ``conn``, between responses (Connection.send serialises)."""

    conn: Connection
    bits: int = 0
    running: bool = False
    seqno: int = 0


@dataclass
class _EdgeSource:
    """A cumulative edge counter wired to a GPIO, and how much of it has become pulses on the line."""

    gpio: int
    edges: Callable[[], int]
    emitted: int  # cumulative count already turned into pulses (or skipped when the source was attached)
    span_start: int  # unwrapped tick from which the next pulses are spread


class FakePigpiod:
    """A threaded pigpiod on ``host``:``port`` (0 = pick a free port). See the module docstring.

    ``host`` must be 127.0.0.1: like the real daemon's, the protocol has no authentication, and the
    socket plumbing (:class:`~actors.hardware.loopback_server.LoopbackServer`) binds loopback only.
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        hw_revision: int = 0xD03114,
        tick_start: int = 0,
        realtime_tick: bool = True,
        input_levels: dict[int, int] | None = None,
        permitted_gpios: Iterable[int] | None = None,
        on_pwm: Callable[[int, float], None] | None = None,
        tick_clock: Callable[[], float] | None = None,
        edge_poll_s: float = DEFAULT_EDGE_POLL_S,
        max_edge_burst: int = DEFAULT_MAX_EDGE_BURST,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
    ) -> None:
        if not edge_poll_s > 0 or max_edge_burst < 1 or not send_timeout_s > 0:
            raise ValueError("edge_poll_s and send_timeout_s must be > 0 and max_edge_burst >= 1")
        if host != LOOPBACK:
            raise ValueError(f"FakePigpiod listens on {LOOPBACK} only, got host={host!r}")
        self.host = host
        self.hw_revision = hw_revision
        is_2711 = bool(hw_revision & (1 << 23)) and ((hw_revision >> 12) & 0xF) == BCM2711
        self.plld_hz = 750_000_000 if is_2711 else 500_000_000
        self.hw_pwm_max_hz = 187_500_000 if is_2711 else 125_000_000
        self._permitted = None if permitted_gpios is None else frozenset(permitted_gpios)

        self._lock = threading.RLock()
        self._pins = [_Pin() for _ in range(MAX_GPIO + 1)]
        self._channels = [_HwChannel(), _HwChannel()]
        self._levels = 0  # bit per GPIO 0..53
        self._external: dict[int, int] = {}
        for gpio, level in (input_levels or {}).items():
            self._external[gpio] = 1 if level else 0
            self._levels = self._with_bit(self._levels, gpio, self._external[gpio])
        self._notify: dict[int, _Notify] = {}

        self.on_pwm = on_pwm
        self._outputs: dict[int, float] = {}  # last duty reported to on_pwm per pin (absent = 0)
        self.edge_poll_s = edge_poll_s
        self.max_edge_burst = max_edge_burst
        self.send_timeout_s = send_timeout_s
        self._edge_sources: list[_EdgeSource] = []
        self._edge_stop = threading.Event()
        self._edge_thread: threading.Thread | None = None

        self._realtime_tick = realtime_tick
        self._tick_source: Callable[[], float] = tick_clock or time.monotonic
        self._tick_origin = tick_start - int(self._tick_source() * 1_000_000)
        self._tick_floor = tick_start  # unwrapped; injected edges may run ahead of real time

        # A client that stops reading must not block the daemon (and every other client) in sendall.
        self._server = LoopbackServer(
            self._serve, port=port, name="fake-pigpiod", owner="FakePigpiod", send_timeout_s=send_timeout_s
        )

        self._handlers: dict[int, Callable[[Connection, int, int, bytes], int]] = {
            MODES: self._modes,
            MODEG: self._modeg,
            PUD: self._pud,
            READ: self._read,
            WRITE: self._write,
            PWM: self._pwm,
            PRS: self._prs,
            PFS: self._pfs,
            WDOG: self._wdog,
            BR1: lambda c, p1, p2, ext: self._levels & 0xFFFFFFFF,
            TICK: lambda c, p1, p2, ext: self.tick(),
            HWVER: lambda c, p1, p2, ext: self.hw_revision,
            NB: self._nb,
            NP: self._np,
            NC: self._nc,
            PRG: self._prg,
            PFG: self._pfg,
            PRRG: self._prrg,
            PIGPV: lambda c, p1, p2, ext: PIGPIO_VERSION,
            GDC: self._gdc,
            HP: self._hp,
            NOIB: self._noib,
        }

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port the daemon listens on (valid after :meth:`start`)."""
        return self._server.port

    def start(self) -> FakePigpiod:
        """Bind, listen and start accepting clients. Returns ``self`` for chaining."""
        self._server.start()  # raises if already started, before the edge thread is touched
        self._edge_stop.clear()
        self._edge_thread = threading.Thread(
            target=self._edge_loop, name=f"fake-pigpiod-edges:{self.port}", daemon=True
        )
        self._edge_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop every client connection and join every thread. Idempotent."""
        if not self._server.running:
            return
        # The edge thread goes first: it sends on client sockets, which are about to be hung up.
        self._edge_stop.set()
        if self._edge_thread is not None:
            self._edge_thread.join(timeout=5)
            self._edge_thread = None
        self._server.stop()

    def __enter__(self) -> FakePigpiod:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inspection and stimulus for tests -----------------------------------------------------------
    def pwm_state(self) -> dict[int, PwmPin]:
        """Every pin the daemon drives with PWM, as it holds it now (it survives client deaths)."""
        out: dict[int, PwmPin] = {}
        with self._lock:
            for gpio, pin in enumerate(self._pins):
                if pin.kind is Kind.PWM:
                    freq = PWM_FREQUENCIES[pin.freq_index]
                    out[gpio] = PwmPin("soft", pin.width, pin.range, freq, running=pin.width > 0)
                elif pin.kind is Kind.HW_PWM:
                    ch = self._channels[HW_PWM_CHANNEL[gpio]]
                    on = ch.enabled and ch.duty > 0
                    out[gpio] = PwmPin("hardware", ch.duty, HW_PWM_RANGE, ch.frequency, running=on)
        return out

    def level(self, gpio: int) -> int:
        with self._lock:
            return (self._levels >> gpio) & 1

    def mode(self, gpio: int) -> int:
        with self._lock:
            return self._pins[gpio].mode

    def connection_count(self) -> int:
        """Clients connected now; a client's notifications are closed before it stops counting."""
        return self._server.connection_count()

    def notification_handles(self) -> list[int]:
        """Open notification handles (a dead client's handles disappear, like closeOrphanedNotifications)."""
        with self._lock:
            return sorted(self._notify)

    def tick(self) -> int:
        """The daemon's microsecond tick, wrapping at 2**32."""
        with self._lock:
            return self._unwrapped_tick() % TICK_WRAP

    def set_input_level(self, gpio: int, level: int) -> None:
        """Drive ``gpio`` from outside (a sensor), overriding its pull; reports the change if it is watched."""
        with self._lock:
            self._external[gpio] = 1 if level else 0
            self._set_level(gpio, self._external[gpio], self._unwrapped_tick())
            self._sync_outputs()

    def output_duty(self, gpio: int) -> float:
        """What ``gpio`` outputs now, in percent of the time high (the value ``on_pwm`` reports)."""
        with self._lock:
            return self._effective_duty(gpio)

    def add_edge_source(self, gpio: int, edges: Callable[[], int]) -> None:
        """Pulse ``gpio`` once per new count of ``edges()`` (cumulative, e.g. stirrer revolutions).

        Edges counted before this call are history and are not replayed. ``edges`` is called from the
        daemon's edge thread without the daemon's lock held, so it may take its own locks. Works before
        or after :meth:`start`; the line is pulled high (the sensor's idle level) right away.
        """
        if not 0 <= gpio <= MAX_GPIO:
            raise ValueError(f"gpio must be 0-{MAX_GPIO}, got {gpio}")
        baseline = int(edges())
        with self._lock:
            if any(src.gpio == gpio for src in self._edge_sources):
                raise ValueError(f"GPIO {gpio} already has an edge source")
            tick = self._unwrapped_tick()
            self._external[gpio] = 1
            self._set_level(gpio, 1, tick)
            self._edge_sources.append(_EdgeSource(gpio, edges, emitted=baseline, span_start=tick))

    def inject_edges(self, gpio: int, count: int, period_us: int = 10_000) -> list[int]:
        """Make ``gpio`` pulse ``count`` times: each pulse is a falling edge, then a rising edge half a
        period later, falling edges ``period_us`` apart. If the line is low it first goes high.

        Frames go out at once with synthetic ticks (tests do not wait for real time). Returns the
        wrapped ticks of the falling edges.
        """
        if count < 0 or period_us < 2:
            raise ValueError("count must be >= 0 and period_us >= 2")
        falls: list[int] = []
        with self._lock:
            t = self._unwrapped_tick()
            if not (self._levels >> gpio) & 1:
                self._set_level(gpio, 1, t)
                t += period_us // 2
            for _ in range(count):
                self._set_level(gpio, 0, t)
                falls.append(t % TICK_WRAP)
                self._set_level(gpio, 1, t + period_us // 2)
                t += period_us
            self._external[gpio] = 1
            self._tick_floor = max(self._tick_floor, t)
        return falls

    # -- tick and levels -----------------------------------------------------------------------------
    def _unwrapped_tick(self) -> int:
        if self._realtime_tick:
            real = self._tick_origin + int(self._tick_source() * 1_000_000)
            self._tick_floor = max(self._tick_floor, real)
        return self._tick_floor

    @staticmethod
    def _with_bit(levels: int, gpio: int, level: int) -> int:
        return levels | (1 << gpio) if level else levels & ~(1 << gpio)

    def _set_level(self, gpio: int, level: int, tick: int) -> None:
        """Change one line and send a report to every running notification watching it (alertEmit)."""
        new = self._with_bit(self._levels, gpio, level)
        if new == self._levels:
            return
        self._levels = new
        self._tick_floor = max(self._tick_floor, tick)
        for handle, n in list(self._notify.items()):
            if n.running and n.bits & (1 << gpio):
                frame = _REPORT.pack(n.seqno, 0, tick % TICK_WRAP, new & 0xFFFFFFFF)
                n.seqno = (n.seqno + 1) & 0xFFFF
                if not n.conn.send(frame):
                    self._drop_notification(handle)

    def _drop_notification(self, handle: int) -> None:
        """A report could not be delivered: forget the notification and hang up its socket, whose frame
        stream may now hold half a report (the client would misparse everything after it)."""
        n = self._notify.pop(handle, None)
        if n is not None:
            n.conn.hang_up()

    # -- what pins output (the on_pwm hook) ----------------------------------------------------------
    def _effective_duty(self, gpio: int) -> float:
        pin = self._pins[gpio]
        if pin.kind is Kind.PWM:
            return pin.width * 100.0 / pin.range
        if pin.kind is Kind.HW_PWM:
            ch = self._channels[HW_PWM_CHANNEL[gpio]]
            return ch.duty * 100.0 / HW_PWM_RANGE if ch.enabled else 0.0
        if pin.kind is Kind.WRITE and pin.mode == OUTPUT:
            return 100.0 if (self._levels >> gpio) & 1 else 0.0
        return 0.0

    def _sync_outputs(self) -> None:
        """Report every pin whose output changed to ``on_pwm`` (called with the state lock held).

        Every pin is compared, not just the command's: hardware PWM channels are shared by two pins.
        """
        hook = self.on_pwm
        if hook is None:
            return
        for gpio in range(MAX_GPIO + 1):
            duty = self._effective_duty(gpio)
            if duty != self._outputs.get(gpio, 0.0):
                self._outputs[gpio] = duty
                try:
                    hook(gpio, duty)
                except Exception:
                    log.exception("on_pwm hook failed for GPIO %d at %.3f %%", gpio, duty)

    # -- edge sources (hall sensor) ------------------------------------------------------------------
    def _edge_loop(self) -> None:
        while not self._edge_stop.wait(self.edge_poll_s):
            self.poll_edge_sources()

    def poll_edge_sources(self) -> None:
        """One poll of every edge source (the edge thread calls this; tests may call it directly)."""
        with self._lock:
            sources = list(self._edge_sources)
        for src in sources:
            try:
                total = int(src.edges())
            except Exception:
                log.exception("edge source for GPIO %d failed", src.gpio)
                continue
            with self._lock:
                self._emit_edges(src, total)

    def _emit_edges(self, src: _EdgeSource, total: int) -> None:
        """Turn up to ``max_edge_burst`` new counts into low-high pulses spread over the ticks since
        the previous poll, and send each watching client all of its frames in one write."""
        now = self._unwrapped_tick()
        backlog = total - src.emitted
        if backlog <= 0:
            if backlog < 0:  # the counter was reset (a new vessel): start over from its new value
                src.emitted = total
            src.span_start = now
            return
        count = min(backlog, self.max_edge_burst)
        period = max(0.0, now - src.span_start) / backlog
        half = max(1, int(period / 2))
        gpio, bit = src.gpio, 1 << src.gpio
        ticks: list[int] = []  # fall, rise, fall, rise, ...
        last = src.span_start
        for i in range(1, count + 1):
            rise = max(last + 2, int(src.span_start + period * i))
            ticks.append(rise - half if rise - half > last else last + 1)
            ticks.append(rise)
            last = rise
        if not (self._levels >> gpio) & 1:
            self._set_level(gpio, 1, src.span_start)  # idle high before the first pulse
        high = (self._levels | bit) & 0xFFFFFFFF
        low = high & ~bit
        for handle, n in list(self._notify.items()):
            if not (n.running and n.bits & bit):
                continue
            buf = bytearray(_REPORT.size * len(ticks))
            for k, tick in enumerate(ticks):
                _REPORT.pack_into(buf, k * _REPORT.size, n.seqno, 0, tick % TICK_WRAP, low if k % 2 == 0 else high)
                n.seqno = (n.seqno + 1) & 0xFFFF
            if not n.conn.send(bytes(buf)):
                self._drop_notification(handle)
        self._external[gpio] = 1
        self._levels |= bit
        self._tick_floor = max(self._tick_floor, last)
        src.emitted += count
        src.span_start = last if count < backlog else now

    def _input_level(self, gpio: int, pin: _Pin) -> int | None:
        """Level an input settles at: an external driver wins, else the pull (None = floating, unchanged)."""
        if gpio in self._external:
            return self._external[gpio]
        return {1: 0, 2: 1}.get(pin.pud)

    # -- one client connection (pthSocketThreadHandler) -------------------------------------------
    def _serve(self, conn: Connection) -> None:
        """Answer one client's commands until it hangs up (runs on the connection's thread)."""
        try:
            while True:
                head = recv_exact(conn.sock, _REQUEST.size)
                if head is None:
                    break
                cmd, p1, p2, p3 = _REQUEST.unpack(head)
                ext = b""
                if p3:
                    if p3 >= MAX_EXTENSION:
                        break  # "ext too large": the daemon gives up on the connection
                    got = recv_exact(conn.sock, p3)
                    if got is None:
                        break
                    ext = got
                handler = self._handlers.get(cmd)
                with self._lock:
                    res = handler(conn, p1, p2, ext) if handler else PI_UNKNOWN_COMMAND
                    if cmd in _OUTPUT_COMMANDS:
                        self._sync_outputs()
                if res > 0x7FFFFFFF:  # unsigned results (BR1, TICK, HWVER) travel as the same 32 bits
                    res -= 1 << 32
                conn.send(_RESPONSE.pack(cmd, p1, p2, res))
        finally:
            with self._lock:
                for handle in [h for h, n in self._notify.items() if n.conn is conn]:
                    del self._notify[handle]  # closeOrphanedNotifications; PWM state is kept

    # -- command handlers (called with the state lock held) ------------------------------------------
    def _permit(self, gpio: int) -> bool:
        return self._permitted is None or gpio > MAX_GPIO or gpio in self._permitted

    def _switch_function_off(self, gpio: int) -> None:
        pin = self._pins[gpio]
        if pin.kind in (Kind.PWM, Kind.HW_PWM):
            pin.width = 0  # hardware PWM keeps running on its channel ("doing that was a bug")
        if pin.kind is Kind.PWM:
            self._set_level(gpio, 0, self._unwrapped_tick())

    def _modes(self, conn: Connection, gpio: int, mode: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if mode > 7:
            return PI_BAD_MODE
        pin = self._pins[gpio]
        if mode != pin.mode:
            self._switch_function_off(gpio)
            pin.kind = Kind.UNDEFINED
        pin.mode = mode
        if mode == INPUT:
            level = self._input_level(gpio, pin)
            if level is not None:
                self._set_level(gpio, level, self._unwrapped_tick())
        return 0

    def _modeg(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        return PI_BAD_GPIO if gpio > MAX_GPIO else self._pins[gpio].mode

    def _pud(self, conn: Connection, gpio: int, pud: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if pud > 2:
            return PI_BAD_PUD
        pin = self._pins[gpio]
        pin.pud = pud
        if pin.mode == INPUT:
            level = self._input_level(gpio, pin)
            if level is not None:
                self._set_level(gpio, level, self._unwrapped_tick())
        return 0

    def _read(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        return PI_BAD_GPIO if gpio > MAX_GPIO else (self._levels >> gpio) & 1

    def _write(self, conn: Connection, gpio: int, level: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if level > 1:
            return PI_BAD_LEVEL
        pin = self._pins[gpio]
        if pin.kind is not Kind.WRITE:
            self._switch_function_off(gpio)
            pin.kind = Kind.WRITE
        pin.mode = OUTPUT
        self._set_level(gpio, level, self._unwrapped_tick())
        return 0

    def _pwm(self, conn: Connection, gpio: int, val: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        if val > pin.range:
            return PI_BAD_DUTYCYCLE
        if pin.kind is not Kind.PWM:
            self._switch_function_off(gpio)
            pin.kind = Kind.PWM
        pin.mode = OUTPUT
        pin.width = val
        if val == 0 or val == pin.range:  # steady low / steady high; in between the line toggles
            self._set_level(gpio, 1 if val else 0, self._unwrapped_tick())
        return 0

    def _prs(self, conn: Connection, gpio: int, rng: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        if not MIN_RANGE <= rng <= MAX_RANGE:
            return PI_BAD_DUTYRANGE
        pin = self._pins[gpio]
        if pin.width and pin.kind is Kind.PWM:
            pin.width = (rng * pin.width) // pin.range
        pin.range = rng
        return real_range(PWM_FREQUENCIES[pin.freq_index])

    def _prg(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        return HW_PWM_RANGE if pin.kind is Kind.HW_PWM else pin.range

    def _prrg(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        if pin.kind is Kind.HW_PWM:
            return self._channels[HW_PWM_CHANNEL[gpio]].real_range
        return real_range(PWM_FREQUENCIES[pin.freq_index])

    def _pfs(self, conn: Connection, gpio: int, freq: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        pin.freq_index = snap_frequency(freq)
        return PWM_FREQUENCIES[pin.freq_index]

    def _pfg(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        if pin.kind is Kind.HW_PWM:
            return self._channels[HW_PWM_CHANNEL[gpio]].frequency
        return PWM_FREQUENCIES[pin.freq_index]

    def _gdc(self, conn: Connection, gpio: int, p2: int, ext: bytes) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        pin = self._pins[gpio]
        if pin.kind is Kind.PWM:
            return pin.width
        if pin.kind is Kind.HW_PWM:
            return self._channels[HW_PWM_CHANNEL[gpio]].duty
        return PI_NOT_PWM_GPIO

    def _hp(self, conn: Connection, gpio: int, freq: int, ext: bytes) -> int:
        if not self._permit(gpio):
            return PI_NOT_PERMITTED
        duty = struct.unpack("<I", ext[:4])[0] if len(ext) >= 4 else 0
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if gpio not in HW_PWM_CHANNEL:
            return PI_NOT_HPWM_GPIO
        if duty > HW_PWM_RANGE:
            return PI_BAD_HPWM_DUTY
        if freq and not 1 <= freq <= self.hw_pwm_max_hz:
            return PI_BAD_HPWM_FREQ
        pin = self._pins[gpio]
        ch = self._channels[HW_PWM_CHANNEL[gpio]]
        if freq:
            rr = int(self.plld_hz / (2.0 * freq) + 0.5)
            ch.real_range = rr
            ch.frequency = int(self.plld_hz / (2.0 * rr) + 0.5)
            ch.duty = duty
            ch.enabled = True
            if pin.kind is not Kind.HW_PWM:
                self._switch_function_off(gpio)
                pin.mode = HW_PWM_ALT[gpio]
                pin.kind = Kind.HW_PWM
        elif pin.kind is Kind.HW_PWM:
            ch.enabled = False  # the channel stops for every pin muxed to it
            pin.kind = Kind.UNDEFINED
        return 0

    def _wdog(self, conn: Connection, gpio: int, timeout: int, ext: bytes) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        if timeout > MAX_WDOG_MS:
            return PI_BAD_WDOG_TIMEOUT
        self._pins[gpio].watchdog_ms = timeout
        return 0

    def _noib(self, conn: Connection, p1: int, p2: int, ext: bytes) -> int:
        for handle in range(NOTIFY_SLOTS):
            if handle not in self._notify:
                self._notify[handle] = _Notify(conn)
                return handle
        return PI_NO_HANDLE

    def _nb(self, conn: Connection, handle: int, bits: int, ext: bytes) -> int:
        n = self._notify.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.bits, n.running = bits, True
        return 0

    def _np(self, conn: Connection, handle: int, p2: int, ext: bytes) -> int:
        n = self._notify.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.bits, n.running = 0, False
        return 0

    def _nc(self, conn: Connection, handle: int, p2: int, ext: bytes) -> int:
        if handle not in self._notify:
            return PI_BAD_HANDLE
        del self._notify[handle]
        return 0
