"""The simulated vessel actor: one per simulated unit, the world the unit's drivers talk to.

It owns a :class:`~actors.hardware.vessel.Vessel` (culture, optics, heater plate, stir bar, pumps) and
serves it as a device: the pigpio wire protocol for PWM and the hall sensor, and I2C over loopback for
the ADC, LED and temperature chips (:mod:`actors.hardware.sim_device`). The model advances with the
node's clock, seeded by the unit's name, so a run is reproducible. Fault knobs switch faults on and off.

The device serves its sockets from threads; this actor never creates children, so no process is forked
with those threads running.
"""

from __future__ import annotations

import zlib
from typing import Any

from thespian.actors import ActorTypeDispatcher

from actors import logs
from actors.clock import Clock
from actors.hardware import hardware_access
from actors.hardware.sim_culture import CultureParams
from actors.hardware.sim_thermal import ThermalParams
from actors.hardware.vessel import Vessel, VesselParams
from actors.messages import BootDriver, DriverFailed, GetSimTruth, Reply, SimFault, TimedPumpRun

log = logs.get("sim_vessel")


def sim_seed(unit: str, simulation: dict[str, float]) -> int:
    """The vessel's random seed: the topology's ``simulation.seed``, else one derived from the unit's name."""
    return int(simulation.get("seed", zlib.crc32(unit.encode())))


class SimVessel(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device: Any = None

    def receiveMsg_BootDriver(self, msg: BootDriver, sender: Any) -> None:
        if self.device is not None:
            return
        from actors.hardware.sim_device import SimDevice

        try:
            desc = hardware_access.description(msg.hardware)
            sim = dict(msg.node.simulation)
            culture = {k: sim[k] for k in ("initial_od", "mu_max", "lag_hours", "carrying_capacity") if k in sim}
            params = VesselParams(
                seed=sim_seed(msg.node.unit, sim),
                culture=CultureParams(**culture),
                thermal=ThermalParams(
                    **{k: sim[k] for k in ("ambient_c",) if k in sim},
                    **({"heater_max_w": sim["heater_w"]} if "heater_w" in sim else {}),
                ),
                capacity_ml=desc.vessel.capacity_ml,
                max_fill_ml=desc.vessel.max_fill_ml,
                efflux_ml=desc.vessel.default_efflux_tube_ml,
                initial_volume_ml=desc.vessel.default_efflux_tube_ml,
                ir_led_channel=desc.leds.ir,
            )
            clock = Clock(time_scale=msg.node.time_scale, anchor=msg.node.clock_anchor)
            self.device = SimDevice(desc, Vessel(params), clock.now)
            endpoints = self.device.start()
        except Exception as e:
            self.send(sender, DriverFailed(driver="sim_vessel", error=f"simulated vessel: {e}"))
            return
        log.info("simulated vessel up: pigpio port %s, I2C port %s", endpoints.pigpio_port, endpoints.i2c_port)
        self.send(sender, endpoints)

    def receiveMsg_TimedPumpRun(self, msg: TimedPumpRun, _sender: Any) -> None:
        if self.device is not None:
            self.device.time_pump_run(msg.channel, msg.seconds)

    def receiveMsg_SimFault(self, msg: SimFault, sender: Any) -> None:
        if self.device is None:
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error="the simulated vessel is not running"))
            return
        knobs = self.device.faults()
        if msg.knob not in knobs:
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error=f"unknown fault knob {msg.knob!r}; knobs are: {', '.join(knobs)}"))
            return
        self.device.set_fault(msg.knob, msg.on)
        log.warning("simulator fault %s %s", msg.knob, "on" if msg.on else "off")
        self.send(sender, Reply(request_id=msg.request_id, ok=True, result=msg.knob))

    def receiveMsg_GetSimTruth(self, msg: GetSimTruth, sender: Any) -> None:
        truth = self.device.truth() if self.device is not None else None
        self.send(sender, Reply(request_id=msg.request_id, ok=truth is not None, result=truth))

    def receiveMsg_ActorExitRequest(self, _msg: Any, _sender: Any) -> None:
        if self.device is not None:
            self.device.stop()
