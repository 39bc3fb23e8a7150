"""One contract for every PWM backend: pigpio (the real client against the fake daemon, real bytes), lgpio +
sysfs (against the fake module and a temp-dir sysfs tree) and the simulated unit (the same pigpio backend
against a started :class:`~actors.hardware.sim_device.SimDevice`, which is how sim units are driven in
production).

The contract, and why:
* every pin reads 0 right after construction, even if a previous owner left it on (pigpiod and the
  kernel keep PWM running after their client dies);
* ``set_duty`` then ``duty`` round-trips to the backend's resolution, and the device agrees;
* a duty outside 0-100 % (or NaN/inf) is refused with ``ValueError`` and changes nothing -- refused
  rather than clamped so a unit bug (fraction vs percent, a runaway controller) surfaces instead of
  silently driving a heater or pump to 100 %;
* hall-sensor falling edges are counted, once each;
* ``close`` leaves every pin at 0 on the device, and may be called twice.

"The device" is observed independently of the backend under test (the fake daemon's state, the fake
chip's lines and the sysfs files, the simulated vessel's actuators), so it can be checked after ``close``.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.hardware.description import HALL_SENSOR_PIN, PWM_PINS, load
from actors.hardware.lgpio_backend import DEFAULT_HARDWARE_CHANNELS, LgpioPwmBackend
from actors.hardware.pigpio_backend import PigpioPwmBackend
from actors.hardware.pwm_backend import PwmBackend
from actors.hardware.sim_device import SimDevice
from actors.hardware.vessel import Vessel, VesselParams
from tests.support.fake_lgpio import FakeLgpio, SysfsPwmTree
from tests.support.fake_pigpiod import FakePigpiod
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

# The HAT's channels at Pioreactor's frequencies (the heater's 16 Hz becomes 20 Hz on pigpio).
FREQUENCIES: dict[int, int] = {
    PWM_PINS["stirring"]: 200,
    PWM_PINS["media"]: 250,
    PWM_PINS["alt_media"]: 250,
    PWM_PINS["waste"]: 250,
    PWM_PINS["heater"]: 16,
}
PINS = tuple(FREQUENCIES)
STIRRING = PWM_PINS["stirring"]
GPIOCHIP, PWMCHIP = 4, 2  # a Pi 5 on a 6.6 kernel: header on gpiochip4, RP1 PWM on pwmchip2
SAMPLE_DUTIES = (0.0, 0.1, 1.0, 12.5, 33.3, 50.0, 66.7, 99.9, 100.0)
BAD_DUTIES = (-0.1, -5.0, 100.01, 150.0, math.nan, math.inf, -math.inf)


# The simulated unit the sim rig drives: a HAT 1.2 with a 20 ml v1.5 vessel, as a sim node would run it.
SIM_HAT, SIM_MODEL = "1.2", "pioreactor_20ml_1.5"
SIM_SPIN_DUTY, SIM_SPIN_S = 60.0, 5.0  # stir this hard for this long (simulated) to make hall edges


class SimNow:
    """The node clock of the simulated unit: simulated seconds that move only when the test advances them,
    so the vessel's stirrer turns by exactly the time the test says."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def leave_running_via_pigpio(port: int, pin: int, percent: float) -> None:
    """Start PWM on ``pin`` with a plain pigpio client, then drop the client without zeroing: what a
    crashed previous owner leaves behind (the daemon, real or fake, keeps the PWM running)."""
    import pigpio

    pi = pigpio.pi("127.0.0.1", port, show_errors=False)
    assert pi.connected
    pi.set_PWM_frequency(pin, FREQUENCIES[pin])
    pi.set_PWM_range(pin, 100)
    pi.set_PWM_dutycycle(pin, round(percent))
    pi.stop()


class Rig:
    """A backend kind plus an independent view of its device. Subclasses fill in the hooks."""

    name = ""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.backends: list[Any] = []
        self._shared: Any = None

    def open(self) -> Any:
        backend = self._open()
        self.backends.append(backend)
        return backend

    def shared(self) -> Any:
        """One backend reused across hypothesis examples."""
        if self._shared is None:
            self._shared = self.open()
        return self._shared

    def resolution(self, backend: Any, pin: int) -> float:
        return backend.resolution_percent(pin)  # type: ignore[no-any-return]

    def teardown(self) -> None:
        try:
            for backend in self.backends:
                backend.close()
        finally:
            self.stack.close()

    def _open(self) -> Any:
        raise NotImplementedError

    def device_duty(self, pin: int) -> float:
        raise NotImplementedError

    def produce_hall_edges(self, backend: Any, count: int) -> int:
        """Make the hall sensor emit falling edges; return how many it emitted."""
        raise NotImplementedError

    def leave_running(self, pin: int, percent: float) -> None:
        """Put ``pin`` on the device at ``percent`` as a previous owner that vanished would have."""
        raise NotImplementedError

    def wait_for_edges(self, backend: Any, base: int, count: int) -> None:
        """Edges may arrive on another thread: wait until ``count`` arrived, then a little longer so
        that double counting would show."""
        wait_until(lambda: backend.hall_edges() - base >= count, timeout=5, message="hall edges")
        time.sleep(0.05)


class SimRig(Rig):
    """The simulated unit: :class:`PigpioPwmBackend` on a started :class:`SimDevice`, as a sim node runs it.

    The device is the vessel: its actuator duties are what the pins drive, and its stirrer makes the
    hall edges, so the rig checks the whole path (pigpio client, fake daemon, ``on_pwm`` wiring, vessel).
    """

    name = "sim"

    def __init__(self) -> None:
        super().__init__()
        self.desc = load(SIM_HAT, SIM_MODEL)
        self.now = SimNow()
        vessel = Vessel(VesselParams(seed=7, ir_led_channel=self.desc.leds.ir))
        self.device = SimDevice(self.desc, vessel, self.now)
        self.endpoints = self.device.start()
        self.stack.callback(self.device.stop)  # runs after the backends close (see Rig.teardown)
        self.channels = {ch.pin: name for name, ch in self.desc.pwm.channels.items()}
        self.frequencies = {ch.pin: int(round(ch.hz)) for ch in self.desc.pwm.channels.values()}
        assert set(self.channels) == set(PINS), "the sim HAT's PWM pins are the ones this contract drives"

    def _open(self) -> PigpioPwmBackend:
        return PigpioPwmBackend(
            self.endpoints.host,
            self.endpoints.pigpio_port,
            frequencies=self.frequencies,
            hall_pin=self.desc.gpio.hall_sensor,
        )

    def device_duty(self, pin: int) -> float:
        return float(self.device.truth()["pwm"][self.channels[pin]])

    def produce_hall_edges(self, backend: Any, count: int) -> int:
        # The vessel decides how many revolutions a spin makes; its own count is the truth to compare.
        before = self.device.truth()["hall_edges"]
        backend.set_duty(STIRRING, SIM_SPIN_DUTY)
        self.now.advance(SIM_SPIN_S)
        made = int(self.device.truth()["hall_edges"]) - before
        backend.set_duty(STIRRING, 0.0)  # no more edges after this: the clock stands still from here on
        return made

    def leave_running(self, pin: int, percent: float) -> None:
        leave_running_via_pigpio(self.endpoints.pigpio_port, pin, percent)


class PigpioRig(Rig):
    name = "pigpio"

    def __init__(self) -> None:
        super().__init__()
        # The HAT pulls the hall sensor's output up, so the daemon reads it high from the start.
        self.fake = self.stack.enter_context(FakePigpiod(input_levels={HALL_SENSOR_PIN: 1}))

    def _open(self) -> PigpioPwmBackend:
        return PigpioPwmBackend(port=self.fake.port, frequencies=FREQUENCIES)

    def device_duty(self, pin: int) -> float:
        state = self.fake.pwm_state().get(pin)
        return 100.0 * state.fraction if state else 0.0

    def produce_hall_edges(self, backend: Any, count: int) -> int:
        self.fake.inject_edges(HALL_SENSOR_PIN, count, period_us=2000)
        return count

    def leave_running(self, pin: int, percent: float) -> None:
        leave_running_via_pigpio(self.fake.port, pin, percent)

    def teardown(self) -> None:
        super().teardown()  # backends first: the pigpio client misbehaves if the daemon vanishes first


class LgpioRig(Rig):
    name = "lgpio"

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        super().__init__()
        self.fake = FakeLgpio(chips=(GPIOCHIP,))
        monkeypatch.setitem(sys.modules, "lgpio", self.fake)
        self.tree = SysfsPwmTree(tmp_path / "sys-class-pwm", {PWMCHIP: 4})
        self.stack.enter_context(self.tree.kernel())

    def _open(self) -> LgpioPwmBackend:
        return LgpioPwmBackend(chip=GPIOCHIP, frequencies=FREQUENCIES, sysfs_root=self.tree.root, pwmchip=PWMCHIP)

    def device_duty(self, pin: int) -> float:
        if pin in DEFAULT_HARDWARE_CHANNELS:
            return self.tree.percent(PWMCHIP, DEFAULT_HARDWARE_CHANNELS[pin])
        return self.fake.output_percent(GPIOCHIP, pin)

    def produce_hall_edges(self, backend: Any, count: int) -> int:
        self.fake.fire_edges(GPIOCHIP, HALL_SENSOR_PIN, count)
        return count

    def leave_running(self, pin: int, percent: float) -> None:
        if pin in DEFAULT_HARDWARE_CHANNELS:
            period = round(1e9 / FREQUENCIES[pin])
            self.tree.export(
                PWMCHIP,
                DEFAULT_HARDWARE_CHANNELS[pin],
                period=period,
                duty_cycle=round(period * percent / 100),
                enable=1,
            )
        else:
            self.fake.line(GPIOCHIP, pin).level = 1  # a dead process's line, stuck high

    def teardown(self) -> None:
        super().teardown()
        assert self.tree.violations == [], "the kernel would have refused these sysfs writes"
        assert self.tree.errors == []


@pytest.fixture(params=["sim", "pigpio", "lgpio"])
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    made: Rig = {
        "sim": SimRig,
        "pigpio": PigpioRig,
        "lgpio": lambda: LgpioRig(monkeypatch, tmp_path),
    }[request.param]()
    try:
        yield made
    finally:
        made.teardown()


def _assert_close(actual: float, expected: float, resolution: float, what: str) -> None:
    assert abs(actual - expected) <= resolution / 2 + 1e-9, f"{what}: {actual} vs {expected} (res {resolution})"


# -- the contract -----------------------------------------------------------------------------------
def test_backend_satisfies_the_protocol(rig: Rig) -> None:
    backend: PwmBackend = rig.open()  # also type-checks the assignment
    for method in ("set_duty", "duty", "hall_edges", "close"):
        assert callable(getattr(backend, method))


def test_every_pin_reads_zero_after_construction(rig: Rig) -> None:
    backend = rig.open()
    for pin in PINS:
        assert backend.duty(pin) == 0.0
        assert rig.device_duty(pin) == 0.0


def test_outputs_left_on_by_a_previous_owner_are_zeroed_at_construction(rig: Rig) -> None:
    for pin in PINS:
        rig.leave_running(pin, 75.0)
    assert all(rig.device_duty(pin) > 0 for pin in PINS), "the stand-in for a dead owner did not stick"
    backend = rig.open()
    for pin in PINS:
        assert rig.device_duty(pin) == 0.0, f"GPIO {pin} still on after construction"
        assert backend.duty(pin) == 0.0


def test_set_duty_round_trips_to_the_backend_resolution(rig: Rig) -> None:
    backend = rig.open()
    for pin in PINS:
        res = rig.resolution(backend, pin)
        assert 0 < res <= 0.1, f"GPIO {pin}: resolution {res} % is coarser than 0.1 %"
        for duty in SAMPLE_DUTIES:
            backend.set_duty(pin, duty)
            _assert_close(backend.duty(pin), duty, res, f"GPIO {pin} read back")
            _assert_close(rig.device_duty(pin), duty, res, f"GPIO {pin} on the device")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pin=st.sampled_from(PINS), duty=st.floats(min_value=0.0, max_value=100.0))
def test_any_duty_round_trips(rig: Rig, pin: int, duty: float) -> None:
    backend = rig.shared()
    backend.set_duty(pin, duty)
    _assert_close(backend.duty(pin), duty, rig.resolution(backend, pin), f"GPIO {pin}")


def test_out_of_range_duty_is_refused_and_changes_nothing(rig: Rig) -> None:
    backend = rig.open()
    for pin in PINS:
        backend.set_duty(pin, 42.0)
        before = backend.duty(pin)
        for bad in BAD_DUTIES:
            with pytest.raises(ValueError):
                backend.set_duty(pin, bad)
            assert backend.duty(pin) == before
            assert rig.device_duty(pin) == pytest.approx(before, abs=1e-6)


def test_hall_falling_edges_are_counted_once_each(rig: Rig) -> None:
    backend = rig.open()
    assert backend.hall_edges() == 0
    base = backend.hall_edges()
    produced = rig.produce_hall_edges(backend, 25)
    assert produced > 0
    rig.wait_for_edges(backend, base, produced)
    assert backend.hall_edges() - base == produced


def test_close_zeroes_every_pin(rig: Rig) -> None:
    backend = rig.open()
    for i, pin in enumerate(PINS):
        backend.set_duty(pin, 20.0 + 10 * i)
    assert all(rig.device_duty(pin) > 0 for pin in PINS)
    backend.close()
    for pin in PINS:
        assert rig.device_duty(pin) == 0.0, f"GPIO {pin} still on after close()"
    backend.close()  # idempotent


# -- why the driver zeroes at start: a killed client leaves pigpiod's PWM running ----------------------
def test_killed_pigpio_client_leaves_pwm_on_and_a_new_backend_zeroes_it() -> None:
    pump, heater = PWM_PINS["media"], PWM_PINS["heater"]
    child = textwrap.dedent(
        f"""
        import time
        from actors.hardware.pigpio_backend import PigpioPwmBackend
        backend = PigpioPwmBackend(port={{port}}, frequencies={FREQUENCIES!r})
        backend.set_duty({pump}, 40.0)
        backend.set_duty({heater}, 25.0)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with FakePigpiod(input_levels={HALL_SENSOR_PIN: 1}) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-c", child.replace("{port}", str(fake.port))],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"child did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            assert fake.connection_count() == 2 and len(fake.notification_handles()) == 1
            os.kill(proc.pid, signal.SIGKILL)  # no close(), no atexit: the kernel just drops the sockets
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

        wait_until(lambda: fake.connection_count() == 0, timeout=5, message="daemon noticed the dead client")
        assert fake.notification_handles() == [], "orphaned notifications must be closed"
        left_on = fake.pwm_state()
        assert left_on[pump].running and left_on[pump].fraction == pytest.approx(0.40)
        assert left_on[heater].running and left_on[heater].fraction == pytest.approx(0.25)

        with PigpioPwmBackend(port=fake.port, frequencies=FREQUENCIES) as backend:
            state = fake.pwm_state()
            for pin in PINS:
                assert not state[pin].running, f"GPIO {pin} still on after the new backend started"
                assert backend.duty(pin) == 0.0
