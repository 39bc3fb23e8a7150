"""``doubling_time``: a worked example of a job plugin (drop-in file).

Publishes the culture's doubling time, derived from growth_rate_calculating's growth rate, as the retained
setting ``.../doubling_time/doubling_time_hours``, and logs it every ``log_every_minutes``.

Copy this file to ``<plugin_dir>/doubling_time.py`` (the file name is the job name) and run
``pio run doubling_time``. The growth rate comes through ``ctx.subscribe``, which the node's bridge serves
locally, so it keeps working while the broker is down.
"""

from __future__ import annotations

import json
import math

from actors.job import Job
from actors.settings import Setting


def doubling_time_hours(growth_rate_per_hour: float) -> float | None:
    """``ln 2 / r``; ``None`` when the culture is not growing (r <= 0): there is no doubling time."""
    if not (math.isfinite(growth_rate_per_hour) and growth_rate_per_hour > 0):
        return None
    return math.log(2.0) / growth_rate_per_hour


class DoublingTime(Job):
    name = "doubling_time"  # must match the file name
    settings = (
        Setting(name="doubling_time_hours", datatype="float", unit="h", description="ln 2 / growth rate"),
        Setting(name="log_every_minutes", datatype="float", settable=True, unit="min", minimum=1, maximum=1440,
                default=60.0, description="how often the doubling time is written to the log"),
    )

    def start(self) -> None:
        self.ctx.subscribe(self.ctx.topic("growth_rate_calculating", "growth_rate"), self._on_growth_rate)
        self._log_timer(self.ctx.values["log_every_minutes"])
        self.ctx.ready()

    def _on_growth_rate(self, _topic: str, payload: str) -> None:
        if not payload:  # a cleared retained topic (growth_rate_calculating stopped)
            return
        hours = doubling_time_hours(float(json.loads(payload)["growth_rate"]))
        if hours is not None:
            self.ctx.update("doubling_time_hours", round(hours, 4))

    def _log_timer(self, minutes: float) -> None:
        # Timers are in simulated seconds on the node clock; naming it lets a /set replace it.
        self.ctx.every(minutes * 60.0, self._log, "log")

    def _log(self) -> None:
        hours = self.ctx.values.get("doubling_time_hours")
        self.ctx.log("INFO", "no growth yet" if hours is None else f"doubling time {hours:.2f} h")

    def apply_log_every_minutes(self, value: float) -> float:
        """A /set of log_every_minutes (already cast and range-checked): restart the timer."""
        self.ctx.cancel("log")
        self._log_timer(value)
        return value  # the host stores and publishes the returned value
