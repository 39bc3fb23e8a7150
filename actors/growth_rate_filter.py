"""Growth rate from normalised OD, pure: a Kalman filter on log-OD, and the warm-up that normalises OD.

What growth_rate_calculating does (reference §3.1, §10): it takes each ``od_reading/ods`` message, divides
every channel by that channel's mean over the first ``samples_for_od_statistics`` (10) readings so all
units start near 1.0 ("normalised OD", nOD), and runs an extended Kalman filter that publishes the specific
growth rate (per hour) and a filtered nOD. This module is that computation without MQTT or a clock: the
caller passes each observation's time in hours, so readings may be irregular or missing.

Why the state is ``[log nOD, mu, dmu/dt]`` (the reference's newer filter; issues #74, #154, #495):

* growth is multiplicative, ``nOD(t) = nOD(0) * exp(integral of mu)``, so in log space the dynamics are
  linear, ``d(log nOD)/dt = mu``, and the same process noise fits a culture at nOD 1 and at nOD 50 (the
  old filter on nOD itself needed ad hoc noise scaling);
* ``exp(log nOD)`` is positive by construction, so ``od_filtered`` can never go negative;
* a dilution multiplies OD by ``V / (V + dV)``: in log space that is a plain step, which a covariance
  bump on the first state absorbs without touching the growth rate;
* the third state, the growth rate's drift ``dmu/dt``, lets the filter follow the smooth rise of ``mu``
  out of the lag and its fall towards stationary phase without the lag a random-walk ``mu`` would have.
  Setting ``drift_process_noise=0`` and ``initial_drift_std=0`` reduces it to a two-state filter.

The measurement is ``nOD = exp(L) * (1 + e)`` with a relative error ``e`` (photodiode noise scales with the
signal), optionally plus an absolute floor (the noise that remains at zero signal). The filter takes the
log of each observation, ``log nOD = L + log(1 + e)``: the measurement function becomes linear, so the
update is the exact limit an iterated EKF converges to, without an EKF's linearisation error on large
jumps (a 20 % dilution) and without its divergence on jumps by a factor of two or more. The noise
variance is evaluated at the predicted level, ``sigma_rel^2 + (sigma_abs / nOD_pred)^2``, as an EKF does.

Robustness rules, each the answer to a reported failure:

* an observation that is zero, negative or not a number carries no usable information about a log, so
  it is skipped (no state change, ``skipped=True``); blank-subtracted OD near zero produces such values;
* an innovation beyond ``outlier_std_threshold`` (5, must exceed 2) standard deviations is rejected (the
  state is only propagated in time), except during the post-dose window: the next exactly 2 observations
  after :meth:`GrowthRateFilter.dosing_event`, when a jump is expected;
* after ``max_consecutive_outliers`` rejections in a row the data has evidently moved (an unannounced
  manual dose, a re-seated vial): the filter accepts it as a level shift, as if a dose had been announced,
  instead of rejecting everything for ever;
* a gap longer than ``max_gap_hours`` restarts the filter at the new observation (keeping the rate),
  since propagating a stale state over many hours says nothing;
* every result is finite: inputs are validated, the rate is kept within ``rate_limits``, the log level
  within +-700 (so ``exp`` cannot overflow), and an update that would produce a non-finite number is
  discarded.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from datetime import datetime, timezone

import attrs

from actors.od_processing import trimmed_mean

SAMPLES_FOR_OD_STATISTICS = 10
"""``[growth_rate_calculating.config] samples_for_od_statistics``."""

EKF_OUTLIER_STD_THRESHOLD = 5.0
"""``[growth_rate_calculating.config] ekf_outlier_std_threshold`` (must be > 2)."""

POST_DOSE_OBSERVATIONS = 2
REPLAY_OBSERVATIONS = 8
"""How many readings back a late dose report can still be put in its place (a few minutes of readings)."""
"""Observations after a dosing event during which outlier gating is off (exactly 2, as the reference)."""

_LOG_LIMIT = 700.0  # exp(700) ~ 1e304: the log level is kept inside +-this so exp() never overflows
_MAX_NOISE_VARIANCE = 1e12  # a measurement this uncertain has no weight; capping keeps 0 * inf out
_DRIFT_LIMIT = 50.0  # |dmu/dt| in 1/h^2; far beyond biology, only a numerical guard
_MAX_COVARIANCE = 1e100  # beyond this the belief is "anything"; restart it before it overflows
_MAX_PARAMETER = 1e6  # noise and time parameters above this are typos, and their squares must stay finite

Matrix = list[list[float]]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_non_negative(name: str, value: float) -> float:
    if not (_is_number(value) and math.isfinite(value) and 0 <= value <= _MAX_PARAMETER):
        raise ValueError(f"{name} must be in [0, {_MAX_PARAMETER:g}], got {value!r}")
    return float(value)


def _check_positive(name: str, value: float) -> float:
    if not (_is_number(value) and math.isfinite(value) and 0 < value <= _MAX_PARAMETER):
        raise ValueError(f"{name} must be in (0, {_MAX_PARAMETER:g}], got {value!r}")
    return float(value)


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _safe_exp(x: float) -> float:
    return math.exp(_clamp(x, -_LOG_LIMIT, _LOG_LIMIT))


@attrs.frozen
class Estimate:
    """The filter's answer after one observation.

    ``growth_rate`` is the specific growth rate in 1/h, ``od_filtered`` the filtered nOD (always > 0),
    ``rate_std`` the filter's standard deviation of the rate, ``growth_rate_drift`` its estimated change
    per hour. ``outlier`` means this observation was rejected; ``skipped`` that it was not usable at all
    (zero, negative, not finite, or older than the previous one). In both cases the estimate is the
    filter's current belief, so the caller can publish it or not as it prefers.
    """

    growth_rate: float
    od_filtered: float
    rate_std: float
    outlier: bool = False
    skipped: bool = False
    growth_rate_drift: float = 0.0


def growth_rate_payload(estimate: Estimate, timestamp: str) -> dict[str, object]:
    """``growth_rate_calculating/growth_rate``: ``{growth_rate, timestamp}`` (1/h)."""
    return {"growth_rate": estimate.growth_rate, "timestamp": timestamp}


def od_filtered_payload(estimate: Estimate, timestamp: str) -> dict[str, object]:
    """``growth_rate_calculating/od_filtered``: ``{od_filtered, timestamp}``."""
    return {"od_filtered": estimate.od_filtered, "timestamp": timestamp}


class GrowthRateFilter:
    """Kalman filter over ``[log nOD, mu (1/h), dmu/dt (1/h^2)]``, fed nOD at irregular times (hours).

    Parameters, all per hour so they do not depend on the reading interval:

    * ``observation_noise``: relative standard deviation of one nOD reading (e.g. from :class:`WarmUp`);
      ``observation_noise_floor``: absolute standard deviation in nOD units that remains at zero signal.
    * ``rate_process_noise``: how fast ``mu`` may wander, as a random walk, in 1/h per sqrt(h).
    * ``drift_process_noise``: the same for ``dmu/dt``, in 1/h^2 per sqrt(h); 0 (with
      ``initial_drift_std=0``) gives a two-state filter.
    * ``od_process_noise``: unexplained wander of log nOD, per sqrt(h) (bubbles, settling); usually 0.
    * ``dose_log_od_std``: the log-nOD standard deviation added by :meth:`dosing_event` for a dose of
      unknown size; 0.5 lets a dilution of up to about half be absorbed in one observation.
    * ``known_dose_log_od_std``: the same for a dose whose dilution is known (``log_shift``): only the
      pump's error on it remains.
    * ``start_hours``: time of ``initial_nod``; when None the first :meth:`update` sets the clock.

    The defaults were tuned on the simulated vessel (5 s readings, about 0.6 % noise): they follow the
    rise of ``mu`` out of lag within a few percent and give a rate noise of about 0.01 1/h.
    """

    def __init__(
        self,
        initial_nod: float,
        initial_rate: float = 0.0,
        *,
        observation_noise: float = 0.01,
        observation_noise_floor: float = 0.0,
        rate_process_noise: float = 0.01,
        drift_process_noise: float = 0.1,
        od_process_noise: float = 0.0,
        initial_rate_std: float = 0.5,
        initial_drift_std: float = 0.5,
        outlier_std_threshold: float = EKF_OUTLIER_STD_THRESHOLD,
        dose_log_od_std: float = 0.5,
        known_dose_log_od_std: float = 0.02,
        max_consecutive_outliers: int = 5,
        rate_limits: tuple[float, float] = (-1.0, 5.0),
        max_gap_hours: float = 12.0,
        start_hours: float | None = None,
    ) -> None:
        if not (_is_number(initial_nod) and math.isfinite(initial_nod) and initial_nod > 0):
            raise ValueError(f"initial_nod must be finite and > 0 (it is logged), got {initial_nod!r}")
        threshold_ok = _is_number(outlier_std_threshold) and math.isfinite(outlier_std_threshold)
        if not (threshold_ok and outlier_std_threshold > 2):
            raise ValueError(f"outlier_std_threshold must be finite and > 2, got {outlier_std_threshold!r}")
        low, high = rate_limits
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"rate_limits must be finite (low, high) with low < high, got {rate_limits!r}")
        if not (isinstance(max_consecutive_outliers, int) and max_consecutive_outliers >= 1):
            raise ValueError(f"max_consecutive_outliers must be an int >= 1, got {max_consecutive_outliers!r}")
        if start_hours is not None and not (_is_number(start_hours) and math.isfinite(start_hours)):
            raise ValueError(f"start_hours must be finite, got {start_hours!r}")
        self.observation_noise = _check_positive("observation_noise", observation_noise)
        self.observation_noise_floor = _check_non_negative("observation_noise_floor", observation_noise_floor)
        self.rate_process_noise = _check_non_negative("rate_process_noise", rate_process_noise)
        self.drift_process_noise = _check_non_negative("drift_process_noise", drift_process_noise)
        self.od_process_noise = _check_non_negative("od_process_noise", od_process_noise)
        self.dose_log_od_std = _check_non_negative("dose_log_od_std", dose_log_od_std)
        self.known_dose_log_od_std = _check_non_negative("known_dose_log_od_std", known_dose_log_od_std)
        self.max_gap_hours = _check_positive("max_gap_hours", max_gap_hours)
        self._initial_rate_std = _check_non_negative("initial_rate_std", initial_rate_std)
        self._initial_drift_std = _check_non_negative("initial_drift_std", initial_drift_std)
        self.outlier_std_threshold = float(outlier_std_threshold)
        self.max_consecutive_outliers = max_consecutive_outliers
        self.rate_limits = (float(low), float(high))
        if not (math.isfinite(initial_rate) and low <= initial_rate <= high):
            raise ValueError(f"initial_rate must be within rate_limits {rate_limits}, got {initial_rate!r}")

        self._x = [math.log(initial_nod), float(initial_rate), 0.0]
        self._p = self._initial_covariance()
        self._t: float | None = None if start_hours is None else float(start_hours)
        self._post_dose_left = 0
        self._consecutive_outliers = 0
        self._recent: deque[tuple[float, float, tuple[Any, ...]]] = deque(maxlen=REPLAY_OBSERVATIONS)

    # -- read-only views ------------------------------------------------------------------------------

    @property
    def growth_rate(self) -> float:
        return self._x[1]

    @property
    def log_od(self) -> float:
        return self._x[0]

    @property
    def od_filtered(self) -> float:
        return _safe_exp(self._x[0])

    @property
    def covariance(self) -> tuple[tuple[float, ...], ...]:
        """A copy of the 3x3 state covariance, for tests and diagnostics."""
        return tuple(tuple(row) for row in self._p)

    @property
    def post_dose_remaining(self) -> int:
        """Observations left in the post-dose window (0 outside it)."""
        return self._post_dose_left

    @property
    def last_time_hours(self) -> float | None:
        return self._t

    def estimate(self, *, outlier: bool = False, skipped: bool = False) -> Estimate:
        """The current belief as an :class:`Estimate`."""
        return Estimate(
            growth_rate=self._x[1],
            od_filtered=_safe_exp(self._x[0]),
            rate_std=math.sqrt(max(0.0, self._p[1][1])),
            outlier=outlier,
            skipped=skipped,
            growth_rate_drift=self._x[2],
        )

    # -- model ------------------------------------------------------------------------------------------

    def _initial_covariance(self) -> Matrix:
        level_std = max(self.observation_noise, 0.01)
        return [
            [level_std**2, 0.0, 0.0],
            [0.0, self._initial_rate_std**2, 0.0],
            [0.0, 0.0, self._initial_drift_std**2],
        ]

    def _process_noise(self, dt: float) -> Matrix:
        """Discrete process noise for continuous white noise on log nOD, on mu and on dmu/dt over ``dt``.

        Each source is integrated through the dynamics (mu integrates into log nOD, dmu/dt into mu), which
        is why the terms carry powers of ``dt``; consistent integration means splitting an interval in two
        gives the same covariance as one step.
        """
        q_level = self.od_process_noise**2
        q_rate = self.rate_process_noise**2
        q_drift = self.drift_process_noise**2
        dt2, dt3 = dt * dt, dt * dt * dt
        dt4, dt5 = dt3 * dt, dt3 * dt2
        level_rate = q_rate * dt2 / 2 + q_drift * dt4 / 8
        level_drift = q_drift * dt3 / 6
        rate_drift = q_drift * dt2 / 2
        return [
            [q_level * dt + q_rate * dt3 / 3 + q_drift * dt5 / 20, level_rate, level_drift],
            [level_rate, q_rate * dt + q_drift * dt3 / 3, rate_drift],
            [level_drift, rate_drift, q_drift * dt],
        ]

    def _predict(self, dt: float) -> None:
        """Move the state ``dt`` hours forward: ``L += mu dt + a dt^2/2``, ``mu += a dt``."""
        if dt <= 0:
            return
        level, rate, drift = self._x
        f = [[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]]
        fp = [[sum(f[i][k] * self._p[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
        q = self._process_noise(dt)
        self._p = [[sum(fp[i][k] * f[j][k] for k in range(3)) + q[i][j] for j in range(3)] for i in range(3)]
        self._x = [level + rate * dt + 0.5 * drift * dt * dt, rate + drift * dt, drift]
        self._constrain()

    def _constrain(self) -> None:
        low, high = self.rate_limits
        self._x[0] = _clamp(self._x[0], -_LOG_LIMIT, _LOG_LIMIT)
        self._x[1] = _clamp(self._x[1], low, high)
        self._x[2] = _clamp(self._x[2], -_DRIFT_LIMIT, _DRIFT_LIMIT)
        if not all(math.isfinite(c) and abs(c) < _MAX_COVARIANCE for row in self._p for c in row):
            # Only reachable by propagating over absurd gaps without data: the state is unknown anyway.
            self._p = self._initial_covariance()
        for i in range(3):
            self._p[i][i] = max(0.0, self._p[i][i])
            for j in range(i):
                mean = 0.5 * (self._p[i][j] + self._p[j][i])
                self._p[i][j] = self._p[j][i] = mean

    def _measurement_variance(self) -> float:
        """Variance of log nOD for one reading, evaluated at the predicted level (as an EKF does)."""
        cap = math.sqrt(_MAX_NOISE_VARIANCE)
        relative_floor = min(cap, self.observation_noise_floor * _safe_exp(-self._x[0]))
        return min(_MAX_NOISE_VARIANCE, self.observation_noise**2 + relative_floor**2)

    def _bump_level(self, std: float) -> None:
        self._p[0][0] += std**2
        self._post_dose_left = POST_DOSE_OBSERVATIONS

    # -- public operations ------------------------------------------------------------------------------

    def dosing_event(self, t_hours: float, log_shift: float | None = None) -> None:
        """Liquid was added or removed at ``t_hours``: expect a jump in nOD, not a change in growth rate.

        ``log_shift`` is the dose's known effect on log nOD (``log(V / (V + added))``, see
        :func:`dilution_log_shift`): the level moves by it and stays nearly as certain as before, so a
        chemostat's dilution every few minutes costs the rate estimate nothing. Without it the size is
        unknown and the log-nOD variance is inflated instead (only that state: the rate has no reason to
        move). Either way the next exactly :data:`POST_DOSE_OBSERVATIONS` observations bypass outlier
        gating; a second dose inside the window restarts the window rather than lengthening it.
        """
        if not (_is_number(t_hours) and math.isfinite(t_hours)):
            raise ValueError(f"t_hours must be finite, got {t_hours!r}")
        later = [r for r in self._recent if r[0] > t_hours]
        if later and log_shift is not None:
            # Readings taken after the dose were folded in before its report arrived: they took the
            # dilution for a change of level (or of rate). Rewind to before the first of them, put the
            # dose in its place, and fold them in again.
            self._restore(later[0][2])
            while self._recent and self._recent[-1][0] > t_hours:
                self._recent.pop()
            self.dosing_event(t_hours, log_shift)
            for t, nod, _ in later:
                self.update(nod, t)
            return
        if self._t is not None and t_hours > self._t:
            if t_hours - self._t > self.max_gap_hours:
                self._p = self._initial_covariance()
            else:
                self._predict(t_hours - self._t)
            self._t = float(t_hours)
        if log_shift is None:
            self._bump_level(self.dose_log_od_std)
            return
        if not (_is_number(log_shift) and math.isfinite(log_shift)):
            raise ValueError(f"log_shift must be finite, got {log_shift!r}")
        self._x[0] = _clamp(self._x[0] + log_shift, -_LOG_LIMIT, _LOG_LIMIT)
        self._bump_level(self.known_dose_log_od_std)

    def update(self, nod: float, t_hours: float) -> Estimate:
        """Fold in one normalised OD observed at ``t_hours`` and return the new estimate.

        The state before each of the last :data:`REPLAY_OBSERVATIONS` folded readings is kept, so a dose
        reported after readings that already saw it can be put back in its place (:meth:`dosing_event`).
        """
        before = self._snapshot()
        estimate = self._update(nod, t_hours)
        if not estimate.skipped:
            self._recent.append((float(t_hours), float(nod), before))
        return estimate

    def _snapshot(self) -> tuple[Any, ...]:
        return (list(self._x), [row[:] for row in self._p], self._t, self._post_dose_left, self._consecutive_outliers)

    def _restore(self, state: tuple[Any, ...]) -> None:
        x, p, self._t, self._post_dose_left, self._consecutive_outliers = state
        self._x, self._p = list(x), [row[:] for row in p]

    def _update(self, nod: float, t_hours: float) -> Estimate:
        """Fold in one normalised OD observed at ``t_hours`` and return the new estimate.

        Zero, negative or non-finite ``nod``, and observations older than the previous one, are skipped
        (``skipped=True``, nothing changes). ``t_hours`` itself must be finite: a reading without a valid
        time is a programming error upstream, not noise.
        """
        if not (_is_number(t_hours) and math.isfinite(t_hours)):
            raise ValueError(f"t_hours must be finite, got {t_hours!r}")
        if not (_is_number(nod) and math.isfinite(nod) and nod > 0):
            return self.estimate(skipped=True)
        if self._t is not None and t_hours < self._t:
            return self.estimate(skipped=True)
        z = math.log(nod)
        if self._t is not None and t_hours - self._t > self.max_gap_hours:
            # A stale state predicts nothing useful: restart at this observation, keep the rate as a prior.
            self._t = float(t_hours)
            self._x = [_clamp(z, -_LOG_LIMIT, _LOG_LIMIT), self._x[1], 0.0]
            self._p = self._initial_covariance()
            self._post_dose_left = 0
            self._consecutive_outliers = 0
            return self.estimate()

        saved_x, saved_p = list(self._x), [row[:] for row in self._p]
        if self._t is not None:
            self._predict(t_hours - self._t)
        self._t = float(t_hours)

        innovation = z - self._x[0]
        noise = self._measurement_variance()
        s = self._p[0][0] + noise
        in_window = self._post_dose_left > 0
        if not in_window and abs(innovation) > self.outlier_std_threshold * math.sqrt(s):
            self._consecutive_outliers += 1
            if self._consecutive_outliers < self.max_consecutive_outliers:
                return self.estimate(outlier=True)
            # Too many in a row: the level has really moved. Accept it the way an announced dose is.
            self._bump_level(self.dose_log_od_std)
            s = self._p[0][0] + noise
        self._consecutive_outliers = 0

        gain = [self._p[i][0] / s for i in range(3)]
        p = self._p
        # Joseph form, (I - K H) P (I - K H)^T + K R K^T with H = [1, 0, 0]: stays symmetric and
        # positive semi-definite under rounding, unlike the short form (I - K H) P.
        new_p = [
            [
                p[i][j] - gain[i] * p[0][j] - p[i][0] * gain[j] + gain[i] * gain[j] * (p[0][0] + noise)
                for j in range(3)
            ]
            for i in range(3)
        ]
        new_x = [self._x[i] + gain[i] * innovation for i in range(3)]
        if not all(math.isfinite(v) for v in (*new_x, *(c for row in new_p for c in row))):
            self._x, self._p = saved_x, saved_p
            return self.estimate(skipped=True)
        self._x, self._p = new_x, new_p
        self._constrain()
        if self._post_dose_left > 0:
            self._post_dose_left -= 1
        return self.estimate()


# -- warm-up normalisation -----------------------------------------------------------------------------


def _check_channel_map(name: str, values: Mapping[str, float], *, positive: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for channel, v in values.items():
        ok = _is_number(v) and math.isfinite(v) and (v > 0 if positive else v >= 0)
        if not ok:
            raise ValueError(f"{name}[{channel!r}] must be finite and {'> 0' if positive else '>= 0'}, got {v!r}")
        out[str(channel)] = float(v)
    if not out:
        raise ValueError(f"{name} must name at least one channel")
    return out


@attrs.frozen
class NormalizationFactors:
    """Per-channel warm-up statistics: the mean raw OD (divisor) and the variance of the normalised OD.

    This is what the reference caches per experiment (``od_normalization_mean`` and its variances), so a
    restarted job keeps the same scale: nOD would otherwise jump back to 1.0 and fake a crash in growth.
    """

    means: dict[str, float] = attrs.field(converter=lambda m: _check_channel_map("means", m, positive=True))
    variances: dict[str, float] = attrs.field(
        converter=lambda v: _check_channel_map("variances", v, positive=False)
    )

    def __attrs_post_init__(self) -> None:
        if set(self.means) != set(self.variances):
            raise ValueError("means and variances must cover the same channels")

    def to_dict(self) -> dict[str, dict[str, float]]:
        """JSON-ready form for the experiment cache."""
        return {"means": dict(self.means), "variances": dict(self.variances)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]]) -> NormalizationFactors:
        return cls(means=dict(data["means"]), variances=dict(data["variances"]))

    def normalize(self, ods: Mapping[str, float]) -> dict[str, float]:
        """``od / mean`` for every channel that has a factor (others are ignored: not part of the run)."""
        return {c: ods[c] / self.means[c] for c in self.means if c in ods}

    def _weights(self, floor: float) -> dict[str, float]:
        return {c: 1.0 / max(v, floor**2) for c, v in self.variances.items()}

    def combine(self, ods: Mapping[str, float], *, floor: float = 1e-4) -> float | None:
        """One nOD from all channels: the inverse-variance weighted mean of the normalised channels.

        Weighting by the warm-up variance lets a quiet channel count more than a noisy one. Channels with
        a non-finite value are left out; None when no channel is usable. Meant for scattering angles
        (45/90/135), whose signal rises with biomass; a 180 degree (transmission) channel falls instead
        and should be filtered on its own.
        """
        weights = self._weights(floor)
        total = weighted = 0.0
        for channel, value in self.normalize(ods).items():
            if math.isfinite(value):
                total += weights[channel]
                weighted += weights[channel] * value
        return weighted / total if total > 0 else None

    def observation_noise(self, *, floor: float = 1e-4) -> float:
        """Relative std of :meth:`combine`'s output, for :class:`GrowthRateFilter` (at least ``floor``)."""
        return max(floor, math.sqrt(1.0 / sum(self._weights(floor).values())))


def _detrended_variance(values: Sequence[float]) -> float:
    """Residual variance around a least-squares line through ``values`` (by index), n - 2 dof.

    The culture grows during warm-up (about 1.5 % over 10 readings at 1/h), and that trend is not noise;
    counting it would inflate the noise estimate. With fewer than 3 values there is no residual: 0.
    """
    n = len(values)
    if n < 3:
        return 0.0
    mean_x = (n - 1) / 2.0
    mean_y = math.fsum(values) / n
    sxx = math.fsum((i - mean_x) ** 2 for i in range(n))
    slope = math.fsum((i - mean_x) * (y - mean_y) for i, y in enumerate(values)) / sxx
    residuals = [y - mean_y - slope * (i - mean_x) for i, y in enumerate(values)]
    return math.fsum(r * r for r in residuals) / (n - 2)


class WarmUp:
    """Collects the first ``samples`` readings of each channel and turns them into normalisation factors.

    * The divisor is a 10 % trimmed mean, not the plain mean the reference uses: with 10 samples it drops
      the highest and lowest, so one spike at start-up cannot set the scale for the whole experiment.
    * Samples with a zero, negative or non-finite channel are skipped (blank-subtracted OD can be 0).
    * A dosing event before collection is complete restarts it: samples before and after a dilution
      belong to different levels, and their mean would match neither.
    * :meth:`restored` starts complete from cached factors, so a restart in the same experiment reuses
      them (reference: "restart reuses the cached normalisation").
    """

    def __init__(self, samples: int = SAMPLES_FOR_OD_STATISTICS) -> None:
        if not (isinstance(samples, int) and samples >= 1):
            raise ValueError(f"samples must be an int >= 1, got {samples!r}")
        self.samples = samples
        self._collected: list[dict[str, float]] = []
        self._channels: frozenset[str] | None = None
        self._factors: NormalizationFactors | None = None

    @classmethod
    def restored(cls, factors: NormalizationFactors, samples: int = SAMPLES_FOR_OD_STATISTICS) -> WarmUp:
        """A warm-up that is already complete with cached ``factors``."""
        warm_up = cls(samples)
        warm_up._factors = factors
        warm_up._channels = frozenset(factors.means)
        return warm_up

    @property
    def complete(self) -> bool:
        return self._factors is not None

    @property
    def factors(self) -> NormalizationFactors | None:
        """The factors once complete (cache them), else None."""
        return self._factors

    @property
    def collected(self) -> int:
        """Usable samples gathered so far in the current collection."""
        return self.samples if self._factors is not None else len(self._collected)

    def add(self, ods: Mapping[str, float]) -> bool:
        """Offer one reading (``{channel: od}``); return True once the factors are ready.

        After completion further readings are ignored (the scale is fixed for the experiment). The first
        usable reading fixes the channel set; a later reading with other channels is refused with
        ``ValueError`` because mixing channel sets would mix scales.
        """
        if self._factors is not None:
            return True
        if not ods or not all(_is_number(v) and math.isfinite(v) and v > 0 for v in ods.values()):
            return False
        channels = frozenset(ods)
        if self._channels is None:
            self._channels = channels
        elif channels != self._channels:
            raise ValueError(f"warm-up channels changed from {sorted(self._channels)} to {sorted(channels)}")
        self._collected.append({c: float(v) for c, v in ods.items()})
        if len(self._collected) >= self.samples:
            self._finish()
        return self._factors is not None

    def dosing_event(self, ratio: float | None = None) -> None:
        """A dose during collection. Of known size (``ratio``, the OD after over the OD before, e.g.
        ``V / (V + added)``) the readings collected so far are put on the new scale and collection goes
        on, so a chemostat diluting more often than the warm-up lasts still finishes it; of unknown size,
        collection restarts (see class docstring). After completion it is a no-op."""
        if self._factors is not None:
            return
        if ratio is None:
            self._collected.clear()
            return
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"ratio must be finite and > 0, got {ratio!r}")
        self._collected = [{c: v * ratio for c, v in sample.items()} for sample in self._collected]

    def _finish(self) -> None:
        assert self._channels is not None
        means: dict[str, float] = {}
        variances: dict[str, float] = {}
        for channel in sorted(self._channels):
            series = [sample[channel] for sample in self._collected]
            mean = trimmed_mean(series, 0.1)
            means[channel] = mean
            variances[channel] = _detrended_variance([v / mean for v in series])
        self._factors = NormalizationFactors(means=means, variances=variances)
        self._collected.clear()


# -- messages in, cache out ------------------------------------------------------------------------------


def iso_to_hours(timestamp: object) -> float:
    """A payload timestamp (UTC ISO 8601, e.g. ``2025-06-01T12:00:00.000Z``) as epoch hours.

    ``ValueError`` names the bad value; a reading without a valid time cannot be placed in the filter.
    """
    if not isinstance(timestamp, str):
        raise ValueError(f"timestamp must be an ISO 8601 text such as 2025-06-01T12:00:00.000Z, got {timestamp!r}")
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {timestamp!r} is not ISO 8601; expected e.g. 2025-06-01T12:00:00.000Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp() / 3600.0


@attrs.frozen
class ODObservation:
    """One ``od_reading/ods`` message: its time (epoch hours), its timestamp text and OD per channel."""

    t_hours: float
    timestamp: str
    ods: dict[str, float]

    @property
    def unusable_channels(self) -> list[str]:
        """Channels whose OD is zero, negative or not finite: no log, no ratio, no growth rate from them."""
        return sorted(c for c, v in self.ods.items() if not (math.isfinite(v) and v > 0))


def parse_ods(text: str) -> ODObservation:
    """Parse an ``od_reading/ods`` payload ``{timestamp, ods: {channel: {od, ...}}}``; ``ValueError`` says
    what is missing."""
    try:
        message = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("ods"), dict) or not message["ods"]:
        raise ValueError("expected {timestamp, ods: {channel: {od, ...}}} with at least one channel")
    ods: dict[str, float] = {}
    for channel, reading in message["ods"].items():
        od = reading.get("od") if isinstance(reading, dict) else None
        if isinstance(od, bool) or not isinstance(od, (int, float)):
            raise ValueError(f"channel {channel!r} has no numeric od: {reading!r}")
        ods[str(channel)] = float(od)
    timestamp = message.get("timestamp")
    return ODObservation(t_hours=iso_to_hours(timestamp), timestamp=str(timestamp), ods=ods)


IGNORED_DOSE_SOURCES: frozenset[str] = frozenset({"pump_calibration"})
"""Dosing events that move no liquid in or out of the vial (calibrations pump into a beaker)."""


@attrs.frozen
class DoseNotice:
    """A dosing event that changes the vial's volume: when (epoch hours) and how much."""

    t_hours: float
    volume_change: float
    event: str
    source_of_event: str


DILUTING_EVENTS = frozenset({"add_media", "add_alt_media"})
"""Events that change the culture's concentration; waste leaves well mixed and changes nothing."""


def dilution_log_shift(volume_ml: float, added_ml: float) -> float:
    """The change of log OD when ``added_ml`` of cell-free liquid joins ``volume_ml`` of culture."""
    if not (math.isfinite(volume_ml) and volume_ml > 0 and math.isfinite(added_ml) and added_ml >= 0):
        raise ValueError(f"need a volume > 0 ml and an addition >= 0 ml, got {volume_ml!r} and {added_ml!r}")
    return math.log(volume_ml / (volume_ml + added_ml))


def parse_dosing_event(text: str) -> DoseNotice | None:
    """Parse a ``dosing_events`` payload ``{volume_change, event, source_of_event, timestamp}``.

    Returns None for an event that does not touch the vial's liquid (zero volume, a pump calibration);
    ``ValueError`` for a malformed one.
    """
    try:
        message = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if not isinstance(message, dict):
        raise ValueError("expected {volume_change, event, source_of_event, timestamp}")
    volume = message.get("volume_change")
    if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not math.isfinite(volume) or volume < 0:
        raise ValueError(f"volume_change must be a volume >= 0 ml, got {volume!r}")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise ValueError(f"event must name the pump action (add_media, remove_waste, ...), got {event!r}")
    source = str(message.get("source_of_event", "unknown"))
    t_hours = iso_to_hours(message.get("timestamp"))
    if volume == 0 or source in IGNORED_DOSE_SOURCES:
        return None
    return DoseNotice(t_hours=t_hours, volume_change=float(volume), event=event, source_of_event=source)


@attrs.frozen
class GrowthRateCache:
    """What growth_rate_calculating keeps per experiment so a restart continues where it was: the warm-up's
    normalisation factors (no new warm-up, no jump of nOD back to 1.0) and the last estimate (the filter
    restarts at the last growth rate, not at 0)."""

    factors: NormalizationFactors
    growth_rate: float | None = None
    od_filtered: float | None = None
    timestamp: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "normalization": self.factors.to_dict(),
            "growth_rate": self.growth_rate,
            "od_filtered": self.od_filtered,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: object) -> GrowthRateCache:
        """Read a cache; ``ValueError`` when it is not one (the caller starts a fresh warm-up)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("normalization"), Mapping):
            raise ValueError("expected {normalization: {means, variances}, growth_rate, od_filtered, timestamp}")
        try:
            factors = NormalizationFactors.from_dict(data["normalization"])
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"normalization is incomplete: {e}") from None
        rate = data.get("growth_rate")
        od = data.get("od_filtered")
        rate = float(rate) if _is_number(rate) and math.isfinite(rate) else None
        od = float(od) if _is_number(od) and math.isfinite(od) and od > 0 else None
        stamp = data.get("timestamp")
        return cls(factors=factors, growth_rate=rate, od_filtered=od, timestamp=stamp if isinstance(stamp, str) else None)

    def initial_rate(self, rate_limits: tuple[float, float] = (-1.0, 5.0)) -> float:
        """The growth rate a restarted filter starts from: the cached one, kept within ``rate_limits``."""
        if self.growth_rate is None:
            return 0.0
        return _clamp(self.growth_rate, *rate_limits)
