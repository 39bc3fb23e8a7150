"""The LED driver actor: owns LED pockets A-D (the DAC43608 on HAT 1.0, the HAT MCU on 1.1+).

Every LED is off when the driver starts and when it stops. The IR LED is capped (the model's limit,
90 %) to protect it. The retained ``leds/intensity`` state (``{"A": x, ...}``) shows what is lit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from thespian.actors import ActorTypeDispatcher

from actors import logs, topics
from actors.hardware import hardware_access
from actors.hardware.description import HardwareDescription
from actors.hardware.safety import cap_ir_intensity
from actors.messages import AllLedsOff, BootDriver, DriverFailed, DriverStatus, Publish, Reply, SetLed, Wire

log = logs.get("led_driver")

POCKETS = ("A", "B", "C", "D")


class LedDriver(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chip: Any = None
        self.desc: HardwareDescription | None = None
        self.unit = ""
        self.bridge: Any = None
        self.supervisor: Any = None
        self.intensity: dict[str, float] = {p: 0.0 for p in POCKETS}

    def receiveMsg_BootDriver(self, msg: BootDriver, sender: Any) -> None:
        logs.ship(self, None, msg.node)  # hold this driver's log lines until the bridge is known
        if self.chip is not None:
            return
        self.supervisor = sender
        self.unit = msg.node.unit
        try:
            self.desc = hardware_access.description(msg.hardware)
            self.chip = hardware_access.led_chip(hardware_access.open_i2c(msg.hardware), self.desc)
            for pocket in POCKETS:
                self._set(pocket, 0.0)
        except Exception as e:
            self.chip = None
            self.send(sender, DriverFailed(driver="led", error=f"LED driver: {e}"))

    def receiveMsg_Wire(self, msg: Wire, _sender: Any) -> None:
        logs.ship(self, msg.bridge, msg.node)  # this driver's log lines reach the leader's database
        self.bridge, self.supervisor = msg.bridge, msg.supervisor
        self._publish()

    def receiveMsg_SetLed(self, msg: SetLed, sender: Any) -> None:
        error = self._request(msg.channel, msg.intensity)
        self.send(sender, Reply(request_id=msg.request_id, ok=error is None, error=error, result=self.intensity.get(msg.channel)))

    def _request(self, pocket: str, intensity: float) -> str | None:
        if self.chip is None or self.desc is None:
            return "the LED driver has no hardware (see `pio status`)"
        if pocket not in POCKETS:
            return f"no LED channel {pocket!r}; channels are A, B, C, D"
        if not (isinstance(intensity, (int, float)) and math.isfinite(intensity) and 0 <= intensity <= 100):
            return f"LED intensity must be a number from 0 to 100 %, got {intensity!r}"
        if pocket == self.desc.leds.ir:
            intensity, warning = cap_ir_intensity(intensity, self.desc.safety.ir_led_max_intensity_pct)
            if warning:
                log.warning(warning)
        try:
            self._set(pocket, intensity)
        except Exception as e:
            return str(e)
        return None

    def receiveMsg_AllLedsOff(self, msg: AllLedsOff, _sender: Any) -> None:
        log.warning("all LEDs off: %s", msg.reason)
        for pocket in POCKETS:
            try:
                self._set(pocket, 0.0)
            except Exception as e:
                log.error("turning LED %s off failed: %s", pocket, e)

    def receiveMsg_ActorExitRequest(self, _msg: Any, _sender: Any) -> None:
        for pocket in POCKETS:
            try:
                self._set(pocket, 0.0, publish=False)
            except Exception:
                pass

    def _set(self, pocket: str, intensity: float, publish: bool = True) -> None:
        assert self.desc is not None
        self.chip.set_intensity(hardware_access.led_output(self.desc, pocket), intensity)
        changed = self.intensity.get(pocket) != intensity
        self.intensity[pocket] = intensity
        if changed and publish:
            self._publish()

    def _publish(self) -> None:
        if self.bridge is not None:
            topic = topics.leds_topic(self.unit)
            self.send(self.bridge, Publish(topic=topic, payload=json.dumps(self.intensity), retain=True))
        if self.supervisor is not None:
            self.send(self.supervisor, DriverStatus(driver="led", outputs=dict(self.intensity), owners={}))
