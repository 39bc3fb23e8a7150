"""Where things are wired on a Pioreactor HAT (1.1 / 1.2): PWM channels and the hall-sensor pin.

Kept as data, not spread through drivers; the hardware-layer issue moves this into per-HAT YAML.
"""

from __future__ import annotations

# PWM channel name -> BCM GPIO pin (reference [PWM] 1=stirring 2=media 3=alt_media 4=waste 5=heater).
PWM_PINS: dict[str, int] = {"stirring": 17, "media": 13, "alt_media": 16, "waste": 12, "heater": 18}
HALL_SENSOR_PIN = 21
