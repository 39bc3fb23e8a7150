"""DAC43608, the 8-channel LED current DAC on HAT 1.0 (address 0x49).

Why our own driver: the upstream ``DAC43608`` package (0.2.7) builds its own
``busio.I2C(board.SCL, board.SDA)`` inside ``__init__``, so it imports ``board`` and cannot take an
injected bus. The register map is small:

* data registers 8-15 are channels A-H. A data word carries the 8-bit code in bits 11:4, sent as
  ``[code // 16, (code % 16) · 16]``;
* register 1 (DEVICE_CONFIG): bits 7:0 power channels H..A down when set (channel A = bit 0).

Intensity follows Pioreactor: ``code = round(span · pct/100)`` with span 112 of 255, which limits
LED current to about 44 % of the chip's full scale. 0 % powers the channel down, as Pioreactor
does, and any other value writes the code *before* powering up, so an LED never flashes at an old
intensity. The driver owns every channel: it keeps a shadow of the config register, starting
from all-off, and writes the whole register on each change.
"""

from __future__ import annotations

from actors.hardware.chips import bus_transaction, check_pct
from actors.hardware.i2c import I2CBus

DAC43608_ADDRESS = 0x49
CONFIG_REGISTER = 0x01
CHANNELS = "ABCDEFGH"
CHANNEL_A_REGISTER = 0x08
PIOREACTOR_SPAN = 112


def data_bytes(code: int) -> bytes:
    """The two data bytes for an 8-bit code (bits 11:4 of the word)."""
    if not 0 <= code <= 255:
        raise ValueError(f"DAC43608 code must be 0-255, got {code}")
    return bytes([code // 16, (code % 16) * 16])


class DAC43608:
    """``set_intensity('A', 50.0)``; :attr:`intensities` holds the last value set per channel."""

    chip = "DAC43608"

    def __init__(self, bus: I2CBus, address: int = DAC43608_ADDRESS, *, span: int = PIOREACTOR_SPAN) -> None:
        if not 1 <= span <= 255:
            raise ValueError(f"span must be 1-255 (the code written at 100 %), got {span}")
        self.bus = bus
        self.address = address
        self.span = span
        self.powered_down_mask = 0xFF  # shadow of DEVICE_CONFIG bits 7:0; all off, the safe state
        self.intensities: dict[str, float] = {}

    def code_for(self, pct: float) -> int:
        return round(self.span * check_pct(pct) / 100)

    def set_intensity(self, channel: str, pct: float) -> None:
        if len(channel) != 1 or channel not in CHANNELS:
            raise ValueError(f"DAC43608 channel must be one of A-H, got {channel!r}")
        index = CHANNELS.index(channel)
        code = self.code_for(pct)
        mask = self.powered_down_mask | (1 << index) if pct == 0 else self.powered_down_mask & ~(1 << index)
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            if pct != 0:
                bus.writeto(self.address, bytes([CHANNEL_A_REGISTER + index]) + data_bytes(code))
            bus.writeto(self.address, bytes([CONFIG_REGISTER, 0x00, mask]))
        self.powered_down_mask = mask
        self.intensities[channel] = float(pct)

    def power_down_all(self) -> None:
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            bus.writeto(self.address, bytes([CONFIG_REGISTER, 0x00, 0xFF]))
        self.powered_down_mask = 0xFF
        self.intensities = {name: 0.0 for name in self.intensities}

    def __repr__(self) -> str:
        return f"<DAC43608 0x{self.address:02X} {self.intensities}>"
