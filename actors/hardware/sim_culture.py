"""A simulated culture in one vial: biomass growth with a lag, temperature, death, and dosing.

Pure model, no I/O and no clock: the owner passes ``dt`` and the liquid temperature to
:meth:`Culture.advance`. Biomass ``X`` is in OD600-equivalent units and follows the Baranyi model with a
logistic brake and a first-order death term (hardware.md §4.2)::

    q' = mu(T) * q                          alpha = q / (1 + q),   q0 = 1 / (exp(mu_max * lag) - 1)
    X' = [mu(T) * alpha * (1 - X/K) - kd] * X       mu(T) = mu_max * phi(T)

``phi`` is the cardinal temperature model with inflection (CTMI, Rosso 1993): 1 at ``t_opt_c`` and 0
outside ``(t_min_c, t_max_c)``. The lag state ``q`` grows at ``mu(T)`` too, as in Baranyi's dynamic model,
so ``lag_hours`` is the lag at the optimum temperature and a colder culture adapts more slowly (the "work
to be done" ``mu * lag`` is the same at every temperature); below ``t_min_c`` nothing happens but death.

Why the integration is exact: for a constant temperature the substitution ``y = 1/X`` turns the X equation
into a linear one, and its integrating factor times ``mu * alpha`` is a plain exponential, so::

    X(t) = X0 * (1 + alpha0 * expm1(mu t)) * exp(-kd t) / (1 + X0 * mu * alpha0 * E(t) / K)
    E(t) = expm1((mu - kd) t) / (mu - kd)

A run therefore does not depend on how the owner slices time (up to rounding), and one ``advance`` over
hours costs the same as one over a second. Long intervals are cut into pieces with ``mu * t <= 20`` only to
keep the exponentials finite; each piece is exact, and so is their composition.

Dosing mirrors Pioreactor's volume bookkeeping (``calculate_updated_current_volume``): adding liquid dilutes
biomass as ``X * V / (V + dV)``; the alternative-media fraction follows a mass balance; waste removes
well-mixed liquid (so it changes neither ``X`` nor the fraction) but cannot pull the level below the efflux
tube. Liquid added past the vial's physical capacity is spilled (as well-mixed liquid, after mixing), the
``overflowed`` flag latches, and the spilled volume is recorded, so tests can prove overflow never happens.
"""

from __future__ import annotations

import math

import attrs
from actors.validators import finite, finite_non_negative, finite_positive

_SECONDS_PER_HOUR = 3600.0
# Largest (mu + kd) * t, in one exact piece, that keeps exp() far from overflow and rounding small.
_MAX_EXPONENT_PER_PIECE = 20.0


def _check_amount(name: str, ml: float) -> float:
    if not (math.isfinite(ml) and ml >= 0):
        raise ValueError(f"{name} must be a finite volume >= 0 ml, got {ml!r}")
    return float(ml)


def cardinal_temperature_factor(
    temperature_c: float, t_min_c: float, t_opt_c: float, t_max_c: float
) -> float:
    """Rosso's CTMI: the fraction of the optimal growth rate at ``temperature_c``, in [0, 1].

    Zero at and outside the cardinal minimum and maximum, 1 at the optimum. The formula is only a valid
    (positive, single-peaked) curve when ``t_opt_c > (t_min_c + t_max_c) / 2``, which
    :class:`CultureParams` enforces; real organisms satisfy it (growth collapses quickly above the optimum).
    """
    if math.isnan(temperature_c):
        raise ValueError("temperature must be a number, got NaN")
    if not t_min_c < temperature_c < t_max_c:
        return 0.0
    t = temperature_c
    numerator = (t - t_max_c) * (t - t_min_c) ** 2
    denominator = (t_opt_c - t_min_c) * (
        (t_opt_c - t_min_c) * (t - t_opt_c) - (t_opt_c - t_max_c) * (t_opt_c + t_min_c - 2.0 * t)
    )
    # Rounding can put the ratio a hair outside [0, 1] right at the optimum or the edges.
    return min(1.0, max(0.0, numerator / denominator))


def _sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))`` without overflow for large |x|; ``x = inf`` gives exactly 1."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@attrs.frozen(kw_only=True)
class CultureParams:
    """An organism in a medium. Defaults: *E. coli* in rich medium, hardware.md §4.2 [textbook].

    Rates are per hour. ``carrying_capacity`` is the logistic ``K`` in OD units (a small, poorly aerated
    vial tops out around 2-5). Temperatures are the CTMI cardinal points.
    """

    mu_max: float = attrs.field(default=1.2, validator=finite_non_negative)
    lag_hours: float = attrs.field(default=1.0, validator=finite_non_negative)
    death_rate: float = attrs.field(default=0.02, validator=finite_non_negative)
    carrying_capacity: float = attrs.field(default=3.0, validator=finite_positive)
    t_min_c: float = attrs.field(default=5.0, validator=finite)
    t_opt_c: float = attrs.field(default=39.0, validator=finite)
    t_max_c: float = attrs.field(default=47.0, validator=finite)
    initial_od: float = attrs.field(default=0.05, validator=finite_non_negative)

    def __attrs_post_init__(self) -> None:
        if not self.t_min_c < self.t_opt_c < self.t_max_c:
            raise ValueError(
                f"need t_min_c < t_opt_c < t_max_c, got {self.t_min_c} / {self.t_opt_c} / {self.t_max_c}"
            )
        if not self.t_opt_c > (self.t_min_c + self.t_max_c) / 2.0:
            raise ValueError(
                "the CTMI needs t_opt_c above the midpoint of t_min_c and t_max_c, "
                f"got {self.t_opt_c} <= {(self.t_min_c + self.t_max_c) / 2.0}"
            )

    def temperature_factor(self, temperature_c: float) -> float:
        """``phi(T)`` in [0, 1] for this organism."""
        return cardinal_temperature_factor(temperature_c, self.t_min_c, self.t_opt_c, self.t_max_c)

    def initial_log_q(self) -> float:
        """``ln q0`` for the lag: ``q0 = 1 / expm1(mu_max * lag)``; no lag means ``q0 = inf``."""
        work = self.mu_max * self.lag_hours
        if work == 0:
            return math.inf
        return -math.log(math.expm1(work))


@attrs.define
class Culture:
    """Biomass, lag state, volume and alternative-media fraction of one vial, with dosing bookkeeping.

    ``volume_ml`` starts at the given value (often the efflux level, 15 ml). ``max_volume_ml`` is the vial's
    physical capacity, not the automation's max fill: passing it is a failure (``overflowed``).
    """

    params: CultureParams = attrs.field(factory=CultureParams)
    volume_ml: float = attrs.field(default=15.0, kw_only=True, validator=finite_non_negative)
    efflux_volume_ml: float = attrs.field(default=15.0, kw_only=True, validator=finite_non_negative)
    max_volume_ml: float = attrs.field(default=20.0, kw_only=True, validator=finite_positive)

    od: float = attrs.field(init=False)
    log_q: float = attrs.field(init=False)
    alt_media_fraction: float = attrs.field(default=0.0, init=False)
    media_added_ml: float = attrs.field(default=0.0, init=False)
    alt_media_added_ml: float = attrs.field(default=0.0, init=False)
    waste_removed_ml: float = attrs.field(default=0.0, init=False)
    spilled_ml: float = attrs.field(default=0.0, init=False)
    overflowed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        if self.efflux_volume_ml > self.max_volume_ml:
            raise ValueError(
                f"efflux level {self.efflux_volume_ml} ml is above the vial capacity {self.max_volume_ml} ml"
            )
        if self.volume_ml > self.max_volume_ml:
            raise ValueError(f"volume {self.volume_ml} ml is above the vial capacity {self.max_volume_ml} ml")
        self.od = self.params.initial_od
        self.log_q = self.params.initial_log_q()

    @property
    def lag_alpha(self) -> float:
        """Baranyi's adjustment ``alpha = q / (1 + q)``: 0 deep in lag, 1 once adapted."""
        return _sigmoid(self.log_q)

    @property
    def q(self) -> float:
        """The lag state ``q`` itself (``inf`` once it no longer fits a float; ``alpha`` is then 1)."""
        try:
            return math.exp(self.log_q)
        except OverflowError:
            return math.inf

    def true_growth_rate(self, temperature_c: float) -> float:
        """Instantaneous specific growth rate ``X'/X`` in 1/h at ``temperature_c``, before dilution.

        This is the quantity a growth-rate estimator tries to recover, so tests can compare against it.
        """
        p = self.params
        mu = p.mu_max * p.temperature_factor(temperature_c)
        return mu * self.lag_alpha * (1.0 - self.od / p.carrying_capacity) - p.death_rate

    def advance(self, dt_seconds: float, temperature_c: float) -> None:
        """Move the culture ``dt_seconds`` forward at a constant liquid temperature, exactly."""
        if not (math.isfinite(dt_seconds) and dt_seconds >= 0):
            raise ValueError(f"dt_seconds must be finite and >= 0, got {dt_seconds!r}")
        if not math.isfinite(temperature_c):
            raise ValueError(f"temperature_c must be finite, got {temperature_c!r}")
        if dt_seconds == 0:
            return
        p = self.params
        hours = dt_seconds / _SECONDS_PER_HOUR
        mu = p.mu_max * p.temperature_factor(temperature_c)
        kd = p.death_rate
        pieces = max(1, math.ceil((mu + kd) * hours / _MAX_EXPONENT_PER_PIECE))
        piece = hours / pieces
        for _ in range(pieces):
            self._advance_piece(piece, mu, kd)

    def _advance_piece(self, hours: float, mu: float, kd: float) -> None:
        # alpha0 * expm1(mu t) + 1 = (1 + q e^{mu t}) / (1 + q): the growth integral's exponential.
        alpha0 = self.lag_alpha
        growth = 1.0 + alpha0 * math.expm1(mu * hours)
        c = mu - kd
        e = hours if c == 0 else math.expm1(c * hours) / c
        x0 = self.od
        if x0 > 0:
            brake = 1.0 + x0 * mu * alpha0 * e / self.params.carrying_capacity
            self.od = x0 * growth * math.exp(-kd * hours) / brake
        self.log_q += mu * hours

    def add_media(self, ml: float) -> None:
        """Pump ``ml`` of fresh media in: dilutes biomass and the alternative-media fraction."""
        ml = _check_amount("media ml", ml)
        self._add(ml, alt_ml=0.0)
        self.media_added_ml += ml

    def add_alt_media(self, ml: float) -> None:
        """Pump ``ml`` of alternative media in: dilutes biomass, raises the alternative-media fraction."""
        ml = _check_amount("alt media ml", ml)
        self._add(ml, alt_ml=ml)
        self.alt_media_added_ml += ml

    def _add(self, ml: float, alt_ml: float) -> None:
        if ml == 0:
            return
        before = self.volume_ml
        total = before + ml
        self.od = self.od * before / total
        self.alt_media_fraction = min(1.0, (self.alt_media_fraction * before + alt_ml) / total)
        if total > self.max_volume_ml:
            # The new liquid mixes in before the surplus runs over the rim, so the spill is well mixed.
            self.spilled_ml += total - self.max_volume_ml
            self.overflowed = True
            total = self.max_volume_ml
        self.volume_ml = total

    def remove_waste(self, ml: float) -> float:
        """Run the waste pump for ``ml``; return the volume actually removed.

        The waste needle sits at the efflux level, so it removes nothing once the liquid is at or below it.
        Removal takes well-mixed liquid, so OD and the alternative-media fraction do not change.
        """
        ml = _check_amount("waste ml", ml)
        available = max(0.0, self.volume_ml - self.efflux_volume_ml)
        if ml >= available:
            removed = available
            if removed > 0:
                self.volume_ml = self.efflux_volume_ml
        else:
            removed = ml
            self.volume_ml -= ml
        self.waste_removed_ml += removed
        return removed
