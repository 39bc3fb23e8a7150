"""Which backend a node opens: pigpio on a Pi 1-4 and on sim units, lgpio + sysfs on a Pi 5."""

from __future__ import annotations

import actors.hardware.lgpio_backend as lgpio_backend
import actors.hardware.pigpio_backend as pigpio_backend
from actors.hardware import hardware_access
from actors.messages import HardwareConfig


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def test_pi5_detection(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert hardware_access.is_raspberry_pi_5(str(model))
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert not hardware_access.is_raspberry_pi_5(str(model))
    assert not hardware_access.is_raspberry_pi_5(str(tmp_path / "absent"))


def test_a_pi5_gets_the_lgpio_backend_with_the_description_frequencies(monkeypatch):
    monkeypatch.setattr(hardware_access, "is_raspberry_pi_5", lambda: True)
    monkeypatch.setattr(lgpio_backend, "LgpioPwmBackend", Recorder)
    hw = HardwareConfig(hat="1.2", model="pioreactor_20ml_1.5")
    backend = hardware_access.open_pwm(hw, hardware_access.description(hw))
    assert isinstance(backend, Recorder)
    assert backend.kwargs["frequencies"] == {17: 200, 13: 250, 16: 250, 12: 250, 18: 16}
    assert backend.kwargs["hall_pin"] == 21
    assert tuple(backend.kwargs["hardware_pins"]) == (12, 13)


def test_other_pis_and_sim_units_get_pigpio(monkeypatch):
    monkeypatch.setattr(pigpio_backend, "PigpioPwmBackend", Recorder)
    monkeypatch.setattr(hardware_access, "is_raspberry_pi_5", lambda: False)
    hw = HardwareConfig(hat="1.2", model="pioreactor_20ml_1.5")
    assert isinstance(hardware_access.open_pwm(hw, hardware_access.description(hw)), Recorder)
    # A sim unit is reached through pigpio even on a Pi 5 host: the simulated device speaks pigpio.
    monkeypatch.setattr(hardware_access, "is_raspberry_pi_5", lambda: True)
    sim = HardwareConfig(hat="1.2", model="pioreactor_20ml_1.5", pigpio_port=12345, i2c_port=23456)
    backend = hardware_access.open_pwm(sim, hardware_access.description(sim))
    assert isinstance(backend, Recorder) and backend.args[1] == 12345
