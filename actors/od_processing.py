"""From photodiode volts to OD readings, pure: REF normalisation, REF noise, blanks, calibration, payloads.

The od_reading job (reference §3.1, §7.2) oversamples each photodiode, then transforms the signal in a
fixed order, and each step here is one of those transforms, with no clock and no I/O so it can be tested
alone and reused by the simulator scenarios:

1. :func:`trimmed_mean` collapses the oversampled ADC values of one reading into one voltage, so a rare
   electrical spike in one sample cannot move the reading;
2. :class:`RefNormalizer` divides every signal photodiode by a smoothed, unit-less copy of the REF
   photodiode (``od = pd / EMA(REF / REF0)``), which cancels IR LED output drift (LED temperature, ageing,
   a sagging 3.3 V rail) because scattered light is proportional to the LED's output;
3. :class:`RefNoise` watches the REF signal itself: a noisy REF means the normalisation cannot be
   trusted, and the reference then pauses the dosing automation rather than dose on bad OD;
4. :func:`subtract_blank` removes the per-experiment blank (media only) signal;
5. :func:`calibrated_reading` maps volts to OD600 through an
   :class:`~actors.calibrations.ODCalibration` (curve maths and validation live there);
6. :class:`ODReading` / :func:`ods_payload` build the ``od_reading/ods`` message.

Around them: :func:`normalise_volts` (one ADC reading through 2-3, shared by od_reading and od_blank),
:class:`Blank` / :func:`blank_means` (what od_blank stores), :func:`choose_calibration` (which active
calibration a channel uses), :func:`channel_od` (one channel through 5, a failure reported rather than
raised) and :class:`WarningGate` (rate-limited clamping warnings).

Timestamps are ISO strings passed in by the caller (the actor owns the clock).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import attrs

from actors.calibrations import ANGLES, OD_DEVICES, CalibrationError, CurveValue, ODCalibration
from actors.validators import finite

PD_REFERENCE_EMA = 0.75
"""``[od_reading.config] pd_reference_ema``: the weight the REF average keeps on its previous value."""

REF_NOISE_STD_AT_5S = 0.025
"""Largest acceptable std of ``REF / REF0`` at the default 5 s interval; scales with sqrt(interval / 5)."""


class ReferenceSignalError(ValueError):
    """The REF photodiode reads zero, a negative or a non-number: normalising by it would divide by ~0.

    Usually the REF photodiode is unplugged or the IR LED is off; the caller must not publish OD.
    """


def _check_fraction(name: str, value: float, *, upper_open: bool = False) -> float:
    high_ok = value < 1 if upper_open else value <= 1
    if not (math.isfinite(value) and 0 <= value and high_ok):
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return float(value)


# -- oversampling --------------------------------------------------------------------------------------


def trimmed_mean(samples: Iterable[float], trim: float = 0.1) -> float:
    """Mean of ``samples`` after dropping the lowest and highest ``floor(trim * n)`` values.

    Why trimmed and not a plain mean or a median: an ADC burst has occasional spikes (a pump switching, a
    shock in the simulator's noise model) that a plain mean lets through, while a median throws away most
    of the averaging that oversampling pays for. Raises ``ValueError`` for no samples or non-finite ones,
    because a reading built from NaN must not look valid.
    """
    values = sorted(float(s) for s in samples)
    if not values:
        raise ValueError("trimmed_mean needs at least one sample")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("trimmed_mean samples must be finite")
    trim = _check_fraction("trim", trim, upper_open=True)
    if trim >= 0.5:
        raise ValueError(f"trim must be below 0.5 (something must remain), got {trim!r}")
    cut = int(len(values) * trim)
    kept = values[cut : len(values) - cut]
    return math.fsum(kept) / len(kept)


# -- REF normalisation ---------------------------------------------------------------------------------


def _check_ref(ref_volts: float) -> float:
    if not (math.isfinite(ref_volts) and ref_volts > 0):
        raise ReferenceSignalError(
            f"REF photodiode reads {ref_volts!r} V; is it connected and is the IR LED on?"
        )
    return float(ref_volts)


class RefNormalizer:
    """``od = pd / EMA(REF / REF0)``: signal photodiodes divided by the smoothed relative IR LED output.

    ``REF0`` is the first REF reading of the experiment, or the value restored from the experiment cache
    (``ir_led_reference_normalization``), so a restarted od_reading job continues on the same scale. Using
    the ratio ``REF / REF0`` (the reference's ``unity`` mode) keeps the output in volts: right after start
    the normalised signal equals the raw one, so blanks and calibrations recorded in volts still apply.

    The EMA follows the reference's convention: ``ema = (1 - a) * x + a * ema``, where ``a`` is
    ``pd_reference_ema`` (0.75), the weight kept on the previous average. Smoothing the REF matters
    because its noise would otherwise be added, reading by reading, to every OD value; LED drift is slow,
    so a short memory (about 4 readings) loses nothing.
    """

    def __init__(self, pd_reference_ema: float = PD_REFERENCE_EMA, ref0: float | None = None) -> None:
        self.alpha = _check_fraction("pd_reference_ema", pd_reference_ema)
        self._ref0: float | None = None if ref0 is None else _check_ref(ref0)
        self._ema: float | None = None

    @property
    def ref0(self) -> float | None:
        """The REF voltage everything is relative to; cache it per experiment (None before any reading)."""
        return self._ref0

    @property
    def ema(self) -> float | None:
        """The current smoothed ``REF / REF0`` (None before any reading)."""
        return self._ema

    def update(self, ref_volts: float) -> float:
        """Fold one REF reading into the average and return the new ``EMA(REF / REF0)``."""
        ref = _check_ref(ref_volts)
        if self._ref0 is None:
            self._ref0 = ref
        ratio = ref / self._ref0
        self._ema = ratio if self._ema is None else (1.0 - self.alpha) * ratio + self.alpha * self._ema
        return self._ema

    def normalize(
        self, pd_volts: Mapping[str, float], ref_volts: float, *, update: bool = True
    ) -> dict[str, float]:
        """Return ``{channel: pd / EMA}`` after folding ``ref_volts`` into the EMA.

        Pass ``update=False`` while :class:`RefNoise` reports a noisy REF: the last trusted average is then
        used, so one bad REF reading cannot bend every OD value (the reference does the same).
        """
        if update or self._ema is None:
            self.update(ref_volts)
        assert self._ema is not None
        if not (math.isfinite(self._ema) and self._ema > 0):
            raise ReferenceSignalError(f"REF average is {self._ema!r}; cannot normalise")
        out: dict[str, float] = {}
        for channel, volts in pd_volts.items():
            if not math.isfinite(volts):
                raise ValueError(f"photodiode {channel!r} reads {volts!r}; expected a finite voltage")
            out[channel] = volts / self._ema
        return out


def ref_noise_threshold(interval_s: float) -> float:
    """Largest acceptable std of ``REF / REF0`` for readings ``interval_s`` apart: 0.025 * sqrt(interval/5).

    Why it grows with the interval: between two readings the LED's output wanders (temperature, rail)
    like a random walk, so its spread between consecutive readings grows with the square root of the time
    between them; a fixed threshold would flag healthy units that read slowly.
    """
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"interval_s must be finite and > 0, got {interval_s!r}")
    return REF_NOISE_STD_AT_5S * math.sqrt(interval_s / 5.0)


class RefNoise:
    """Running, exponentially weighted std of ``REF / REF0``; :meth:`is_noisy` compares it to the threshold.

    An exponential weighting (``alpha`` kept on the past, 0.95: a memory of about 20 readings) forgets an
    old disturbance by itself, so the flag clears once the REF settles again without a reset. Call
    :meth:`reset` after a deliberate IR intensity change, which steps REF on purpose.
    """

    def __init__(
        self, interval_s: float, *, alpha: float = 0.95, ref0: float | None = None, min_samples: int = 3
    ) -> None:
        self.threshold = ref_noise_threshold(interval_s)
        self.alpha = _check_fraction("alpha", alpha, upper_open=True)
        if not (isinstance(min_samples, int) and min_samples >= 2):
            raise ValueError(f"min_samples must be an int >= 2, got {min_samples!r}")
        self.min_samples = min_samples
        self._ref0: float | None = None if ref0 is None else _check_ref(ref0)
        self._mean = 0.0
        self._var = 0.0
        self._n = 0

    @property
    def std(self) -> float:
        """The current weighted std of ``REF / REF0`` (0 before two readings)."""
        return math.sqrt(self._var)

    def reset(self) -> None:
        """Forget the statistics (keep REF0), e.g. after the IR LED intensity was changed on purpose."""
        self._mean = 0.0
        self._var = 0.0
        self._n = 0

    def update(self, ref_volts: float) -> float:
        """Fold one REF reading in and return the new std."""
        ref = _check_ref(ref_volts)
        if self._ref0 is None:
            self._ref0 = ref
        x = ref / self._ref0
        if self._n == 0:
            self._mean, self._var = x, 0.0
        else:
            # West's incremental, exponentially weighted mean and variance: stable, one pass, no history.
            diff = x - self._mean
            step = (1.0 - self.alpha) * diff
            self._mean += step
            self._var = self.alpha * (self._var + diff * step)
        self._n += 1
        return self.std

    def is_noisy(self, ref_volts: float) -> bool:
        """Fold ``ref_volts`` in; True when the REF is too noisy to trust (pause dosing, hold the EMA).

        Needs ``min_samples`` readings first: with one or two values the spread says nothing.
        """
        std = self.update(ref_volts)
        return self._n >= self.min_samples and std > self.threshold


# -- blank -------------------------------------------------------------------------------------------


def subtract_blank(values: Mapping[str, float], blank: Mapping[str, float] | None) -> dict[str, float]:
    """Subtract the per-channel blank (the media-only signal of this experiment), never going below 0.

    Channels without a blank are returned unchanged; ``blank=None`` means no blank was recorded. The floor
    at 0 is deliberate: a culture cannot have negative turbidity, and a negative value would break
    everything downstream that takes logarithms or ratios. A noisy reading at or below the blank therefore
    comes out as exactly 0, which the growth-rate filter skips as "no information" rather than using.
    """
    if blank is None:
        return {channel: float(v) for channel, v in values.items()}
    out: dict[str, float] = {}
    for channel, v in values.items():
        b = blank.get(channel, 0.0)
        if not (math.isfinite(v) and math.isfinite(b)):
            raise ValueError(f"channel {channel!r}: value {v!r} and blank {b!r} must be finite")
        out[channel] = max(0.0, v - b)
    return out


def check_transforms(blank: Mapping[str, float] | None, calibrated_channels: Iterable[str]) -> None:
    """Refuse a blank together with a calibration: the calibration curve already includes the blank.

    Subtracting it twice would shift every calibrated OD down (reference behaviour: rejected).
    """
    both = sorted(set(blank or {}) & set(calibrated_channels))
    if both:
        raise CalibrationError(f"channels {both} have both a blank and a calibration; use one or the other")


def _check_angle(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in ANGLES:
        raise ValueError(f"{attribute.name} must be one of {ANGLES}, got {value!r}")


# -- payloads ------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ODReading:
    """One channel's OD reading, as carried in ``od_reading/ods`` and ``od_reading/odN``.

    ``calibration_name`` set means ``od`` went through a calibration (payload ``calibrated: 1``);
    otherwise ``od`` is the normalised voltage (``calibrated: 0``), as in the reference's structs.
    """

    channel: str
    angle: str = attrs.field(validator=_check_angle)
    od: float = attrs.field(validator=finite)
    ir_led_intensity: float = attrs.field(validator=finite)
    timestamp: str
    calibration_name: str | None = None

    @property
    def calibrated(self) -> bool:
        return self.calibration_name is not None

    def payload(self) -> dict[str, object]:
        """The JSON-ready dict of one reading."""
        out: dict[str, object] = {
            "od": self.od,
            "angle": self.angle,
            "channel": self.channel,
            "ir_led_intensity": self.ir_led_intensity,
            "timestamp": self.timestamp,
            "calibrated": int(self.calibrated),
        }
        if self.calibration_name is not None:
            out["calibration_name"] = self.calibration_name
        return out


def ods_payload(timestamp: str, readings: Iterable[ODReading]) -> dict[str, object]:
    """``{timestamp, ods: {channel: reading}}``, the ``od_reading/ods`` message. Channels must be unique."""
    ods: dict[str, object] = {}
    for reading in readings:
        if reading.channel in ods:
            raise ValueError(f"channel {reading.channel!r} appears twice in one OD reading")
        ods[reading.channel] = reading.payload()
    return {"timestamp": timestamp, "ods": ods}


def calibrated_reading(
    reading: ODReading, calibration: ODCalibration, *, hint: float | None = None
) -> tuple[ODReading, CurveValue]:
    """Apply ``calibration`` to a raw reading: checks angle and IR intensity, returns the new reading and
    the conversion (whose ``clamped`` flag and ``message`` the caller logs, rate-limited).

    The voltage is clamped to what the calibration recorded (``enforce_bounds``), so noise at the ends
    gives the recorded extreme rather than an extrapolated OD; ``hint`` (e.g. the previous OD) picks the
    branch of a curve that bends back.
    """
    if reading.angle != calibration.angle:
        raise CalibrationError(
            f"calibration {calibration.name!r} is for angle {calibration.angle}, reading is {reading.angle}"
        )
    converted = calibration.voltage_to_od(reading.od, reading.ir_led_intensity, hint=hint)
    return attrs.evolve(reading, od=converted.value, calibration_name=calibration.name), converted



# -- one reading, end to end ---------------------------------------------------------------------------


@attrs.frozen
class NormalisedVolts:
    """One reading of every signal photodiode after REF normalisation, by channel label ("2").

    ``ref_noisy`` is :meth:`RefNoise.is_noisy` for this reading: the REF average was held, and the caller
    should pause dosing (reference behaviour) rather than let an automation act on doubtful OD.
    """

    values: dict[str, float]
    ref_noisy: bool


def normalise_volts(
    volts: Mapping[str, float],
    ref_input: str,
    signals: Mapping[str, str],
    normalizer: RefNormalizer,
    noise: RefNoise,
) -> NormalisedVolts:
    """ADC volts by input (``{"pd1": .., "pd2": ..}``) to normalised volts by channel label.

    ``signals`` maps each signal input to its channel label (``{"pd2": "2"}``). The REF noise is judged
    first, so a noisy REF reading is not folded into the average it would bend. Raises
    :class:`ReferenceSignalError` for an unusable REF and ``KeyError`` for a missing input.
    """
    ref = volts[ref_input]
    noisy = noise.is_noisy(ref)
    by_input = normalizer.normalize({s: volts[s] for s in signals}, ref, update=not noisy)
    return NormalisedVolts(values={signals[s]: v for s, v in by_input.items()}, ref_noisy=noisy)


# -- blanks ----------------------------------------------------------------------------------------------


def _blank_means_converter(means: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(means, Mapping) or not means:
        raise ValueError(f"means must map channel labels to volts, e.g. {{\"2\": 0.012}}, got {means!r}")
    out: dict[str, float] = {}
    for channel, v in means.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"means[{channel!r}] must be a finite voltage >= 0, got {v!r}")
        out[str(channel)] = float(v)
    return out


def _blank_intensity(_i: object, _a: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and 0 < value <= 100):
        raise ValueError(f"ir_led_intensity must be a percentage in (0, 100], got {value!r}")


def _blank_samples(_i: object, _a: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"n_samples must be a whole number >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class Blank:
    """The media-only signal of one experiment, per channel, recorded by od_blank at one IR intensity.

    Volts scale with the IR LED, so a blank recorded at another intensity than the reading's would
    subtract the wrong amount: :meth:`check_ir_led_intensity` refuses that.
    """

    means: dict[str, float] = attrs.field(converter=_blank_means_converter)
    ir_led_intensity: float = attrs.field(converter=float, validator=_blank_intensity)
    n_samples: int = attrs.field(validator=_blank_samples)
    created_at: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "means": dict(self.means),
            "ir_led_intensity": self.ir_led_intensity,
            "n_samples": self.n_samples,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: object) -> Blank:
        """Read a stored blank; ``ValueError`` says which field is wrong (the caller adds the file)."""
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object with means, ir_led_intensity, n_samples, created_at")
        missing = [k for k in ("means", "ir_led_intensity", "n_samples") if k not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}; record the blank again with `pio run od_blank`")
        intensity = data["ir_led_intensity"]
        if isinstance(intensity, bool) or not isinstance(intensity, (int, float)):
            raise ValueError(f"ir_led_intensity must be a number, got {intensity!r}")
        try:
            return cls(
                means=data["means"],
                ir_led_intensity=intensity,
                n_samples=data["n_samples"],
                created_at=str(data.get("created_at", "")),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None

    def check_ir_led_intensity(self, ir_led_intensity: float) -> None:
        """Raise :class:`CalibrationError` unless readings use the IR intensity the blank was recorded at."""
        if not math.isclose(ir_led_intensity, self.ir_led_intensity, rel_tol=0.0, abs_tol=1e-9):
            raise CalibrationError(
                f"the blank was recorded at IR intensity {self.ir_led_intensity:g} % but od_reading would use "
                f"{ir_led_intensity:g} %; run od_reading with --ir-led-intensity {self.ir_led_intensity:g}, "
                "or record the blank again at the new intensity"
            )


def blank_means(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-channel 10 % trimmed mean of od_blank's readings (a spike cannot set the blank).

    Every sample must carry the same channels; ``ValueError`` otherwise or when there are none.
    """
    if not samples:
        raise ValueError("a blank needs at least one reading")
    channels = set(samples[0])
    if not channels:
        raise ValueError("a blank reading must carry at least one channel")
    for sample in samples:
        if set(sample) != channels:
            raise ValueError(f"blank readings changed channels from {sorted(channels)} to {sorted(sample)}")
    return {c: trimmed_mean([s[c] for s in samples], 0.1) for c in sorted(channels)}


# -- calibration per channel -------------------------------------------------------------------------------


def od_device_for_angle(angle: str) -> str:
    """The calibration device of a photodiode angle: ``"90"`` -> ``"od90"`` (180 has only the generic)."""
    if angle not in ANGLES:
        raise ValueError(f"angle must be one of {ANGLES}, got {angle!r}")
    return f"od{angle}" if f"od{angle}" in OD_DEVICES else "od"


def choose_calibration(angle: str, active: Mapping[str, object]) -> ODCalibration | None:
    """The calibration a channel at ``angle`` uses: the active one of its angle's device (``od90``), else
    the generic ``od`` device's, else None. ``active`` maps device -> active calibration (or None).

    Raises :class:`CalibrationError` when the one found is not an OD calibration or was made at another
    angle: its curve would turn this channel's volts into a wrong OD with no sign of it.
    """
    device = od_device_for_angle(angle)
    for candidate in dict.fromkeys((device, "od")):
        cal = active.get(candidate)
        if cal is None:
            continue
        if not isinstance(cal, ODCalibration):
            raise CalibrationError(f"the active calibration of {candidate} is not an OD calibration")
        if cal.angle != angle:
            raise CalibrationError(
                f"the active {candidate} calibration {cal.name!r} was recorded at angle {cal.angle}, but this "
                f"channel reads at {angle}; activate a calibration made at {angle} degrees"
            )
        return cal
    return None


@attrs.frozen
class ChannelOD:
    """What od_reading publishes for one channel: the raw reading (normalised, blank-subtracted volts),
    the calibrated one when a calibration applies and succeeded, a note to log (clamping) and an error
    (the calibration failed: publish no OD for this channel, and clear the stale one)."""

    raw: ODReading
    calibrated: ODReading | None = None
    note: str | None = None
    clamped: bool = False
    error: str | None = None

    @property
    def reading(self) -> ODReading | None:
        """The reading that goes into ``ods`` and ``od<channel>``; None when the calibration failed."""
        if self.error is not None:
            return None
        return self.calibrated if self.calibrated is not None else self.raw


def channel_od(raw: ODReading, calibration: ODCalibration | None, *, hint: float | None = None) -> ChannelOD:
    """Apply ``calibration`` (if any) to one raw reading, catching the calibration's refusals as ``error``."""
    if calibration is None:
        return ChannelOD(raw=raw)
    try:
        calibrated, converted = calibrated_reading(raw, calibration, hint=hint)
    except (CalibrationError, ValueError) as e:
        return ChannelOD(raw=raw, error=str(e))
    return ChannelOD(raw=raw, calibrated=calibrated, note=converted.message, clamped=converted.clamped)


class WarningGate:
    """Rate-limits repeated warnings (clamped calibrations): one per key every ``min_interval`` seconds.

    The caller passes the time, so the gate follows the node's clock (simulated or real).
    """

    def __init__(self, min_interval: float) -> None:
        if not (math.isfinite(min_interval) and min_interval >= 0):
            raise ValueError(f"min_interval must be finite and >= 0, got {min_interval!r}")
        self.min_interval = float(min_interval)
        self._last: dict[str, float] = {}

    def allow(self, key: str, now: float) -> bool:
        """True when a warning for ``key`` may be logged at ``now`` (and remember that it was)."""
        last = self._last.get(key)
        if last is not None and now - last < self.min_interval:
            return False
        self._last[key] = now
        return True
