"""``led_intensity``: set LED channels A-D once, record the change, and end (the reference's one-shot).

``pio run led_intensity --A 0 --C 25 --D 25``: each given channel (0-100 %) goes through the LED driver;
for every channel set, an LED change event ``{channel, intensity, source_of_event, timestamp}`` goes to
``pioreactor/<unit>/<experiment>/led_change_events`` and a log line says what changed. Channels not given
are left as they are. Out-of-range values, or no channel at all, are refused before anything changes.
Options are case-insensitive (``--A`` or ``--a``); the settings are named ``a``..``d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors import topics
from actors.clock import utc_iso
from actors.job import LEDS, Job, JobContext
from actors.messages import NodeConfig
from actors.settings import Setting, SettingError

CHANNELS = ("A", "B", "C", "D")


def _channel_setting(channel: str) -> Setting:
    return Setting(
        name=channel.lower(),
        datatype="float",
        startup=True,
        unit="%",
        minimum=0,
        maximum=100,
        description=f"intensity of LED channel {channel}",
    )


class LedIntensity(Job):
    name = "led_intensity"
    resumable = False  # a one-shot action: never redone after a power cut
    kill_priority = LEDS
    settings = (
        *(_channel_setting(c) for c in CHANNELS),
        Setting(name="source_of_event", datatype="string", startup=True, default="led_intensity",
                description="who asked, recorded in the LED change events"),
    )

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        if all(values.get(c.lower()) is None for c in CHANNELS):
            raise SettingError("give at least one channel to set, e.g. --A 50 (channels A, B, C, D; 0-100 %)")

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.wanted = {c: float(ctx.values[c.lower()]) for c in CHANNELS if ctx.values.get(c.lower()) is not None}
        self.waiting = set(self.wanted)
        self.failures: list[str] = []

    def start(self) -> None:
        self.ctx.ready()
        for channel, intensity in self.wanted.items():
            self.ctx.set_led(channel, intensity, lambda ok, error, c=channel: self._done(c, ok, error))

    def _done(self, channel: str, ok: bool, error: str | None) -> None:
        self.waiting.discard(channel)
        if ok:
            intensity = self.wanted[channel]
            event = {
                "channel": channel,
                "intensity": intensity,
                "source_of_event": self.ctx.values["source_of_event"],
                "timestamp": utc_iso(self.ctx.clock.now()),
            }
            self.ctx.publish_topic(topics.led_change_events_topic(self.ctx.unit, self.ctx.experiment), event, qos=1)
            self.ctx.log("INFO", f"Updated LED {channel} to {intensity:g} %.")
        else:
            self.failures.append(f"LED {channel}: {error}")
        if self.waiting:
            return
        if self.failures:
            self.ctx.log("ERROR", "could not set " + "; ".join(self.failures))
        self.ctx.stop()
