"""How fast the simulated vessel runs: simulated vessel-hours per wall-clock second.

Why: the node clock can run faster than real time (``time_scale``), and the simulated unit must keep up
with it. Two numbers bound what a simulated node can do:

1. the Vessel model alone, advanced in 1 s steps (stirring 30 %, heater 45 %, IR LED 80 %, a 1 ml dose
   of media every 20 minutes followed by waste), i.e. the physics' own cost;
2. the same run through the :class:`~actors.hardware.sim_device.SimDevice`, reached the way a node
   reaches it: PWM through :class:`PigpioPwmBackend` (the real pigpio client), an OD reading (pd1 and
   pd2 through the real ADC driver over :class:`RemoteI2CBus`) every 5 s and a plate reading (TMP1075)
   every 5 s, the reference's cadences (hardware.md §4.3), with the daemon streaming every hall edge to
   the client. An OD reading is 1 ADC sample per photodiode, and again with Pioreactor's 40 samples.

The device here runs in this process, sharing the GIL with the drivers and the pigpio client's thread;
on a node it has a process of its own, so these device figures are a lower bound. Simulated time jumps 1 s
per step (a settable clock), so the figures measure work, not waiting.

Run: ``.venv/bin/python bench/vessel_speed.py [--hours 24] [--device-hours 2] [--hat 1.2 --model pioreactor_20ml_1.0]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from actors.hardware.chips.ads1x15 import ADS1114Adc, ADS1115Adc  # noqa: E402
from actors.hardware.chips.dac43608 import DAC43608  # noqa: E402
from actors.hardware.chips.pico import PicoAdc, PicoDac  # noqa: E402
from actors.hardware.chips.tmp1075 import TMP1075  # noqa: E402
from actors.hardware.description import HardwareDescription, load  # noqa: E402
from actors.hardware.pigpio_backend import PigpioPwmBackend  # noqa: E402
from actors.hardware.sim_device import SimDevice  # noqa: E402
from actors.hardware.sim_i2c_server import RemoteI2CBus  # noqa: E402
from actors.hardware.vessel import Vessel, VesselParams  # noqa: E402

DOSE_EVERY_S = 20 * 60
MEDIA_ON_S = 11  # ~1 ml at 0.0911 ml/s
WASTE_ON_S = 22  # twice that, as Pioreactor's waste multiplier does
READ_EVERY_S = 5


def pump_duties(t: int) -> dict[str, float]:
    """Which pumps run at second ``t`` of the schedule: media first, then waste."""
    phase = t % DOSE_EVERY_S
    return {
        "media": 100.0 if phase < MEDIA_ON_S else 0.0,
        "waste": 100.0 if MEDIA_ON_S <= phase < MEDIA_ON_S + WASTE_ON_S else 0.0,
    }


def vessel_for(desc: HardwareDescription) -> Vessel:
    return Vessel(
        VesselParams(
            seed=1,
            capacity_ml=desc.vessel.capacity_ml,
            max_fill_ml=desc.vessel.max_fill_ml,
            efflux_ml=desc.vessel.default_efflux_tube_ml,
            initial_volume_ml=desc.vessel.default_efflux_tube_ml,
            ir_led_channel=desc.leds.ir,
        )
    )


def bench_vessel(desc: HardwareDescription, hours: float) -> tuple[float, Vessel]:
    vessel = vessel_for(desc)
    vessel.set_pwm("stirring", 30)
    vessel.set_pwm("heater", 45)
    vessel.set_led(desc.leds.ir, 80)
    steps = int(hours * 3600)
    start = time.perf_counter()
    for t in range(steps):
        for pump, duty in pump_duties(t).items():
            if vessel.pwm(pump) != duty:
                vessel.set_pwm(pump, duty)
        vessel.advance(1.0)
    return time.perf_counter() - start, vessel


class SettableClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def adc_for(bus: RemoteI2CBus, desc: HardwareDescription, signal: str) -> tuple[Any, int]:
    spec = desc.adc[signal]
    if spec.chip == "ads1115":
        return ADS1115Adc(bus, spec.address), spec.channel
    if spec.chip == "ads1114":
        return ADS1114Adc(bus, spec.address), spec.channel
    return PicoAdc(bus, spec.address), spec.channel


def bench_device(desc: HardwareDescription, hours: float, od_samples: int) -> tuple[float, dict[str, Any], int, int]:
    clock = SettableClock()
    device = SimDevice(desc, vessel_for(desc), clock)
    endpoints = device.start()
    frequencies = {ch.pin: int(round(ch.hz)) for ch in desc.pwm.channels.values()}
    pins = {name: ch.pin for name, ch in desc.pwm.channels.items()}
    pwm = PigpioPwmBackend(endpoints.host, endpoints.pigpio_port, frequencies=frequencies, hall_pin=desc.gpio.hall_sensor)
    bus = RemoteI2CBus(endpoints.host, endpoints.i2c_port)
    try:
        leds = desc.leds
        led: Any = DAC43608(bus, leds.address) if leds.chip == "dac43608" else PicoDac(bus, leds.address)
        led.set_intensity("ABCDEFGH"[leds.channels[leds.ir]], 80)
        pd1, pd2 = adc_for(bus, desc, "pd1"), adc_for(bus, desc, "pd2")
        plate = TMP1075(bus, desc.temperature.address)
        pwm.set_duty(pins["stirring"], 30)
        pwm.set_duty(pins["heater"], 45)
        running = {"media": 0.0, "waste": 0.0}
        reads = 0
        steps = int(hours * 3600)
        start = time.perf_counter()
        for t in range(steps):
            for pump, duty in pump_duties(t).items():
                if running[pump] != duty:
                    pwm.set_duty(pins[pump], duty)
                    running[pump] = duty
            if t % READ_EVERY_S == 0:
                for _ in range(od_samples):
                    pd1[0].read_volts(pd1[1])
                    pd2[0].read_volts(pd2[1])
                plate.read_celsius()
                reads += 2 * od_samples + 1
            clock.t += 1.0
        truth = device.truth()  # the vessel catches up to the last second
        elapsed = time.perf_counter() - start
        deadline = time.monotonic() + 10
        while pwm.hall_edges() < truth["hall_edges"] and time.monotonic() < deadline:
            time.sleep(0.01)  # let the edge stream drain before closing
        return elapsed, truth, reads, pwm.hall_edges()
    finally:
        pwm.close()
        bus.close()
        device.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours for the bare vessel (default 24)")
    parser.add_argument("--device-hours", type=float, default=2.0, help="simulated hours through the device (default 2)")
    parser.add_argument("--hat", default="1.2")
    parser.add_argument("--model", default="pioreactor_20ml_1.0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the heater's expected 16 -> 20 Hz snap warning is noise here
    desc = load(args.hat, args.model)
    print(f"HAT {args.hat}, model {args.model}, Python {sys.version.split()[0]}; 1 s steps, stirring 30 %, heater 45 %, "
          f"IR 80 %, 1 ml dose every {DOSE_EVERY_S // 60} min")

    wall, vessel = bench_vessel(desc, args.hours)
    print(
        f"Vessel.advance alone:      {args.hours:g} sim h in {wall:.2f} s wall = {args.hours / wall:8.1f} sim h per wall s "
        f"(x{args.hours * 3600 / wall:,.0f} real time)\n"
        f"    end state: OD {vessel.od:.3f}, liquid {vessel.liquid_c:.1f} C, plate {vessel.plate_c:.1f} C, "
        f"{vessel.rpm:.0f} RPM, {vessel.volume_ml:.2f} ml, {vessel.hall_edges:,} hall edges"
    )
    for samples in (1, 40):
        wall, truth, reads, edges = bench_device(desc, args.device_hours, samples)
        h = args.device_hours
        print(
            f"SimDevice, {samples:>2} sample(s)/OD:  {h:g} sim h in {wall:.2f} s wall = {h / wall:8.1f} sim h per wall s "
            f"(x{h * 3600 / wall:,.0f} real time); {reads:,} I2C reads ({reads / wall:,.0f}/s), "
            f"{edges:,} of {truth['hall_edges']:,} hall edges at the client\n"
            f"    end state: OD {truth['od']:.3f}, liquid {truth['liquid_c']:.1f} C, plate {truth['plate_c']:.1f} C, "
            f"{truth['rpm']:.0f} RPM, {truth['volume_ml']:.2f} ml"
        )


if __name__ == "__main__":
    main()
