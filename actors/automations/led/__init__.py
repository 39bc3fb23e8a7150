"""LED automations: policies that decide LED intensities over time."""

from actors.automations.events import ChangedLedIntensity
from actors.automations.led.light_dark_cycle import LedDecision, LedPolicy, LightDarkCycle, SilentLeds

__all__ = ["ChangedLedIntensity", "LedDecision", "LedPolicy", "LightDarkCycle", "SilentLeds"]
