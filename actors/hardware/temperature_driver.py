"""The temperature driver actor: owns the heater plate's TMP1075.

It answers readings on request, and every few simulated seconds sends the plate temperature to the PWM
driver, whose heater safety tiers depend on it (no reading, no heat). A failed read is sent as ``None``.
"""

from __future__ import annotations

import time
from typing import Any

from thespian.actors import ActorTypeDispatcher, WakeupMessage

from actors import logs
from actors.clock import Clock, Ticker
from actors.hardware import hardware_access
from actors.messages import BootDriver, DriverFailed, PlateReading, ReadTemperature, Reply, Wire

log = logs.get("temperature_driver")

PLATE_EVERY_SECONDS = 5.0  # simulated seconds between plate readings sent to the PWM driver


class TemperatureDriver(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chip: Any = None
        self.clock = Clock()
        self.pwm: Any = None
        self.ticker: Ticker | None = None
        self.failing = False

    def receiveMsg_BootDriver(self, msg: BootDriver, sender: Any) -> None:
        logs.ship(self, None, msg.node)  # hold this driver's log lines until the bridge is known
        if self.chip is not None:
            return
        self.clock = Clock(time_scale=msg.node.time_scale, anchor=msg.node.clock_anchor)
        try:
            desc = hardware_access.description(msg.hardware)
            self.chip = hardware_access.temperature_chip(hardware_access.open_i2c(msg.hardware), desc)
        except Exception as e:
            self.send(sender, DriverFailed(driver="temperature", error=f"temperature sensor: {e}"))
            return
        self.ticker = Ticker(self.clock.real_delay(PLATE_EVERY_SECONDS), start=time.monotonic())
        self.wakeupAfter(self.ticker.next_delay(time.monotonic()))

    def receiveMsg_Wire(self, msg: Wire, _sender: Any) -> None:
        logs.ship(self, msg.bridge, msg.node)  # this driver's log lines reach the leader's database
        self.pwm = msg.pwm

    def receiveMsg_ReadTemperature(self, msg: ReadTemperature, sender: Any) -> None:
        celsius, error = self._read()
        self.send(sender, Reply(request_id=msg.request_id, ok=error is None, error=error, result=celsius))

    def receiveMsg_WakeupMessage(self, _msg: WakeupMessage, _sender: Any) -> None:
        if self.ticker is not None:
            self.wakeupAfter(self.ticker.next_delay(time.monotonic()))
        celsius, _ = self._read()
        if self.pwm is not None:
            self.send(self.pwm, PlateReading(celsius=celsius, at=self.clock.now()))

    def _read(self) -> tuple[float | None, str | None]:
        if self.chip is None:
            return None, "the temperature driver has no sensor (see `pio status`)"
        try:
            celsius = float(self.chip.read_celsius())
        except Exception as e:
            if not self.failing:
                log.error("heater plate temperature read failed: %s", e)
            self.failing = True
            return None, str(e)
        if self.failing:
            log.info("heater plate temperature readable again")
        self.failing = False
        return celsius, None
