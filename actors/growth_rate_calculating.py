"""The growth_rate_calculating job: OD readings in, ``growth_rate`` (1/h) and ``od_filtered`` out.

It listens to this unit's ``od_reading/ods`` through the node's bridge, so it keeps working while the
broker is down (control stays local). The filter and the warm-up normalisation are in
:mod:`actors.growth_rate_filter`.
"""

from __future__ import annotations

import json
from datetime import datetime

from actors.growth_rate_filter import GrowthRateFilter, WarmUp, growth_rate_payload, od_filtered_payload
from actors.job import OTHERS, Job, JobContext
from actors.settings import Setting


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class GrowthRateCalculating(Job):
    name = "growth_rate_calculating"
    kill_priority = OTHERS
    settings = (
        Setting(name="growth_rate", datatype="json"),
        Setting(name="od_filtered", datatype="json"),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.warm_up = WarmUp()
        self.filter: GrowthRateFilter | None = None

    def start(self) -> None:
        self.ctx.subscribe(self.ctx.topic("od_reading", "ods"), self._on_ods)
        self.ctx.ready()

    def _on_ods(self, _topic: str, payload: str) -> None:
        message = json.loads(payload)
        ods = {channel: float(r["od"]) for channel, r in message["ods"].items()}
        t_hours = _epoch(message["timestamp"]) / 3600.0
        if not self.warm_up.complete:
            if not self.warm_up.add(ods):
                return
        factors = self.warm_up.factors
        assert factors is not None
        nod = factors.combine(ods)
        if nod is None:
            return
        if self.filter is None:
            self.filter = GrowthRateFilter(nod, start_hours=t_hours)
            return
        estimate = self.filter.update(nod, t_hours)
        if estimate.skipped or estimate.outlier:
            return
        self.ctx.update("growth_rate", growth_rate_payload(estimate, message["timestamp"]))
        self.ctx.update("od_filtered", od_filtered_payload(estimate, message["timestamp"]))
