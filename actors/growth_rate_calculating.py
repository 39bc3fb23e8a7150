"""The growth_rate_calculating job: OD readings in, ``growth_rate`` (1/h) and ``od_filtered`` out.

It listens to this unit's ``od_reading/ods`` and ``dosing_events`` through the node's bridge, so it keeps
working while the broker is down (control stays local). The filter and the warm-up normalisation are in
:mod:`actors.growth_rate_filter`.

* The first ``samples_for_od_statistics`` (10) readings set each channel's normalisation; they are kept
  per experiment in ``<state_dir>/growth_rate_calculating/<experiment>.json`` with the last estimate, so
  a restart in the same experiment continues on the same scale and from the same rate, without a new
  warm-up. ``--clear-cache true`` forgets them first (the reference's ``clear_cache`` subcommand).
* A dosing event tells the filter that the next jump in OD is a dilution, not a death; during the warm-up
  it restarts the collection (readings before and after a dilution belong to different levels).
* Zero, negative or non-finite OD (e.g. a blank subtracted from media-only readings) carries no growth
  information: an error is logged (once per episode) and nothing is published, never NaN.
"""

from __future__ import annotations

import json
import math
import os
from urllib.parse import quote

from actors import topics
from actors.files import atomic_write
from actors.growth_rate_filter import (
    DILUTING_EVENTS,
    GrowthRateCache,
    GrowthRateFilter,
    WarmUp,
    dilution_log_shift,
    growth_rate_payload,
    od_filtered_payload,
    parse_dosing_event,
    parse_ods,
)
from actors.hardware.hardware_access import node_description
from actors.job import OTHERS, Job, JobContext
from actors.settings import Setting

SAVE_EVERY = 12  # estimates between two saves of the last estimate (one minute at 5 s readings)


def cache_path(state_dir: str, experiment: str) -> str:
    return os.path.join(state_dir, "growth_rate_calculating", quote(experiment, safe="") + ".json")


class GrowthRateCalculating(Job):
    name = "growth_rate_calculating"
    kill_priority = OTHERS
    settings = (
        Setting(name="growth_rate", datatype="json"),
        Setting(name="od_filtered", datatype="json"),
        Setting(
            name="clear_cache",
            datatype="boolean",
            startup=True,
            default=False,
            description="forget this experiment's normalisation factors and warm up again",
        ),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.path = cache_path(ctx.node.state_dir, ctx.experiment)
        self.warm_up = WarmUp()
        self.cache: GrowthRateCache | None = None
        self.filter: GrowthRateFilter | None = None
        self.bad_inputs = False
        self.since_save = 0
        self.last_t: float | None = None
        self.volume_ml = node_description(ctx.node).vessel.default_efflux_tube_ml  # until the books say

    def start(self) -> None:
        if self.ctx.values["clear_cache"]:
            self._clear_cache()
        else:
            self._restore()
        self.ctx.subscribe(self.ctx.topic("od_reading", "ods"), self._on_ods)
        self.ctx.subscribe(topics.dosing_events_topic(self.ctx.unit, self.ctx.experiment), self._on_dosing_event)
        self.ctx.subscribe(topics.bioreactor_topic(self.ctx.unit, self.ctx.experiment, "current_volume_ml"), self._on_volume)
        self.ctx.ready()

    # -- the cache -----------------------------------------------------------------------------------

    def _clear_cache(self) -> None:
        try:
            os.unlink(self.path)
            self.ctx.log("INFO", f"cleared the normalisation factors of experiment {self.ctx.experiment}; warming up again")
        except FileNotFoundError:
            pass

    def _restore(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                cache = GrowthRateCache.from_dict(json.load(f))
        except FileNotFoundError:
            return
        except ValueError as e:
            self.ctx.log("WARNING", f"{self.path} is unusable ({e}); warming up again")
            return
        self.cache = cache
        self.warm_up = WarmUp.restored(cache.factors)
        means = ", ".join(f"channel {c}: {v:.5g}" for c, v in sorted(cache.factors.means.items()))
        self.ctx.log(
            "INFO",
            f"reusing the normalisation factors of experiment {self.ctx.experiment} ({means}), no warm-up; "
            "start with --clear-cache true to measure new ones",
        )

    def _save(self) -> None:
        factors = self.warm_up.factors
        if factors is None:
            return
        estimate = self.filter.estimate() if self.filter is not None else None
        previous = self.cache
        self.cache = GrowthRateCache(
            factors=factors,
            growth_rate=estimate.growth_rate if estimate else (previous.growth_rate if previous else None),
            od_filtered=estimate.od_filtered if estimate else (previous.od_filtered if previous else None),
            timestamp=(self.ctx.values.get("growth_rate") or {}).get("timestamp") if estimate else None,
        )
        try:
            atomic_write(self.path, json.dumps(self.cache.to_dict(), indent=2, sort_keys=True))
        except OSError as e:
            self.ctx.log("ERROR", f"cannot save the normalisation factors to {self.path}: {e}")
        self.since_save = 0

    # -- inputs ----------------------------------------------------------------------------------------

    def _on_ods(self, _topic: str, payload: str) -> None:
        try:
            observation = parse_ods(payload)
        except ValueError as e:
            self.ctx.log("ERROR", f"ignored an od_reading/ods message: {e}")
            return
        if self.last_t is not None and observation.t_hours <= self.last_t:
            # The same retained reading can arrive twice after a start (the bridge's replay, then the
            # broker's): counting it twice would weigh it twice.
            return
        self.last_t = observation.t_hours
        unusable = observation.unusable_channels
        if unusable:
            if not self.bad_inputs:
                values = ", ".join(f"channel {c}: {observation.ods[c]!r}" for c in unusable)
                self.ctx.log(
                    "ERROR",
                    f"OD must be above 0 to compute a growth rate, got {values}; skipping such readings "
                    "(is the blank larger than the culture's signal, or the vial empty?)",
                )
            self.bad_inputs = True
            return
        if self.bad_inputs:
            self.bad_inputs = False
            self.ctx.log("INFO", "OD readings are usable again")

        if not self.warm_up.complete:
            try:
                done = self.warm_up.add(observation.ods)
            except ValueError as e:
                self.ctx.log("ERROR", f"ignored an OD reading: {e}")
                return
            if not done:
                return
            self._save()
            self.ctx.log("INFO", "warm-up complete: normalisation factors measured and saved")
        factors = self.warm_up.factors
        assert factors is not None
        nod = factors.combine(observation.ods)
        if nod is None:
            return
        if self.filter is None:
            rate = self.cache.initial_rate() if self.cache is not None else 0.0
            self.filter = GrowthRateFilter(nod, initial_rate=rate, start_hours=observation.t_hours)
            return
        estimate = self.filter.update(nod, observation.t_hours)
        if estimate.skipped or estimate.outlier:
            return
        self.ctx.update("growth_rate", growth_rate_payload(estimate, observation.timestamp))
        self.ctx.update("od_filtered", od_filtered_payload(estimate, observation.timestamp))
        self.since_save += 1
        if self.since_save >= SAVE_EVERY:
            self._save()

    def _on_dosing_event(self, _topic: str, payload: str) -> None:
        try:
            dose = parse_dosing_event(payload)
        except ValueError as e:
            self.ctx.log("WARNING", f"ignored a dosing event: {e}")
            return
        if dose is None or dose.event not in DILUTING_EVENTS:
            return  # waste leaves the vial well mixed: the concentration does not change
        shift = dilution_log_shift(self.volume_ml, dose.volume_change)
        if not self.warm_up.complete:
            self.warm_up.dosing_event(math.exp(shift))  # the readings so far, rescaled to after the dose
        if self.filter is not None:
            self.filter.dosing_event(dose.t_hours, shift)

    def _on_volume(self, _topic: str, payload: str) -> None:
        try:
            volume = float(payload)
        except ValueError:
            return
        if volume > 0:
            self.volume_ml = volume

    def on_stop(self) -> None:
        if self.filter is not None:
            self._save()
