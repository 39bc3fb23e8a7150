"""The od_reading job: every ``interval`` seconds, the IR LED's light through the vial, normalised by REF.

Reference names and payloads: ``ods`` (``{timestamp, ods: {channel: {od, angle, channel, ir_led_intensity,
timestamp, calibrated}}}``), ``interval`` (s, settable), ``ir_led_intensity`` (%, settable). The science is
in :mod:`actors.od_processing`; this class only wires it to the drivers.
"""

from __future__ import annotations

from actors.clock import utc_iso
from actors.job import OTHERS, Job, JobContext
from actors.od_processing import ODReading, RefNoise, RefNormalizer, ReferenceSignalError, ods_payload
from actors.settings import Setting

REF = "pd1"
SIGNALS = {"pd2": ("2", "90")}  # photodiode input -> (channel label, angle)


class OdReading(Job):
    name = "od_reading"
    kill_priority = OTHERS
    settings = (
        Setting(name="interval", datatype="float", settable=True, unit="s", minimum=1, maximum=3600, default=5.0),
        Setting(name="ir_led_intensity", datatype="float", settable=True, unit="%", minimum=0, maximum=90, default=80.0),
        Setting(name="ods", datatype="json"),
        Setting(name="first_od_obs_time", datatype="float"),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.normalizer = RefNormalizer()
        self.noise = RefNoise(ctx.values["interval"])

    def start(self) -> None:
        self.ctx.set_led("A", self.ctx.values["ir_led_intensity"], self._lit)

    def _lit(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(f"cannot turn the IR LED on: {error}")
            return
        self.ctx.ready()
        self.ctx.every(self.ctx.values["interval"], self._sample, "sample")

    def _sample(self) -> None:
        self.ctx.read_adc((REF, *SIGNALS), self._measured)

    def _measured(self, volts: dict[str, float], at: float, error: str | None) -> None:
        if error is not None:
            self.ctx.log("ERROR", f"OD reading failed: {error}")
            return
        try:
            noisy = self.noise.is_noisy(volts[REF])
            normalised = self.normalizer.normalize({s: volts[s] for s in SIGNALS}, volts[REF], update=not noisy)
        except ReferenceSignalError as e:
            self.ctx.log("ERROR", f"OD reading skipped: {e}")
            return
        stamp = utc_iso(at)
        intensity = self.ctx.values["ir_led_intensity"]
        readings = [
            ODReading(channel=channel, angle=angle, od=normalised[signal], ir_led_intensity=intensity, timestamp=stamp)
            for signal, (channel, angle) in SIGNALS.items()
        ]
        if self.ctx.values.get("first_od_obs_time") is None:
            self.ctx.update("first_od_obs_time", at)
        self.ctx.update("ods", ods_payload(stamp, readings))

    def apply_interval(self, value: float) -> float:
        self.ctx.every(value, self._sample, "sample")  # re-arm on the new period
        return value

    def apply_ir_led_intensity(self, value: float) -> float:
        self.ctx.set_led("A", value)
        return value

    def on_sleep(self) -> None:
        self.ctx.set_led("A", 0.0)

    def on_wake(self) -> None:
        self.ctx.set_led("A", self.ctx.values["ir_led_intensity"])

    def on_stop(self) -> None:
        self.ctx.set_led("A", 0.0)
