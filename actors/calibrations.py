"""Calibrations as values: the three types, curve fitting and solving, and their YAML form. Pure.

A calibration records how a device's setting maps to what it does, measured on one unit (pioreactor.md
§8.3): an OD calibration maps OD600 (x) to photodiode voltage (y) at one IR intensity, angle and channel;
a pump calibration maps run time in seconds (x) to volume in ml (y) at one PWM frequency and duty; a
stirring calibration maps duty % (x) to RPM (y). Each holds the measured points and a polynomial fitted
through them. Files live one per calibration, per device, with one active per device; finding, storing and
activating them is file I/O and belongs to the caller. This module parses, validates, fits and solves.

Conventions and why:

* Curves are polynomials, coefficients highest power first (the reference's ``curve_data_`` for ``poly``;
  numpy.polyfit's order). Spline and Akima curves are refused with a hint to refit as ``poly``.
* ``y_to_x`` finds every real root and picks the one inside the recorded x range (the curve is only
  known there); when several are inside, the smallest (or the one nearest a caller's ``hint``), with a
  message; when none is, the closest. With ``enforce_bounds`` (what the OD pipeline uses, through
  ``ODCalibration.voltage_to_od``) an input outside the recorded range is first clamped to the recorded
  extreme, and the result says so: a clamped OD is a floor or ceiling, not a measurement.
* The recorded bounds are derived from the recorded points, never stored separately, so they cannot
  disagree with them.
* ml-based dosing is refused without a real pump calibration: the default (0.0911 ml/s at 250 Hz, 100 %)
  is a rough figure for an uncalibrated pump, fine for "run 10 s" but not for "add 1 ml". Pioreactor
  makes the same refusal. :func:`is_default` is the test.
* YAML errors name the file, the line, the key path, what is wrong and what to write instead, and all of
  them are collected before failing (as ``actors/topology.py`` does): a malformed calibration file is
  refused whole, never half-applied.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

import attrs
import yaml
from yaml.constructor import SafeConstructor

CalibrationType = Literal["od", "simple_peristaltic_pump", "simple_stirring"]

OD_DEVICES: tuple[str, ...] = ("od", "od45", "od90", "od135")


@attrs.frozen
class Pump:
    """One of the HAT's pumps, by every name it goes by: its PWM channel, its calibration device, and
    its dosing event (also the name of the job that runs it)."""

    channel: str
    device: str
    event: str


PUMPS: tuple[Pump, ...] = (
    Pump(channel="media", device="media_pump", event="add_media"),
    Pump(channel="alt_media", device="alt_media_pump", event="add_alt_media"),
    Pump(channel="waste", device="waste_pump", event="remove_waste"),
)
PUMP_BY_CHANNEL: dict[str, Pump] = {p.channel: p for p in PUMPS}
PUMP_BY_DEVICE: dict[str, Pump] = {p.device: p for p in PUMPS}
PUMP_DEVICES: tuple[str, ...] = tuple(p.device for p in PUMPS)
STIRRING_DEVICES: tuple[str, ...] = ("stirring",)
ANGLES: tuple[str, ...] = ("45", "90", "135", "180")
PD_CHANNELS: tuple[str, ...] = ("1", "2", "3", "4")

DEFAULT_PUMP_CALIBRATION_NAME = "default"
DEFAULT_PUMP_ML_PER_SECOND = 0.0911
DEFAULT_PUMP_HZ = 250.0
DEFAULT_PUMP_DC = 100.0
DEFAULT_CREATED_AT = "1970-01-01T00:00:00+00:00"
"""The default pump calibration was never recorded; it carries a fixed date instead of a clock reading."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CalibrationError(ValueError):
    """A calibration cannot answer: no solution on the curve, or ml dosing without a real calibration."""


class CalibrationFileError(ValueError):
    """A calibration file was refused; ``errors`` lists every problem as ``file:line: key: what; hint``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# -- field checks, shared by the attrs validators and the YAML reader --------------------------------------
# Each returns None when the value is fine, or "what is wrong; what to write instead".


def _name_problem(value: object) -> str | None:
    if not isinstance(value, str) or not _NAME.match(value):
        return (
            f"{value!r} is not a usable calibration name; use letters, digits, '.', '_' or '-' "
            "(it becomes the file name), starting with a letter or digit"
        )
    return None


def _created_at_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{value!r} is not a date; write an ISO 8601 time such as 2025-06-01T12:00:00Z"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 time; write e.g. 2025-06-01T12:00:00Z"
    return None


def _curve_problem(value: Sequence[float]) -> str | None:
    if len(value) == 0:
        return "the curve has no coefficients; list them highest power first, e.g. [0.09, 0.0] for 0.09*x"
    if not all(math.isfinite(c) for c in value):
        return f"curve coefficients must be finite numbers, got {list(value)!r}"
    if len(value) > 1 and value[0] == 0:
        return "the leading (highest power) coefficient is 0; drop it so the degree is what it says"
    return None


def _points_problem(xs: Sequence[float], ys: Sequence[float]) -> str | None:
    if len(xs) != len(ys):
        return f"recorded x has {len(xs)} values but y has {len(ys)}; give one y per x"
    if not all(math.isfinite(v) for v in (*xs, *ys)):
        return "recorded values must be finite numbers"
    return None


def _range_problem(name: str, value: float, low: float, high: float, low_open: bool = False) -> str | None:
    bad = not math.isfinite(value) or value > high or (value <= low if low_open else value < low)
    if bad:
        bracket = "(" if low_open else "["
        return f"{name} {value!r} is out of range; use a number in {bracket}{low:g}, {high:g}]"
    return None


def _positive_problem(name: str, value: float) -> str | None:
    if not (math.isfinite(value) and value > 0):
        return f"{name} {value!r} must be a number above 0"
    return None


def _voltage_problem(value: float | None) -> str | None:
    if value is not None and not math.isfinite(value):
        return f"voltage {value!r} must be a finite number, or null when it was not measured"
    return None


def _choice_problem(name: str, value: object, choices: tuple[str, ...]) -> str | None:
    if value not in choices:
        return f"{name} {value!r} is not one of {', '.join(choices)}"
    return None


def _raise_if(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def _number(value: float) -> float:
    """Converter: an int or float to float, refusing text and booleans (no silent coercion)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _optional_number(value: float | None) -> float | None:
    return None if value is None else _number(value)


def _floats(value: Sequence[float]) -> tuple[float, ...]:
    """Converter: a sequence of numbers to a tuple of floats, refusing anything else (no silent coercion
    of text or booleans)."""
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected numbers, got {v!r}")
        out.append(float(v))
    return tuple(out)


# -- polynomials -------------------------------------------------------------------------------------------


def poly_eval(coefficients: Sequence[float], x: float) -> float:
    """The polynomial (highest power first) at ``x``, by Horner's rule."""
    total = 0.0
    for c in coefficients:
        total = total * x + c
    return total


def _derivative(coefficients: Sequence[float]) -> list[float]:
    degree = len(coefficients) - 1
    return [c * (degree - i) for i, c in enumerate(coefficients[:-1])]


def _root_bound(coefficients: Sequence[float]) -> float:
    """Cauchy's bound: every real root lies in ``[-bound, bound]``."""
    lead = coefficients[0]
    return 1.0 + max(abs(c / lead) for c in coefficients[1:])


def _refine(coefficients: Sequence[float], lo: float, hi: float) -> float:
    """The single root in ``[lo, hi]`` of a polynomial monotone there with a sign change, by bisection."""
    f_lo = poly_eval(coefficients, lo)
    for _ in range(2000):
        mid = lo + (hi - lo) / 2.0
        if mid <= lo or mid >= hi:
            break
        f_mid = poly_eval(coefficients, mid)
        if f_mid == 0.0:
            return mid
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return lo + (hi - lo) / 2.0


def real_roots(coefficients: Sequence[float]) -> list[float]:
    """Every real root of a polynomial (highest power first), ascending, without numpy.

    Between consecutive real roots of the derivative the polynomial is monotone, so each such interval
    (and the two outer ones, closed by Cauchy's bound) holds at most one root, found by bisection. The
    derivative's roots come from this same function one degree down. A double root (a tangent) is found
    only when the polynomial is exactly 0 at a critical point; a calibration never relies on one.
    """
    coeffs = list(coefficients)
    while len(coeffs) > 1 and coeffs[0] == 0:
        coeffs.pop(0)
    if len(coeffs) <= 1:
        return []
    if len(coeffs) == 2:
        return [-coeffs[1] / coeffs[0]]
    bound = _root_bound(coeffs)
    critical = [c for c in real_roots(_derivative(coeffs)) if -bound < c < bound]
    edges = [-bound, *critical, bound]
    roots: list[float] = []
    for a, b in zip(edges, edges[1:]):
        fa, fb = poly_eval(coeffs, a), poly_eval(coeffs, b)
        if fa == 0.0:
            roots.append(a)
        elif (fa > 0) != (fb > 0) and fb != 0.0:
            roots.append(_refine(coeffs, a, b))
    if poly_eval(coeffs, bound) == 0.0:
        roots.append(bound)
    unique: list[float] = []
    for r in sorted(roots):
        if not unique or r - unique[-1] > 1e-12 * max(1.0, abs(r)):
            unique.append(r)
    return unique


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Solve a small dense linear system by Gaussian elimination with partial pivoting."""
    n = len(rhs)
    rows = [list(matrix[i]) + [rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-300:
            raise CalibrationError("the points do not determine the curve (too few distinct x values)")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            if factor:
                for c in range(col, n + 1):
                    rows[r][c] -= factor * rows[col][c]
    solution = [0.0] * n
    for r in reversed(range(n)):
        acc = rows[r][n] - sum(rows[r][c] * solution[c] for c in range(r + 1, n))
        solution[r] = acc / rows[r][r]
    return solution


def fit_poly(xs: Sequence[float], ys: Sequence[float], degree: int) -> tuple[float, ...]:
    """Least-squares polynomial of ``degree`` through the points, highest power first (shorter when the
    leading coefficients come out exactly 0).

    Normal equations, solved on x mapped to [-1, 1] and expanded back: raw x (seconds, duty %) raised to
    the 2*degree power would square an already poor conditioning; on [-1, 1] the small system is well
    behaved for the degrees calibrations use (1-4).
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    _raise_if(_points_problem(xs, ys))
    distinct = len(set(xs))
    if distinct < degree + 1:
        raise CalibrationError(
            f"a degree-{degree} curve needs at least {degree + 1} distinct x values, got {distinct}"
        )
    lo, hi = min(xs), max(xs)
    centre = (lo + hi) / 2.0
    half = (hi - lo) / 2.0 if hi > lo else 1.0
    us = [(x - centre) / half for x in xs]
    size = degree + 1
    power_sums = [math.fsum(u**k for u in us) for k in range(2 * degree + 1)]
    matrix = [[power_sums[i + j] for j in range(size)] for i in range(size)]
    rhs = [math.fsum(y * u**i for u, y in zip(us, ys)) for i in range(size)]
    in_u = _solve(matrix, rhs)  # ascending powers of u = (x - centre) / half
    ascending = [0.0] * size
    for k, b in enumerate(in_u):
        # b * ((x - centre) / half)^k, expanded by the binomial theorem
        scale = b / half**k
        for j in range(k + 1):
            ascending[j] += scale * math.comb(k, j) * (-centre) ** (k - j)
    coefficients = tuple(reversed(ascending))
    # A fit can give a leading coefficient of exactly 0 (a line through constant y); trim such zeros so
    # the result is a valid curve, one degree lower, rather than one a calibration would refuse.
    trimmed = list(coefficients)
    while len(trimmed) > 1 and trimmed[0] == 0.0:
        trimmed.pop(0)
    return tuple(trimmed)


def fit_linear(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through the points: ``(slope, intercept)``."""
    coefficients = fit_poly(xs, ys, 1)
    if len(coefficients) == 1:
        return 0.0, coefficients[0]
    return coefficients[0], coefficients[1]


# -- the calibration values --------------------------------------------------------------------------------


@attrs.frozen
class CurveValue:
    """An answer from a calibration curve. ``clamped``: the input was outside the recorded range and was
    moved to its edge, so ``value`` is a bound, not a measurement. ``message`` explains anything unusual
    (clamping, several candidate solutions, extrapolation) for the caller to log."""

    value: float
    clamped: bool = False
    message: str | None = None


def _name_validator(_i: object, _a: attrs.Attribute, value: str) -> None:
    _raise_if(_name_problem(value))


def _created_at_validator(_i: object, _a: attrs.Attribute, value: str) -> None:
    _raise_if(_created_at_problem(value))


def _curve_validator(_i: object, _a: attrs.Attribute, value: tuple[float, ...]) -> None:
    _raise_if(_curve_problem(value))


@attrs.frozen(kw_only=True)
class _Calibration:
    """Fields and curve maths every calibration type shares. Use the concrete types."""

    calibration_type: ClassVar[CalibrationType]
    devices: ClassVar[tuple[str, ...]]
    x_name: ClassVar[str]
    y_name: ClassVar[str]

    name: str = attrs.field(validator=_name_validator)
    device: str = attrs.field()
    created_at: str = attrs.field(validator=_created_at_validator)
    curve: tuple[float, ...] = attrs.field(converter=_floats, validator=_curve_validator)
    recorded_x: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    recorded_y: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    calibrated_on_unit: str | None = None

    @device.validator
    def _check_device(self, _a: attrs.Attribute, value: str) -> None:
        _raise_if(_choice_problem(f"device for a {self.calibration_type} calibration", value, self.devices))

    def __attrs_post_init__(self) -> None:
        _raise_if(_points_problem(self.recorded_x, self.recorded_y))

    @property
    def x_bounds(self) -> tuple[float, float] | None:
        """(min, max) of the recorded x values; ``None`` when nothing was recorded."""
        return (min(self.recorded_x), max(self.recorded_x)) if self.recorded_x else None

    @property
    def y_bounds(self) -> tuple[float, float] | None:
        """(min, max) of the recorded y values; ``None`` when nothing was recorded."""
        return (min(self.recorded_y), max(self.recorded_y)) if self.recorded_y else None

    def x_to_y(self, x: float, *, enforce_bounds: bool = False) -> CurveValue:
        """The curve at ``x``; with ``enforce_bounds``, ``x`` is first clamped to the recorded x range."""
        x = _finite_input(self.x_name, x)
        clamped, message = False, None
        bounds = self.x_bounds
        if enforce_bounds and bounds is not None and not bounds[0] <= x <= bounds[1]:
            edge = min(max(x, bounds[0]), bounds[1])
            clamped = True
            message = (
                f"{self.x_name} {x:g} is outside what calibration {self.name!r} recorded "
                f"({bounds[0]:g}..{bounds[1]:g}); using {edge:g}"
            )
            x = edge
        return CurveValue(poly_eval(self.curve, x), clamped, message)

    @classmethod
    def from_points(cls, xs: Sequence[float], ys: Sequence[float], *, degree: int, **fields: Any) -> Self:
        """A calibration of this type whose curve is :func:`fit_poly` of ``degree`` through the recorded
        points (which it also records); ``fields`` are the type's other fields (name, device, ...)."""
        return cls(curve=fit_poly(xs, ys, degree), recorded_x=xs, recorded_y=ys, **fields)

    def y_to_x(self, y: float, *, enforce_bounds: bool = False, hint: float | None = None) -> CurveValue:
        """The ``x`` at which the curve gives ``y`` (module docstring: which root, and clamping).

        When several roots lie in the recorded range, ``hint`` (e.g. the previous answer) picks the
        nearest instead of the smallest: a curve that bends back gives two x for one y, and the caller
        may know which branch it is on.

        Raises :class:`CalibrationError` when no real ``x`` gives ``y`` (e.g. above a curve's maximum),
        except with ``enforce_bounds`` and recorded points, where the recorded x at which the curve comes
        closest to ``y`` is returned, flagged ``clamped`` (a reading pipeline must not stop on one value).
        Without recorded points the domain is taken as ``x >= 0``: every calibrated quantity here (OD,
        seconds, duty) is non-negative.
        """
        y = _finite_input(self.y_name, y)
        notes: list[str] = []
        clamped = False
        y_bounds = self.y_bounds
        if enforce_bounds and y_bounds is not None and not y_bounds[0] <= y <= y_bounds[1]:
            edge = min(max(y, y_bounds[0]), y_bounds[1])
            notes.append(
                f"{self.y_name} {y:g} is outside what calibration {self.name!r} recorded "
                f"({y_bounds[0]:g}..{y_bounds[1]:g}); using {edge:g}"
            )
            clamped = True
            y = edge
        shifted = list(self.curve)
        shifted[-1] -= y
        roots = real_roots(shifted)
        recorded = self.x_bounds
        if not roots and enforce_bounds and recorded is not None:
            lo, hi = recorded
            turning = [c for c in real_roots(_derivative(self.curve)) if lo < c < hi]
            x = min((lo, hi, *turning), key=lambda c: abs(poly_eval(self.curve, c) - y))
            notes.append(
                f"no {self.x_name} gives {self.y_name} {y:g} on calibration {self.name!r}'s curve; "
                f"using {x:g}, where the curve comes closest"
            )
            return CurveValue(x, True, "; ".join(notes))
        if not roots:
            raise CalibrationError(
                f"no {self.x_name} gives {self.y_name} {y:g} on calibration {self.name!r}'s curve; "
                "the value is beyond the curve's range (recalibrate over a wider range)"
            )
        lo, hi = recorded if recorded is not None else (0.0, math.inf)
        # A root a rounding away from an edge (e.g. y clamped to a recorded extreme) counts as inside.
        tolerance = 1e-9 * max(1.0, abs(lo), abs(hi) if recorded is not None else 1.0)
        inside = [r for r in roots if lo - tolerance <= r <= hi + tolerance]
        if inside:
            chosen = inside[0] if hint is None else min(inside, key=lambda r: abs(r - hint))
            x = min(max(chosen, lo), hi)
            if len(inside) > 1:
                shown = ", ".join(f"{r:g}" for r in inside)
                which = "the smallest" if hint is None else f"the one nearest {hint:g}"
                notes.append(f"several {self.x_name} values give {self.y_name} {y:g} ({shown}); using {which}")
        else:
            x = min(roots, key=lambda r: lo - r if r < lo else r - hi)
            where = "the recorded range" if recorded is not None else f"{self.x_name} >= 0"
            notes.append(f"{self.x_name} {x:g} is outside {where}: an extrapolation")
            if enforce_bounds and recorded is not None:
                x = min(max(x, lo), hi)
                clamped = True
        return CurveValue(x, clamped, "; ".join(notes) if notes else None)


def _finite_input(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _intensity_validator(_i: object, _a: attrs.Attribute, value: float) -> None:
    _raise_if(_range_problem("ir_led_intensity", value, 0.0, 100.0, low_open=True))


def _angle_validator(_i: object, _a: attrs.Attribute, value: str) -> None:
    _raise_if(_choice_problem("angle", value, ANGLES))


def _pd_channel_validator(_i: object, _a: attrs.Attribute, value: str) -> None:
    _raise_if(_choice_problem("pd_channel", value, PD_CHANNELS))


def _positive_validator(_i: object, attribute: attrs.Attribute, value: float) -> None:
    _raise_if(_positive_problem(attribute.name, value))


def _dc_validator(_i: object, _a: attrs.Attribute, value: float) -> None:
    _raise_if(_range_problem("dc", value, 0.0, 100.0, low_open=True))


def _voltage_validator(_i: object, _a: attrs.Attribute, value: float | None) -> None:
    _raise_if(_voltage_problem(value))


@attrs.frozen(kw_only=True)
class ODCalibration(_Calibration):
    """OD600 (x) to photodiode voltage (y), valid only at the IR intensity, angle and channel recorded."""

    calibration_type: ClassVar[CalibrationType] = "od"
    devices: ClassVar[tuple[str, ...]] = OD_DEVICES
    x_name: ClassVar[str] = "OD600"
    y_name: ClassVar[str] = "voltage"

    ir_led_intensity: float = attrs.field(converter=_number, validator=_intensity_validator)
    angle: str = attrs.field(validator=_angle_validator)
    pd_channel: str = attrs.field(validator=_pd_channel_validator)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if len(self.curve) < 2:
            raise ValueError("the curve is constant: voltage would not depend on OD600; recalibrate")

    def check_ir_led_intensity(self, ir_led_intensity: float) -> None:
        """Raise :class:`CalibrationError` unless a reading used this calibration's IR intensity: the
        voltages scale with the LED, so the curve means nothing at another intensity."""
        if not math.isclose(ir_led_intensity, self.ir_led_intensity, rel_tol=0.0, abs_tol=1e-9):
            raise CalibrationError(
                f"calibration {self.name!r} was recorded at IR intensity {self.ir_led_intensity} % but the "
                f"reading used {ir_led_intensity} %; re-calibrate, drop the calibration, or set the IR "
                "intensity back"
            )

    def voltage_to_od(
        self,
        voltage: float,
        ir_led_intensity: float | None = None,
        *,
        enforce_bounds: bool = True,
        hint: float | None = None,
    ) -> CurveValue:
        """OD600 for a photodiode ``voltage``: :meth:`y_to_x`, clamped to the recorded range by default
        (what the OD pipeline wants: a clamped answer is a floor or ceiling, flagged, never an absurd
        extrapolation). ``ir_led_intensity``, when given, is checked with :meth:`check_ir_led_intensity`;
        ``hint`` (e.g. the previous OD) picks the branch of a curve that bends back."""
        if ir_led_intensity is not None:
            self.check_ir_led_intensity(ir_led_intensity)
        return self.y_to_x(voltage, enforce_bounds=enforce_bounds, hint=hint)


@attrs.frozen(kw_only=True)
class PumpCalibration(_Calibration):
    """Run time in seconds (x) to volume in ml (y) at one PWM frequency and duty."""

    calibration_type: ClassVar[CalibrationType] = "simple_peristaltic_pump"
    devices: ClassVar[tuple[str, ...]] = PUMP_DEVICES
    x_name: ClassVar[str] = "duration"
    y_name: ClassVar[str] = "volume"

    hz: float = attrs.field(converter=_number, validator=_positive_validator)
    dc: float = attrs.field(converter=_number, validator=_dc_validator)
    voltage: float | None = attrs.field(default=None, converter=_optional_number, validator=_voltage_validator)


@attrs.frozen(kw_only=True)
class StirringCalibration(_Calibration):
    """Duty % (x) to RPM (y) at one PWM frequency."""

    calibration_type: ClassVar[CalibrationType] = "simple_stirring"
    devices: ClassVar[tuple[str, ...]] = STIRRING_DEVICES
    x_name: ClassVar[str] = "duty"
    y_name: ClassVar[str] = "RPM"

    pwm_hz: float = attrs.field(converter=_number, validator=_positive_validator)
    voltage: float | None = attrs.field(default=None, converter=_optional_number, validator=_voltage_validator)


Calibration = ODCalibration | PumpCalibration | StirringCalibration
CALIBRATION_TYPES: dict[str, type[ODCalibration] | type[PumpCalibration] | type[StirringCalibration]] = {
    "od": ODCalibration,
    "simple_peristaltic_pump": PumpCalibration,
    "simple_stirring": StirringCalibration,
}


# -- pumps -------------------------------------------------------------------------------------------------


def default_pump_calibration(device: str = "media_pump") -> PumpCalibration:
    """The stand-in for an uncalibrated pump: 0.0911 ml/s at 250 Hz and 100 % duty, nothing recorded.

    Good enough to run a pump for a duration; :func:`pump_ml_to_seconds` refuses it.
    """
    return PumpCalibration(
        name=DEFAULT_PUMP_CALIBRATION_NAME,
        device=device,
        created_at=DEFAULT_CREATED_AT,
        curve=(DEFAULT_PUMP_ML_PER_SECOND, 0.0),
        hz=DEFAULT_PUMP_HZ,
        dc=DEFAULT_PUMP_DC,
    )


def is_default(cal: Calibration) -> bool:
    """Whether ``cal`` is a stand-in rather than a measured calibration.

    A real calibration always has recorded points (files without them are refused by :func:`loads`),
    and the name ``default`` is reserved, so either sign is enough.
    """
    return cal.name == DEFAULT_PUMP_CALIBRATION_NAME or not cal.recorded_x


def _how_to_calibrate(device: str) -> str:
    return (
        f"calibrate it first with `pio calibrations run --device {device}` (it pumps into a beaker, you weigh "
        "what it moved) and make that calibration active; dosing by duration works without one"
    )


def pump_ml_to_seconds(cal: PumpCalibration, ml: float) -> float:
    """How long to run the pump to move ``ml``; refused (:class:`CalibrationError`) on a default
    calibration, because an ml figure from a guessed flow rate would look precise and be wrong."""
    if not isinstance(cal, PumpCalibration):
        raise TypeError(f"need a pump calibration, got {type(cal).__name__}")
    ml = _finite_input("ml", ml)
    if ml < 0:
        raise ValueError(f"ml must be >= 0, got {ml:g}")
    if is_default(cal):
        raise CalibrationError(
            f"refusing to dose {ml:g} ml with {cal.device}: it has no pump calibration, only the default "
            f"estimate of {DEFAULT_PUMP_ML_PER_SECOND} ml/s; {_how_to_calibrate(cal.device)}"
        )
    if ml == 0:
        return 0.0
    seconds = cal.y_to_x(ml).value
    if seconds <= 0:
        raise CalibrationError(
            f"calibration {cal.name!r} gives {ml:g} ml at {seconds:g} s: below what it can resolve "
            "(its curve does not start at 0 ml); dose more, or recalibrate with smaller volumes"
        )
    return seconds


def pump_seconds_to_ml(cal: PumpCalibration, seconds: float) -> float:
    """The volume a run of ``seconds`` moves by this calibration (the default is allowed: this is how
    a duration-based dose reports its estimated volume)."""
    if not isinstance(cal, PumpCalibration):
        raise TypeError(f"need a pump calibration, got {type(cal).__name__}")
    seconds = _finite_input("seconds", seconds)
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds:g}")
    return max(0.0, poly_eval(cal.curve, seconds)) if seconds > 0 else 0.0


# -- YAML --------------------------------------------------------------------------------------------------

_COMMON_KEYS = ("calibration_type", "name", "device", "created_at", "calibrated_on_unit", "curve", "recorded_data")
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "od": ("ir_led_intensity", "angle", "pd_channel"),
    "simple_peristaltic_pump": ("hz", "dc", "voltage"),
    "simple_stirring": ("pwm_hz", "voltage"),
}
_REQUIRED_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "od": ("ir_led_intensity", "angle", "pd_channel"),
    "simple_peristaltic_pump": ("hz", "dc"),
    "simple_stirring": ("pwm_hz",),
}


def dumps(cal: Calibration) -> str:
    """The calibration as YAML; :func:`loads` reads it back to an equal value (floats round-trip)."""
    data: dict[str, Any] = {
        "calibration_type": cal.calibration_type,
        "name": cal.name,
        "device": cal.device,
        "created_at": cal.created_at,
    }
    if cal.calibrated_on_unit is not None:
        data["calibrated_on_unit"] = cal.calibrated_on_unit
    data["curve"] = {"type": "poly", "coefficients": list(cal.curve)}
    data["recorded_data"] = {"x": list(cal.recorded_x), "y": list(cal.recorded_y)}
    if isinstance(cal, ODCalibration):
        data.update(ir_led_intensity=cal.ir_led_intensity, angle=cal.angle, pd_channel=cal.pd_channel)
    elif isinstance(cal, PumpCalibration):
        data.update(hz=cal.hz, dc=cal.dc, voltage=cal.voltage)
    else:
        data.update(pwm_hz=cal.pwm_hz, voltage=cal.voltage)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class _Reader:
    """Walks composed YAML nodes, collecting ``file:line: path: message`` errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._found: list[tuple[int, str]] = []
        self._constructor = SafeConstructor()

    def err(self, node: yaml.Node, where: str, message: str) -> None:
        self.err_at(node.start_mark.line + 1, where, message)

    def err_at(self, line: int, where: str, message: str) -> None:
        self._found.append((line, f"{self.path}:{line}: {where}: {message}"))

    @property
    def errors(self) -> list[str]:
        """Every problem, in file order (stable, so problems on one line keep the order found)."""
        return [text for _, text in sorted(self._found, key=lambda item: item[0])]

    def mapping(
        self, node: yaml.Node, where: str, allowed: tuple[str, ...] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.err(node, where, "expected a mapping of keys to values")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = f"{where}.{key}" if where else key
            if key in out:
                self.err(key_node, here, f"{key!r} appears twice; keep one")
            elif allowed is not None and key not in allowed:
                self.err(key_node, here, f"unknown key {key!r}; allowed keys are: {', '.join(allowed)}")
            else:
                out[key] = (key_node, value_node)
        return out

    def text(self, node: yaml.Node, where: str, *, nullable: bool = False) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and nullable:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            self.err(node, where, "expected text")
            return None
        # The raw text: an unquoted date stays as written instead of becoming a datetime, and an
        # unquoted 90 is the angle "90".
        return str(node.value)

    def number(self, node: yaml.Node, where: str, *, nullable: bool = False) -> float | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            if not nullable:
                self.err(node, where, "expected a number, got nothing (null)")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, where, "expected a number")
            return None
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, str) and node.style is None:
            # YAML 1.1 reads 1e-3 (no decimal point) as text; a person means a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.err(node, where, f"{node.value!r} is not a number")
            return None
        if not math.isfinite(value):
            self.err(node, where, f"{node.value!r} is not a finite number")
            return None
        return float(value)

    def numbers(self, node: yaml.Node, where: str) -> list[float] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, where, "expected a list of numbers, e.g. [0.1, 0.2]")
            return None
        values = [self.number(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        if any(v is None for v in values):
            return None
        return [v for v in values if v is not None]

    def check(self, node: yaml.Node, where: str, problem: str | None) -> None:
        if problem is not None:
            self.err(node, where, problem)


def loads(text: str, path: str = "calibration.yaml") -> Calibration:
    """Parse and validate one calibration file's text; ``path`` is only used in messages.

    Raises :class:`CalibrationFileError` listing every problem found, each as
    ``path:line: key.path: what is wrong; what to write instead``.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(e, "problem", None) or str(e)
        raise CalibrationFileError([f"{path}:{line}: not valid YAML: {problem}"]) from None
    if root is None:
        needed = "calibration_type, name, device, created_at, curve and recorded_data"
        raise CalibrationFileError([f"{path}:1: the file is empty; a calibration needs at least {needed}"])
    r = _Reader(path)
    if not isinstance(root, yaml.MappingNode):
        r.err(root, "calibration", "expected a mapping of keys to values (calibration_type: ..., name: ...)")
        raise CalibrationFileError(r.errors)

    # The type decides which keys are allowed, so read it first.
    kind: str | None = None
    for key_node, value_node in root.value:
        if key_node.value == "calibration_type":
            kind = r.text(value_node, "calibration_type")
            if kind is not None and kind not in CALIBRATION_TYPES:
                known = ", ".join(CALIBRATION_TYPES)
                r.err(value_node, "calibration_type", f"unknown type {kind!r}; use one of {known}")
                kind = None
            break
    allowed = _COMMON_KEYS + (_TYPE_KEYS[kind] if kind else tuple(k for keys in _TYPE_KEYS.values() for k in keys))
    fields = r.mapping(root, "", tuple(dict.fromkeys(allowed)))

    required = ["calibration_type", "name", "device", "created_at", "curve", "recorded_data"]
    if kind:
        required += _REQUIRED_TYPE_KEYS[kind]
    for key in required:
        if key not in fields:
            r.err_at(root.start_mark.line + 1, key, f"missing; add `{key}: ...`")

    kw: dict[str, Any] = {}
    if "name" in fields:
        node = fields["name"][1]
        name = r.text(node, "name")
        if name is not None:
            problem = _name_problem(name)
            if problem is None and name == DEFAULT_PUMP_CALIBRATION_NAME:
                problem = f"the name {name!r} is reserved for the built-in default; choose another"
            r.check(node, "name", problem)
            kw["name"] = name
    if "device" in fields:
        node = fields["device"][1]
        device = r.text(node, "device")
        if device is not None and kind is not None:
            devices = CALIBRATION_TYPES[kind].devices
            r.check(node, "device", _choice_problem(f"device for a {kind} calibration", device, devices))
        kw["device"] = device
    if "created_at" in fields:
        node = fields["created_at"][1]
        created = r.text(node, "created_at")
        if created is not None:
            r.check(node, "created_at", _created_at_problem(created))
        kw["created_at"] = created
    if "calibrated_on_unit" in fields:
        kw["calibrated_on_unit"] = r.text(fields["calibrated_on_unit"][1], "calibrated_on_unit", nullable=True)

    if "curve" in fields:
        curve_node = fields["curve"][1]
        curve = r.mapping(curve_node, "curve", ("type", "coefficients"))
        if "type" not in curve:
            r.err(curve_node, "curve.type", "missing; add `type: poly`")
        else:
            curve_type = r.text(curve["type"][1], "curve.type")
            if curve_type is not None and curve_type != "poly":
                unsupported = f"{curve_type!r} curves are not supported; refit the points as `poly`"
                r.err(curve["type"][1], "curve.type", unsupported)
        if "coefficients" not in curve:
            r.err(
                curve_node, "curve.coefficients", "missing; list the coefficients highest power first, e.g. [0.09, 0.0]"
            )
        else:
            node = curve["coefficients"][1]
            coefficients = r.numbers(node, "curve.coefficients")
            if coefficients is not None:
                r.check(node, "curve.coefficients", _curve_problem(coefficients))
                kw["curve"] = coefficients

    if "recorded_data" in fields:
        data_node = fields["recorded_data"][1]
        data = r.mapping(data_node, "recorded_data", ("x", "y"))
        xs = ys = None
        for axis in ("x", "y"):
            if axis not in data:
                r.err(data_node, f"recorded_data.{axis}", f"missing; list the recorded {axis} values")
        if "x" in data:
            xs = r.numbers(data["x"][1], "recorded_data.x")
        if "y" in data:
            ys = r.numbers(data["y"][1], "recorded_data.y")
        if xs is not None and ys is not None:
            problem = _points_problem(xs, ys)
            if problem is None and len(set(xs)) < 2:
                problem = "a calibration needs at least two recorded points at different x; record more"
            r.check(data_node, "recorded_data", problem)
            kw["recorded_x"], kw["recorded_y"] = xs, ys

    if kind == "od":
        if "ir_led_intensity" in fields:
            node = fields["ir_led_intensity"][1]
            value = r.number(node, "ir_led_intensity")
            if value is not None:
                r.check(node, "ir_led_intensity", _range_problem("ir_led_intensity", value, 0.0, 100.0, low_open=True))
            kw["ir_led_intensity"] = value
        for key, choices in (("angle", ANGLES), ("pd_channel", PD_CHANNELS)):
            if key in fields:
                node = fields[key][1]
                value_text = r.text(node, key)
                if value_text is not None:
                    r.check(node, key, _choice_problem(key, value_text, choices))
                kw[key] = value_text
    elif kind == "simple_peristaltic_pump":
        if "hz" in fields:
            node = fields["hz"][1]
            value = r.number(node, "hz")
            if value is not None:
                r.check(node, "hz", _positive_problem("hz", value))
            kw["hz"] = value
        if "dc" in fields:
            node = fields["dc"][1]
            value = r.number(node, "dc")
            if value is not None:
                r.check(node, "dc", _range_problem("dc", value, 0.0, 100.0, low_open=True))
            kw["dc"] = value
    elif kind == "simple_stirring":
        if "pwm_hz" in fields:
            node = fields["pwm_hz"][1]
            value = r.number(node, "pwm_hz")
            if value is not None:
                r.check(node, "pwm_hz", _positive_problem("pwm_hz", value))
            kw["pwm_hz"] = value
    if kind in ("simple_peristaltic_pump", "simple_stirring") and "voltage" in fields:
        kw["voltage"] = r.number(fields["voltage"][1], "voltage", nullable=True)

    if r.errors or kind is None:
        raise CalibrationFileError(r.errors)
    try:
        return CALIBRATION_TYPES[kind](**kw)
    except (TypeError, ValueError) as e:
        # Every field was checked above; this is a backstop so nothing escapes without file and line.
        raise CalibrationFileError([f"{path}:{root.start_mark.line + 1}: calibration: {e}"]) from None
