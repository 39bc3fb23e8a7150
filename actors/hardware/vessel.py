"""One simulated Pioreactor vessel: culture, optics, heater, three pumps and the stirrer, advanced together.

Pure model, no I/O and no clock: the device fakes (PWM backend, I2C chip models, hall-edge source) set
actuators with :meth:`Vessel.set_pwm` / :meth:`Vessel.set_led`, read sensors back, and the simulation
clock calls :meth:`Vessel.advance` with the elapsed ``dt``. hardware.md §4.1 puts the simulator at this
device level so the drivers under test run their real code.

Coupling, per substep of at most ``max_step_s`` (1 s): the heater model advances first, the culture then
grows at the liquid's mean temperature over the substep, the stirrer spins, and the pumps move liquid
(media and alternative media in, then waste out down to the efflux tube). Pumps act as small discrete
doses at the end of each substep; at Pioreactor's 0.09 ml/s a substep moves under 0.1 ml, so this matches
continuous flow closely. Thermal, motor and growth are each integrated exactly within a substep. The
liquid's heat capacity is taken as constant while the volume changes by a few ml. LEDs other than the IR
channel are stored but do not affect the photodiodes.

Randomness: one ``random.Random(seed)`` hands seeds, in a fixed order, to the optics, to the plate sensor
and to the three pumps' gain errors, so the same seed and the same call sequence give the same run.
"""

from __future__ import annotations

import math
import random

import attrs

from actors.hardware.sim_culture import Culture, CultureParams
from actors.hardware.sim_motor import StirMotor
from actors.hardware.sim_optics import Optics, OpticsParams
from actors.hardware.sim_pumps import PumpParams, SimPump
from actors.hardware.sim_thermal import Thermal, ThermalParams
from actors.validators import finite_non_negative, finite_positive

PUMPS: tuple[str, ...] = ("media", "alt_media", "waste")
PWM_CHANNELS: tuple[str, ...] = ("stirring", "heater", *PUMPS)
LED_CHANNELS: tuple[str, ...] = ("A", "B", "C", "D")

FAULTS: tuple[str, ...] = (
    *(f"stuck_pump:{name}" for name in PUMPS),
    *(f"clogged_pump:{name}" for name in PUMPS),
    "stalled_motor",
    "heater_disconnected",
)
"""Fault knobs for :meth:`Vessel.set_fault`.

* ``stuck_pump:<pump>``: the pump runs at full flow whatever its duty (welded driver, orphaned PWM).
* ``clogged_pump:<pump>``: the pump moves nothing whatever its duty (kinked or blocked tubing).
* ``stalled_motor``: the stir bar is jammed; the fan settles at 0 RPM and no hall edges arrive.
* ``heater_disconnected``: the heater PCB is unplugged; heating does nothing and plate reads fail.
"""


@attrs.frozen(kw_only=True)
class VesselParams:
    """Everything that defines a simulated vessel. Defaults: a 20 ml Pioreactor with an E. coli culture.

    Volumes (hardware.md §4.2-4.3): ``capacity_ml`` is the vial's physical capacity (overflow past it is a
    failure), ``max_fill_ml`` the most an automation may fill to (18 of 20 ml; 36 of 40 ml), and
    ``efflux_ml`` the level of the waste needle, which is also the usual starting volume.
    """

    culture: CultureParams = attrs.field(factory=CultureParams)
    optics: OpticsParams = attrs.field(factory=OpticsParams)
    thermal: ThermalParams = attrs.field(factory=ThermalParams)
    pump: PumpParams = attrs.field(factory=PumpParams)
    seed: int = 0
    capacity_ml: float = attrs.field(default=20.0, validator=finite_positive)
    max_fill_ml: float = attrs.field(default=18.0, validator=finite_positive)
    efflux_ml: float = attrs.field(default=15.0, validator=finite_non_negative)
    initial_volume_ml: float = attrs.field(default=15.0, validator=finite_non_negative)
    ir_led_channel: str = "A"
    max_step_s: float = attrs.field(default=1.0, validator=finite_positive)

    def __attrs_post_init__(self) -> None:
        if not self.efflux_ml <= self.max_fill_ml <= self.capacity_ml:
            raise ValueError(
                f"need efflux <= max fill <= capacity, got {self.efflux_ml} / {self.max_fill_ml} / "
                f"{self.capacity_ml} ml"
            )
        if self.initial_volume_ml > self.max_fill_ml:
            raise ValueError(
                f"initial volume {self.initial_volume_ml} ml is above max fill {self.max_fill_ml} ml"
            )
        if self.ir_led_channel not in LED_CHANNELS:
            raise ValueError(f"ir_led_channel must be one of {LED_CHANNELS}, got {self.ir_led_channel!r}")
        if self.max_step_s > 1.0:
            raise ValueError(f"max_step_s must be <= 1 s (pump/volume coupling), got {self.max_step_s}")


def _seeded(parent: random.Random) -> random.Random:
    return random.Random(parent.getrandbits(64))


@attrs.define
class Vessel:
    """The simulated vessel. Build it from :class:`VesselParams`; all state starts at rest and at ambient."""

    params: VesselParams = attrs.field(factory=VesselParams)
    culture: Culture = attrs.field(init=False)
    optics: Optics = attrs.field(init=False)
    thermal: Thermal = attrs.field(init=False)
    pumps: dict[str, SimPump] = attrs.field(init=False)
    motor: StirMotor = attrs.field(init=False)
    elapsed_s: float = attrs.field(default=0.0, init=False)
    _pwm: dict[str, float] = attrs.field(init=False)
    _leds: dict[str, float] = attrs.field(init=False)
    _sensor_rng: random.Random = attrs.field(init=False)
    _faults: set[str] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        p = self.params
        master = random.Random(p.seed)
        self.optics = Optics(p.optics, _seeded(master))
        self._sensor_rng = _seeded(master)
        pump_rng = _seeded(master)
        self.pumps = {name: SimPump.from_rng(name, pump_rng, p.pump) for name in PUMPS}
        self.culture = Culture(
            p.culture,
            volume_ml=p.initial_volume_ml,
            efflux_volume_ml=p.efflux_ml,
            max_volume_ml=p.capacity_ml,
        )
        self.thermal = Thermal(p.thermal)
        self.motor = StirMotor()
        self._pwm = {name: 0.0 for name in PWM_CHANNELS}
        self._leds = {name: 0.0 for name in LED_CHANNELS}

    # -- actuators --------------------------------------------------------------------------------------

    def set_pwm(self, channel: str, duty: float) -> None:
        """Set a PWM output's duty in percent; out-of-range values are clamped like the real PWM."""
        if channel not in self._pwm:
            raise ValueError(f"unknown PWM channel {channel!r}; expected one of {PWM_CHANNELS}")
        if math.isnan(duty):
            raise ValueError("duty must be a number, got NaN")
        duty = min(100.0, max(0.0, float(duty)))
        self._pwm[channel] = duty
        if channel == "stirring":
            self.motor.set_duty(duty)

    def pwm(self, channel: str) -> float:
        """The duty last set on ``channel``."""
        if channel not in self._pwm:
            raise ValueError(f"unknown PWM channel {channel!r}; expected one of {PWM_CHANNELS}")
        return self._pwm[channel]

    def set_led(self, channel: str, pct: float) -> None:
        """Set an LED channel's intensity in percent (0-100; the DAC refuses anything else)."""
        if channel not in self._leds:
            raise ValueError(f"unknown LED channel {channel!r}; expected one of {LED_CHANNELS}")
        if not (math.isfinite(pct) and 0 <= pct <= 100):
            raise ValueError(f"LED intensity must be in [0, 100] %, got {pct!r}")
        self._leds[channel] = float(pct)

    def led(self, channel: str) -> float:
        """The intensity last set on ``channel``."""
        if channel not in self._leds:
            raise ValueError(f"unknown LED channel {channel!r}; expected one of {LED_CHANNELS}")
        return self._leds[channel]

    # -- faults -----------------------------------------------------------------------------------------

    def set_fault(self, name: str, on: bool = True) -> None:
        """Switch a fault from :data:`FAULTS` on or off."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; expected one of {FAULTS}")
        if on:
            self._faults.add(name)
        else:
            self._faults.discard(name)
        kind, _, pump = name.partition(":")
        if kind == "stuck_pump":
            self.pumps[pump].stuck_on = on
        elif kind == "clogged_pump":
            self.pumps[pump].clogged = on
        elif kind == "stalled_motor":
            self.motor.stalled = on
        elif kind == "heater_disconnected":
            self.thermal.plate_disconnected = on

    @property
    def faults(self) -> frozenset[str]:
        """The faults currently switched on."""
        return frozenset(self._faults)

    # -- time -------------------------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Move the whole vessel ``dt`` seconds forward under the current actuator settings."""
        if not (math.isfinite(dt) and dt >= 0):
            raise ValueError(f"dt must be finite and >= 0, got {dt!r}")
        if dt == 0:
            return
        steps = max(1, math.ceil(dt / self.params.max_step_s))
        h = dt / steps
        pwm = self._pwm
        media, alt, waste = self.pumps["media"], self.pumps["alt_media"], self.pumps["waste"]
        for _ in range(steps):
            start_c = self.thermal.liquid_c
            self.thermal.advance(h, pwm["heater"])
            self.culture.advance(h, 0.5 * (start_c + self.thermal.liquid_c))
            self.motor.advance(h)
            added = media.flow_ml(pwm["media"], h)
            if added > 0:
                self.culture.add_media(added)
            added = alt.flow_ml(pwm["alt_media"], h)
            if added > 0:
                self.culture.add_alt_media(added)
            removed = waste.flow_ml(pwm["waste"], h)
            if removed > 0:
                self.culture.remove_waste(removed)
        self.elapsed_s += dt

    # -- sensors and true state -------------------------------------------------------------------------

    def photodiode_voltages(self, t_seconds: float | None = None) -> dict[str, float]:
        """One ADC sample of each photodiode channel; ``t_seconds`` defaults to the vessel's elapsed time."""
        t = self.elapsed_s if t_seconds is None else t_seconds
        return self.optics.voltages(
            self.culture.od, self._leds[self.params.ir_led_channel], self.thermal.liquid_c, t
        )

    def plate_sensor_c(self) -> float:
        """A TMP1075 reading of the heater plate. Raises ``PlateSensorError`` if the heater is unplugged."""
        return self.thermal.sensor_reading(self._sensor_rng)

    @property
    def hall_edges(self) -> int:
        """Cumulative hall-sensor edges (one per stirrer revolution)."""
        return self.motor.hall_edges

    @property
    def rpm(self) -> float:
        return self.motor.rpm

    @property
    def volume_ml(self) -> float:
        return self.culture.volume_ml

    @property
    def od(self) -> float:
        """True biomass in OD600-equivalent units."""
        return self.culture.od

    @property
    def alt_media_fraction(self) -> float:
        return self.culture.alt_media_fraction

    @property
    def overflowed(self) -> bool:
        """True once liquid has run over the vial's capacity (latched)."""
        return self.culture.overflowed

    @property
    def liquid_c(self) -> float:
        """True liquid temperature (no sensor measures it; Pioreactor infers it)."""
        return self.thermal.liquid_c

    @property
    def plate_c(self) -> float:
        """True heater plate temperature, without sensor noise or quantisation."""
        return self.thermal.plate_c
