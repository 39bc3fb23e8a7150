"""The fake pigpiod against the unmodified pigpio 1.78 client (real sockets, real bytes, real exception
text), then :class:`PigpioPwmBackend` over the same protocol.

The first half pins the fake to pigpio's rules (pigpio.c is the specification, see the fake's
docstring) so that the backend tests in the second half, and the contract suite, are testing against
something that behaves like the daemon: frequency snapping, range rules and error texts, the
hardware-PWM pin set and PWM0/PWM1 sharing, notification frames and the 2**32 tick wrap.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pigpio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.hardware.pigpio_backend import (
    HardwareError,
    PigpiodNotRunning,
    PigpioError,
    PigpioPwmBackend,
)
from tests.support.fake_pigpiod import PWM_FREQUENCIES, FakePigpiod
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
HALL = 21
FREQS = {17: 200, 13: 250, 16: 250, 12: 250, 18: 16}


@pytest.fixture(autouse=True)
def _pigpio_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pigpio, "exceptions", True)  # the client's default; other tests may flip it


@pytest.fixture
def fake() -> Iterator[FakePigpiod]:
    with FakePigpiod(input_levels={HALL: 1}) as daemon:
        yield daemon


def _connect(daemon: FakePigpiod) -> Any:
    pi = pigpio.pi("127.0.0.1", daemon.port, show_errors=False)
    assert pi.connected
    return pi


@pytest.fixture
def pi(fake: FakePigpiod) -> Iterator[Any]:
    client = _connect(fake)
    try:
        yield client
    finally:
        client.stop()  # before the daemon stops (fixture order): see the fake's docstring


def _error_text(call: Any, *args: Any) -> str:
    with pytest.raises(pigpio.error) as info:
        call(*args)
    return str(info.value.value)


# == the fake against the real client =================================================================
def test_connects_and_reports_version_and_revision(pi: Any) -> None:
    assert pi.get_pigpio_version() == 79
    assert pi.get_hardware_revision() == 0xD03114  # a Pi 4B (BCM2711)


@pytest.mark.parametrize(
    ("requested", "runs"),
    [
        (200, 200),
        (250, 250),
        (16, 20),
        (15, 20),
        (18, 20),
        (8000, 8000),
        (10, 10),
        (0, 10),
        (9, 10),
        (1_000_000, 8000),
        (7000, 8000),
        (3000, 4000),  # tie between 4000 and 2000: pigpio keeps the earlier (higher) one
        (900, 1000),  # tie between 1000 and 800
    ],
)
def test_frequency_snaps_to_the_5us_table(pi: Any, requested: int, runs: int) -> None:
    assert pi.set_PWM_frequency(17, requested) == runs
    assert pi.get_PWM_frequency(17) == runs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requested=st.integers(min_value=0, max_value=200_000))
def test_frequency_snap_is_the_nearest_table_entry(pi: Any, requested: int) -> None:
    expected = min(PWM_FREQUENCIES, key=lambda f: (abs(f - requested), PWM_FREQUENCIES.index(f)))
    assert pi.set_PWM_frequency(5, requested) == expected


def test_fresh_pin_defaults_800_hz_range_255(pi: Any) -> None:
    assert pi.get_PWM_frequency(4) == 800
    assert pi.get_PWM_range(4) == 255
    assert pi.get_PWM_real_range(4) == 250


@pytest.mark.parametrize(("freq", "real"), [(200, 1000), (250, 800), (20, 10000), (800, 250), (8000, 25), (10, 20000)])
def test_set_range_returns_the_real_range_of_the_frequency(pi: Any, freq: int, real: int) -> None:
    pi.set_PWM_frequency(17, freq)
    assert pi.set_PWM_range(17, 1000) == real
    assert pi.get_PWM_range(17) == 1000
    assert pi.get_PWM_real_range(17) == real


def test_range_limits_raise_the_real_error_text(pi: Any) -> None:
    assert _error_text(pi.set_PWM_range, 17, 24) == "dutycycle range not 25-40000"
    assert _error_text(pi.set_PWM_range, 17, 40001) == "dutycycle range not 25-40000"
    pi.set_PWM_range(17, 25)
    pi.set_PWM_range(17, 40000)


def test_dutycycle_above_the_range_is_refused(pi: Any) -> None:
    assert pi.set_PWM_dutycycle(17, 255) == 0  # default range 255
    assert _error_text(pi.set_PWM_dutycycle, 17, 256) == "dutycycle not 0-range (default 255)"
    pi.set_PWM_range(17, 100)
    assert _error_text(pi.set_PWM_dutycycle, 17, 101) == "dutycycle not 0-range (default 255)"
    assert pi.get_PWM_dutycycle(17) == 100  # 255 of 255, rescaled to the new range


def test_range_change_rescales_a_running_dutycycle(pi: Any) -> None:
    pi.set_PWM_range(17, 100)
    pi.set_PWM_dutycycle(17, 50)
    pi.set_PWM_range(17, 1000)
    assert pi.get_PWM_dutycycle(17) == 500


def test_dutycycle_of_a_pin_that_is_not_pwming(pi: Any) -> None:
    assert _error_text(pi.get_PWM_dutycycle, 12) == "GPIO is not in use for PWM"
    assert _error_text(pi.get_PWM_dutycycle, 32) == "GPIO not 0-31"
    assert _error_text(pi.set_PWM_dutycycle, 32, 0) == "GPIO not 0-31"


def test_mode_change_or_write_switches_soft_pwm_off(pi: Any, fake: FakePigpiod) -> None:
    pi.set_PWM_dutycycle(17, 100)
    assert pi.get_mode(17) == pigpio.OUTPUT
    pi.set_mode(17, pigpio.INPUT)
    assert _error_text(pi.get_PWM_dutycycle, 17) == "GPIO is not in use for PWM"
    assert 17 not in fake.pwm_state() or not fake.pwm_state()[17].running
    pi.set_PWM_dutycycle(17, 100)
    pi.write(17, 1)
    assert _error_text(pi.get_PWM_dutycycle, 17) == "GPIO is not in use for PWM"
    assert pi.read(17) == 1
    assert pi.read_bank_1() & (1 << 17)


def test_bad_arguments_give_pigpio_texts(pi: Any) -> None:
    assert _error_text(pi.set_mode, 54, pigpio.OUTPUT) == "GPIO not 0-53"
    assert _error_text(pi.set_mode, 4, 8) == "mode not 0-7"
    assert _error_text(pi.set_pull_up_down, 4, 3) == "pud not 0-2"
    assert _error_text(pi.write, 4, 2) == "level not 0-1"
    assert _error_text(pi.read, 54) == "GPIO not 0-53"
    assert _error_text(pi.set_watchdog, 4, 60001) == "timeout not 0-60000"
    assert _error_text(pi.set_watchdog, 32, 10) == "GPIO not 0-31"
    assert pi.set_watchdog(4, 60000) == 0
    assert _error_text(pi.notify_begin, 31, 1) == "unknown handle"


def test_pulls_set_the_level_of_a_floating_input(pi: Any) -> None:
    pi.set_mode(5, pigpio.INPUT)
    pi.set_pull_up_down(5, pigpio.PUD_UP)
    assert pi.read(5) == 1
    pi.set_pull_up_down(5, pigpio.PUD_DOWN)
    assert pi.read(5) == 0


def test_permission_mask_refuses_other_pins() -> None:
    with FakePigpiod(permitted_gpios={17}) as daemon:
        client = _connect(daemon)
        try:
            client.set_PWM_dutycycle(17, 10)
            assert _error_text(client.set_PWM_dutycycle, 18, 10) == "no permission to update GPIO"
            assert _error_text(client.set_mode, 18, pigpio.OUTPUT) == "no permission to update GPIO"
        finally:
            client.stop()


# -- hardware PWM -----------------------------------------------------------------------------------
def test_hardware_pwm_only_on_12_13_18_19(pi: Any) -> None:
    for gpio, alt in ((12, pigpio.ALT0), (13, pigpio.ALT0), (18, pigpio.ALT5), (19, pigpio.ALT5)):
        assert pi.hardware_PWM(gpio, 250, 400_000) == 0
        assert pi.get_mode(gpio) == alt
    assert _error_text(pi.hardware_PWM, 17, 250, 1) == "GPIO has no hardware PWM"
    assert _error_text(pi.hardware_PWM, 54, 250, 1) == "GPIO not 0-53"
    assert _error_text(pi.hardware_PWM, 13, 250, 1_000_001) == "hardware PWM dutycycle not 0-1M"
    assert _error_text(pi.hardware_PWM, 13, 187_500_001, 1) == "invalid hardware PWM frequency"


def test_hardware_pwm_readback_uses_the_1m_range(pi: Any) -> None:
    pi.hardware_PWM(13, 250, 1_000_000)
    assert pi.get_PWM_dutycycle(13) == 1_000_000
    assert pi.get_PWM_range(13) == 1_000_000
    assert pi.get_PWM_real_range(13) == 1_500_000  # 750 MHz PLLD / (2 * 250 Hz) on a BCM2711
    assert pi.get_PWM_frequency(13) == 250
    pi.hardware_PWM(13, 7_000_000, 500_000)
    assert pi.get_PWM_frequency(13) == 6_944_444  # what the integer divider can make


@pytest.mark.parametrize(("first", "second", "other_channel"), [(12, 18, 13), (13, 19, 12)])
def test_pins_on_one_channel_share_frequency_and_duty(
    pi: Any, fake: FakePigpiod, first: int, second: int, other_channel: int
) -> None:
    pi.hardware_PWM(other_channel, 500, 100_000)
    pi.hardware_PWM(first, 1000, 250_000)
    pi.hardware_PWM(second, 2000, 750_000)
    assert pi.get_PWM_frequency(first) == 2000
    assert pi.get_PWM_dutycycle(first) == 750_000
    state = fake.pwm_state()
    assert state[first] == state[second]
    assert pi.get_PWM_frequency(other_channel) == 500
    assert pi.get_PWM_dutycycle(other_channel) == 100_000

    pi.hardware_PWM(second, 0, 0)  # frequency 0 stops the channel, for both pins
    state = fake.pwm_state()
    assert second not in state
    assert not state[first].running
    assert pi.get_PWM_dutycycle(first) == 750_000  # pigpio still reports the stored duty
    assert state[other_channel].running


def test_soft_pwm_on_18_is_independent_of_hardware_pwm_on_12(pi: Any, fake: FakePigpiod) -> None:
    pi.set_PWM_frequency(18, 20)
    pi.set_PWM_range(18, 1000)
    pi.set_PWM_dutycycle(18, 300)
    pi.hardware_PWM(12, 250, 500_000)
    assert pi.get_PWM_dutycycle(18) == 300
    assert pi.get_PWM_frequency(18) == 20
    state = fake.pwm_state()
    assert (state[18].kind, state[12].kind) == ("soft", "hardware")


# -- notifications and ticks -------------------------------------------------------------------------
def _collect(pi: Any, gpio: int, edge: int) -> tuple[Any, list[tuple[int, int]]]:
    seen: list[tuple[int, int]] = []
    cb = pi.callback(gpio, edge, lambda g, level, tick: seen.append((level, tick)))
    return cb, seen


def test_callbacks_see_injected_edges(pi: Any, fake: FakePigpiod) -> None:
    _, falling = _collect(pi, HALL, pigpio.FALLING_EDGE)
    _, rising = _collect(pi, HALL, pigpio.RISING_EDGE)
    either_cb, either = _collect(pi, HALL, pigpio.EITHER_EDGE)
    fake.inject_edges(HALL, 7, period_us=1000)
    wait_until(lambda: len(either) == 14 and len(falling) == 7 and len(rising) == 7, timeout=5)
    assert {level for level, _ in falling} == {0} and {level for level, _ in rising} == {1}

    either_cb.cancel()
    fake.inject_edges(HALL, 3, period_us=1000)
    wait_until(lambda: len(falling) == 10, timeout=5)
    time.sleep(0.05)
    assert len(either) == 14


def test_ticks_wrap_at_2_to_the_32() -> None:
    start = 2**32 - 2500
    with FakePigpiod(tick_start=start, realtime_tick=False, input_levels={HALL: 1}) as daemon:
        client = _connect(daemon)
        try:
            assert client.get_current_tick() == start
            _, falling = _collect(client, HALL, pigpio.FALLING_EDGE)
            sent = daemon.inject_edges(HALL, 10, period_us=1000)
            wait_until(lambda: len(falling) == 10, timeout=5)
            ticks = [tick for _, tick in falling]
            assert ticks == sent
            assert ticks[0] == start and ticks[-1] == (start + 9000) % 2**32
            assert any(b < a for a, b in zip(ticks, ticks[1:], strict=False)), "the ticks should wrap"
            assert [pigpio.tickDiff(a, b) for a, b in zip(ticks, ticks[1:], strict=False)] == [1000] * 9
            assert client.get_current_tick() < 10_000  # the daemon's clock wrapped too
        finally:
            client.stop()


def test_first_edge_after_an_unwatched_level_change_is_missed_by_the_client() -> None:
    """Why the rigs start the hall pin high: the client diffs each report against the levels it read
    (BR1) when it connected. If the line changed while nobody watched it, the first report carries no
    visible change and that edge is lost. A real HAT pulls the hall output up, so it reads high at
    connect; this pins the client behaviour the backend inherits."""
    with FakePigpiod() as daemon:  # hall line floating low at connect
        client = _connect(daemon)
        try:
            client.set_mode(HALL, pigpio.INPUT)
            client.set_pull_up_down(HALL, pigpio.PUD_UP)  # goes high while unwatched
            _, falling = _collect(client, HALL, pigpio.FALLING_EDGE)
            daemon.inject_edges(HALL, 5, period_us=1000)
            wait_until(lambda: len(falling) >= 4, timeout=5)
            time.sleep(0.05)
            assert len(falling) == 4
        finally:
            client.stop()


def test_closing_a_client_keeps_pwm_and_drops_its_notifications(fake: FakePigpiod) -> None:
    client = _connect(fake)
    client.set_PWM_range(17, 100)
    client.set_PWM_dutycycle(17, 35)
    client.callback(HALL, pigpio.FALLING_EDGE)
    assert len(fake.notification_handles()) == 1 and fake.connection_count() == 2
    client.stop()
    wait_until(lambda: fake.connection_count() == 0, timeout=5)
    assert fake.notification_handles() == []
    assert fake.pwm_state()[17].dutycycle == 35 and fake.pwm_state()[17].running


# -- raw wire format ---------------------------------------------------------------------------------
def _raw(sock: socket.socket, cmd: int, p1: int = 0, p2: int = 0, ext: bytes = b"") -> tuple[int, int, int, int]:
    sock.sendall(struct.pack("<IIII", cmd, p1, p2, len(ext)) + ext)
    data = b""
    while len(data) < 16:
        chunk = sock.recv(16 - len(data))
        assert chunk, "daemon closed the connection"
        data += chunk
    return struct.unpack("<IIIi", data)


def test_wire_format_on_a_raw_socket(fake: FakePigpiod) -> None:
    with socket.create_connection(("127.0.0.1", fake.port)) as sock:
        assert _raw(sock, 26) == (26, 0, 0, 79)  # PIGPV
        assert _raw(sock, 1, 17, 1234) == (1, 17, 1234, 0)  # MODEG echoes p1 and p2
        assert _raw(sock, 86, 13, 250, struct.pack("<I", 500_000)) == (86, 13, 250, 0)  # HP, 4-byte ext
        assert _raw(sock, 83, 13) == (83, 13, 0, 500_000)  # GDC
        assert _raw(sock, 83, 4) == (83, 4, 0, -92)  # PI_NOT_PWM_GPIO
        assert _raw(sock, 200, 1, 2) == (200, 1, 2, -88)  # PI_UNKNOWN_COMMAND
        head = struct.pack("<IIII", 17, 0, 0, 0)  # HWVER sent in two pieces: framing is by bytes
        sock.sendall(head[:5])
        time.sleep(0.01)
        sock.sendall(head[5:])
        assert struct.unpack("<IIIi", sock.recv(16))[3] == 0xD03114


def test_stop_leaves_no_threads_or_sockets() -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before_fds = fds()
    daemon = FakePigpiod().start()
    port = daemon.port
    raw = socket.create_connection(("127.0.0.1", port))  # a client still connected at stop()
    wait_until(lambda: daemon.connection_count() == 1, timeout=5)
    daemon.stop()
    assert raw.recv(16) == b""  # the daemon closed its end
    raw.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fake-pigpiod")]
    assert fds() == before_fds
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    daemon.stop()  # idempotent


# == PigpioPwmBackend over the protocol ===============================================================
@pytest.fixture
def backend(fake: FakePigpiod) -> Iterator[PigpioPwmBackend]:
    b = PigpioPwmBackend(port=fake.port, frequencies=FREQS)
    try:
        yield b
    finally:
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_backend_names_the_fix_when_pigpiod_is_not_running() -> None:
    port = _free_port()
    with pytest.raises(PigpiodNotRunning) as info:
        PigpioPwmBackend(port=port, frequencies=FREQS)
    assert str(info.value) == f"pigpiod is not running at 127.0.0.1:{port}; start it with `sudo pigpiod -l`"
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, HardwareError)


def test_backend_reports_what_pigpio_actually_runs(fake: FakePigpiod, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pigpio_backend"):
        with PigpioPwmBackend(port=fake.port, frequencies=FREQS) as b:
            assert b.frequencies == {17: 200, 13: 250, 16: 250, 12: 250, 18: 20}
            assert b.real_ranges == {17: 1000, 13: 800, 16: 800, 12: 800, 18: 10000}
            b.set_duty(17, 33.33)
            assert fake.pwm_state()[17].range == 1000 and fake.pwm_state()[17].dutycycle == 333
            assert b.duty(17) == pytest.approx(33.3)
            assert b.resolution_percent(17) == pytest.approx(0.1)
    assert any("GPIO 18" in r.getMessage() and "16 Hz" in r.getMessage() for r in caplog.records)


def test_backend_counts_only_falling_hall_edges(fake: FakePigpiod, backend: PigpioPwmBackend) -> None:
    fake.inject_edges(HALL, 12, period_us=1500)
    wait_until(lambda: backend.hall_edges() >= 12, timeout=5)
    time.sleep(0.05)
    assert backend.hall_edges() == 12
    assert fake.mode(HALL) == pigpio.INPUT


def test_backend_reads_back_what_the_daemon_holds(fake: FakePigpiod, backend: PigpioPwmBackend) -> None:
    other = _connect(fake)
    try:
        other.set_PWM_dutycycle(17, 250)  # another client changed it behind our back
        assert backend.duty(17) == 25.0
        other.set_mode(17, pigpio.INPUT)  # ... or switched the PWM off altogether
        assert backend.duty(17) == 0.0
    finally:
        other.stop()


def test_backend_stops_hardware_pwm_left_on_our_pins(fake: FakePigpiod) -> None:
    other = _connect(fake)
    other.hardware_PWM(13, 250, 600_000)
    other.stop()
    assert fake.pwm_state()[13].running and fake.pwm_state()[13].kind == "hardware"
    with PigpioPwmBackend(port=fake.port, frequencies=FREQS):
        assert fake.pwm_state()[13].kind == "soft" and not fake.pwm_state()[13].running


def test_daemon_errors_become_one_readable_exception() -> None:
    with FakePigpiod(permitted_gpios={17, HALL}) as daemon:  # like `pigpiod -x <mask>`
        with pytest.raises(PigpioError) as info:
            PigpioPwmBackend(port=daemon.port, frequencies={17: 200, 16: 250})
        assert info.value.code == -41
        assert str(info.value) == (
            f"pigpio set_PWM_dutycycle(16, 0) on 127.0.0.1:{daemon.port} failed: "
            "no permission to update GPIO (error -41)"
        )
        wait_until(lambda: daemon.connection_count() == 0, timeout=5, message="failed start must disconnect")


def test_backend_refuses_unknown_pins_and_use_after_close(backend: PigpioPwmBackend) -> None:
    with pytest.raises(ValueError):
        backend.set_duty(23, 10.0)
    with pytest.raises(ValueError):
        backend.duty(23)
    backend.close()
    with pytest.raises(PigpioError, match="closed"):
        backend.set_duty(17, 10.0)


def test_constructor_validates_its_configuration(fake: FakePigpiod) -> None:
    cases: list[dict[str, Any]] = [
        {"frequencies": {}},
        {"frequencies": {40: 200}},
        {"frequencies": {17: 0}},
        {"frequencies": {17: 200.5}},
        {"frequencies": {HALL: 200}},
        {"frequencies": {17: 200}, "steps": 24},
    ]
    for kwargs in cases:
        with pytest.raises(ValueError):
            PigpioPwmBackend(port=fake.port, **kwargs)


def test_lost_daemon_is_a_pigpio_error() -> None:
    daemon = FakePigpiod(input_levels={HALL: 1}).start()
    b = PigpioPwmBackend(port=daemon.port, frequencies={17: 200})
    try:
        daemon.stop()
        with pytest.raises(PigpioError, match="lost the connection"):
            b.set_duty(17, 10.0)
    finally:
        with pytest.raises(PigpioError, match="could not zero"):
            b.close()
        daemon.stop()
    wait_until(
        lambda: not [t for t in threading.enumerate() if isinstance(t, pigpio._callback_thread) and t.go],
        timeout=5,
        message="the client's notification thread must stop",
    )


def test_normal_interpreter_exit_zeroes_the_pins(fake: FakePigpiod) -> None:
    """A process that forgets close() still zeroes its pins through atexit (SIGKILL cannot: see the
    contract suite for that case)."""
    child = (
        "from actors.hardware.pigpio_backend import PigpioPwmBackend\n"
        f"backend = PigpioPwmBackend(port={fake.port}, frequencies={{13: 250, 17: 200}})\n"
        "backend.set_duty(13, 40.0)\n"
        "backend.set_duty(17, 55.0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 0, out.stderr
    wait_until(lambda: fake.connection_count() == 0, timeout=5)
    state = fake.pwm_state()
    assert not state[13].running and not state[17].running


def test_missing_pigpio_module_is_a_hardware_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pigpio", None)  # `import pigpio` now raises ImportError
    with pytest.raises(HardwareError, match="not installed"):
        PigpioPwmBackend(port=1, frequencies={17: 200})


def test_backend_modules_import_without_pigpio_or_lgpio() -> None:
    code = (
        "import sys; sys.modules['pigpio'] = None; sys.modules['lgpio'] = None\n"
        "import actors.hardware.pigpio_backend, actors.hardware.lgpio_backend\n"
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
