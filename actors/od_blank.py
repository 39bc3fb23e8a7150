"""The od_blank job: record this experiment's blank (the media-only signal) for od_reading to subtract.

Run it on a vial of media without cells. It reads OD exactly as od_reading does (:class:`OdSampler`:
IR LED at ``--ir-led-intensity``, REF-normalised photodiodes) ``--n-samples`` times (default 30) every
1.5 s, stores the per-channel means under the node's state folder (``od_blanks/<experiment>.json``,
written atomically), publishes them as ``means`` (retained JSON, ``{"2": volts}``) and stops itself.
od_reading then subtracts them from every reading of the experiment.

Refused (reference behaviour): while od_reading runs (both would drive the IR LED and the blank would be
read under the other job's settings), and while an OD calibration is active (a calibration already
includes the media; od_reading refuses the pair). ``--delete true`` removes the experiment's blank.
"""

from __future__ import annotations

from typing import Any, Mapping

from actors.clock import utc_iso
from actors.job import OTHERS, Job, JobContext
from actors.messages import NodeConfig
from actors.od_processing import Blank, NormalisedVolts, blank_means
from actors.od_reading import OdSampler, active_calibrations, delete_blank, save_blank
from actors.settings import Setting, SettingError

INTERVAL = 1.5  # simulated seconds between blank readings (the reference's)
SETTLE_REAL_SECONDS = 0.3  # real time for the bridge to replay od_reading's retained $state before sampling
RUNNING_STATES = ("init", "ready", "sleeping")


class OdBlank(Job):
    name = "od_blank"
    resumable = False  # a one-shot action: never redone after a power cut
    kill_priority = OTHERS
    settings = (
        Setting(name="n_samples", datatype="integer", startup=True, minimum=1, maximum=1000, default=30),
        Setting(name="ir_led_intensity", datatype="float", startup=True, unit="%", minimum=0.1, maximum=90, default=80.0),
        Setting(name="delete", datatype="boolean", startup=True, default=False),
        Setting(name="means", datatype="json", persist=True),
    )

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        if values["delete"]:
            return
        calibrations = active_calibrations(node.state_dir)
        if calibrations:
            names = ", ".join(sorted(f"{c.name} ({c.device})" for c in calibrations.values()))
            raise SettingError(
                f"an OD calibration is active ({names}); od_reading uses it instead of a blank (the calibration "
                "already includes the media). Deactivate the calibration first to record a blank"
            )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.sampler = OdSampler(ctx, INTERVAL)
        self.samples: list[dict[str, float]] = []
        self.sampling = False
        self.lit = False  # only switch off an IR LED this job switched on (od_reading may hold it)

    def start(self) -> None:
        if self.ctx.values["delete"]:
            self.ctx.ready()
            self._delete()
            return
        # The bridge replays od_reading's retained $state to this late subscriber; give it a moment.
        self.ctx.subscribe(self.ctx.topic("od_reading", "$state"), self._on_od_state)
        self.ctx.after(SETTLE_REAL_SECONDS * self.ctx.node.time_scale, self._begin, "settle")

    def _on_od_state(self, _topic: str, payload: str) -> None:
        if payload in RUNNING_STATES:
            self.ctx.fail(
                f"od_reading is running ({payload}) on {self.ctx.unit}: a blank must be read alone, with the IR LED "
                "under od_blank's control. Stop it with `pio kill od_reading`, record the blank, then start od_reading"
            )

    def _begin(self) -> None:
        self.lit = True
        self.sampler.light(self.ctx.values["ir_led_intensity"], self._lit)

    def _lit(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(f"cannot turn the IR LED on: {error}")
            return
        self.ctx.ready()
        n = self.ctx.values["n_samples"]
        self.ctx.log("INFO", f"recording the blank of experiment {self.ctx.experiment}: {n} readings, {INTERVAL} s apart")
        self.sampling = True
        self.ctx.every(INTERVAL, lambda: self.sampler.read(self._measured), "sample")

    def _measured(self, normalised: NormalisedVolts, at: float) -> None:
        if not self.sampling:
            return
        self.samples.append(dict(normalised.values))
        if len(self.samples) < self.ctx.values["n_samples"]:
            return
        self.sampling = False
        self.ctx.cancel("sample")
        self.on_stop()
        try:
            means = blank_means(self.samples)
        except ValueError as e:
            self.ctx.fail(f"cannot compute the blank: {e}")
            return
        blank = Blank(
            means=means,
            ir_led_intensity=self.ctx.values["ir_led_intensity"],
            n_samples=len(self.samples),
            created_at=utc_iso(at),
        )
        path = save_blank(self.ctx.node.state_dir, self.ctx.experiment, blank)
        self.ctx.update("means", blank.means)
        shown = ", ".join(f"channel {c}: {v:.5g} V" for c, v in sorted(means.items()))
        self.ctx.log("INFO", f"blank of experiment {self.ctx.experiment} recorded ({shown}) in {path}")
        self.ctx.stop()

    def _delete(self) -> None:
        if delete_blank(self.ctx.node.state_dir, self.ctx.experiment):
            self.ctx.log("INFO", f"deleted the blank of experiment {self.ctx.experiment}")
        else:
            self.ctx.log("INFO", f"experiment {self.ctx.experiment} has no blank; nothing to delete")
        self.ctx.publish("means", "", retain=True)  # the retained means no longer apply
        self.ctx.stop()

    def on_stop(self) -> None:
        if self.lit:
            self.lit = False
            self.sampler.dark()
