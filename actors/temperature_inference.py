"""Infer the liquid's temperature from the heater plate's decay while the heater is off.

The only thermometer is on the heater PCB, so it reads the *plate*, which with the heater on sits well
above the liquid. Pioreactor therefore switches the heater off every 200 s, records 21 plate readings
5 s apart and infers the liquid from how the plate cools (pioreactor.md §7.2). This module is that
inference, pure: readings in, an estimate out.

Physics (hardware.md §4.2). With the heater off, plate ``h`` and liquid ``l``, in deviations from the
ambient ``T_a``, obey ``x' = A x`` with a 2x2 ``A`` whose eigenvalues are real, distinct and negative
(``l1`` fast, about -1/43 s; ``l2`` slow, about -1/690 s). So::

    plate(t)  = T_a + c1 exp(l1 t)      + c2 exp(l2 t)
    liquid(t) = T_a + r1 c1 exp(l1 t)   + r2 c2 exp(l2 t)        r_i = (l_i - a11) / a12

where ``r_i`` is the liquid/plate ratio of each mode's eigenvector. The fast mode is the plate relaxing
toward the liquid (``r1`` is small and negative: the liquid barely moves); the slow mode is plate and
liquid cooling together toward ambient, the plate a little cooler than the liquid (``r2`` just above 1)
because it also leaks to the room.

Why the rates and ratios are a *model input* rather than fitted: a zero-input response of the plate alone
determines the rates and the plate's amplitudes, but not the liquid's scale (multiply the liquid's
deviation by ``k`` and ``a12`` by ``1/k``: the plate's curve is unchanged). Some knowledge of the device
is unavoidable; Pioreactor encodes it as regression coefficients fitted on real vials, we encode it as the
device's thermal constants (:class:`PlateModel`, from the same constants the simulator uses, to be
refitted on real hardware). With the rates known, the plate curve is *linear* in ``(T_a, c1, c2)``, and
a least-squares fit of three numbers to 21 readings is stable: the slow mode's slope separates ``c2``
from ``T_a`` (its curvature over 100 s would not), so the unknown room temperature is estimated too.

Precision, measured on the simulator: the estimate is a fixed linear combination of the readings whose
weights have norm 1.9, so the sensor's 0.035 C noise gives a 0.07 C standard deviation; 4000 random
heater histories stayed within 0.24 C. Accuracy rests on the model: with the plate-liquid resistance 10 %
off, errors reach 0.9 C (the liquid heat capacity 10 % off: 0.4 C), so each vessel type needs its own
constants, just as Pioreactor fits its coefficients per model.

Quality. A fit is flagged ``"poor"`` (never silently trusted) when the residual is far above sensor noise
(a disturbed window, a reading glitch), when the fitted room temperature is implausible, or when the
plate's fast decay is too small for a seated vial. A vial not seated leaves the plate cooling alone, with
one slower exponential, and little of the quick drop toward the liquid; when the caller says how the
heater ran before the window, the fast decay must be as large as that heating makes it in a seated vial
(the fast mode's amplitude depends only on the recent duty, not on the liquid). The fast mode's *rate*
is no good for this: over a 100 s window the room temperature and the slow mode absorb a fast rate two or
three times off the model's to within sensor noise, and a free fit of the rate strays far on clean data.
The estimate is still returned so the caller can log it; what to do with a poor one (skip the control
step) is the job's call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs

from actors.validators import finite_non_negative, finite_positive

Quality = Literal["ok", "poor"]

MIN_READINGS = 6
"""Three coefficients are fitted; fewer than six readings leave too few degrees of freedom to judge the
fit at all."""


def _negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value < 0):
        raise ValueError(f"{attribute.name} must be finite and < 0, got {value!r}")


def _finite(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


@attrs.frozen(kw_only=True)
class Heating:
    """What the heater did just before the window: ``duty_pct`` (as applied) held for ``seconds``."""

    duty_pct: float = attrs.field(validator=finite_non_negative)
    seconds: float = attrs.field(validator=finite_non_negative)


@attrs.frozen(kw_only=True)
class PlateModel:
    """The heater-off dynamics of one vessel type, as its plate sensor sees them.

    ``fast_rate_per_s`` and ``slow_rate_per_s`` are the two eigenvalues (both negative, fast < slow);
    ``fast_liquid_ratio`` and ``slow_liquid_ratio`` are each mode's liquid/plate ratio (module docstring).
    Build it from physical constants with :meth:`from_constants`.
    """

    fast_rate_per_s: float = attrs.field(validator=_negative)
    slow_rate_per_s: float = attrs.field(validator=_negative)
    fast_liquid_ratio: float = attrs.field(validator=_finite)
    slow_liquid_ratio: float = attrs.field(validator=_finite)
    fast_gain_c_per_pct: float = attrs.field(validator=finite_non_negative)

    def expected_fast_amplitude_c(self, heating: Heating) -> float:
        """The fast mode's amplitude at switch-off after ``heating``, if the vial is in contact.

        In modal coordinates the fast mode obeys ``z' = l1 z + beta1 u`` whatever the slow mode does, so
        after ``seconds`` at a duty it has covered ``1 - exp(l1 seconds)`` of the way to its steady value
        ``fast_gain_c_per_pct * duty``. What it held before is ignored, which makes this a lower bound for
        a heater that was on before as well (it never goes negative while heating).
        """
        approach = 1.0 - math.exp(self.fast_rate_per_s * heating.seconds)
        return self.fast_gain_c_per_pct * heating.duty_pct * approach

    def __attrs_post_init__(self) -> None:
        if not self.fast_rate_per_s < self.slow_rate_per_s:
            raise ValueError(
                f"fast_rate_per_s ({self.fast_rate_per_s}) must be below slow_rate_per_s "
                f"({self.slow_rate_per_s}): the plate's own relaxation is the faster mode"
            )

    @classmethod
    def from_constants(
        cls,
        *,
        heater_max_w: float = 5.0,
        plate_capacity_j_per_k: float = 15.0,
        liquid_capacity_j_per_k: float = 75.0,
        r_plate_liquid_k_per_w: float = 4.0,
        r_plate_ambient_k_per_w: float = 20.0,
        r_liquid_ambient_k_per_w: float = 12.0,
    ) -> PlateModel:
        """The model of a two-node plate/liquid network; defaults are hardware.md §4.2's constants.

        The keyword names match the simulator's ``ThermalParams``, so a test can pass the simulator's
        constants straight through, and a real device's fitted constants can be passed the same way.
        """
        if not (math.isfinite(heater_max_w) and heater_max_w >= 0):
            raise ValueError(f"heater_max_w must be finite and >= 0, got {heater_max_w!r}")
        for name, value in (
            ("plate_capacity_j_per_k", plate_capacity_j_per_k),
            ("liquid_capacity_j_per_k", liquid_capacity_j_per_k),
            ("r_plate_liquid_k_per_w", r_plate_liquid_k_per_w),
            ("r_plate_ambient_k_per_w", r_plate_ambient_k_per_w),
            ("r_liquid_ambient_k_per_w", r_liquid_ambient_k_per_w),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        g_hl = 1.0 / r_plate_liquid_k_per_w
        g_ha = 1.0 / r_plate_ambient_k_per_w
        g_la = 1.0 / r_liquid_ambient_k_per_w
        a11 = -(g_hl + g_ha) / plate_capacity_j_per_k
        a12 = g_hl / plate_capacity_j_per_k
        a21 = g_hl / liquid_capacity_j_per_k
        a22 = -(g_hl + g_la) / liquid_capacity_j_per_k
        trace = a11 + a22
        det = a11 * a22 - a12 * a21
        root = math.sqrt((a11 - a22) ** 2 + 4.0 * a12 * a21)
        fast = (trace - root) / 2.0
        slow = det / fast  # avoids cancellation in the small eigenvalue
        r_fast = (fast - a11) / a12
        r_slow = (slow - a11) / a12
        # The heater drives the plate only: b = (P / C_h per unit duty, 0). Its fast-mode share is
        # beta1 = b1 * r_slow / (r_slow - r_fast), settling at -beta1 / l1.
        b1_per_pct = heater_max_w / plate_capacity_j_per_k / 100.0
        fast_gain = -(b1_per_pct * r_slow / (r_slow - r_fast)) / fast
        return cls(
            fast_rate_per_s=fast,
            slow_rate_per_s=slow,
            fast_liquid_ratio=r_fast,
            slow_liquid_ratio=r_slow,
            fast_gain_c_per_pct=fast_gain,
        )


DEFAULT_PLATE_MODEL = PlateModel.from_constants()
"""The model for hardware.md §4.2's constants (time constants 43 s and 690 s), which the simulator uses
by default. [assumption: refit on a real vessel before trusting absolute temperatures]"""


@attrs.frozen(kw_only=True)
class InferenceLimits:
    """Thresholds that decide whether a fit is trusted.

    ``max_residual_rms_c``: the sensor's noise (0.03 C sigma) and 0.0625 C quantisation give a residual
    RMS near 0.035 C, so 0.15 C is a clear sign the window was disturbed.
    ``min_contact_fraction``: with the heating before the window known, and a seated vial's fast decay
    then expected to be at least ``min_expected_contact_c``, the fitted fast decay must be at least this
    fraction of it (:meth:`PlateModel.expected_fast_amplitude_c`).
    ``ambient_range_c``: room temperatures a fit may report before it is considered nonsense.
    """

    max_residual_rms_c: float = attrs.field(default=0.15, validator=finite_positive)
    min_expected_contact_c: float = attrs.field(default=2.0, validator=finite_non_negative)
    min_contact_fraction: float = attrs.field(default=0.5, validator=finite_positive)
    ambient_range_c: tuple[float, float] = (-10.0, 50.0)

    def __attrs_post_init__(self) -> None:
        low, high = self.ambient_range_c
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"ambient_range_c must be two finite numbers, low < high, got {self.ambient_range_c!r}")


@attrs.frozen(kw_only=True)
class LiquidEstimate:
    """The inferred liquid temperature at ``at_s`` (the last reading's time), and how the fit went.

    ``ambient_c``, ``fast_amplitude_c`` and ``slow_amplitude_c`` are the fitted ``T_a``, ``c1`` and ``c2``
    at the first reading. ``reason`` says why a fit is ``"poor"``.
    """

    liquid_c: float
    at_s: float
    quality: Quality
    reason: str | None
    residual_rms_c: float
    ambient_c: float
    fast_amplitude_c: float
    slow_amplitude_c: float


def _least_squares(columns: Sequence[Sequence[float]], ys: Sequence[float]) -> tuple[list[float], float]:
    """Minimise ``||X b - y||`` by modified Gram-Schmidt QR; return ``b`` and the residual sum of squares.

    QR rather than normal equations because the constant and the slow exponential are nearly collinear over
    a 100 s window (condition number ~100, squared by normal equations). Raises ``ValueError`` if the
    columns are linearly dependent (e.g. all readings at one time).
    """
    n_cols = len(columns)
    q = [list(col) for col in columns]
    r = [[0.0] * n_cols for _ in range(n_cols)]
    for j in range(n_cols):
        original = math.sqrt(sum(v * v for v in columns[j]))
        for i in range(j):
            dot = sum(a * b for a, b in zip(q[i], q[j]))
            r[i][j] = dot
            q[j] = [b - dot * a for a, b in zip(q[i], q[j])]
        norm = math.sqrt(sum(v * v for v in q[j]))
        if original == 0 or norm <= 1e-12 * original:
            raise ValueError("the readings cannot separate the decay modes (degenerate times)")
        r[j][j] = norm
        q[j] = [v / norm for v in q[j]]
    residual = list(ys)
    qty = []
    for j in range(n_cols):
        dot = sum(a * b for a, b in zip(q[j], residual))
        qty.append(dot)
        residual = [b - dot * a for a, b in zip(q[j], residual)]
    coef = [0.0] * n_cols
    for j in reversed(range(n_cols)):
        coef[j] = (qty[j] - sum(r[j][k] * coef[k] for k in range(j + 1, n_cols))) / r[j][j]
    return coef, sum(v * v for v in residual)


def _fit(ts: Sequence[float], ys: Sequence[float], fast: float, slow: float) -> tuple[list[float], float]:
    """Fit ``T_a + c1 exp(fast t) + c2 exp(slow t)``; return ``[T_a, c1, c2]`` and the residual SS."""
    columns = ([1.0] * len(ts), [math.exp(fast * t) for t in ts], [math.exp(slow * t) for t in ts])
    return _least_squares(columns, ys)


def infer_liquid_temperature(
    times_s: Sequence[float],
    plate_c: Sequence[float],
    model: PlateModel = DEFAULT_PLATE_MODEL,
    limits: InferenceLimits = InferenceLimits(),
    *,
    heating: Heating | None = None,
) -> LiquidEstimate:
    """Estimate the liquid's temperature at the last reading from plate readings taken with the heater off.

    ``times_s`` are the readings' times in any seconds scale (only differences matter), strictly
    increasing; the heater must have been off from the first reading to the last. Malformed input (unequal
    lengths, too few readings, non-finite values, times not increasing) raises ``ValueError``: that is a
    caller bug or a failed sensor read, not a fit to judge. A fit that ran but is not trustworthy comes
    back with ``quality="poor"`` and a ``reason``. Pass ``heating`` (the duty the heater actually ran at
    before the window, and for how long) to enable the contact check: without it a vial that is not seated
    can go unnoticed after gentle heating, because a lone plate cooling slowly toward a cold-looking room
    fits the model too.
    """
    if len(times_s) != len(plate_c):
        raise ValueError(f"got {len(times_s)} times but {len(plate_c)} plate readings")
    if len(times_s) < MIN_READINGS:
        raise ValueError(f"need at least {MIN_READINGS} plate readings to infer the liquid, got {len(times_s)}")
    for i, (t, y) in enumerate(zip(times_s, plate_c)):
        if not (math.isfinite(t) and math.isfinite(y)):
            raise ValueError(f"reading {i} is not finite (t={t!r}, plate={y!r}); drop the window")
    t0 = float(times_s[0])
    ts = [float(t) - t0 for t in times_s]
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError("reading times must be strictly increasing")
    ys = [float(y) for y in plate_c]

    fast, slow = model.fast_rate_per_s, model.slow_rate_per_s
    (ambient, c1, c2), sse = _fit(ts, ys, fast, slow)
    end = ts[-1]
    liquid = (
        ambient
        + model.fast_liquid_ratio * c1 * math.exp(fast * end)
        + model.slow_liquid_ratio * c2 * math.exp(slow * end)
    )
    rms = math.sqrt(sse / len(ts))

    reasons: list[str] = []
    if rms > limits.max_residual_rms_c:
        reasons.append(
            f"the plate readings do not follow a heater-off decay (residual {rms:.3f} C RMS, "
            f"limit {limits.max_residual_rms_c:g} C): was the heater really off, or the window disturbed?"
        )
    low, high = limits.ambient_range_c
    if not low <= ambient <= high:
        reasons.append(f"the fit implies a room temperature of {ambient:.1f} C, outside {low:g}..{high:g} C")
    if heating is not None:
        expected = model.expected_fast_amplitude_c(heating)
        if expected >= limits.min_expected_contact_c and c1 < limits.min_contact_fraction * expected:
            reasons.append(
                f"the plate fell only {c1:.2f} C in its fast decay where {expected:.2f} C was expected after "
                f"{heating.seconds:g} s at {heating.duty_pct:g} %: is the vial seated in the heater?"
            )
    return LiquidEstimate(
        liquid_c=liquid,
        at_s=float(times_s[-1]),
        quality="poor" if reasons else "ok",
        reason="; ".join(reasons) if reasons else None,
        residual_rms_c=rms,
        ambient_c=ambient,
        fast_amplitude_c=c1,
        slow_amplitude_c=c2,
    )
