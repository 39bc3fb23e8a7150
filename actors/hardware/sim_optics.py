"""Simulated photodiode voltages: the IR LED, the REF photodiode, and scatter/transmission at 45/90/135/180.

Pure model, no I/O and no clock: the caller passes the biomass, IR intensity, LED temperature and the
simulated time (only the mains-hum term uses it). Randomness comes only from the ``random.Random`` given to
:class:`Optics`, so a seed and a call sequence fix every voltage. Equations from hardware.md §4.2::

    I_led = (pct/100) * (1 + c_T * (T_led - 25))              IR LED output falls as it warms
    REF   = V_dark + k_ref * I_led                            sees the LED directly: 0.10 V at 80 %
    45/90/135 = V_dark + k * I_led * X * exp(-a * X)          scatter rises, then saturates (inner filter)
    180   = V_dark + k_180 * I_led * 10**(-eps * X)           transmission through the vial

Each channel's signal above the dark offset is multiplied by a per-unit gain, lognormal(0, 0.071), drawn
once at construction (no two Pioreactors read the same culture identically). The REF photodiode's gain
spreads far less, lognormal(0, 0.003), like ``Mock_ADC``'s stable 0.100 V +- 0.0003 V REF baseline. Then the noise model of
Pioreactor's ``Mock_ADC`` is added: an AR(1) residual (rho 0.02) with a standard deviation proportional to
the signal, rare shocks (p 0.0073, 2-5 sigma), optional mains hum and ambient light. ``noise_cv`` is the
coefficient of variation of one OD *reading*, which averages ``samples_per_reading`` ADC samples; each call
here is one ADC sample, so its sigma is ``noise_cv * sqrt(samples_per_reading)`` times the signal, exactly as
``Mock_ADC`` does it. Set ``samples_per_reading=1`` to make every call a whole reading.

With the IR LED off (0 %), every channel reads only the dark offset plus ambient light (and hum): that is
what Pioreactor's dark-offset and ambient-light self-tests measure. Voltages are clipped at 0 V (a
single-ended ADC input cannot go negative) but not at the top: saturation and quantisation belong to the
ADC chip model, and the over-voltage trip needs to see values above 3.2 V.
"""

from __future__ import annotations

import math
import random

import attrs
from actors.validators import finite, finite_non_negative

CHANNELS: tuple[str, ...] = ("REF", "45", "90", "135", "180")
"""Channel names: the reference photodiode and the four valid angles, in degrees."""


def _probability(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value!r}")


def _known_channels(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = [c for c in value if c not in CHANNELS]
    if unknown or len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} must be distinct names from {CHANNELS}, got {value!r}")


@attrs.frozen(kw_only=True)
class OpticsParams:
    """Optical constants of one unit [assumption, sanity-checked against Pioreactor's self-test thresholds].

    ``k_*`` are volts per unit LED output (full intensity at 25 C). ``k_90`` = 0.7 makes a fresh culture
    (OD 0.05) read about 0.03 V at 80 % IR, inside the 0.01-0.06 V a real unit shows; the 90 degree signal
    peaks at OD ``1/a_90`` = 4 (about 0.8 V), so the auto-IR assumption of 50x growth under 3.0 V holds.
    ``epsilon_180`` is the decadic attenuation per OD unit across the 27 mm vial (OD600 is per 10 mm).
    """

    led_temp_coeff_per_c: float = attrs.field(default=-0.004, validator=finite)
    led_reference_temp_c: float = attrs.field(default=25.0, validator=finite)
    k_ref: float = attrs.field(default=0.125, validator=finite_non_negative)
    k_45: float = attrs.field(default=1.0, validator=finite_non_negative)
    a_45: float = attrs.field(default=0.35, validator=finite_non_negative)
    k_90: float = attrs.field(default=0.7, validator=finite_non_negative)
    a_90: float = attrs.field(default=0.25, validator=finite_non_negative)
    k_135: float = attrs.field(default=0.5, validator=finite_non_negative)
    a_135: float = attrs.field(default=0.15, validator=finite_non_negative)
    k_180: float = attrs.field(default=1.0, validator=finite_non_negative)
    epsilon_180: float = attrs.field(default=2.7, validator=finite_non_negative)
    dark_offset_v: float = attrs.field(default=0.002, validator=finite_non_negative)
    ambient_v: float = attrs.field(default=0.0, validator=finite_non_negative)
    hum_amplitude_v: float = attrs.field(default=0.0, validator=finite_non_negative)
    hum_hz: float = attrs.field(default=50.0, validator=finite_non_negative)
    noise_cv: float = attrs.field(default=0.0056, validator=finite_non_negative)
    samples_per_reading: int = attrs.field(default=40)
    ar_rho: float = attrs.field(default=0.02, validator=_probability)
    shock_probability: float = attrs.field(default=0.0073, validator=_probability)
    shock_sigma_min: float = attrs.field(default=2.0, validator=finite_non_negative)
    shock_sigma_max: float = attrs.field(default=5.0, validator=finite_non_negative)
    gain_sigma: float = attrs.field(default=0.071, validator=finite_non_negative)
    ref_gain_sigma: float = attrs.field(default=0.003, validator=finite_non_negative)
    channels: tuple[str, ...] = attrs.field(default=CHANNELS, converter=tuple, validator=_known_channels)

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.samples_per_reading, int) and self.samples_per_reading >= 1):
            raise ValueError(f"samples_per_reading must be an int >= 1, got {self.samples_per_reading!r}")
        if self.shock_sigma_min > self.shock_sigma_max:
            raise ValueError("shock_sigma_min must not exceed shock_sigma_max")

    @classmethod
    def noiseless(cls, **overrides: object) -> OpticsParams:
        """No gain spread, noise, shocks, hum or ambient light: for tests of the optical equations."""
        values: dict[str, object] = {
            "noise_cv": 0.0,
            "shock_probability": 0.0,
            "gain_sigma": 0.0,
            "ref_gain_sigma": 0.0,
            "hum_amplitude_v": 0.0,
            "ambient_v": 0.0,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def led_output(self, ir_intensity_pct: float, led_temp_c: float) -> float:
        """Relative IR LED output: 1.0 at 100 % and the reference temperature; never negative."""
        drift = 1.0 + self.led_temp_coeff_per_c * (led_temp_c - self.led_reference_temp_c)
        return max(0.0, ir_intensity_pct / 100.0 * drift)

    def signal(self, channel: str, od: float, led_output: float) -> float:
        """Noise-free volts above the dark offset on ``channel``, before the unit's gain."""
        if channel == "REF":
            return self.k_ref * led_output
        if channel == "180":
            return self.k_180 * led_output * 10.0 ** (-self.epsilon_180 * od)
        k, a = {"45": (self.k_45, self.a_45), "90": (self.k_90, self.a_90), "135": (self.k_135, self.a_135)}[
            channel
        ]
        return k * led_output * od * math.exp(-a * od)


def _check_inputs(od: float, ir_intensity_pct: float, led_temp_c: float, t_seconds: float) -> None:
    if not (math.isfinite(od) and od >= 0):
        raise ValueError(f"od must be finite and >= 0, got {od!r}")
    if not (math.isfinite(ir_intensity_pct) and 0 <= ir_intensity_pct <= 100):
        raise ValueError(f"ir_intensity_pct must be in [0, 100], got {ir_intensity_pct!r}")
    if not math.isfinite(led_temp_c):
        raise ValueError(f"led_temp_c must be finite, got {led_temp_c!r}")
    if not math.isfinite(t_seconds):
        raise ValueError(f"t_seconds must be finite, got {t_seconds!r}")


@attrs.define
class Optics:
    """The photodiodes of one unit, with its own gains and noise state. Deterministic for a given ``rng``.

    Construction draws, in order, one gain per channel of ``params.channels`` and the mains-hum phase.
    Each :meth:`voltages` call with the LED on then draws, per channel in order, one Gaussian innovation
    and one uniform for the shock (plus a size and a sign when a shock happens).
    """

    params: OpticsParams
    rng: random.Random
    gains: dict[str, float] = attrs.field(init=False)
    hum_phase: float = attrs.field(init=False)
    _residuals: dict[str, float] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        p = self.params
        self.gains = {
            c: self.rng.lognormvariate(0.0, p.ref_gain_sigma if c == "REF" else p.gain_sigma) for c in p.channels
        }
        self.hum_phase = self.rng.uniform(0.0, 2.0 * math.pi)
        self._residuals = {c: 0.0 for c in p.channels}

    def _background(self, t_seconds: float) -> float:
        p = self.params
        hum = p.hum_amplitude_v * math.sin(2.0 * math.pi * p.hum_hz * t_seconds + self.hum_phase)
        return p.dark_offset_v + p.ambient_v + hum

    def mean_voltages(self, od: float, ir_intensity_pct: float, led_temp_c: float) -> dict[str, float]:
        """Expected volts per channel for this unit (its gains, dark offset and ambient), without noise."""
        _check_inputs(od, ir_intensity_pct, led_temp_c, 0.0)
        p = self.params
        led = p.led_output(ir_intensity_pct, led_temp_c)
        base = p.dark_offset_v + p.ambient_v
        return {c: base + self.gains[c] * p.signal(c, od, led) for c in p.channels}

    def voltages(
        self, od: float, ir_intensity_pct: float, led_temp_c: float, t_seconds: float
    ) -> dict[str, float]:
        """One ADC sample of every channel, in volts, at simulated time ``t_seconds``."""
        _check_inputs(od, ir_intensity_pct, led_temp_c, t_seconds)
        p = self.params
        background = self._background(t_seconds)
        if ir_intensity_pct == 0:
            # Pioreactor's Mock_ADC returns just the offset with the LED off; the residual keeps its state.
            return {c: max(0.0, background) for c in p.channels}
        led = p.led_output(ir_intensity_pct, led_temp_c)
        sample_cv = p.noise_cv * math.sqrt(p.samples_per_reading)
        innovation_scale = math.sqrt(1.0 - p.ar_rho**2)
        out: dict[str, float] = {}
        for c in p.channels:
            clean = self.gains[c] * p.signal(c, od, led)
            sigma = sample_cv * clean
            residual = p.ar_rho * self._residuals[c] + innovation_scale * sigma * self.rng.gauss(0.0, 1.0)
            self._residuals[c] = residual
            shock = 0.0
            if self.rng.random() < p.shock_probability:
                size = self.rng.uniform(p.shock_sigma_min, p.shock_sigma_max)
                shock = size * sigma * (1.0 if self.rng.random() < 0.5 else -1.0)
            out[c] = max(0.0, background + clean + residual + shock)
        return out
