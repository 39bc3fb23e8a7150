"""ADS1115 (HAT 1.0 ADC) and ADS1114 (v1.5 photodiode ADCs) behind the :class:`PhotodiodeAdc` interface.

Why wrap ``adafruit_ads1x15`` rather than write our own: it is maintained, takes an injected bus
(anything with the ``busio.I2C`` methods), and its byte-level behaviour is pinned by our tests
against :class:`~actors.hardware.sim_i2c.ADS1115Model`. We add what the OD reader needs on top:
volts with Pioreactor's ``raw/32767·FSR`` scaling, gain auto-ranging (:func:`best_gain_for`), and
one :class:`ChipError` for every bus failure.

Version notes (adafruit-circuitpython-ads1x15 3.0.5):

* There is no ADS1114 class. The ADS1114 is an ADS1115 with a single input pair (AIN0-AIN1) and
  MUX bits that do nothing, so :class:`ADS1114Adc` drives it with the ``ADS1115`` class and a
  differential ``AnalogIn(ads, 0, 1)``, which selects MUX 000, the pair the chip really converts.
* In continuous mode the driver ignores the requested input: ``_write_config`` keeps whatever MUX
  the config register already holds, so an ADS1115 in continuous mode cannot switch channels.
  :class:`ADS1115Adc` is therefore single-shot only (as Pioreactor runs it); the single-input
  ADS1114 is unaffected.
* In continuous mode the driver reads the conversion register without re-sending the pointer when
  the same pin is read twice. Changing the gain writes the config register and leaves the pointer
  on it, so the next "fast" read returns the config word instead of a conversion. After a gain
  change we re-point with ``get_last_result(fast=False)``. A test keeps watch on that upstream
  behaviour.
* In single-shot mode the driver busy-polls the OS bit with no timeout. A chip that never reports
  "done" would hang the caller; the model completes instantly, so only real hardware can show it.

``adafruit_ads1x15`` is imported when an ADC is constructed, not when this module is imported,
because it imports ``busio`` (for type hints), and with it blinka's platform detection. It never
imports ``board``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.hardware.chips import ChipError
from actors.hardware.i2c import I2CBus

# Programmable gains and their full-scale ranges (±V), datasheet PGA table.
FULL_SCALE_V: dict[float, float] = {2 / 3: 6.144, 1: 4.096, 2: 2.048, 4: 1.024, 8: 0.512, 16: 0.256}
GAINS: tuple[float, ...] = tuple(sorted(FULL_SCALE_V))
# Pioreactor switches gain when the signal would use more than 85 % of a range (check_on_gain).
GAIN_HEADROOM = 0.85
DEFAULT_DATA_RATE = 128  # samples/s, Pioreactor's setting


def best_gain_for(volts: float, *, headroom: float = GAIN_HEADROOM) -> float:
    """The highest gain whose range still holds ``volts`` with ``headroom`` to spare.

    Why: a photodiode signal of 0.1 V read at ±4.096 V uses 2.5 % of the codes; at ±0.256 V it
    uses 39 %, which is 16 times the resolution. The 85 % headroom keeps a growing culture from
    clipping before the next re-check. Signals beyond every range get the widest one (gain 2/3).
    """
    magnitude = abs(volts)
    for gain in sorted(GAINS, reverse=True):
        if magnitude < headroom * FULL_SCALE_V[gain]:
            return gain
    return GAINS[0]


def _check_gain(gain: float) -> float:
    for allowed in GAINS:
        if abs(gain - allowed) < 1e-9:
            return allowed
    raise ValueError(f"gain must be one of 2/3, 1, 2, 4, 8, 16; got {gain!r}")


class _Ads1x15Adc:
    """Shared plumbing: construction through the Adafruit driver, gain, volts, error translation."""

    chip = "ADS1x15"
    channels: tuple[int, ...] = ()

    def __init__(
        self,
        bus: I2CBus,
        address: int,
        *,
        gain: float = 1,
        data_rate: int = DEFAULT_DATA_RATE,
        continuous: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from adafruit_ads1x15.ads1115 import ADS1115
        from adafruit_ads1x15.ads1x15 import Mode

        self.address = address
        self.continuous = continuous
        self.data_rate = data_rate
        self._sleep = sleep
        self._gain = _check_gain(gain)
        mode = Mode.CONTINUOUS if continuous else Mode.SINGLE
        self._ads: Any = self._guard(
            lambda: ADS1115(bus, gain=self._gain, data_rate=data_rate, mode=mode, address=address)
        )
        self._inputs: dict[int, Any] = {}

    @property
    def gains(self) -> tuple[float, ...]:
        return GAINS

    @property
    def gain(self) -> float:
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        value = _check_gain(value)
        if value == self._gain:
            return  # the Adafruit setter would rewrite the config register (and restart a conversion)
        self._guard(lambda: setattr(self._ads, "gain", value))
        self._gain = value
        if self.continuous:
            # Re-point at the conversion register (see module notes), then let one conversion at the
            # new gain finish so the next read is not the last old-gain result.
            self._guard(lambda: self._ads.get_last_result(False))
            self._sleep(2 / self.data_rate)

    @property
    def full_scale_v(self) -> float:
        return FULL_SCALE_V[self._gain]

    def to_volts(self, raw: int) -> float:
        """Signed code -> volts at the current gain, ``raw/32767·FSR`` as Pioreactor computes it."""
        return raw / 32767 * self.full_scale_v

    def read_raw(self, channel: int) -> int:
        """The signed 16-bit conversion result for ``channel``."""
        analog_in = self._input(channel)
        return int(self._guard(lambda: analog_in.value))

    def read_volts(self, channel: int) -> float:
        return self.to_volts(self.read_raw(channel))

    def _input(self, channel: int) -> Any:
        if channel not in self.channels:
            raise ValueError(f"{self.chip} channel must be one of {list(self.channels)}, got {channel!r}")
        if channel not in self._inputs:
            self._inputs[channel] = self._make_input(channel)
        return self._inputs[channel]

    def _make_input(self, channel: int) -> Any:
        raise NotImplementedError

    def _guard(self, op: Callable[[], Any]) -> Any:
        try:
            return op()
        except OSError as e:
            # adafruit_ads1x15 records the input as "last read" before it writes the config; if that
            # transaction failed, its continuous-mode shortcut would never re-point the chip at the
            # conversion register and every later read would return the config word. Forget the
            # last input so the next read sets the chip up again.
            self._ads._last_pin_read = None
            raise ChipError.from_os_error(self.chip, self.address, e) from e
        except ValueError as e:
            # adafruit_bus_device's probe: ValueError("No I2C device at address: 0x48").
            if "No I2C device" not in str(e):
                raise
            raise ChipError(
                self.chip,
                self.address,
                "no device answers at this address (probe failed); check that the HAT is seated and the "
                "hardware description names the right ADC chip and address",
            ) from e

    def __repr__(self) -> str:
        mode = "continuous" if self.continuous else "single-shot"
        return f"<{self.chip} 0x{self.address:02X} gain={self._gain:g} {mode}>"


class ADS1115Adc(_Ads1x15Adc):
    """Four single-ended inputs (AIN0-AIN3), single-shot: each read starts a conversion and waits for it.

    No continuous option: the Adafruit driver cannot change inputs in continuous mode (module notes).
    """

    chip = "ADS1115"
    channels = (0, 1, 2, 3)

    def __init__(self, bus: I2CBus, address: int = 0x48, *, gain: float = 1, data_rate: int = DEFAULT_DATA_RATE) -> None:
        super().__init__(bus, address, gain=gain, data_rate=data_rate, continuous=False)

    def _make_input(self, channel: int) -> Any:
        from adafruit_ads1x15.analog_in import AnalogIn

        return AnalogIn(self._ads, channel)


class ADS1114Adc(_Ads1x15Adc):
    """One input (channel 0 = AIN0-AIN1); continuous by default so each sample is a single read."""

    chip = "ADS1114"
    channels = (0,)

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x48,
        *,
        gain: float = 1,
        data_rate: int = DEFAULT_DATA_RATE,
        continuous: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(bus, address, gain=gain, data_rate=data_rate, continuous=continuous, sleep=sleep)

    def _make_input(self, channel: int) -> Any:
        from adafruit_ads1x15.analog_in import AnalogIn

        return AnalogIn(self._ads, 0, 1)
