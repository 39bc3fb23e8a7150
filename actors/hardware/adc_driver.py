"""The ADC driver actor: owns the analog inputs (photodiodes pd1..pd4, the aux rail, the HAT version).

Jobs ask for readings by signal name; the chips behind them (ADS1115, ADS1114, the HAT MCU) come from
the hardware description. Over-voltage protection lives here: a photodiode above 3.0 V is warned about,
above 3.2 V every LED is turned off and the supervisor is told (it stops the OD job).
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorTypeDispatcher

from actors import logs
from actors.clock import Clock
from actors.hardware import hardware_access
from actors.hardware.safety import adc_trip
from actors.messages import AdcReading, AdcTrip, BootDriver, DriverFailed, ReadAdc, Wire
from actors.od_processing import trimmed_mean

log = logs.get("adc_driver")


class AdcDriver(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: dict[str, tuple[Any, int]] = {}
        self.clock = Clock()
        self.supervisor: Any = None
        self.led: Any = None

    def receiveMsg_BootDriver(self, msg: BootDriver, sender: Any) -> None:
        logs.ship(self, None, msg.node)  # hold this driver's log lines until the bridge is known
        if self.inputs:
            return
        self.supervisor = sender
        self.clock = Clock(time_scale=msg.node.time_scale, anchor=msg.node.clock_anchor)
        try:
            desc = hardware_access.description(msg.hardware)
            self.inputs = hardware_access.adc_chips(hardware_access.open_i2c(msg.hardware), desc)
        except Exception as e:
            self.send(sender, DriverFailed(driver="adc", error=f"ADC: {e}"))

    def receiveMsg_Wire(self, msg: Wire, _sender: Any) -> None:
        logs.ship(self, msg.bridge, msg.node)  # this driver's log lines reach the leader's database
        self.supervisor = msg.supervisor

    def receiveMsg_ReadAdc(self, msg: ReadAdc, sender: Any) -> None:
        samples: dict[str, list[float]] = {}
        error = None
        unknown = [s for s in msg.signals if s not in self.inputs]
        if unknown:
            known = ", ".join(sorted(self.inputs)) or "none"
            error = f"no analog input {unknown[0]!r}; inputs are {known}"
        else:
            # Interleaved, so a drift during the reading (an LED warming) affects every signal alike.
            for _ in range(max(1, msg.samples)):
                for signal in msg.signals:
                    chip, channel = self.inputs[signal]
                    try:
                        samples.setdefault(signal, []).append(float(chip.read_volts(channel)))
                    except Exception as e:
                        error = str(e)
                        break
                if error is not None:
                    break
        volts = {} if error is not None else {s: trimmed_mean(v) for s, v in samples.items()}
        at = self.clock.now()
        self.send(sender, AdcReading(request_id=msg.request_id, volts=volts, at=at, error=error))
        for signal, value in volts.items():
            if signal.startswith("pd"):
                self._guard(signal, value)

    def _guard(self, signal: str, volts: float) -> None:
        status = adc_trip(volts)
        if status == "warn":
            log.warning("%s reads %.3f V, close to the ADC's limit", signal, volts)
        elif status == "trip":
            log.error("%s reads %.3f V, above 3.2 V: LEDs off, OD reading stopped", signal, volts)
            if self.supervisor is not None:
                self.send(self.supervisor, AdcTrip(signal=signal, volts=volts))
