"""The od_reading job: every ``interval`` seconds, the IR LED's light through the vial, as OD.

Each reading follows the reference's order (pioreactor.md §3.1, §7.2, §8.3): photodiode volts, divided by
the smoothed REF (:class:`OdSampler`, shared with od_blank), minus this experiment's blank (if od_blank
recorded one), through the active OD calibration of the channel's angle (if any). The science is in
:mod:`actors.od_processing`; this module wires it to the drivers and the node's files.

Published (reference names and payloads):

* ``ods``: ``{timestamp, ods: {channel: {od, angle, channel, ir_led_intensity, timestamp, calibrated}}}``;
* ``od<channel>`` (``od2``): that channel's reading, the calibrated one when a calibration applies;
* ``raw_od<channel>`` and ``calibrated_od<channel>``, only while a calibration applies: the reading
  before and after the calibration (``calibrated: 1`` and ``calibration_name`` in the latter);
* ``interval`` (s) and ``ir_led_intensity`` (%), both settable; ``first_od_obs_time`` (epoch seconds).

Refused at start (``pio run`` prints why, nothing starts): an active calibration recorded at another IR
intensity, made at another angle, or whose file is malformed; a blank together with a calibration; a
blank recorded at another IR intensity or unreadable. A noisy REF photodiode pauses this unit's dosing
automation (``dosing_automation/$state/set`` = ``sleeping``), as the reference does.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping
from urllib.parse import quote

import attrs

from actors import topics
from actors.calibration_store import CalibrationStore
from actors.files import atomic_write
from actors.calibrations import CalibrationError, ODCalibration
from actors.clock import utc_iso
from actors.job import OTHERS, Job, JobContext
from actors.messages import NodeConfig
from actors.od_processing import (
    Blank,
    ChannelOD,
    NormalisedVolts,
    ODReading,
    RefNoise,
    RefNormalizer,
    ReferenceSignalError,
    WarningGate,
    channel_od,
    check_transforms,
    choose_calibration,
    normalise_volts,
    od_device_for_angle,
    ods_payload,
    subtract_blank,
)
from actors.settings import Setting, SettingError

REF = "pd1"
SIGNALS = {"pd2": ("2", "90")}  # photodiode input -> (channel label, angle)
IR_LED = "A"  # the LED driver channel wired to the IR LED
CLAMP_WARNING_INTERVAL = 600.0  # simulated seconds between two "clamped to the recorded range" warnings
DOSING_JOB = "dosing_automation"


def _channel_settings() -> tuple[Setting, ...]:
    out: list[Setting] = []
    for channel, _angle in SIGNALS.values():
        out += [
            Setting(name=f"od{channel}", datatype="json"),
            Setting(name=f"raw_od{channel}", datatype="json"),
            Setting(name=f"calibrated_od{channel}", datatype="json"),
        ]
    return tuple(out)


# -- the per-experiment blank (written by od_blank) ------------------------------------------------------


def blank_path(state_dir: str, experiment: str) -> str:
    """``<state_dir>/od_blanks/<experiment>.json`` (the name quoted: an experiment may hold any text)."""
    return os.path.join(state_dir, "od_blanks", quote(experiment, safe="") + ".json")


def load_blank(state_dir: str, experiment: str) -> Blank | None:
    """The experiment's blank, None when there is none; SettingError naming the file when it is unreadable."""
    path = blank_path(state_dir, experiment)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return Blank.from_dict(data)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise SettingError(
            f"{path}: the blank of experiment {experiment!r} is unreadable ({e}); "
            "record it again with `pio run od_blank` or delete it with `pio run od_blank --delete true`"
        ) from None


def save_blank(state_dir: str, experiment: str, blank: Blank) -> str:
    path = blank_path(state_dir, experiment)
    atomic_write(path, json.dumps(blank.to_dict(), indent=2, sort_keys=True))
    return path


def delete_blank(state_dir: str, experiment: str) -> bool:
    """Remove the experiment's blank; False when there was none."""
    try:
        os.unlink(blank_path(state_dir, experiment))
    except FileNotFoundError:
        return False
    return True


# -- what a reading goes through ---------------------------------------------------------------------------


@attrs.frozen
class Transforms:
    """The blank and the calibrations (by channel label) od_reading applies, checked together."""

    blank: Blank | None
    calibrations: dict[str, ODCalibration]


def active_calibrations(state_dir: str) -> dict[str, ODCalibration]:
    """The calibration each signal channel uses (by channel label); SettingError when one is unusable."""
    store = CalibrationStore.for_node(state_dir)
    devices: dict[str, Any] = {}
    out: dict[str, ODCalibration] = {}
    for _channel, angle in SIGNALS.values():
        for device in dict.fromkeys((od_device_for_angle(angle), "od")):
            if device not in devices:
                try:
                    devices[device] = store.active(device)
                except ValueError as e:  # a malformed file: the message has file, line and the fix
                    raise SettingError(f"the active {device} calibration cannot be used:\n{e}") from None
    for channel, angle in SIGNALS.values():
        try:
            cal = choose_calibration(angle, devices)
        except CalibrationError as e:
            raise SettingError(str(e)) from None
        if cal is not None:
            out[channel] = cal
    return out


def prepare_transforms(state_dir: str, experiment: str, ir_led_intensity: float) -> Transforms:
    """Load and cross-check the blank and the calibrations; SettingError says what to change."""
    calibrations = active_calibrations(state_dir)
    blank = load_blank(state_dir, experiment)
    for cal in calibrations.values():
        try:
            cal.check_ir_led_intensity(ir_led_intensity)
        except CalibrationError as e:
            raise SettingError(f"{e} (e.g. `pio run od_reading --ir-led-intensity {cal.ir_led_intensity:g}`)") from None
    if blank is not None:
        try:
            check_transforms(blank.means, calibrations)
        except CalibrationError as e:
            names = ", ".join(sorted({c.name for c in calibrations.values()}))
            raise SettingError(
                f"experiment {experiment!r} has a blank and an active OD calibration ({names}): {e}. "
                "Delete the blank with `pio run od_blank --delete true`, or deactivate the calibration"
            ) from None
        try:
            blank.check_ir_led_intensity(ir_led_intensity)
        except CalibrationError as e:
            raise SettingError(str(e)) from None
    return Transforms(blank=blank, calibrations=calibrations)


# -- the sampling both od_reading and od_blank use -------------------------------------------------------


SAMPLES_PER_READING = 25
"""ADC samples per photodiode per reading (interleaved, trimmed mean in the ADC driver): one sample
carries several percent of noise; oversampling is what makes a reading good to about half a percent."""


class OdSampler:
    """The IR LED and the photodiodes through a job's context: light, read, REF-normalise.

    od_reading and od_blank read OD the same way through this, so a blank is on the same scale as the
    readings it is subtracted from.
    """

    def __init__(self, ctx: JobContext, interval: float) -> None:
        self.ctx = ctx
        self.normalizer = RefNormalizer()
        self.noise = RefNoise(interval)

    def light(self, intensity: float, callback: Callable[[bool, str | None], None] | None = None) -> None:
        self.ctx.set_led(IR_LED, intensity, callback)

    def dark(self) -> None:
        self.ctx.set_led(IR_LED, 0.0)

    def new_interval(self, interval: float) -> None:
        """The REF noise threshold depends on the interval: start its statistics afresh."""
        self.noise = RefNoise(interval)

    def read(self, callback: Callable[[NormalisedVolts, float], None]) -> None:
        """One reading; ``callback(normalised, at)`` unless it failed (then the error is logged)."""
        self.ctx.read_adc(
            (REF, *SIGNALS), lambda volts, at, error: self._measured(volts, at, error, callback), samples=SAMPLES_PER_READING
        )

    def _measured(
        self, volts: dict[str, float], at: float, error: str | None, callback: Callable[[NormalisedVolts, float], None]
    ) -> None:
        if error is not None:
            self.ctx.log("ERROR", f"OD reading failed: {error}")
            return
        labels = {signal: channel for signal, (channel, _angle) in SIGNALS.items()}
        try:
            normalised = normalise_volts(volts, REF, labels, self.normalizer, self.noise)
        except (ReferenceSignalError, ValueError, KeyError) as e:
            self.ctx.log("ERROR", f"OD reading skipped: {e}")
            return
        callback(normalised, at)


# -- the job ---------------------------------------------------------------------------------------------


class OdReading(Job):
    name = "od_reading"
    kill_priority = OTHERS
    settings = (
        Setting(name="interval", datatype="float", settable=True, unit="s", minimum=1, maximum=3600, default=5.0),
        Setting(name="ir_led_intensity", datatype="float", settable=True, unit="%", minimum=0, maximum=90, default=80.0),
        Setting(name="ods", datatype="json"),
        Setting(name="first_od_obs_time", datatype="float"),
        *_channel_settings(),
    )

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        prepare_transforms(node.state_dir, node.experiment, values["ir_led_intensity"])

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.sampler = OdSampler(ctx, ctx.values["interval"])
        self.transforms = Transforms(blank=None, calibrations={})
        self.gate = WarningGate(CLAMP_WARNING_INTERVAL)
        self.last_od: dict[str, float] = {}
        self.ref_noisy = False

    def start(self) -> None:
        try:  # again, for this run's experiment (check() saw the node's default one)
            self.transforms = prepare_transforms(self.ctx.node.state_dir, self.ctx.experiment, self.ctx.values["ir_led_intensity"])
        except SettingError as e:
            self.ctx.fail(str(e))
            return
        if self.transforms.blank is not None:
            means = ", ".join(f"channel {c}: {v:.5g} V" for c, v in sorted(self.transforms.blank.means.items()))
            self.ctx.log("INFO", f"subtracting the blank of experiment {self.ctx.experiment} ({means})")
        for channel, cal in sorted(self.transforms.calibrations.items()):
            self.ctx.log("INFO", f"channel {channel} uses OD calibration {cal.name!r} ({cal.device})")
        self.sampler.light(self.ctx.values["ir_led_intensity"], self._lit)

    def _lit(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(f"cannot turn the IR LED on: {error}")
            return
        self.ctx.ready()
        self.ctx.every(self.ctx.values["interval"], self._sample, "sample")

    def _sample(self) -> None:
        self.sampler.read(self._measured)

    def _measured(self, normalised: NormalisedVolts, at: float) -> None:
        self._watch_ref(normalised.ref_noisy)
        blank = self.transforms.blank
        values = subtract_blank(normalised.values, blank.means if blank is not None else None)
        stamp = utc_iso(at)
        intensity = self.ctx.values["ir_led_intensity"]
        results = [
            channel_od(
                ODReading(channel=channel, angle=angle, od=values[channel], ir_led_intensity=intensity, timestamp=stamp),
                self.transforms.calibrations.get(channel),
                hint=self.last_od.get(channel),
            )
            for channel, angle in SIGNALS.values()
        ]
        for result in results:
            self._publish_channel(result, at)
        readings = [r.reading for r in results if r.reading is not None]
        if self.ctx.values.get("first_od_obs_time") is None:
            self.ctx.update("first_od_obs_time", at)
        if readings:
            self.ctx.update("ods", ods_payload(stamp, readings))
        else:
            self._clear("ods")

    def _publish_channel(self, result: ChannelOD, at: float) -> None:
        channel = result.raw.channel
        calibrated = channel in self.transforms.calibrations
        if calibrated:
            self.ctx.update(f"raw_od{channel}", result.raw.payload())
        if result.error is not None:
            # Never leave the last good OD standing as if it were current (reference behaviour).
            self._clear(f"od{channel}")
            self._clear(f"calibrated_od{channel}")
            self.last_od.pop(channel, None)
            if self.gate.allow(f"error{channel}", at):
                self.ctx.log("ERROR", f"channel {channel}: calibration failed, no OD published: {result.error}")
            return
        reading = result.reading
        assert reading is not None
        self.last_od[channel] = reading.od
        self.ctx.update(f"od{channel}", reading.payload())
        if result.calibrated is not None:
            self.ctx.update(f"calibrated_od{channel}", result.calibrated.payload())
        if result.clamped and result.note and self.gate.allow(f"clamp{channel}", at):
            self.ctx.log("WARNING", f"channel {channel}: {result.note}")

    def _clear(self, name: str) -> None:
        if self.ctx.values.get(name) is not None:
            self.ctx.update(name, None)
            self.ctx.publish(name, "", retain=True)

    def _watch_ref(self, noisy: bool) -> None:
        if noisy and not self.ref_noisy:
            threshold = self.sampler.noise.threshold
            self.ctx.log(
                "WARNING",
                f"the REF photodiode is noisy (std {self.sampler.noise.std:.3g} above {threshold:.3g}): "
                "OD cannot be trusted, pausing the dosing automation; check the IR LED and the REF photodiode",
            )
            state_set = topics.set_topic(self.ctx.unit, self.ctx.experiment, DOSING_JOB, topics.STATE)
            self.ctx.publish_topic(state_set, "sleeping", qos=1)
        elif self.ref_noisy and not noisy:
            self.ctx.log("INFO", "the REF photodiode is quiet again; resume dosing by hand if it was paused")
        self.ref_noisy = noisy

    def apply_interval(self, value: float) -> float:
        self.sampler.new_interval(value)
        self.ctx.every(value, self._sample, "sample")  # re-arm on the new period
        return value

    def apply_ir_led_intensity(self, value: float) -> float:
        recorded = [cal.name for cal in self.transforms.calibrations.values()]
        try:
            for cal in self.transforms.calibrations.values():
                cal.check_ir_led_intensity(value)
            if self.transforms.blank is not None:
                self.transforms.blank.check_ir_led_intensity(value)
        except CalibrationError as e:
            what = f"calibration {', '.join(recorded)}" if recorded else "the blank"
            raise SettingError(f"{what} only holds at one IR intensity: {e}") from None
        self.sampler.light(value)
        self.sampler.noise.reset()  # the REF steps on purpose: not noise
        return value

    def on_sleep(self) -> None:
        self.sampler.dark()

    def on_wake(self) -> None:
        self.sampler.light(self.ctx.values["ir_led_intensity"])

    def on_stop(self) -> None:
        self.sampler.dark()
