"""``record_source``: a test job that publishes a known sequence of records, so a test can check that
the leader's database holds each of them exactly once whatever happened on the way.

Publishes ``.../record_source/n`` with values 1..count (not retained), ``per_tick`` of them every
simulated second, then stops.
"""

from __future__ import annotations

from actors.job import Job
from actors.settings import Setting


class RecordSource(Job):
    name = "record_source"
    settings = (
        Setting(name="count", datatype="integer", startup=True, minimum=1, maximum=10_000_000, default=1000),
        Setting(name="per_tick", datatype="integer", startup=True, minimum=1, maximum=1000, default=10),
    )

    def start(self) -> None:
        self.sent = 0
        self.ctx.every(1.0, self._tick, "tick")
        self.ctx.ready()

    def _tick(self) -> None:
        count = int(self.ctx.values["count"])
        for _ in range(int(self.ctx.values["per_tick"])):
            if self.sent >= count:
                self.ctx.cancel("tick")
                self.ctx.stop()
                return
            self.sent += 1
            self.ctx.publish("n", self.sent, qos=1)
