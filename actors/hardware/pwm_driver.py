"""The PWM driver actor: sole owner of the node's PWM outputs (stirring, pumps, heater) and of the
hall-sensor input, which share one GPIO connection (pigpiod on a Pi; the simulated device on a sim unit).

Safety lives here, not in callers:
- every output is zeroed when the driver starts and when it stops (pigpiod keeps PWM from a dead client);
- a channel is leased to one job at a time; only the holder may set it;
- when the holder stops, crashes (the supervisor sends ``ReleaseOwner``) or misses its lease renewals
  (a hung job), the channel goes to 0 at once;
- a duty that is not a number turns the output off, never on;
- the heater obeys the model's reduce / disable / shutdown tiers on the plate temperature that the
  temperature driver sends every few seconds, and goes off when those readings stop or fail;
- a pump command runs at most 1.5x its stated duration and never more than 60 s.
The published ``pwms/dc`` mirror (``{pin: duty}``, non-zero only) shows anyone what is on.

The HAT's status LED (``gpio.status_led``, GPIO 23) is one more output here, ``status_led``, so that one
actor owns every GPIO output; the monitor leases it to blink error codes. It is left out of the
``pwms/dc`` mirror: a blinking LED would otherwise publish a retained record several times a second.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import attrs
from thespian.actors import ActorTypeDispatcher, WakeupMessage

from actors import logs, topics
from actors.clock import Clock
from actors.hardware import hardware_access
from actors.hardware.description import HardwareDescription, PwmChannel
from actors.hardware.safety import HeaterLimits, PumpGuard, heater_decision
from actors.messages import (
    AcquireChannel,
    BootDriver,
    DriverFailed,
    DriverStatus,
    HallEdges,
    PlateReading,
    Publish,
    ReadHallEdges,
    ReleaseChannel,
    ReleaseOwner,
    RenewLease,
    Reply,
    SetDuty,
    TimedPumpRun,
    Wire,
)

log = logs.get("pwm_driver")

LEASE_SECONDS = 10.0  # real seconds without a renewal before a held channel is forced to 0
TICK_SECONDS = 1.0
PUMPS = ("media", "alt_media", "waste")
HEATER = "heater"
PLATE_READING_MAX_AGE = 15.0  # simulated seconds: older than this and the heater is switched off
HEATER_HORIZON = 10.0  # simulated seconds between plate readings the heater cap must cover
STATUS_LED = "status_led"
STATUS_LED_HZ = 100  # the LED is only ever fully on or off; any soft-PWM frequency does


def with_status_led(desc: HardwareDescription) -> HardwareDescription:
    """``desc`` with the HAT's status LED as an output channel (not a PWM connector: connector 0)."""
    pin = desc.gpio.status_led
    if STATUS_LED in desc.pwm.channels or pin in desc.pwm.pins().values():
        return desc
    led = PwmChannel(name=STATUS_LED, connector=0, pin=pin, hz=STATUS_LED_HZ, hardware=False)
    return attrs.evolve(desc, pwm=attrs.evolve(desc.pwm, channels={**desc.pwm.channels, STATUS_LED: led}))


@attrs.define
class Lease:
    owner: Any
    owner_name: str
    silent_for: float = 0.0


class PwmDriver(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend: Any = None
        self.desc: HardwareDescription | None = None
        self.pins: dict[str, int] = {}
        self.unit = ""
        self.clock = Clock()
        self.bridge: Any = None
        self.supervisor: Any = None
        self.leases: dict[str, Lease] = {}
        self.duties: dict[str, float] = {}
        self.heater_request = 0.0
        self.heater_limits: HeaterLimits | None = None
        self.plate: PlateReading | None = None
        self.pump_guard = PumpGuard(max_fill_ml=1e9)
        self.pump_generation: dict[str, int] = {}
        self.sim: Any = None

    # --- setup ----------------------------------------------------------------------------------------

    def receiveMsg_BootDriver(self, msg: BootDriver, sender: Any) -> None:
        logs.ship(self, None, msg.node)  # hold this driver's log lines until the bridge is known
        if self.backend is not None:
            return
        self.supervisor = sender
        self.unit = msg.node.unit
        self.clock = Clock(time_scale=msg.node.time_scale, anchor=msg.node.clock_anchor)
        try:
            self.desc = with_status_led(hardware_access.description(msg.hardware))
            self.pins = self.desc.pwm.pins()
            self.backend = hardware_access.open_pwm(msg.hardware, self.desc)
        except Exception as e:  # no pigpiod, wrong wiring: say so; outputs stay untouched (nothing is open)
            self.send(sender, DriverFailed(driver="pwm", error=f"PWM: {e}"))
            return
        s = self.desc.safety
        self.heater_limits = HeaterLimits(s.heater_reduce_above_c, s.heater_disable_above_c, s.heater_shutdown_above_c)
        self.pump_guard = PumpGuard(max_fill_ml=self.desc.vessel.max_fill_ml)
        for name in self.pins:
            self._apply(name, 0.0, report=False)
        self.wakeupAfter(TICK_SECONDS)
        self._report()

    def receiveMsg_Wire(self, msg: Wire, _sender: Any) -> None:
        logs.ship(self, msg.bridge, msg.node)  # this driver's log lines reach the leader's database
        self.bridge, self.supervisor, self.sim = msg.bridge, msg.supervisor, msg.sim
        self._mirror()

    # --- leases -----------------------------------------------------------------------------------------

    def receiveMsg_AcquireChannel(self, msg: AcquireChannel, sender: Any) -> None:
        if self.backend is None:
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error="the PWM driver has no hardware (see `pio status`)"))
            return
        if msg.channel not in self.pins:
            known = ", ".join(self.pins)
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error=f"no PWM channel {msg.channel!r}; channels are {known}"))
            return
        held = self.leases.get(msg.channel)
        if held is not None and held.owner != sender:
            self.send(
                sender,
                Reply(request_id=msg.request_id, ok=False, error=f"PWM channel {msg.channel} is held by {held.owner_name}"),
            )
            return
        self.leases[msg.channel] = Lease(owner=sender, owner_name=msg.owner)
        self.send(sender, Reply(request_id=msg.request_id, ok=True, result=msg.channel))
        self._report()

    def receiveMsg_ReleaseChannel(self, msg: ReleaseChannel, sender: Any) -> None:
        lease = self.leases.get(msg.channel)
        if lease is not None and lease.owner == sender:
            self._release(msg.channel)

    def receiveMsg_ReleaseOwner(self, msg: ReleaseOwner, _sender: Any) -> None:
        for channel, lease in list(self.leases.items()):
            if lease.owner == msg.owner:
                log.info("%s stopped: %s output forced to 0", lease.owner_name, channel)
                self._release(channel)

    def receiveMsg_RenewLease(self, _msg: RenewLease, sender: Any) -> None:
        for lease in self.leases.values():
            if lease.owner == sender:
                lease.silent_for = 0.0

    # --- outputs ----------------------------------------------------------------------------------------

    def receiveMsg_SetDuty(self, msg: SetDuty, sender: Any) -> None:
        lease = self.leases.get(msg.channel)
        if lease is None or lease.owner != sender:
            log.warning("refused duty %.1f on %s: the sender does not hold the channel", msg.duty, msg.channel)
            return
        lease.silent_for = 0.0
        if not math.isfinite(msg.duty):
            # min/max would turn NaN into 100 %: a broken control loop must never mean full power.
            log.error("refused duty %r on %s from %s: not a number; output set to 0", msg.duty, msg.channel, lease.owner_name)
            self._apply(msg.channel, 0.0)
            return
        duty = max(0.0, min(100.0, msg.duty))
        if msg.channel == HEATER:
            self.heater_request = duty
            self._apply_heater()
            return
        if msg.channel in PUMPS:
            self._arm_pump_stop(msg.channel, duty, msg.seconds)
            if self.sim is not None and duty > 0 and msg.seconds is not None:
                self.send(self.sim, TimedPumpRun(channel=msg.channel, seconds=msg.seconds))
        self._apply(msg.channel, duty)

    def _arm_pump_stop(self, channel: str, duty: float, seconds: float | None) -> None:
        generation = self.pump_generation.get(channel, 0) + 1
        self.pump_generation[channel] = generation
        if duty <= 0:
            return
        requested = seconds if seconds is not None else self.pump_guard.max_on_seconds_ceiling
        limit = self.pump_guard.max_on_seconds(requested)
        self.wakeupAfter(self.clock.real_delay(limit), payload=("pump-stop", channel, generation, limit, requested))

    def receiveMsg_PlateReading(self, msg: PlateReading, _sender: Any) -> None:
        self.plate = msg
        self._apply_heater()

    def _apply_heater(self) -> None:
        if HEATER not in self.pins or self.heater_limits is None:
            return
        reading = self.plate
        fresh = reading is not None and self.clock.now() - reading.at <= PLATE_READING_MAX_AGE
        if self.heater_request <= 0:
            self._apply(HEATER, 0.0)
            return
        if not fresh or reading is None:
            self._heater_off("no recent heater-plate reading: heater held off")
            return
        decision = heater_decision(reading.celsius, self.heater_request, self.heater_limits, horizon_s=HEATER_HORIZON)
        if decision.tier in ("disable", "shutdown", "sensor_failed"):
            self._heater_off(decision.message)
        elif decision.tier == "reduce":
            log.warning("heater: %s", decision.message)
        self._apply(HEATER, decision.duty)

    def _heater_off(self, reason: str) -> None:
        if self.duties.get(HEATER, 0.0) > 0:
            log.error("heater off: %s", reason)
        self._apply(HEATER, 0.0)

    def receiveMsg_ReadHallEdges(self, msg: ReadHallEdges, sender: Any) -> None:
        if self.backend is None:
            return
        self.send(sender, HallEdges(request_id=msg.request_id, edges=self.backend.hall_edges(), at=self.clock.now()))

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, _sender: Any) -> None:
        if isinstance(msg.payload, tuple) and msg.payload[0] == "pump-stop":
            _, channel, generation, limit, requested = msg.payload
            if self.pump_generation.get(channel) == generation and self.duties.get(channel, 0.0) > 0:
                # The owner had (limit - requested) of slack to stop the pump. At an accelerated clock that
                # slack can be a few milliseconds of real time, which a healthy owner's stop may miss (a
                # simulated device has ended the run on time by then: TimedPumpRun); only a miss by a
                # humanly long margin means the owner failed.
                slack_real_s = (limit - requested) / self.clock.time_scale
                level = logging.DEBUG if self.sim is not None and slack_real_s < 0.05 else logging.WARNING
                log.log(level, "%s pump ran its maximum on-time (%.1f s): stopped", channel, limit)
                self._apply(channel, 0.0)
            return
        self.wakeupAfter(TICK_SECONDS)
        for channel, lease in list(self.leases.items()):
            lease.silent_for += TICK_SECONDS
            if lease.silent_for > LEASE_SECONDS:
                log.warning("%s stopped renewing its lease on %s: output forced to 0", lease.owner_name, channel)
                self._release(channel)
        if self.duties.get(HEATER, 0.0) > 0:
            self._apply_heater()  # readings that stop arriving switch the heater off

    def receiveMsg_ActorExitRequest(self, _msg: Any, _sender: Any) -> None:
        if self.backend is not None:
            for name in self.pins:
                self._apply(name, 0.0, report=False)
            try:
                self.backend.close()
            except Exception as e:
                log.error("closing the PWM backend failed: %s", e)

    # --- internals ----------------------------------------------------------------------------------

    def _release(self, channel: str) -> None:
        self.leases.pop(channel, None)
        if channel == HEATER:
            self.heater_request = 0.0
        self.pump_generation[channel] = self.pump_generation.get(channel, 0) + 1
        self._apply(channel, 0.0)

    def _apply(self, channel: str, duty: float, report: bool = True) -> None:
        if self.backend is None:
            return
        try:
            self.backend.set_duty(self.pins[channel], duty)
        except Exception as e:
            log.error("setting %s to %.1f%% failed: %s", channel, duty, e)
            return
        changed = self.duties.get(channel) != duty
        self.duties[channel] = duty
        if changed and report:
            if channel != STATUS_LED:
                self._mirror()
            self._report()

    def _mirror(self) -> None:
        if self.bridge is None:
            return
        on = {str(self.pins[name]): round(duty, 2) for name, duty in self.duties.items() if duty > 0 and name != STATUS_LED}
        topic = topics.job_topic(self.unit, topics.NO_EXPERIMENT, "pwms", "dc")
        self.send(self.bridge, Publish(topic=topic, payload=json.dumps(on), retain=True))

    def _report(self) -> None:
        if self.supervisor is not None:
            owners = {ch: lease.owner_name for ch, lease in self.leases.items()}
            self.send(self.supervisor, DriverStatus(driver="pwm", outputs=dict(self.duties), owners=owners))
