"""TMP1075 heater-plate temperature sensor (address 0x4F on every HAT).

Why our own driver: there is no maintained package that takes an injected bus (Pioreactor vendors
its own). The conversion Pioreactor documents, ``((b0 << 4) + (b1 >> 4)) · 0.0625`` (hardware.md
§3.1), ignores the sign bit, so a plate just below 0 °C would read about +256 °C. This driver decodes
the 12-bit two's-complement value.

Protocol: write pointer ``0x00``, read 2 bytes big-endian; the reading sits in bits 15:4 at
0.0625 °C per LSB. The sensor measures the heater plate, not the liquid (hardware.md §3.1).
"""

from __future__ import annotations

from actors.hardware.chips import bus_transaction
from actors.hardware.i2c import I2CBus

TMP1075_ADDRESS = 0x4F
TEMPERATURE_REGISTER = 0x00
LSB_C = 0.0625


def celsius_from_word(word: int) -> float:
    """Temperature register (16 bits) -> °C."""
    counts = (word >> 4) & 0xFFF
    if counts & 0x800:
        counts -= 0x1000
    return counts * LSB_C


class TMP1075:
    chip = "TMP1075"

    def __init__(self, bus: I2CBus, address: int = TMP1075_ADDRESS) -> None:
        self.bus = bus
        self.address = address

    def read_celsius(self) -> float:
        """One reading; raises :class:`~actors.hardware.chips.ChipError` if the sensor does not answer.

        A safety loop must treat that error as "heater off", never as "temperature unknown, carry on".
        """
        reply = bytearray(2)
        with bus_transaction(self.bus, self.chip, self.address) as bus:
            bus.writeto_then_readfrom(self.address, bytes([TEMPERATURE_REGISTER]), reply)
        return celsius_from_word(reply[0] << 8 | reply[1])

    def __repr__(self) -> str:
        return f"<TMP1075 0x{self.address:02X}>"
