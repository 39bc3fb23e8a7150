"""The heater plate and the liquid as two coupled thermal nodes, with the plate's TMP1075 sensor.

Pure model, no I/O and no clock: the owner passes ``dt`` and the heater duty to :meth:`Thermal.advance`.
The sensor sits on the heater PCB, so it reads the *plate*, never the liquid; Pioreactor infers the liquid
from the plate's decay with the heater off. hardware.md §4.2::

    C_h * T_h' = P_max * u - (T_h - T_l)/R_hl - (T_h - T_a)/R_ha          u = duty / 100
    C_l * T_l' = (T_h - T_l)/R_hl - (T_l - T_a)/R_la

With the suggested constants (5 W, 15 and 75 J/K, 4/20/12 K/W, 22 C ambient) the time constants are 43 s
(plate) and 690 s (liquid); 100 % duty settles the plate at 66.4 C, at the 20 ml v1.0 safety limits, and
45 % holds the liquid at 37 C.

Why the integration is exact: in deviations from ambient the model is ``x' = A x + b u``, linear with
constant coefficients. For a duty held over ``dt`` the solution is ``x(dt) = x_ss + exp(A dt) (x0 - x_ss)``.
``A`` is 2x2 with real, distinct, negative eigenvalues (a thermal network is similar to a symmetric matrix,
and its off-diagonal terms are positive), so ``exp(A t)`` has a closed form (Sylvester's formula)::

    exp(A t) = [exp(l1 t) (A - l2 I) - exp(l2 t) (A - l1 I)] / (l1 - l2)

No numpy, no step size, and splitting ``dt`` gives the same answer up to rounding.

Fault knob ``plate_disconnected`` (the heater PCB unplugged): heater power has no effect, and
:meth:`Thermal.sensor_reading` raises :class:`PlateSensorError`, an ``OSError`` like the I2C NACK a real
missing TMP1075 gives, which the heater driver must treat as a failed read (heater off). Raising was chosen
over returning NaN so that a caller who forgets to check cannot feed NaN into a PID or a log unnoticed.
"""

from __future__ import annotations

import math
import random

import attrs
from actors.validators import finite, finite_non_negative, finite_positive

Matrix = tuple[tuple[float, float], tuple[float, float]]


def _duty_fraction(duty_pct: float) -> float:
    if math.isnan(duty_pct):
        raise ValueError("heater duty must be a number, got NaN")
    return min(100.0, max(0.0, float(duty_pct))) / 100.0


class PlateSensorError(OSError):
    """The plate temperature sensor did not answer (heater PCB disconnected): a failed read."""


@attrs.frozen(kw_only=True)
class ThermalParams:
    """Thermal constants of the heater PCB and the vial [assumption, sanity-checked: hardware.md §4.2]."""

    heater_max_w: float = attrs.field(default=5.0, validator=finite_non_negative)
    plate_capacity_j_per_k: float = attrs.field(default=15.0, validator=finite_positive)
    liquid_capacity_j_per_k: float = attrs.field(default=75.0, validator=finite_positive)
    r_plate_liquid_k_per_w: float = attrs.field(default=4.0, validator=finite_positive)
    r_plate_ambient_k_per_w: float = attrs.field(default=20.0, validator=finite_positive)
    r_liquid_ambient_k_per_w: float = attrs.field(default=12.0, validator=finite_positive)
    ambient_c: float = attrs.field(default=22.0, validator=finite)
    sensor_noise_c: float = attrs.field(default=0.03, validator=finite_non_negative)
    sensor_resolution_c: float = attrs.field(default=0.0625, validator=finite_positive)

    def system_matrix(self) -> Matrix:
        """``A`` of ``x' = A x + b u`` in deviations from ambient, per second."""
        ch, cl = self.plate_capacity_j_per_k, self.liquid_capacity_j_per_k
        g_hl = 1.0 / self.r_plate_liquid_k_per_w
        g_ha = 1.0 / self.r_plate_ambient_k_per_w
        g_la = 1.0 / self.r_liquid_ambient_k_per_w
        return ((-(g_hl + g_ha) / ch, g_hl / ch), (g_hl / cl, -(g_hl + g_la) / cl))

    def eigenvalues(self) -> tuple[float, float]:
        """The (fast, slow) eigenvalues of ``A``, both negative, in 1/s."""
        (a11, a12), (a21, a22) = self.system_matrix()
        trace = a11 + a22
        det = a11 * a22 - a12 * a21
        root = math.sqrt((a11 - a22) ** 2 + 4.0 * a12 * a21)
        fast = (trace - root) / 2.0
        # det / fast instead of (trace + root) / 2 avoids cancellation in the small eigenvalue.
        return fast, det / fast

    def time_constants(self) -> tuple[float, float]:
        """The (fast, slow) time constants ``-1/eigenvalue`` in seconds (43 s and 690 s by default)."""
        fast, slow = self.eigenvalues()
        return -1.0 / fast, -1.0 / slow


@attrs.define
class Thermal:
    """Plate and liquid temperatures of one vessel; both start at ambient unless given."""

    params: ThermalParams = attrs.field(factory=ThermalParams)
    # Scenario knob: the room temperature may change during a run; it starts at the parameter's value.
    ambient_c: float = attrs.field(
        default=attrs.Factory(lambda self: self.params.ambient_c, takes_self=True), kw_only=True, validator=finite
    )
    plate_c: float = attrs.field(
        default=attrs.Factory(lambda self: self.ambient_c, takes_self=True), kw_only=True, validator=finite
    )
    liquid_c: float = attrs.field(
        default=attrs.Factory(lambda self: self.ambient_c, takes_self=True), kw_only=True, validator=finite
    )
    plate_disconnected: bool = attrs.field(default=False, kw_only=True)

    def _steady_deviation(self, u: float) -> tuple[float, float]:
        """``x_ss = -A^-1 b u`` for an effective heater fraction ``u``, in kelvin above ambient."""
        (a11, a12), (a21, a22) = self.params.system_matrix()
        det = a11 * a22 - a12 * a21
        b1 = self.params.heater_max_w * u / self.params.plate_capacity_j_per_k
        # -A^-1 [b1, 0] = -(1/det) [a22 * b1, -a21 * b1]
        return -a22 * b1 / det, a21 * b1 / det

    def steady_state(self, heater_duty_pct: float) -> tuple[float, float]:
        """The (plate, liquid) temperatures a constant duty settles at, at the current ambient."""
        u = 0.0 if self.plate_disconnected else _duty_fraction(heater_duty_pct)
        xh, xl = self._steady_deviation(u)
        return self.ambient_c + xh, self.ambient_c + xl

    def propagator(self, dt: float) -> Matrix:
        """``exp(A dt)`` in closed form (Sylvester's formula for distinct eigenvalues)."""
        (a11, a12), (a21, a22) = self.params.system_matrix()
        l1, l2 = self.params.eigenvalues()
        e1, e2 = math.exp(l1 * dt), math.exp(l2 * dt)
        d = l1 - l2
        return (
            ((e1 * (a11 - l2) - e2 * (a11 - l1)) / d, (e1 - e2) * a12 / d),
            ((e1 - e2) * a21 / d, (e1 * (a22 - l2) - e2 * (a22 - l1)) / d),
        )

    def advance(self, dt: float, heater_duty_pct: float) -> None:
        """Move ``dt`` seconds forward with the heater at a constant duty (clamped to 0-100 like the PWM)."""
        if not (math.isfinite(dt) and dt >= 0):
            raise ValueError(f"dt must be finite and >= 0, got {dt!r}")
        u = _duty_fraction(heater_duty_pct)
        if dt == 0:
            return
        if self.plate_disconnected:
            u = 0.0
        sh, sl = self._steady_deviation(u)
        dh = self.plate_c - self.ambient_c - sh
        dl = self.liquid_c - self.ambient_c - sl
        (p11, p12), (p21, p22) = self.propagator(dt)
        self.plate_c = self.ambient_c + sh + p11 * dh + p12 * dl
        self.liquid_c = self.ambient_c + sl + p21 * dh + p22 * dl

    def sensor_reading(self, rng: random.Random) -> float:
        """What the TMP1075 reports: the plate plus N(0, noise), quantised to its 0.0625 C step.

        Raises :class:`PlateSensorError` when the plate is disconnected. Draws one Gaussian from ``rng``.
        """
        if self.plate_disconnected:
            raise PlateSensorError(
                "heater PCB temperature sensor did not answer (I2C NACK): plate disconnected"
            )
        noisy = self.plate_c + rng.gauss(0.0, self.params.sensor_noise_c)
        step = self.params.sensor_resolution_c
        return math.floor(noisy / step + 0.5) * step
