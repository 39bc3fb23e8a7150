"""The HAT ≥1.1 RP2040 ("pico") at 0x2C: a 4-input ADC and four 8-bit LED outputs over I2C.

Why our own driver: no package exists; the protocol is the HAT firmware's own (Pioreactor/pico-build).

* ADC: write ``[channel + 4]``, read 2 bytes, little-endian unsigned counts. Volts =
  ``counts / 4095 / scale · 3.3``, where ``scale`` is 32 from firmware 0.4 (oversampled counts)
  and 16 before. There is no programmable gain.
* Firmware version: write ``[0x08]``, read 2 bytes ``(minor, major)``.
* LEDs: write ``[channel 0-3, round(pct/100 · 255)]``.

Caution, from the firmware source: at scale 32 the counts for inputs above about 1.65 V exceed 16
bits, and firmware 0.5 truncates them to ``uint16_t``. Such inputs wrap to small values rather than
saturating, so a reading from this ADC cannot prove the input is below the 3.2 V over-voltage trip.
:attr:`PicoAdc.max_readable_volts` says where the ambiguity starts; callers that need an
over-voltage guarantee must look elsewhere (hardware.md §5).
"""

from __future__ import annotations

from actors.hardware.chips import ChipError, bus_transaction, check_pct
from actors.hardware.i2c import I2CBus

PICO_ADDRESS = 0x2C
VREF_V = 3.3
ADC_MAX = 4095
VERSION_REGISTER = 0x08
ADC_POINTER_OFFSET = 4
LED_CHANNELS = ("A", "B", "C", "D")
LED_MAX_CODE = 255


def scale_for(firmware: tuple[int, int]) -> int:
    """Counts per 12-bit ADC step in the firmware's reply: 32 from firmware 0.4 on, else 16."""
    return 32 if firmware >= (0, 4) else 16


class PicoAdc:
    """Implements :class:`~actors.hardware.chips.PhotodiodeAdc` for the HAT MCU (fixed gain 1).

    The firmware version is read once, on the first conversion, to choose the scale; pass
    ``firmware`` to skip that read (for example when the node already knows it).
    """

    chip = "Pico"
    channels = (0, 1, 2, 3)

    def __init__(self, bus: I2CBus, address: int = PICO_ADDRESS, *, firmware: tuple[int, int] | None = None) -> None:
        self.bus = bus
        self.address = address
        self._firmware = firmware

    @property
    def gains(self) -> tuple[float, ...]:
        return (1.0,)

    @property
    def gain(self) -> float:
        return 1.0

    @gain.setter
    def gain(self, value: float) -> None:
        if value != 1:
            raise ValueError(f"the Pico ADC has a fixed range; gain must be 1, got {value!r}")

    def firmware_version(self) -> tuple[int, int]:
        """``(major, minor)`` read from the version register; also refreshes the cached scale."""
        reply = bytearray(2)
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            bus.writeto_then_readfrom(self.address, bytes([VERSION_REGISTER]), reply)
        minor, major = reply[0], reply[1]
        if (major, minor) == (0xFF, 0xFF):
            raise ChipError(self.chip, self.address, "version register reads 0xFFFF; is the HAT firmware loaded?")
        self._firmware = (major, minor)
        return self._firmware

    @property
    def scale(self) -> int:
        if self._firmware is None:
            self.firmware_version()
        assert self._firmware is not None
        return scale_for(self._firmware)

    @property
    def max_readable_volts(self) -> float:
        """Above this input voltage the 16-bit reply can no longer be trusted (see module notes)."""
        return min(VREF_V, 0xFFFF / (ADC_MAX * self.scale) * VREF_V)

    def read_raw(self, channel: int) -> int:
        if channel not in self.channels:
            raise ValueError(f"Pico ADC channel must be 0-3, got {channel!r}")
        reply = bytearray(2)
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            bus.writeto_then_readfrom(self.address, bytes([channel + ADC_POINTER_OFFSET]), reply)
        return int.from_bytes(reply, "little", signed=False)

    def to_volts(self, raw: int) -> float:
        return raw / ADC_MAX / self.scale * VREF_V

    def read_volts(self, channel: int) -> float:
        scale = self.scale  # may read the version register first; keep it outside the ADC exchange
        return self.read_raw(channel) / ADC_MAX / scale * VREF_V

    def __repr__(self) -> str:
        return f"<PicoAdc 0x{self.address:02X} firmware={self._firmware}>"


class PicoDac:
    """The MCU's four LED outputs, A-D, as 8-bit duty; keeps what it last wrote in :attr:`intensities`.

    The IR cap (90 %) and LED locks are policy for the LED driver actor, not this class.
    """

    chip = "Pico"

    def __init__(self, bus: I2CBus, address: int = PICO_ADDRESS) -> None:
        self.bus = bus
        self.address = address
        self.intensities: dict[str, float] = {}

    @staticmethod
    def code_for(pct: float) -> int:
        return round(check_pct(pct) / 100 * LED_MAX_CODE)

    def set_intensity(self, channel: str, pct: float) -> None:
        if channel not in LED_CHANNELS:
            raise ValueError(f"LED channel must be one of {', '.join(LED_CHANNELS)}, got {channel!r}")
        code = self.code_for(pct)
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            bus.writeto(self.address, bytes([LED_CHANNELS.index(channel), code]))
        self.intensities[channel] = float(pct)

    def __repr__(self) -> str:
        return f"<PicoDac 0x{self.address:02X} {self.intensities}>"
