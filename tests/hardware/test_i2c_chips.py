"""Chip drivers against register-level models on the fake I2C bus, byte for byte.

The ADS1115/ADS1114 tests drive the *real* ``adafruit_ads1x15`` driver, so a change in that
library's bytes shows up here. Our own drivers (Pico, DAC43608, TMP1075) are checked against the
models, whose encodings are written from the datasheets and firmware source rather than from the
drivers, so a shared mistake has to be made twice to pass.
"""

from __future__ import annotations

import errno
import importlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from adafruit_ads1x15.ads1115 import ADS1115
from adafruit_ads1x15.ads1x15 import Mode
from adafruit_ads1x15.analog_in import AnalogIn
from hypothesis import given
from hypothesis import strategies as st

from actors.hardware.chips import ChipError, bus_transaction
from actors.hardware.chips.ads1x15 import FULL_SCALE_V, GAINS, ADS1114Adc, ADS1115Adc, best_gain_for
from actors.hardware.chips.dac43608 import DAC43608, data_bytes
from actors.hardware.chips.pico import PicoAdc, PicoDac
from actors.hardware.chips.tmp1075 import TMP1075, celsius_from_word
from actors.hardware.i2c import I2CBus, I2CUnavailableError, open_real_bus
from actors.hardware.sim_i2c import (
    ADS1114Model,
    ADS1115Model,
    DAC43608Model,
    FakeI2CBus,
    PicoModel,
    TMP1075Model,
    Transaction,
    ads_code,
)

REPO = Path(__file__).resolve().parents[2]
AIN = {0: 0.1234, 1: 2.5, 2: 0.0, 3: 3.3}


def no_sleep(_: float) -> None:
    pass


@pytest.fixture
def ads_bus() -> FakeI2CBus:
    return FakeI2CBus({0x48: ADS1115Model(lambda ch: AIN[ch])})


def writes(bus: FakeI2CBus) -> list[tuple[bytes | None, bytes | None]]:
    return [(t.wrote, t.read) for t in bus.log]


# ---------------------------------------------------------------------------------------------
# The fake bus itself
# ---------------------------------------------------------------------------------------------


def test_fake_bus_is_an_i2c_bus_and_scan_lists_live_devices():
    bus = FakeI2CBus({0x48: ADS1115Model(lambda ch: 0.0), 0x4F: TMP1075Model(lambda: 20.0)})
    assert isinstance(bus, I2CBus)
    assert bus.try_lock()
    assert bus.scan() == [0x48, 0x4F]
    bus.fail_always(0x4F)
    assert bus.scan() == [0x48]
    bus.unlock()


def test_absent_address_raises_remote_io_error_like_linux_i2c_dev():
    bus = FakeI2CBus()
    assert bus.try_lock()
    with pytest.raises(OSError) as info:
        bus.writeto(0x50, b"\x00")
    assert info.value.errno == 121 and info.value.strerror == "Remote I/O error"
    assert bus.log == [Transaction(address=0x50, wrote=b"\x00", read=None, error=121)]


def test_strict_locking_catches_a_driver_that_skips_the_lock():
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: 20.0)})
    with pytest.raises(RuntimeError, match="without holding the bus lock"):
        bus.writeto(0x4F, b"\x00")


def test_a_bus_held_elsewhere_times_out_as_chip_error():
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: 20.0)})
    assert bus.try_lock()  # someone else holds it
    with pytest.raises(ChipError, match="stayed locked"):
        with bus_transaction(bus, "TMP1075", 0x4F, lock_timeout=0.01):
            pass


# ---------------------------------------------------------------------------------------------
# ADS1115: the real Adafruit driver on the model
# ---------------------------------------------------------------------------------------------


def test_adafruit_ads1115_reads_ain0_to_ain3(ads_bus):
    ads = ADS1115(ads_bus, address=0x48)  # gain 1: ±4.096 V
    values = [AnalogIn(ads, ch).value for ch in range(4)]
    assert values == [987, 19999, 0, 26399]
    assert AnalogIn(ads, 1).voltage == pytest.approx(2.5, abs=4.096 / 32767)


def test_adafruit_ads1115_single_shot_bytes(ads_bus):
    ads = ADS1115(ads_bus, address=0x48)
    ads_bus.log.clear()
    assert AnalogIn(ads, 1).value == 19999
    # OS=1 start | MUX=101 (AIN1-GND) | PGA=001 (±4.096) | MODE=1 single | DR=100 (128 SPS) | COMP_QUE=11 off
    config = 0x8000 | 0x5000 | 0x0200 | 0x0100 | 0x0080 | 0x0003
    assert writes(ads_bus) == [
        (bytes([0x01, config >> 8, config & 0xFF]), None),  # write config: start a conversion
        (b"\x01", bytes([(config >> 8) | 0x80, config & 0xFF])),  # poll config: OS=1, done
        (b"\x00", (19999).to_bytes(2, "big")),  # read conversion
    ]


@pytest.mark.parametrize("gain", GAINS)
def test_adafruit_ads1115_codes_at_every_gain(gain):
    fsr = FULL_SCALE_V[gain]
    volts = {0: 0.3 * fsr, 1: -0.2 * fsr, 2: 0.99 * fsr, 3: 1.5 * fsr}  # the last one clips
    bus = FakeI2CBus({0x48: ADS1115Model(lambda ch: volts[ch])})
    ads = ADS1115(bus, address=0x48, gain=gain)
    for ch in range(4):
        assert AnalogIn(ads, ch).value == ads_code(volts[ch], fsr)
    assert AnalogIn(ads, 3).value == 32767


def test_adafruit_ads1115_at_an_absent_address_refuses_at_construction(ads_bus):
    with pytest.raises(ValueError, match="No I2C device at address: 0x49"):
        ADS1115(ads_bus, address=0x49)


def test_ads1115_wrapper_turns_an_absent_chip_into_chip_error(ads_bus):
    with pytest.raises(ChipError) as info:
        ADS1115Adc(ads_bus, address=0x49)
    assert (info.value.chip, info.value.address) == ("ADS1115", 0x49)
    assert "0x49" in str(info.value) and "probe failed" in str(info.value)


def test_ads1115_wrapper_reads_volts_and_auto_ranges(ads_bus):
    adc = ADS1115Adc(ads_bus, 0x48)
    coarse = adc.read_volts(0)
    assert coarse == pytest.approx(0.1234, abs=4.096 / 32767)
    adc.gain = best_gain_for(coarse)
    assert adc.gain == 16
    assert adc.read_raw(0) == round(0.1234 / 0.256 * 32767)
    assert adc.read_volts(0) == pytest.approx(0.1234, abs=0.256 / 32767)


@given(gain=st.sampled_from(GAINS), fraction=st.floats(min_value=-1.0, max_value=1.0))
def test_ads1115_wrapper_round_trip_within_half_an_lsb(gain, fraction):
    fsr = FULL_SCALE_V[gain]
    volts = fraction * fsr
    bus = FakeI2CBus({0x48: ADS1115Model(lambda ch: volts)})
    adc = ADS1115Adc(bus, 0x48, gain=gain)
    assert adc.read_raw(2) == ads_code(volts, fsr)
    assert abs(adc.read_volts(2) - volts) <= fsr / 32767 / 2 + 1e-12


def test_ads1115_wrapper_rejects_bad_gain_and_channel(ads_bus):
    adc = ADS1115Adc(ads_bus, 0x48)
    with pytest.raises(ValueError, match="gain must be one of"):
        adc.gain = 3
    with pytest.raises(ValueError, match="channel"):
        adc.read_volts(4)


@pytest.mark.parametrize(
    ("volts", "gain"),
    [(0.0, 16), (0.1, 16), (0.2175, 16), (0.22, 8), (0.43, 8), (0.5, 4), (1.0, 2), (1.7, 2), (3.0, 1), (3.5, 2 / 3), (6.0, 2 / 3), (-0.1, 16)],
)
def test_best_gain_for(volts, gain):
    assert best_gain_for(volts) == gain


@given(st.floats(min_value=-10, max_value=10))
def test_best_gain_keeps_85_percent_headroom_and_is_the_finest_that_does(volts):
    gain = best_gain_for(volts)
    finer = [g for g in GAINS if g > gain]
    if gain != GAINS[0]:
        assert abs(volts) < 0.85 * FULL_SCALE_V[gain]
    if finer:
        assert abs(volts) >= 0.85 * FULL_SCALE_V[min(finer)]


# ---------------------------------------------------------------------------------------------
# ADS1114: one input, continuous mode
# ---------------------------------------------------------------------------------------------


def test_adafruit_driver_reads_an_ads1114_on_channel_0():
    level = {"v": 0.2}
    bus = FakeI2CBus({0x48: ADS1114Model(lambda ch: level["v"])})
    ads = ADS1115(bus, address=0x48, mode=Mode.CONTINUOUS, data_rate=860)
    pd = AnalogIn(ads, 0, 1)  # MUX 000: AIN0-AIN1, the ADS1114's only pair
    assert pd.value == round(0.2 / 4.096 * 32767)
    level["v"] = 0.3
    bus.log.clear()
    assert pd.value == round(0.3 / 4.096 * 32767)
    assert writes(bus) == [(None, round(0.3 / 4.096 * 32767).to_bytes(2, "big"))]  # continuous: one bare read


def test_upstream_continuous_mode_reads_config_after_a_gain_change():
    """Canary for the adafruit-ads1x15 3.0.5 behaviour ADS1114Adc works around; if it fails, drop the workaround."""
    bus = FakeI2CBus({0x48: ADS1114Model(lambda ch: 0.2)})
    ads = ADS1115(bus, address=0x48, mode=Mode.CONTINUOUS, data_rate=860)
    pd = AnalogIn(ads, 0, 1)
    pd.value
    ads.gain = 16
    assert pd.value == bus.devices[0x48].config  # the config word, not a conversion


def test_upstream_continuous_mode_cannot_switch_inputs():
    """Canary: adafruit-ads1x15 3.0.5 keeps the old MUX in continuous mode, hence ADS1115Adc is single-shot only."""
    bus = FakeI2CBus({0x48: ADS1115Model(lambda ch: AIN[ch])})
    ads = ADS1115(bus, address=0x48, mode=Mode.CONTINUOUS, data_rate=860)
    stuck = ads_code(AIN[0] - AIN[1], 4.096)  # reset MUX 000: AIN0-AIN1
    assert [AnalogIn(ads, ch).value for ch in range(4)] == [stuck] * 4


def test_ads1114_wrapper_reads_channel_0_across_gain_changes():
    bus = FakeI2CBus({0x49: ADS1114Model(lambda ch: 0.2)})
    adc = ADS1114Adc(bus, 0x49, data_rate=860, sleep=no_sleep)
    assert adc.continuous and adc.channels == (0,)
    assert adc.read_volts(0) == pytest.approx(0.2, abs=4.096 / 32767)
    adc.gain = best_gain_for(adc.read_volts(0))
    assert adc.gain == 16
    assert adc.read_raw(0) == round(0.2 / 0.256 * 32767)
    with pytest.raises(ValueError):
        adc.read_volts(1)


def test_ads_nack_burst_surfaces_as_chip_error():
    bus = FakeI2CBus({0x48: ADS1114Model(lambda ch: 0.2)})
    adc = ADS1114Adc(bus, 0x48, data_rate=860, sleep=no_sleep)
    adc.read_volts(0)
    bus.nack_next(0x48, count=2)
    for _ in range(2):
        with pytest.raises(ChipError) as info:
            adc.read_volts(0)
        assert info.value.errno == 121 and info.value.address == 0x48
    assert adc.read_volts(0) == pytest.approx(0.2, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Pico ADC and DAC
# ---------------------------------------------------------------------------------------------


def pico_bus(volts: dict[int, float], firmware: tuple[int, int] = (0, 5), **kw) -> tuple[FakeI2CBus, PicoModel]:
    model = PicoModel(lambda ch: volts[ch], firmware=firmware, **kw)
    return FakeI2CBus({0x2C: model}), model


def test_pico_firmware_version_bytes_are_minor_then_major():
    bus, _ = pico_bus({}, firmware=(0, 5))
    adc = PicoAdc(bus)
    assert adc.firmware_version() == (0, 5)
    assert writes(bus) == [(b"\x08", b"\x05\x00")]


@pytest.mark.parametrize(("firmware", "scale"), [((0, 3), 16), ((0, 4), 32), ((0, 5), 32), ((1, 0), 32)])
def test_pico_scale_follows_the_firmware_version(firmware, scale):
    bus, _ = pico_bus({2: 1.0}, firmware=firmware)
    adc = PicoAdc(bus)
    raw = round(1.0 / 3.3 * 4095 * scale)
    assert adc.read_raw(2) == raw
    assert adc.scale == scale
    assert adc.read_volts(2) == pytest.approx(1.0, abs=3.3 / 4095 / scale)
    assert bus.log[-1] == Transaction(address=0x2C, wrote=b"\x06", read=raw.to_bytes(2, "little"))  # [channel + 4], LE


@given(volts=st.floats(min_value=0.0, max_value=1.6), channel=st.integers(0, 3))
def test_pico_round_trip_below_the_16_bit_limit(volts, channel):
    bus, _ = pico_bus({channel: volts})
    adc = PicoAdc(bus, firmware=(0, 5))
    assert abs(adc.read_volts(channel) - volts) <= 3.3 / 4095 / 32 / 2 + 1e-12


def test_pico_saturates_at_3v3_with_old_firmware():
    bus, _ = pico_bus({3: 5.0, 2: -0.4}, firmware=(0, 3))
    adc = PicoAdc(bus)
    assert adc.read_raw(3) == 4095 * 16
    assert adc.read_volts(3) == pytest.approx(3.3)
    assert adc.read_volts(2) == 0.0


def test_pico_counts_above_16_bits_wrap_as_the_firmware_truncates():
    """Firmware ≥0.4 reports ×32 counts in 16 bits: above ~1.65 V the reading wraps (see pico.py)."""
    bus, _ = pico_bus({2: 2.0, 3: 3.3})
    adc = PicoAdc(bus)
    assert adc.max_readable_volts == pytest.approx(65535 / (4095 * 32) * 3.3)
    assert adc.read_raw(2) == round(2.0 / 3.3 * 4095 * 32) & 0xFFFF
    assert adc.read_volts(2) < 0.4  # a 2 V input reads as ~0.35 V
    saturating, _ = pico_bus({2: 2.0}, overflow="saturate")
    assert PicoAdc(saturating).read_raw(2) == 0xFFFF


def test_pico_gain_is_fixed():
    bus, _ = pico_bus({})
    adc = PicoAdc(bus, firmware=(0, 5))
    assert adc.gain == 1.0 and adc.gains == (1.0,)
    adc.gain = 1
    with pytest.raises(ValueError, match="fixed range"):
        adc.gain = 2


def test_pico_dac_writes_channel_and_8_bit_value():
    seen: list[tuple[int, int]] = []
    bus, model = pico_bus({}, on_intensity=lambda ch, v: seen.append((ch, v)))
    dac = PicoDac(bus)
    dac.set_intensity("B", 50.0)
    dac.set_intensity("A", 100)
    dac.set_intensity("D", 0)
    assert writes(bus) == [(b"\x01\x80", None), (b"\x00\xff", None), (b"\x03\x00", None)]
    assert model.intensities == [255, 128, 0, 0]
    assert seen == [(1, 128), (0, 255), (3, 0)]
    assert dac.intensities == {"B": 50.0, "A": 100.0, "D": 0.0}


@pytest.mark.parametrize(("channel", "pct"), [("E", 10), ("a", 10), ("A", 100.5), ("A", -1), ("A", float("nan"))])
def test_pico_dac_refuses_bad_arguments(channel, pct):
    bus, _ = pico_bus({})
    with pytest.raises(ValueError):
        PicoDac(bus).set_intensity(channel, pct)
    assert bus.log == []


def test_pico_unreachable_is_chip_error():
    bus, _ = pico_bus({2: 1.0})
    bus.fail_always(0x2C)
    with pytest.raises(ChipError) as info:
        PicoAdc(bus).read_volts(2)
    assert str(info.value).startswith("Pico at 0x2C: no acknowledge (NACK)")
    with pytest.raises(ChipError):
        PicoDac(bus).set_intensity("A", 10)


# ---------------------------------------------------------------------------------------------
# DAC43608
# ---------------------------------------------------------------------------------------------


@given(st.integers(0, 255))
def test_dac43608_code_format_round_trips_through_the_model(code):
    assert data_bytes(code) == bytes([code // 16, (code % 16) * 16])
    model = DAC43608Model()
    model.write(bytes([0x0A]) + data_bytes(code))
    assert model.codes["C"] == code


def test_dac43608_sets_code_then_powers_up_and_powers_down_at_zero():
    changes: list[tuple[str, int, bool]] = []
    model = DAC43608Model(on_change=lambda *c: changes.append(c))
    bus = FakeI2CBus({0x49: model})
    dac = DAC43608(bus)
    dac.set_intensity("A", 100)  # code 112 = 0x70
    dac.set_intensity("C", 50)  # code 56 = 0x38
    assert writes(bus) == [
        (b"\x08\x07\x00", None),
        (b"\x01\x00\xfe", None),
        (b"\x0a\x03\x80", None),
        (b"\x01\x00\xfa", None),
    ]
    assert model.codes["A"] == 112 and model.codes["C"] == 56
    assert [name for name, on in model.powered.items() if on] == ["A", "C"]
    assert model.fraction("A") == pytest.approx(112 / 255)
    dac.set_intensity("A", 0)
    assert bus.log[-1].wrote == b"\x01\x00\xfb"
    assert not model.powered["A"] and model.fraction("A") == 0.0
    assert changes == [("A", 112, False), ("A", 112, True), ("C", 56, False), ("C", 56, True), ("A", 112, False)]
    dac.power_down_all()
    assert not any(model.powered.values())


def test_dac43608_nack_is_chip_error_and_leaves_shadow_state_alone():
    bus = FakeI2CBus({0x49: DAC43608Model()})
    dac = DAC43608(bus)
    bus.nack_next(0x49)
    with pytest.raises(ChipError) as info:
        dac.set_intensity("B", 20)
    assert info.value.chip == "DAC43608" and info.value.address == 0x49
    assert dac.powered_down_mask == 0xFF and dac.intensities == {}


# ---------------------------------------------------------------------------------------------
# TMP1075
# ---------------------------------------------------------------------------------------------


def test_tmp1075_bytes_and_value():
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: 25.0)})
    assert TMP1075(bus).read_celsius() == 25.0
    assert writes(bus) == [(b"\x00", b"\x19\x00")]  # 400 LSB = 0x190, left-justified


@pytest.mark.parametrize(("celsius", "word"), [(-0.0625, 0xFFF0), (-25.5, 0xE680), (-128.0, 0x8000), (127.9375, 0x7FF0), (0.0, 0x0000)])
def test_tmp1075_negative_temperatures_are_twos_complement(celsius, word):
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: celsius)})
    assert TMP1075(bus).read_celsius() == celsius
    assert bus.log[-1].read == word.to_bytes(2, "big")
    assert celsius_from_word(word) == celsius


@given(st.floats(min_value=-128.0, max_value=127.9375))
def test_tmp1075_round_trip(celsius):
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: celsius)})
    assert abs(TMP1075(bus).read_celsius() - celsius) <= 0.0625 / 2


def test_tmp1075_clips_outside_its_range():
    hot = FakeI2CBus({0x4F: TMP1075Model(lambda: 300.0)})
    cold = FakeI2CBus({0x4F: TMP1075Model(lambda: -300.0)})
    assert TMP1075(hot).read_celsius() == 127.9375
    assert TMP1075(cold).read_celsius() == -128.0


def test_tmp1075_nack_burst_then_recovery():
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: 31.5)})
    sensor = TMP1075(bus)
    bus.nack_next(0x4F, count=3)
    for _ in range(3):
        with pytest.raises(ChipError) as info:
            sensor.read_celsius()
        err = info.value
        assert (err.chip, err.address, err.errno) == ("TMP1075", 0x4F, errno.EREMOTEIO)
        assert "TMP1075 at 0x4F: no acknowledge (NACK)" in str(err)
        assert not bus._lock.locked()  # the lock is released on failure
    assert sensor.read_celsius() == 31.5


def test_other_errnos_get_their_own_reason():
    bus = FakeI2CBus({0x4F: TMP1075Model(lambda: 20.0)})
    bus.nack_next(0x4F, code=errno.ETIMEDOUT)
    with pytest.raises(ChipError, match="timed out") as info:
        TMP1075(bus).read_celsius()
    assert info.value.errno == errno.ETIMEDOUT


def test_chip_error_pickles():
    # Looked up at test time: actors.job_host.load_job_class purges actors.* from sys.modules, so a
    # class imported at the top of this file may no longer be the one pickle finds.
    chips = importlib.import_module("actors.hardware.chips")
    err = chips.ChipError("TMP1075", 0x4F, "bus timed out", errno=errno.ETIMEDOUT)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.chip, copy.address, copy.reason, copy.errno, str(copy)) == ("TMP1075", 0x4F, "bus timed out", errno.ETIMEDOUT, str(err))


# ---------------------------------------------------------------------------------------------
# Real bus and import hygiene
# ---------------------------------------------------------------------------------------------


def test_open_real_bus_explains_how_to_enable_i2c():
    with pytest.raises(I2CUnavailableError, match="I2C is not available on this machine") as info:
        open_real_bus(bus_number=250)
    assert "/dev/i2c-250" in str(info.value) and "raspi-config" in str(info.value)


_PROBE = """
import json, sys
from actors.hardware import description, i2c, sim_i2c
from actors.hardware.chips import ads1x15, dac43608, pico, tmp1075
before = {m: m in sys.modules for m in ("board", "busio", "adafruit_blinka", "adafruit_ads1x15")}
bus = sim_i2c.FakeI2CBus({
    0x48: sim_i2c.ADS1115Model(lambda ch: 0.5),
    0x49: sim_i2c.DAC43608Model(),
    0x2C: sim_i2c.PicoModel(lambda ch: 1.0),
    0x4F: sim_i2c.TMP1075Model(lambda: 30.0),
})
ads1x15.ADS1115Adc(bus).read_volts(0)
ads1x15.ADS1114Adc(bus, data_rate=860).read_volts(0)
pico.PicoAdc(bus).read_volts(2)
pico.PicoDac(bus).set_intensity("A", 10)
dac43608.DAC43608(bus).set_intensity("A", 10)
tmp1075.TMP1075(bus).read_celsius()
description.load("1.2", "pioreactor_40ml_1.5")
try:
    i2c.open_real_bus(250)
except i2c.I2CUnavailableError:
    pass
after = {m: m in sys.modules for m in ("board", "busio")}
print(json.dumps({"before": before, "after": after}))
"""


def test_our_modules_and_the_fake_bus_never_import_board():
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # Importing our modules pulls in nothing from blinka; the Adafruit ADS driver is imported only when
    # an ADC is built, and it brings busio (for type hints) but never board.
    assert seen["before"] == {"board": False, "busio": False, "adafruit_blinka": False, "adafruit_ads1x15": False}
    assert seen["after"]["board"] is False
