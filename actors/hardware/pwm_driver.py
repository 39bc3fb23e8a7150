"""The PWM driver actor: sole owner of the node's PWM outputs (stirring, pumps, heater) and of the
hall-sensor input that shares the same GPIO connection.

Safety lives here, not in callers:
- every output is zeroed when the driver starts and when it stops;
- a channel is leased to one job at a time; only the holder may set it;
- when the holder stops, crashes (the supervisor sends ``ReleaseOwner``) or misses its lease renewals
  (a hung job), the channel goes to 0 at once.
The published ``pwms/dc`` mirror (``{pin: duty}``, non-zero only) shows anyone what is on.
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
from actors.hardware.description import PWM_PINS
from actors.hardware.pwm_backend import PwmBackend, SimPwmBackend
from actors.messages import (
    AcquireChannel,
    Boot,
    DriverStatus,
    HallEdges,
    Publish,
    ReadHallEdges,
    ReleaseChannel,
    ReleaseOwner,
    RenewLease,
    Reply,
    SetDuty,
    SimFault,
    Wire,
)

log = logs.get("pwm_driver")

LEASE_SECONDS = 10.0  # real seconds without a renewal before a held channel is forced to 0
TICK_SECONDS = 1.0


@attrs.define
class Lease:
    owner: Any
    owner_name: str
    silent_for: float = 0.0


class PwmDriver(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend: PwmBackend | None = None
        self.clock = Clock()
        self.unit = ""
        self.bridge: Any = None
        self.supervisor: Any = None
        self.leases: dict[str, Lease] = {}
        self.duties: dict[str, float] = {name: 0.0 for name in PWM_PINS}

    def receiveMsg_Boot(self, msg: Boot, sender: Any) -> None:
        if self.backend is not None:
            return
        cfg = msg.config
        self.unit = cfg.unit
        self.supervisor = sender
        if cfg.hardware != "sim":
            # Real backends (pigpio, lgpio) arrive with the hardware layer; refuse rather than guess.
            log.error("hardware %r has no PWM backend yet; only 'sim' is supported", cfg.hardware)
            return
        self.clock = Clock(time_scale=cfg.time_scale, anchor=cfg.clock_anchor)
        self.backend = SimPwmBackend(self.clock)
        for name in PWM_PINS:
            self._apply(name, 0.0)
        self.wakeupAfter(TICK_SECONDS)

    def receiveMsg_Wire(self, msg: Wire, _sender: Any) -> None:
        self.bridge, self.supervisor = msg.bridge, msg.supervisor
        self._mirror()

    def receiveMsg_AcquireChannel(self, msg: AcquireChannel, sender: Any) -> None:
        if msg.channel not in PWM_PINS:
            known = ", ".join(PWM_PINS)
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
        self._apply(msg.channel, max(0.0, min(100.0, msg.duty)))

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

    def receiveMsg_ReadHallEdges(self, msg: ReadHallEdges, sender: Any) -> None:
        if self.backend is None:
            return
        edges = self.backend.hall_edges()
        self.send(sender, HallEdges(request_id=msg.request_id, edges=edges, at=self.clock.now()))

    def receiveMsg_SimFault(self, msg: SimFault, sender: Any) -> None:
        if isinstance(self.backend, SimPwmBackend):
            try:
                self.backend.set_fault(msg.knob, msg.on)
            except ValueError as e:
                self.send(sender, Reply(request_id=msg.request_id, ok=False, error=str(e)))
                return
        self.send(sender, Reply(request_id=msg.request_id, ok=True))

    def receiveMsg_WakeupMessage(self, _msg: WakeupMessage, _sender: Any) -> None:
        self.wakeupAfter(TICK_SECONDS)
        for channel, lease in list(self.leases.items()):
            lease.silent_for += TICK_SECONDS
            if lease.silent_for > LEASE_SECONDS:
                log.warning("%s stopped renewing its lease on %s: output forced to 0", lease.owner_name, channel)
                self._release(channel)

    def receiveMsg_ActorExitRequest(self, _msg: Any, _sender: Any) -> None:
        if self.backend is not None:
            for name in PWM_PINS:
                self._apply(name, 0.0, report=False)
            self.backend.close()

    # --- internals ----------------------------------------------------------------------------------

    def _release(self, channel: str) -> None:
        self.leases.pop(channel, None)
        self._apply(channel, 0.0)

    def _apply(self, channel: str, duty: float, report: bool = True) -> None:
        if self.backend is None:
            return
        self.backend.set_duty(PWM_PINS[channel], duty)
        changed = self.duties.get(channel) != duty
        self.duties[channel] = duty
        if changed and report:
            self._mirror()
            self._report()

    def _mirror(self) -> None:
        if self.bridge is None:
            return
        on = {str(PWM_PINS[name]): round(duty, 2) for name, duty in self.duties.items() if duty > 0}
        topic = topics.job_topic(self.unit, topics.NO_EXPERIMENT, "pwms", "dc")
        self.send(self.bridge, Publish(topic=topic, payload=json.dumps(on), retain=True))

    def _report(self) -> None:
        if self.supervisor is not None:
            owners = {ch: lease.owner_name for ch, lease in self.leases.items()}
            self.send(self.supervisor, DriverStatus(driver="pwm", outputs=dict(self.duties), owners=owners))
