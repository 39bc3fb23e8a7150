"""The simulated unit as a device: real drivers on one side, one Vessel on the other.

Everything goes through what production uses: PWM and the hall sensor through :class:`PigpioPwmBackend`
(the unmodified pigpio client) to the device's pigpiod, chips through our chip drivers (and the
Adafruit ADS1x15 driver) over :class:`RemoteI2CBus`. Simulated time is a settable number, so a minute
of stirring or heating passes instantly; anything that arrives asynchronously (hall edges) is waited for
with a deadline poll, never a fixed sleep.

The last section checks the two hooks :mod:`actors.hardware.sim_pigpiod` gained for this (``on_pwm`` and
edge sources) directly with the pigpio client.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pigpio
import pytest

from actors.hardware.chips import ChipError
from actors.hardware.chips.ads1x15 import ADS1114Adc, ADS1115Adc
from actors.hardware.chips.dac43608 import DAC43608
from actors.hardware.chips.pico import PicoAdc, PicoDac
from actors.hardware.chips.tmp1075 import TMP1075
from actors.hardware.description import HardwareDescription, load
from actors.hardware.pigpio_backend import PigpioPwmBackend
from actors.hardware.sim_device import SimDevice, SimEndpoints
from actors.hardware.sim_i2c_server import RemoteI2CBus
from actors.hardware.sim_pigpiod import FakePigpiod
from actors.hardware.vessel import FAULTS as VESSEL_FAULTS
from actors.hardware.vessel import Vessel, VesselParams
from tests.hardware.test_sim_i2c_server import listening_addresses
from tests.support.waiting import wait_until

CONFIGS = {
    "hat1.0": ("1.0", "pioreactor_20ml_1.0"),  # ADS1115 + DAC43608
    "hat1.2": ("1.2", "pioreactor_20ml_1.0"),  # the HAT MCU as ADC and LED driver
    "hat1.2-v1.5": ("1.2", "pioreactor_40ml_1.5"),  # ADS1114 per photodiode, MCU for aux and LEDs
}
LETTERS = "ABCDEFGH"


class SimNow:
    """The node clock in tests: simulated seconds that move only when the test says so."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@attrs.define
class Rig:
    desc: HardwareDescription
    now: SimNow
    device: SimDevice
    endpoints: SimEndpoints
    pwm: PigpioPwmBackend
    bus: RemoteI2CBus

    def pin(self, channel: str) -> int:
        return self.desc.pwm.channels[channel].pin

    def set_pwm(self, channel: str, duty: float) -> None:
        self.pwm.set_duty(self.pin(channel), duty)

    def adc(self, signal: str) -> tuple[Any, int]:
        spec = self.desc.adc[signal]
        if spec.chip == "ads1115":
            return ADS1115Adc(self.bus, spec.address), spec.channel
        if spec.chip == "ads1114":
            return ADS1114Adc(self.bus, spec.address, sleep=lambda s: None), spec.channel
        return PicoAdc(self.bus, spec.address), spec.channel

    def read(self, signal: str) -> float:
        chip, channel = self.adc(signal)
        return float(chip.read_volts(channel))

    def set_led(self, pocket: str, pct: float) -> None:
        leds = self.desc.leds
        driver: Any = DAC43608(self.bus, leds.address) if leds.chip == "dac43608" else PicoDac(self.bus, leds.address)
        driver.set_intensity(LETTERS[leds.channels[pocket]], pct)

    def plate(self) -> float:
        return TMP1075(self.bus, self.desc.temperature.address).read_celsius()

    def truth(self) -> dict[str, Any]:
        return self.device.truth()

    def edges_delivered(self) -> int:
        """Wait until every edge the vessel has made has reached the backend; return the backend's count."""
        made = self.truth()["hall_edges"]
        wait_until(lambda: self.pwm.hall_edges() >= made, timeout=10, message=f"{made} hall edges at the client")
        return self.pwm.hall_edges()


def vessel_for(desc: HardwareDescription, seed: int = 7) -> Vessel:
    return Vessel(
        VesselParams(
            seed=seed,
            capacity_ml=desc.vessel.capacity_ml,
            max_fill_ml=desc.vessel.max_fill_ml,
            efflux_ml=desc.vessel.default_efflux_tube_ml,
            initial_volume_ml=desc.vessel.default_efflux_tube_ml,
            ir_led_channel=desc.leds.ir,
        )
    )


@pytest.fixture(autouse=True)
def _pigpio_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pigpio, "exceptions", True)  # the client's default; other tests may flip it


@contextlib.contextmanager
def rig_for(hat: str, model: str) -> Iterator[Rig]:
    desc = load(hat, model)
    now = SimNow()
    device = SimDevice(desc, vessel_for(desc), now)
    endpoints = device.start()
    pwm = bus = None
    try:
        frequencies = {ch.pin: int(round(ch.hz)) for ch in desc.pwm.channels.values()}
        pwm = PigpioPwmBackend(
            endpoints.host, endpoints.pigpio_port, frequencies=frequencies, hall_pin=desc.gpio.hall_sensor
        )
        bus = RemoteI2CBus(endpoints.host, endpoints.i2c_port)
        yield Rig(desc=desc, now=now, device=device, endpoints=endpoints, pwm=pwm, bus=bus)
    finally:
        if pwm is not None:
            pwm.close()  # pigpio clients before their daemon (see sim_pigpiod)
        if bus is not None:
            bus.close()
        device.stop()


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    with rig_for(*CONFIGS[request.param]) as r:
        yield r


@pytest.fixture
def rig12() -> Iterator[Rig]:
    with rig_for(*CONFIGS["hat1.2"]) as r:
        yield r


# == actuators and sensors through the real drivers ===================================================
def test_stirring_streams_one_falling_edge_per_revolution(rig: Rig) -> None:
    assert rig.pwm.hall_edges() == 0
    rig.set_pwm("stirring", 30)
    rig.now.advance(60)
    truth = rig.truth()
    revolutions = rig.device.vessel.motor.revolutions
    assert 450 < revolutions < 520  # ~500 RPM at 30 % for a minute, less the spin-up
    assert rig.edges_delivered() == truth["hall_edges"] == int(revolutions)
    assert truth["rpm"] == pytest.approx(504, abs=5)
    rig.now.advance(30)
    assert rig.edges_delivered() == rig.truth()["hall_edges"] == int(rig.device.vessel.motor.revolutions)


def test_hall_ticks_are_simulated_microseconds(rig12: Rig) -> None:
    """The tick follows the node clock, so an RPM computed from tick spacing is the simulated RPM."""
    pi = pigpio.pi("127.0.0.1", rig12.endpoints.pigpio_port, show_errors=False)
    ticks: list[int] = []
    cb = pi.callback(rig12.desc.gpio.hall_sensor, pigpio.FALLING_EDGE, lambda g, level, tick: ticks.append(tick))
    try:
        rig12.set_pwm("stirring", 30)
        rig12.now.advance(5)  # spin up
        spun_up = rig12.edges_delivered()
        wait_until(lambda: len(ticks) >= spun_up, timeout=10)  # this client sees the same stream
        rig12.now.advance(60)
        total = rig12.edges_delivered()
        wait_until(lambda: len(ticks) >= total, timeout=10)
        assert len(ticks) == total
        steady = ticks[spun_up - 1 :]  # from the last spin-up edge: spans cover the steady minute
        spans = [pigpio.tickDiff(a, b) for a, b in zip(steady, steady[1:])]
        rpm_from_ticks = 60e6 * len(spans) / sum(spans)
        assert rpm_from_ticks == pytest.approx(rig12.truth()["rpm"], rel=0.02)
    finally:
        cb.cancel()
        pi.stop()


def test_heater_warms_the_plate_read_through_tmp1075(rig: Rig) -> None:
    start = rig.plate()
    assert start == pytest.approx(22, abs=0.5)  # ambient
    rig.set_pwm("heater", 100)
    readings = [start]
    for _ in range(4):
        rig.now.advance(30)
        readings.append(rig.plate())
        assert readings[-1] == pytest.approx(rig.truth()["plate_c"], abs=0.3)  # noise 0.03 °C + 1/16 °C steps
    assert readings == sorted(readings) and readings[-1] - start > 10
    rig.set_pwm("heater", 0)
    rig.now.advance(300)
    assert rig.plate() < readings[-1] - 5  # and cools once off


def test_ir_led_drives_ref_through_the_real_adc(rig: Rig) -> None:
    dark = rig.read("pd1")
    assert dark < 0.01  # the dark offset with the IR LED off
    rig.set_led(rig.desc.leds.ir, 80)
    assert rig.truth()["leds"][rig.desc.leds.ir] == pytest.approx(80, abs=0.5)  # through the chip's codes
    vessel = rig.device.vessel
    expected = vessel.optics.mean_voltages(vessel.od, vessel.led(rig.desc.leds.ir), vessel.liquid_c)
    ref = rig.read("pd1")
    assert ref == pytest.approx(expected["REF"], rel=0.15) and 0.07 < ref < 0.14
    assert rig.read("pd2") == pytest.approx(expected["90"], rel=0.3)  # 90° scatter of a fresh culture
    rig.set_led(rig.desc.leds.ir, 0)
    assert rig.read("pd1") < 0.01


def test_aux_and_version_read_plausible_values(rig: Rig) -> None:
    assert rig.read("aux") / 0.134 == pytest.approx(5.0, abs=0.02)
    assert 0.1 < rig.read("version") < 0.3


def test_pumps_change_the_vessel_volume(rig: Rig) -> None:
    v0 = rig.truth()["volume_ml"]
    rig.set_pwm("media", 100)
    rig.now.advance(10)
    rig.set_pwm("media", 0)  # the vessel ran 10 s of media before this command took effect
    added = rig.truth()["volume_ml"] - v0
    assert 0.75 < added < 1.1  # 0.0911 ml/s, within the simulated pump's gain error
    rig.set_pwm("alt_media", 100)
    rig.now.advance(10)
    rig.set_pwm("alt_media", 0)
    assert rig.truth()["alt_media_fraction"] > 0.04
    rig.set_pwm("waste", 100)
    rig.now.advance(60)
    rig.set_pwm("waste", 0)
    assert rig.truth()["volume_ml"] == pytest.approx(rig.desc.vessel.default_efflux_tube_ml)
    rig.now.advance(60)
    assert rig.truth()["volume_ml"] == pytest.approx(rig.desc.vessel.default_efflux_tube_ml)  # pumps off


def test_vessel_follows_the_clock_and_never_runs_backwards(rig12: Rig) -> None:
    assert rig12.truth()["elapsed_s"] == 0
    rig12.now.advance(12.5)
    rig12.plate()  # any device access advances the vessel
    assert rig12.device.vessel.elapsed_s == 12.5
    rig12.now.advance(-100)  # a clock stepping back does not rewind the vessel
    assert rig12.truth()["elapsed_s"] == 12.5
    rig12.now.advance(100 + 7.5)
    assert rig12.truth()["elapsed_s"] == 20


def test_truth_reports_the_true_state(rig12: Rig) -> None:
    truth = rig12.truth()
    for key in ("od", "growth_rate_per_h", "volume_ml", "alt_media_fraction", "liquid_c", "plate_c", "rpm",
                "overflowed", "elapsed_s"):
        assert key in truth
    assert truth["overflowed"] is False and truth["od"] == pytest.approx(rig12.device.vessel.od)


# == fault knobs ======================================================================================
def test_fault_knobs_are_listed_and_checked(rig: Rig) -> None:
    knobs = rig.device.faults()
    for knob in (*VESSEL_FAULTS, "i2c_errors", "low_power", "missing_sensor:temperature", "missing_sensor:pd1"):
        assert knob in knobs
    for knob in knobs:
        rig.device.set_fault(knob, True)
        assert knob in rig.truth()["faults"]
    for knob in knobs:
        rig.device.set_fault(knob, False)
    assert rig.truth()["faults"] == []
    assert rig.plate() == pytest.approx(22, abs=0.5)  # everything back on the bus
    with pytest.raises(ValueError, match="unknown fault knob"):
        rig.device.set_fault("gremlins", True)


def test_i2c_errors_make_every_chip_driver_fail(rig: Rig) -> None:
    rig.device.set_fault("i2c_errors", True)
    for call in (rig.plate, lambda: rig.read("pd1"), lambda: rig.read("aux"), lambda: rig.set_led("A", 50)):
        with pytest.raises(ChipError) as info:
            call()
        assert info.value.errno in (121, None)  # None: the Adafruit driver's own probe reports the NACK
    rig.device.set_fault("i2c_errors", False)
    assert rig.plate() == pytest.approx(22, abs=0.5)
    rig.set_led("A", 50)


def test_missing_temperature_sensor_nacks_and_leaves_the_rest(rig: Rig) -> None:
    rig.device.set_fault("missing_sensor:temperature", True)
    with pytest.raises(ChipError) as info:
        rig.plate()
    assert info.value.errno == 121 and info.value.chip == "TMP1075"
    assert rig.bus.try_lock()
    try:
        assert rig.desc.temperature.address not in rig.bus.scan()
    finally:
        rig.bus.unlock()
    assert rig.read("aux") > 0.6  # the other chips still answer
    rig.device.set_fault("missing_sensor:temperature", False)
    assert rig.plate() == pytest.approx(22, abs=0.5)


def test_missing_photodiode(rig: Rig) -> None:
    """On an ADC shared with other signals the input reads 0 V; a chip of its own leaves the bus."""
    rig.set_led(rig.desc.leds.ir, 80)
    assert rig.read("pd1") > 0.05
    rig.device.set_fault("missing_sensor:pd1", True)
    if rig.desc.adc["pd1"].chip == "ads1114":
        with pytest.raises(ChipError):
            rig.read("pd1")
    else:
        assert rig.read("pd1") < 0.001
    assert rig.read("pd2") > 0.005  # the 90° photodiode is still there


def test_heater_disconnected_fails_plate_reads_and_stops_heating(rig: Rig) -> None:
    rig.set_pwm("heater", 100)
    rig.device.set_fault("heater_disconnected", True)
    with pytest.raises(ChipError) as info:
        rig.plate()
    assert info.value.errno == 121
    rig.now.advance(120)
    assert rig.truth()["plate_c"] == pytest.approx(22, abs=0.5)
    rig.device.set_fault("heater_disconnected", False)
    rig.now.advance(60)
    assert rig.plate() > 30


def test_stalled_motor_sends_no_more_edges(rig12: Rig) -> None:
    hall = rig12.desc.gpio.hall_sensor
    rig12.set_pwm("stirring", 30)
    rig12.now.advance(10)
    assert rig12.edges_delivered() > 50
    rig12.device.set_fault("stalled_motor", True)
    rig12.now.advance(30)  # the bar coasts to a stop (time constant 0.7 s): nothing left to turn after this
    before = rig12.edges_delivered()
    assert rig12.truth()["rpm"] < 1
    rig12.now.advance(60)
    rig12.device.pigpiod.poll_edge_sources()  # the daemon has now seen the whole stalled minute
    assert rig12.truth()["hall_edges"] == before
    rig12.device.pigpiod.inject_edges(hall, 1)  # a marker: frames arrive in order, so once it is seen...
    wait_until(lambda: rig12.pwm.hall_edges() >= before + 1, timeout=10)
    assert rig12.pwm.hall_edges() == before + 1  # ...nothing came before it


def test_low_power_sags_the_aux_rail(rig: Rig) -> None:
    rig.device.set_fault("low_power", True)
    assert rig.read("aux") / 0.134 == pytest.approx(4.5, abs=0.02)
    rig.device.set_fault("low_power", False)
    assert rig.read("aux") / 0.134 == pytest.approx(5.0, abs=0.02)


def test_stuck_and_clogged_pumps(rig12: Rig) -> None:
    v0 = rig12.truth()["volume_ml"]
    rig12.device.set_fault("stuck_pump:media", True)
    rig12.now.advance(10)  # duty 0, yet it pumps
    assert rig12.truth()["volume_ml"] > v0 + 0.5
    rig12.device.set_fault("stuck_pump:media", False)
    rig12.device.set_fault("clogged_pump:media", True)
    v1 = rig12.truth()["volume_ml"]
    rig12.set_pwm("media", 100)
    rig12.now.advance(10)
    rig12.set_pwm("media", 0)
    assert rig12.truth()["volume_ml"] == pytest.approx(v1)


# == exposure and lifecycle ===========================================================================
def test_servers_bind_loopback_only(rig12: Rig) -> None:
    assert listening_addresses(rig12.endpoints.pigpio_port) == {"127.0.0.1"}
    assert listening_addresses(rig12.endpoints.i2c_port) == {"127.0.0.1"}


def test_stop_leaves_no_thread_running() -> None:
    before = set(threading.enumerate())
    with rig_for(*CONFIGS["hat1.2"]) as r:
        r.set_pwm("stirring", 30)
        r.now.advance(5)
        r.edges_delivered()
        r.plate()
        ports = (r.endpoints.pigpio_port, r.endpoints.i2c_port)
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=10, message="threads left after stop()")
    assert all(listening_addresses(port) == set() for port in ports)


# == the two hooks in sim_pigpiod, with the plain pigpio client ========================================
def test_on_pwm_reports_what_each_pin_outputs() -> None:
    seen: list[tuple[int, float]] = []
    with FakePigpiod(on_pwm=lambda pin, duty: seen.append((pin, duty))) as daemon:
        pi = pigpio.pi("127.0.0.1", daemon.port, show_errors=False)
        try:
            pi.set_PWM_range(17, 1000)
            pi.set_PWM_dutycycle(17, 300)
            assert seen == [(17, 30.0)]
            pi.set_PWM_range(17, 100)  # the daemon rescales the running duty: same output, no report
            assert seen == [(17, 30.0)]
            seen.clear()
            pi.hardware_PWM(12, 250, 250_000)
            pi.hardware_PWM(18, 250, 500_000)  # 18 shares PWM0 with 12: both pins change
            assert seen == [(12, 25.0), (12, 50.0), (18, 50.0)]
            seen.clear()
            pi.hardware_PWM(12, 0, 0)  # frequency 0 stops the channel for both pins
            assert seen == [(12, 0.0), (18, 0.0)]
            seen.clear()
            pi.write(23, 1)
            pi.write(23, 0)
            pi.set_mode(17, pigpio.INPUT)  # a mode change switches soft PWM off
            assert seen == [(23, 100.0), (23, 0.0), (17, 0.0)]
            assert daemon.output_duty(17) == 0.0
        finally:
            pi.stop()


def test_a_failing_on_pwm_hook_does_not_fail_the_command() -> None:
    def broken(pin: int, duty: float) -> None:
        raise RuntimeError("wiring bug")

    with FakePigpiod(on_pwm=broken) as daemon:
        pi = pigpio.pi("127.0.0.1", daemon.port, show_errors=False)
        try:
            assert pi.set_PWM_dutycycle(17, 100) == 0
            assert pi.get_PWM_dutycycle(17) == 100
        finally:
            pi.stop()


def test_edge_bursts_are_capped_per_poll_and_the_rest_follow() -> None:
    hall = 21
    count = [500]
    with FakePigpiod(input_levels={hall: 1}, edge_poll_s=3600, max_edge_burst=300) as daemon:
        daemon.add_edge_source(hall, lambda: count[0])  # 500 edges of history: not replayed
        pi = pigpio.pi("127.0.0.1", daemon.port, show_errors=False)
        falls: list[int] = []
        rises: list[int] = []
        cb_f = pi.callback(hall, pigpio.FALLING_EDGE, lambda g, level, tick: falls.append(tick))
        cb_r = pi.callback(hall, pigpio.RISING_EDGE, lambda g, level, tick: rises.append(tick))
        try:

            def marker_then(expected: int) -> None:
                """Frames arrive in order: once a marker pulse is seen, everything before it has been."""
                daemon.inject_edges(hall, 1)
                wait_until(lambda: len(falls) >= expected + 1 and len(rises) >= expected + 1, timeout=10)
                assert len(falls) == len(rises) == expected + 1  # each edge: low, then high again

            daemon.poll_edge_sources()
            marker_then(0)
            count[0] = 1500  # a jump of simulated time: 1000 new edges
            daemon.poll_edge_sources()
            marker_then(1 + 300)
            for _ in range(4):
                daemon.poll_edge_sources()
            marker_then(2 + 1000)
            assert all(pigpio.tickDiff(a, b) >= 0 for a, b in zip(falls, falls[1:]))  # ticks never run back
        finally:
            cb_f.cancel()
            cb_r.cancel()
            pi.stop()


def test_edge_source_thread_streams_without_being_asked() -> None:
    hall = 21
    count = [0]
    with FakePigpiod(input_levels={hall: 1}) as daemon:
        daemon.add_edge_source(hall, lambda: count[0])
        pi = pigpio.pi("127.0.0.1", daemon.port, show_errors=False)
        falls: list[int] = []
        cb = pi.callback(hall, pigpio.FALLING_EDGE, lambda g, level, tick: falls.append(tick))
        try:
            count[0] = 42
            wait_until(lambda: len(falls) >= 42, timeout=10)
            count[0] = 50
            wait_until(lambda: len(falls) >= 50, timeout=10)
            with pytest.raises(ValueError):
                daemon.add_edge_source(hall, lambda: 0)
        finally:
            cb.cancel()
            pi.stop()


@pytest.mark.parametrize("timed_first", [True, False], ids=["timed-then-on", "on-then-timed"])
def test_a_timed_pump_run_stops_on_simulated_time_however_late_the_stop_command(rig12: Rig, timed_first: bool) -> None:
    # At an accelerated clock the driver's stop arrives many simulated seconds late; the device holds the
    # run to its commanded length, whichever of the two messages reaches it first.
    v0 = rig12.truth()["volume_ml"]
    if timed_first:
        rig12.device.time_pump_run("media", 10.0)
        rig12.set_pwm("media", 100)
    else:
        rig12.set_pwm("media", 100)
        rig12.device.time_pump_run("media", 10.0)
    rig12.now.advance(45)  # the stop is 35 s late
    moved = rig12.truth()["volume_ml"] - v0
    rig12.set_pwm("media", 0)
    assert 0.75 < moved < 1.1  # 10 s at ~0.0911 ml/s, not 45 s
    assert rig12.truth()["pwm"]["media"] == 0
    # An untimed run (a manual `--continuously`) is not cut short.
    rig12.set_pwm("media", 100)
    rig12.now.advance(20)
    assert rig12.truth()["volume_ml"] - v0 > moved + 1.4
    rig12.set_pwm("media", 0)
