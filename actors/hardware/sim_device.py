"""A simulated Pioreactor unit as a *device*: pigpiod and an I2C bus on loopback, wired to one Vessel.

Why a device and not a mock: drivers in other processes reach it exactly as they reach a Pi. PWM and the
hall sensor go through the real ``pigpio`` client to :class:`~actors.hardware.sim_pigpiod.FakePigpiod`;
the ADC, LED and temperature chips go through our real chip drivers over a
:class:`~actors.hardware.sim_i2c_server.RemoteI2CBus` to register models on a
:class:`~actors.hardware.sim_i2c.FakeI2CBus`. So the byte-level driver code, the pigpio wire protocol and
the safety logic above them run unchanged in simulation (hardware.md §0 item 5, §4.1).

What is wired where comes from the :class:`~actors.hardware.description.HardwareDescription`:

* PWM pins -> ``Vessel.set_pwm(channel)`` by the description's channel names (stirring, heater, media,
  alt_media, waste); the hall-sensor pin pulses once per stirrer revolution (``Vessel.hall_edges``).
* ADC signals -> chip models at the described chip, address and input: ``pd1`` is the REF photodiode,
  ``pd2`` the 90° one, ``pd3`` 135°, ``pd4`` 45° (an ``angle`` on a description's ADC input, or the
  ``pd_angles`` argument, says otherwise); ``aux`` is the supply
  rail through the HAT's 0.134 divider (5.0 V, or 4.5 V under ``low_power``); ``version`` reads a fixed
  strap voltage. Inputs no signal is wired to read 0 V.
* The LED chip (DAC43608 or the HAT MCU) -> ``Vessel.set_led(pocket, pct)``, mapping the chip's output
  codes back to percent with the same span the driver uses, and chip outputs back to LED pockets.
* TMP1075 -> ``Vessel.plate_sensor_c()``; a disconnected plate NACKs (``OSError`` 121).

Time: ``now()`` is the node clock in simulated seconds (any origin; only differences matter). Every access
to the device (a PWM change, an I2C transaction, an edge poll, :meth:`SimDevice.truth`) first advances
the vessel from the last access to ``now()``, under one lock, never backwards, so the vessel moves
exactly with the node clock however fast it runs, and actuators take effect at the simulated instant
they were commanded. pigpio ticks follow ``now()`` too, so hall-edge tick spacing is simulated time.

Locks, in the order they may be taken: pigpiod's state lock -> the device lock; the I2C server's
transaction lock -> the device lock. Nothing holding the device lock calls into either server.

Threads are fine here: the owning actor never forks. Both servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any


from actors.messages import SimEndpoints  # where drivers reach a started device
from actors import logs
from actors.hardware.chips.dac43608 import PIOREACTOR_SPAN
from actors.hardware.description import HardwareDescription
from actors.hardware.sim_i2c import (
    DAC43608_CHANNELS,
    ADS1114Model,
    ADS1115Model,
    DAC43608Model,
    FakeI2CBus,
    I2CTarget,
    PicoModel,
    TMP1075Model,
    nack,
)
from actors.hardware.sim_i2c_server import LOOPBACK, I2CServer
from actors.hardware.sim_pigpiod import FakePigpiod
from actors.hardware.sim_thermal import PlateSensorError
from actors.hardware.vessel import FAULTS as VESSEL_FAULTS
from actors.hardware.vessel import PWM_CHANNELS, Vessel

log = logs.get("sim_device")

DEFAULT_PD_ANGLES: dict[str, str] = {"pd1": "REF", "pd2": "90", "pd3": "135", "pd4": "45"}
AUX_DIVIDER = 0.134  # the HAT's divider on the supply rail (Pioreactor: volts / 0.134)
HEALTHY_RAIL_V = 5.0
LOW_RAIL_V = 4.5  # below Pioreactor's 4.80 V warning
# [assumption] a fixed hardware-version strap; HAT v2 documents ~0.201 V, v1.x's value is not published.
VERSION_STRAP_V = 0.2
PICO_FIRMWARE = (0, 5)
PICO_LED_MAX_CODE = 255
I2C_LOG_LENGTH = 256  # FakeI2CBus logs every transaction; keep only recent ones in a long-running unit

I2C_ERRORS = "i2c_errors"
LOW_POWER = "low_power"
MISSING = "missing_sensor:"
OVERVOLTAGE = "overvoltage:"  # a photodiode input driven to 3.3 V (a wrong angle, too much IR)
OVERVOLTAGE_V = 3.3


class SimDevice:
    """One simulated unit's hardware. See the module docstring for the wiring and the time rules.

    ``pd_angles`` overrides which photodiode angle ("REF", "45", "90", "135", "180") each ``pdN``
    signal sees; ``pico_firmware`` is what the HAT MCU reports (it picks the ADC scale).

    :attr:`pigpiod` and :attr:`bus` (the register-level bus behind the I2C server) are public so tests
    can look at what drivers did; drivers themselves only ever see the two ports.
    """

    def __init__(
        self,
        hardware: HardwareDescription,
        vessel: Vessel,
        now: Callable[[], float],
        *,
        pd_angles: Mapping[str, str] | None = None,
        pico_firmware: tuple[int, int] = PICO_FIRMWARE,
    ) -> None:
        self.hardware = hardware
        self.vessel = vessel
        self._now = now
        self._lock = threading.RLock()
        # Timed pump runs (see time_pump_run): channel -> simulated time it stops, or seconds to apply
        # to the next start, and when each running pump started.
        self._pump_stops: dict[str, float] = {}
        self._pump_pending: dict[str, float] = {}
        self._pump_started: dict[str, float] = {}
        self._last = self._read_clock()
        self._active: set[str] = set()
        self._started = False

        angles = {**DEFAULT_PD_ANGLES, **(pd_angles or {})}
        self._angles = {
            signal: getattr(spec, "angle", None) or angles.get(signal)
            for signal, spec in hardware.adc.items()
            if signal.startswith("pd")
        }
        self._inputs = {(spec.address, spec.channel): signal for signal, spec in hardware.adc.items()}
        self._pocket_of_output = {output: pocket for pocket, output in hardware.leds.channels.items()}
        self._led_span = PIOREACTOR_SPAN

        # -- I2C: one register model per address ---------------------------------------------------
        self._devices: dict[int, I2CTarget] = {}
        for spec in hardware.adc.values():
            if spec.address in self._devices:
                continue
            volts = self._voltage_reader(spec.address)
            if spec.chip == "ads1115":
                self._devices[spec.address] = ADS1115Model(volts)
            elif spec.chip == "ads1114":
                self._devices[spec.address] = ADS1114Model(volts)
            else:
                self._devices[spec.address] = PicoModel(volts, firmware=pico_firmware)
        leds = hardware.leds
        if leds.chip == "dac43608":
            self._devices[leds.address] = DAC43608Model(on_change=self._dac_changed)
        else:
            pico = self._devices.get(leds.address)
            if not isinstance(pico, PicoModel):
                pico = PicoModel(lambda channel: 0.0, firmware=pico_firmware)
                self._devices[leds.address] = pico
            pico.on_intensity = self._pico_led_changed
        self._devices[hardware.temperature.address] = TMP1075Model(self._plate_reading)
        self.bus = FakeI2CBus(self._devices)
        self.bus.log = deque(maxlen=I2C_LOG_LENGTH)  # type: ignore[assignment]  # only .append is used
        self._i2c = I2CServer(self.bus)

        # -- which addresses each "missing_sensor:<name>" knob takes off the bus -------------------
        self._missing: dict[str, set[int]] = {}
        for signal, spec in hardware.adc.items():
            shared = [s for s, other in hardware.adc.items() if other.address == spec.address and s != signal]
            alone = not shared and spec.address != leds.address
            self._missing[signal] = {spec.address} if alone else set()  # shared chip: that input reads 0 V
        self._missing["temperature"] = {hardware.temperature.address}
        for address, chip in hardware.i2c_devices().items():
            self._missing.setdefault(chip, set()).add(address)

        # -- PWM and the hall sensor ---------------------------------------------------------------
        self._pin_channels: dict[int, str] = {}
        for name, channel in hardware.pwm.channels.items():
            if name in PWM_CHANNELS:
                self._pin_channels[channel.pin] = name
            else:
                log.warning("PWM channel %r (GPIO %d) drives nothing in the simulated vessel", name, channel.pin)
        hall = hardware.gpio.hall_sensor
        # The HAT pulls the hall output up, so clients connecting see it high (pigpio diffs against that).
        self.pigpiod = FakePigpiod(host=LOOPBACK, input_levels={hall: 1}, on_pwm=self._on_pwm, tick_clock=now)
        self.pigpiod.add_edge_source(hall, self._hall_edges)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> SimEndpoints:
        """Start both servers; returns their ports."""
        if self._started:
            raise RuntimeError("SimDevice already started")
        self.pigpiod.start()
        try:
            self._i2c.start()
        except BaseException:
            self.pigpiod.stop()
            raise
        self._started = True
        return self.endpoints()

    def endpoints(self) -> SimEndpoints:
        if not self._started:
            raise RuntimeError("SimDevice is not started")
        return SimEndpoints(pigpio_port=self.pigpiod.port, i2c_port=self._i2c.port)

    def stop(self) -> None:
        """Stop both servers and join their threads. Idempotent. The vessel keeps its state.

        Stop pigpio clients first: the pigpio client's notification thread spins if its daemon vanishes.
        """
        self._i2c.stop()
        self.pigpiod.stop()
        self._started = False

    def __enter__(self) -> SimDevice:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------------
    def faults(self) -> list[str]:
        """Every fault knob this device has: the vessel's faults, ``i2c_errors`` (every chip NACKs),
        ``low_power`` (the supply rail sags to 4.5 V), ``missing_sensor:<name>`` for each ADC signal,
        ``temperature`` and each chip kind on the bus, and ``overvoltage:<pd>`` (that photodiode reads 3.3 V)."""
        photodiodes = [signal for signal in self._angles if signal in self.hardware.adc]
        return [
            *VESSEL_FAULTS,
            I2C_ERRORS,
            LOW_POWER,
            *(MISSING + name for name in self._missing),
            *(OVERVOLTAGE + signal for signal in photodiodes),
        ]

    def active_faults(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    def set_fault(self, name: str, on: bool = True) -> None:
        """Switch a knob from :meth:`faults` on or off.

        ``missing_sensor:<name>`` takes the chip off the bus (it NACKs and disappears from scans); for a
        signal on an ADC shared with other signals, only that input goes dead and reads 0 V, as an
        unplugged photodiode would. ``heater_disconnected`` also takes the plate sensor off the bus.
        """
        knobs = self.faults()
        if name not in knobs:
            raise ValueError(f"unknown fault knob {name!r}; knobs are: {', '.join(knobs)}")
        with self._lock:
            self._sync()  # the time before the switch ran without (or with) the fault
            if name in VESSEL_FAULTS:
                self.vessel.set_fault(name, on)
            if on:
                self._active.add(name)
            else:
                self._active.discard(name)
            self._apply_bus_faults()

    def _apply_bus_faults(self) -> None:
        gone: set[int] = set()
        for knob in self._active:
            if knob.startswith(MISSING):
                gone |= self._missing[knob[len(MISSING) :]]
        if "heater_disconnected" in self._active:
            gone.add(self.hardware.temperature.address)
        for address, device in self._devices.items():
            if address in gone:
                self.bus.detach(address)
            else:
                self.bus.attach(address, device)
        self.bus.clear_faults()
        if I2C_ERRORS in self._active:
            for address in self._devices:
                self.bus.fail_always(address)

    # -- truth ---------------------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """The vessel's true state now (what sensors estimate), for tests and dashboards."""
        with self._lock:
            self._sync()
            v = self.vessel
            return {
                "od": v.od,
                "growth_rate_per_h": v.culture.true_growth_rate(v.liquid_c),
                "volume_ml": v.volume_ml,
                "alt_media_fraction": v.alt_media_fraction,
                "liquid_c": v.liquid_c,
                "plate_c": v.plate_c,
                "rpm": v.rpm,
                "overflowed": v.overflowed,
                "elapsed_s": v.elapsed_s,
                "hall_edges": v.hall_edges,
                "pwm": {channel: v.pwm(channel) for channel in PWM_CHANNELS},
                "leds": {pocket: v.led(pocket) for pocket in self.hardware.leds.channels},
                "faults": sorted(self._active),
            }

    # -- time ----------------------------------------------------------------------------------------
    def _read_clock(self) -> float:
        t = float(self._now())
        if not math.isfinite(t):
            raise ValueError(f"the clock returned {t!r}; simulated time must be a finite number of seconds")
        return t

    def _sync(self) -> None:
        """Advance the vessel to ``now()``; call with the device lock held. Time never runs backwards."""
        t = self._read_clock()
        for channel, stop in sorted(self._pump_stops.items(), key=lambda item: item[1]):
            if stop > t:
                break
            if stop > self._last:
                self.vessel.advance(stop - self._last)
                self._last = stop
            self.vessel.set_pwm(channel, 0.0)
            del self._pump_stops[channel]
        if t > self._last:
            self.vessel.advance(t - self._last)
            self._last = t

    def time_pump_run(self, channel: str, seconds: float) -> None:
        """The pump run commanded on ``channel`` lasts ``seconds`` of simulated time: the device stops
        it then, whenever the driver's stop arrives. This stands in for real time, where a stop a few
        milliseconds late moves microlitres; at an accelerated clock the same lateness would be whole
        millilitres. The message may arrive just before or just after the PWM write that starts the run."""
        with self._lock:
            self._sync()
            if self.vessel.pwm(channel) > 0 and channel in self._pump_started:
                self._pump_stops[channel] = max(self._last, self._pump_started[channel] + seconds)
                self._sync()
            else:
                self._pump_pending[channel] = seconds

    # -- what the servers call -----------------------------------------------------------------------
    def _on_pwm(self, pin: int, duty: float) -> None:
        name = self._pin_channels.get(pin)
        if name is None:
            return  # a pin nothing in the vessel is wired to (status LED, a spare)
        with self._lock:
            self._sync()  # the old duty applied up to this instant
            was_on = self.vessel.pwm(name) > 0
            self.vessel.set_pwm(name, duty)
            if duty <= 0:
                self._pump_stops.pop(name, None)
                self._pump_started.pop(name, None)
            elif not was_on:
                self._pump_started[name] = self._last
                pending = self._pump_pending.pop(name, None)
                if pending is not None:
                    self._pump_stops[name] = self._last + pending

    def _hall_edges(self) -> int:
        with self._lock:
            self._sync()
            return self.vessel.hall_edges

    def _voltage_reader(self, address: int) -> Callable[[int], float]:
        def volts(channel: int) -> float:
            return self._input_volts(address, channel)

        return volts

    def _input_volts(self, address: int, channel: int) -> float:
        signal = self._inputs.get((address, channel))
        if signal is None:
            return 0.0
        with self._lock:
            self._sync()
            if MISSING + signal in self._active:
                return 0.0
            if OVERVOLTAGE + signal in self._active:
                return OVERVOLTAGE_V
            if signal == "aux":
                return (LOW_RAIL_V if LOW_POWER in self._active else HEALTHY_RAIL_V) * AUX_DIVIDER
            if signal == "version":
                return VERSION_STRAP_V
            angle = self._angles.get(signal)
            if angle is None:
                return 0.0
            return self.vessel.photodiode_voltages().get(angle, 0.0)

    def _plate_reading(self) -> float:
        with self._lock:
            self._sync()
            try:
                return self.vessel.plate_sensor_c()
            except PlateSensorError as e:
                raise nack(f"TMP1075 at 0x{self.hardware.temperature.address:02X}: {e}") from e

    def _set_led(self, output: int, pct: float) -> None:
        pocket = self._pocket_of_output.get(output)
        if pocket is None:
            return  # an output no LED pocket is wired to
        with self._lock:
            self._sync()
            self.vessel.set_led(pocket, min(100.0, max(0.0, pct)))

    def _dac_changed(self, letter: str, code: int, powered: bool) -> None:
        # The driver writes round(span * pct / 100); invert with the same span (codes above it clamp).
        self._set_led(DAC43608_CHANNELS.index(letter), code * 100.0 / self._led_span if powered else 0.0)

    def _pico_led_changed(self, output: int, value: int) -> None:
        self._set_led(output, value * 100.0 / PICO_LED_MAX_CODE)


__all__ = ["DEFAULT_PD_ANGLES", "SimDevice", "SimEndpoints"]
