"""LgpioPwmBackend specifics against the fake ``lgpio`` module and a temp-dir sysfs PWM tree: which pins
go where, the order of sysfs writes, forcing soft-PWM lines low, the hall alert flags, cleanup on
failure, and the chip-detection helpers. The shared behaviour is in test_pwm_backend_contract.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.hardware import lgpio_backend
from actors.hardware.lgpio_backend import (
    LgpioError,
    LgpioPwmBackend,
    default_gpiochip,
    default_pwmchip,
)
from actors.hardware.pigpio_backend import HardwareError
from tests.support.fake_lgpio import FakeLgpio, SysfsPwmTree
from tests.support.waiting import wait_until

CHIP, PWMCHIP, HALL = 4, 2, 21
FREQS = {17: 200, 13: 250, 16: 250, 12: 250, 18: 16}
SOFT = (17, 16, 18)
HW = {12: 0, 13: 1}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLgpio:
    module = FakeLgpio(chips=(CHIP,))
    monkeypatch.setitem(sys.modules, "lgpio", module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[SysfsPwmTree]:
    t = SysfsPwmTree(tmp_path / "pwm", {PWMCHIP: 4})
    with t.kernel():
        yield t
    assert t.violations == [] and t.errors == []


def _open(tree: SysfsPwmTree, **kwargs: Any) -> LgpioPwmBackend:
    options: dict[str, Any] = {"chip": CHIP, "frequencies": FREQS, "sysfs_root": tree.root, "pwmchip": PWMCHIP}
    options.update(kwargs)
    return LgpioPwmBackend(**options)


@pytest.fixture
def backend(fake: FakeLgpio, tree: SysfsPwmTree) -> Iterator[LgpioPwmBackend]:
    b = _open(tree)
    try:
        yield b
    finally:
        b.close()


def _unexported(tree: SysfsPwmTree, channel: int) -> Callable[[], bool]:
    return lambda: tree.values(PWMCHIP, channel) is None


def _handle(fake: FakeLgpio) -> int:
    (handle,) = fake.handles
    return handle


def test_soft_pins_are_claimed_low_and_hardware_pins_run_on_sysfs(
    fake: FakeLgpio, tree: SysfsPwmTree, backend: LgpioPwmBackend
) -> None:
    h = _handle(fake)
    assert h >> 16 == CHIP
    claimed = {args[1]: args for name, args in fake.calls if name == "gpio_claim_output"}
    assert set(claimed) == set(SOFT)
    assert all(args[2] == 0 for args in claimed.values()), "soft pins must be claimed at level 0"
    for pin in SOFT:
        line = fake.line(CHIP, pin)
        assert (line.owner, line.mode, line.level, line.pwm) == (h, "output", 0, None)
    for pin, channel in HW.items():
        assert tree.values(PWMCHIP, channel) == {"period": 4_000_000, "duty_cycle": 0, "enable": 1}
        assert fake.line(CHIP, pin).owner is None
    assert backend.hardware_pins == frozenset(HW) and backend.soft_pins == SOFT


def test_soft_duty_uses_tx_pwm_at_the_pin_frequency(fake: FakeLgpio, backend: LgpioPwmBackend) -> None:
    backend.set_duty(17, 37.5)
    backend.set_duty(18, 10.0)
    assert fake.line(CHIP, 17).pwm == (200.0, 37.5)
    assert fake.line(CHIP, 18).pwm == (16.0, 10.0)  # lgpio runs 16 Hz as asked: no frequency table


def test_zero_duty_stops_the_pwm_and_forces_the_line_low(fake: FakeLgpio, backend: LgpioPwmBackend) -> None:
    h = _handle(fake)
    backend.set_duty(17, 50.0)
    backend.set_duty(17, 0.0)
    assert fake.calls[-2:] == [("tx_pwm", (h, 17, 0, 0)), ("gpio_write", (h, 17, 0))]
    line = fake.line(CHIP, 17)
    assert line.pwm is None and line.level == 0


def test_stopping_soft_pwm_alone_can_leave_the_line_high(fake: FakeLgpio) -> None:
    """Why the backend writes 0 after stopping: the fake models lgpio leaving the last level."""
    h = fake.gpiochip_open(CHIP)
    fake.gpio_claim_output(h, 17, 0)
    fake.tx_pwm(h, 17, 200, 50)
    fake.tx_pwm(h, 17, 0, 0)
    assert fake.line(CHIP, 17).level == 1


def test_hardware_duty_is_written_in_nanoseconds(tree: SysfsPwmTree, backend: LgpioPwmBackend) -> None:
    backend.set_duty(13, 25.0)
    assert tree.values(PWMCHIP, 1) == {"period": 4_000_000, "duty_cycle": 1_000_000, "enable": 1}
    assert backend.duty(13) == 25.0
    assert backend.resolution_percent(13) == pytest.approx(100 / 4_000_000)
    backend.set_duty(12, 100.0)
    assert tree.values(PWMCHIP, 0)["duty_cycle"] == 4_000_000  # type: ignore[index]


def test_soft_duty_is_reported_on_lgpio_microsecond_grid(backend: LgpioPwmBackend) -> None:
    backend.set_duty(18, 100 / 3)  # 16 Hz: a 62 500 us period
    assert backend.duty(18) == pytest.approx(100 * 20833 / 62500)
    assert backend.resolution_percent(18) == pytest.approx(100 / 62500)


def test_sysfs_writes_never_put_duty_above_period(
    fake: FakeLgpio, tree: SysfsPwmTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead process left channel 1 at a long period and a big duty; we now want 1 kHz. Writing the
    new (shorter) period first would be refused by the kernel (EINVAL), so duty goes to 0 first."""
    tree.export(PWMCHIP, 1, period=4_000_000, duty_cycle=3_000_000, enable=1)
    writes: list[tuple[str, int]] = []
    original = lgpio_backend._SysfsChannel.write

    def spy(self: Any, name: str, value: int) -> None:
        original(self, name, value)
        writes.append((name, value))
        v = tree.values(PWMCHIP, self.channel)
        assert v is not None and v["duty_cycle"] <= v["period"], f"after {name}={value}: {v}"

    monkeypatch.setattr(lgpio_backend._SysfsChannel, "write", spy)
    b = _open(tree, frequencies={13: 1000, 17: 200})
    try:
        assert writes[:3] == [("duty_cycle", 0), ("period", 1_000_000), ("enable", 1)]
        b.set_duty(13, 80.0)
        assert tree.values(PWMCHIP, 1) == {"period": 1_000_000, "duty_cycle": 800_000, "enable": 1}
    finally:
        b.close()
    assert writes[-2:] == [("duty_cycle", 0), ("enable", 0)]


def test_export_waits_for_the_kernel_and_gives_up_clearly(fake: FakeLgpio, tmp_path: Path) -> None:
    dead = SysfsPwmTree(tmp_path / "pwm", {PWMCHIP: 4})  # nobody plays the kernel: pwmM never appears
    with pytest.raises(LgpioError, match="did not appear after export"):
        LgpioPwmBackend(chip=CHIP, frequencies=FREQS, sysfs_root=dead.root, pwmchip=PWMCHIP, sysfs_timeout=0.1)
    assert fake.handles == {}, "nothing may stay claimed after a failed start"


def test_missing_pwmchip_is_a_clear_error(fake: FakeLgpio, tree: SysfsPwmTree) -> None:
    with pytest.raises(LgpioError, match="pwmchip7 does not exist"):
        _open(tree, pwmchip=7)


def test_hall_alert_is_claimed_for_falling_edges_with_pull_up(fake: FakeLgpio, backend: LgpioPwmBackend) -> None:
    h = _handle(fake)
    assert ("gpio_claim_alert", (h, HALL, fake.FALLING_EDGE, fake.SET_BIAS_PULL_UP)) in fake.calls
    assert fake.line(CHIP, HALL).level == 1  # pulled up
    assert fake.fire_edges(CHIP, HALL, 9) == 9
    assert backend.hall_edges() == 9
    (cb,) = fake.callbacks
    cb.func(CHIP, HALL, 2, 0)  # a watchdog timeout (level 2) is not an edge
    assert backend.hall_edges() == 9


def test_close_releases_every_line_the_chip_and_the_sysfs_channels(
    fake: FakeLgpio, tree: SysfsPwmTree, backend: LgpioPwmBackend
) -> None:
    for pin in FREQS:
        backend.set_duty(pin, 60.0)
    backend.close()
    assert fake.handles == {} and fake.callbacks == []
    for pin in (*SOFT, HALL):
        line = fake.line(CHIP, pin)
        assert line.owner is None and line.pwm is None
    for pin in SOFT:
        assert fake.line(CHIP, pin).level == 0
    for channel in HW.values():
        assert tree.percent(PWMCHIP, channel) == 0.0
        wait_until(_unexported(tree, channel), timeout=5, message="unexported")
    assert fake.names_called()[-1] == "gpiochip_close"
    with pytest.raises(LgpioError, match="closed"):
        backend.set_duty(17, 1.0)


def test_gpiochip_that_cannot_open_is_an_error_and_sysfs_is_left_zeroed(fake: FakeLgpio, tree: SysfsPwmTree) -> None:
    with pytest.raises(LgpioError, match="gpiochip_open.*can not open gpiochip"):
        _open(tree, chip=0)
    for channel in HW.values():
        assert tree.percent(PWMCHIP, channel) == 0.0
        wait_until(_unexported(tree, channel), timeout=5, message="unexported")


@pytest.mark.parametrize("exceptions", [True, False])
def test_busy_line_is_an_error_whether_lgpio_raises_or_returns(
    fake: FakeLgpio, tree: SysfsPwmTree, exceptions: bool
) -> None:
    other = fake.gpiochip_open(CHIP)
    fake.gpio_claim_output(other, 16, 1)  # someone else holds GPIO 16
    fake.exceptions = exceptions
    with pytest.raises(LgpioError, match="GPIO busy"):
        _open(tree)
    assert fake.line(CHIP, 17).owner is None, "lines claimed before the failure are freed"
    assert list(fake.handles) == [other]


def test_hardware_pins_can_be_turned_off(fake: FakeLgpio, tmp_path: Path) -> None:
    with LgpioPwmBackend(chip=CHIP, frequencies=FREQS, hardware_pins=(), sysfs_root=tmp_path / "absent") as b:
        assert b.hardware_pins == frozenset()
        b.set_duty(12, 40.0)
        assert fake.line(CHIP, 12).pwm == (250.0, 40.0)


def test_constructor_validates_its_configuration(fake: FakeLgpio, tree: SysfsPwmTree) -> None:
    cases: list[dict[str, Any]] = [
        {"frequencies": {}},
        {"frequencies": {17: 20000}},  # beyond lgpio soft PWM
        {"frequencies": {HALL: 200}},
        {"frequencies": {19: 250}, "hardware_pins": (19,)},  # no channel for 19 by default
    ]
    for kwargs in cases:
        with pytest.raises(ValueError):
            _open(tree, **kwargs)


def test_missing_lgpio_module_is_a_hardware_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "lgpio", None)
    with pytest.raises(HardwareError, match="not installed"):
        LgpioPwmBackend(chip=0, frequencies={17: 200}, sysfs_root=tmp_path)


def test_default_gpiochip_reads_the_board_model(tmp_path: Path) -> None:
    model, dev = tmp_path / "model", tmp_path / "dev"
    dev.mkdir()
    assert default_gpiochip(model, dev) == 0  # no model file: not a Pi
    model.write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    assert default_gpiochip(model, dev) == 0
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    assert default_gpiochip(model, dev) == 0  # newer kernels: the header is gpiochip0
    (dev / "gpiochip4").touch()
    assert default_gpiochip(model, dev) == 4


def test_default_pwmchip_prefers_the_single_or_the_four_channel_chip(tmp_path: Path) -> None:
    with pytest.raises(LgpioError, match="no PWM chip"):
        default_pwmchip(tmp_path / "none")
    assert default_pwmchip(SysfsPwmTree(tmp_path / "pi4", {0: 2}).root) == 0
    assert default_pwmchip(SysfsPwmTree(tmp_path / "pi5", {0: 2, 2: 4, 6: 2}).root) == 2
    assert default_pwmchip(SysfsPwmTree(tmp_path / "two", {3: 2, 1: 2}).root) == 1
