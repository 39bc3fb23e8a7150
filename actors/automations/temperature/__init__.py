"""Temperature automations: policies that turn an inferred liquid temperature into a heater duty."""

from actors.automations.events import NoEvent, UpdatedHeaterDC
from actors.automations.temperature.thermostat import (
    OnlyRecordTemperature,
    TemperatureCycle,
    TemperaturePolicy,
    Thermostat,
)

__all__ = ["NoEvent", "OnlyRecordTemperature", "TemperatureCycle", "TemperaturePolicy", "Thermostat", "UpdatedHeaterDC"]
