"""Safety decisions the hardware drivers apply, as pure functions (hardware.md §5, pioreactor.md §7).

Safety lives in the driver actors, independent of any automation; this module holds their decisions so
they can be property-tested against the simulator. Nothing here reads a sensor or the clock.

Heater. Pioreactor checks the plate every 53 s and has three tiers: above *reduce* the duty goes to 90 %
of itself, above *disable* to 0, above *shutdown* to 0 and the unit powers off. Those tiers alone do not
keep the plate below *disable*: between two reads the plate can rise by up to ``P_max/C_h`` = 0.33 C/s at
full duty, i.e. 17 C in 53 s, and on a 20 ml v1.0 (100 % duty settles at 66 C; limits 63/65/66) a hot room
or a long hold carries it past 65 C before the next read (tests/hardware/test_safety.py shows it at a
30 C room temperature). :func:`heater_decision` therefore adds a *headroom cap*: the duty is limited so
that, rising at most ``max_rise_c_per_s`` per 100 % duty, the plate cannot reach
``disable_c - sensor_margin_c`` within ``horizon_s`` (the time until the caller's next read); a decision
the cap changed reports the tier ``"reduce"``. It only binds near the limit: with a 53 s horizon a 100 %
request is cut above about 46 C on the 20 ml v1.0 (61 C on other models), a 60 % request above 54 C, and
a 37 C thermostat (plate near 42 C) is never touched. A driver that runs the recommended 5 s watchdog
passes ``horizon_s=5`` and is throttled only within about 2 C of the limit. A failed read means heater off.
The bound on the heating rate holds while the plate is the hottest node (heat losses only slow it), which
is how a heater works; a room hotter than the disable limit is outside what any duty decision can fix.

Pumps. :class:`PumpGuard` refuses a dose whose media, plus a margin for pump calibration error, would take
the volume past max fill, and bounds each pump run to 1.5x its requested time under an absolute ceiling.

LED and ADC. The IR LED is capped at 90 % (Pioreactor warns above it); a photodiode above 3.0 V warns and
above 3.2 V trips (all LEDs off, OD job stops).
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

HeaterTier = Literal["ok", "reduce", "disable", "shutdown", "sensor_failed"]
AdcStatus = Literal["ok", "warn", "trip"]

HEATER_MAX_DUTY = 60.0
"""Hard cap on heater duty (hardware.md §5 suggests <= 60 %); enough to hold the liquid at 37 C from a 17 C
room. Pass ``max_duty`` to :func:`heater_decision` to raise it for a colder room."""
PLATE_READ_PERIOD_S = 53.0
"""Pioreactor's plate safety-read period: the default look-ahead horizon of :func:`heater_decision`."""
WATCHDOG_PERIOD_S = 5.0
"""The faster plate watchdog hardware.md §5 recommends while the heater is on."""
PLATE_MAX_RISE_C_PER_S = 0.35
"""Upper bound on the plate's heating rate at 100 % duty: ``P_max / C_h`` = 5 W / 15 J/K = 0.33 C/s, plus
5 % [assumption: measure it on real hardware with the heater self-test]. Heat losses only slow the rise."""
REDUCE_FACTOR = 0.9
"""Above the reduce limit the duty becomes 90 % of the requested duty (Pioreactor: ``0.9 * dc``)."""

ADC_WARN_V = 3.0
ADC_TRIP_V = 3.2
IR_INTENSITY_CAP = 90.0


def _finite(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


@attrs.frozen
class HeaterLimits:
    """Plate temperatures (C) for the three heater tiers of one vessel model."""

    reduce_c: float = attrs.field(validator=_finite)
    disable_c: float = attrs.field(validator=_finite)
    shutdown_c: float = attrs.field(validator=_finite)

    def __attrs_post_init__(self) -> None:
        if not self.reduce_c < self.disable_c < self.shutdown_c:
            raise ValueError(
                "need reduce < disable < shutdown, "
                f"got {self.reduce_c} / {self.disable_c} / {self.shutdown_c}"
            )


LIMITS_20ML_V1_0 = HeaterLimits(63.0, 65.0, 66.0)
"""20 ml model, version 1.0 (core/pioreactor/models.py)."""
LIMITS_DEFAULT = HeaterLimits(78.0, 80.0, 85.0)
"""20 ml v1.1 and later, and every 40 ml model."""


def heater_limits_for(model: str, version: str) -> HeaterLimits:
    """The limits for a Pioreactor model name and version, e.g. ``("pioreactor_20ml", "1.0")``."""
    if model == "pioreactor_20ml" and version == "1.0":
        return LIMITS_20ML_V1_0
    return LIMITS_DEFAULT


@attrs.frozen
class HeaterDecision:
    """The duty to apply, which tier decided it, and a line for the log."""

    duty: float
    tier: HeaterTier
    message: str


def heater_decision(
    plate_c: float | None,
    requested_duty: float,
    limits: HeaterLimits,
    max_duty: float = HEATER_MAX_DUTY,
    *,
    horizon_s: float = PLATE_READ_PERIOD_S,
    max_rise_c_per_s: float = PLATE_MAX_RISE_C_PER_S,
    sensor_margin_c: float = 0.25,
) -> HeaterDecision:
    """Decide the heater duty from a plate reading taken just now, for the next ``horizon_s`` seconds.

    ``plate_c`` is ``None`` (or NaN) when the read failed: heater off. Requested duty is clamped to
    0-100 and then to ``max_duty``. Tiers are checked from the top, each with a strict ``>`` as in
    Pioreactor. Whatever the tier, the duty is also held under the headroom cap (module docstring): the
    guarantee "the plate stays at or below ``disable_c``" holds if the caller reads again and re-decides
    within ``horizon_s`` seconds of this reading, for every duty it applies. ``sensor_margin_c`` covers
    sensor noise and quantisation (0.03 C sigma plus a 0.0625 C step: the margin is about 7 sigma).
    ``horizon_s=0`` turns the look-ahead off, leaving Pioreactor's tiers alone: for comparison only, since
    they do not keep the plate below ``disable_c`` by themselves (module docstring).
    """
    if math.isnan(requested_duty):
        raise ValueError("requested duty must be a number, got NaN")
    if not (math.isfinite(max_duty) and 0 <= max_duty <= 100):
        raise ValueError(f"max_duty must be in [0, 100], got {max_duty!r}")
    if not (math.isfinite(horizon_s) and horizon_s >= 0):
        raise ValueError(f"horizon_s must be finite and >= 0, got {horizon_s!r}")
    if not (math.isfinite(max_rise_c_per_s) and max_rise_c_per_s > 0):
        raise ValueError(f"max_rise_c_per_s must be finite and > 0, got {max_rise_c_per_s!r}")
    if not (math.isfinite(sensor_margin_c) and sensor_margin_c >= 0):
        raise ValueError(f"sensor_margin_c must be finite and >= 0, got {sensor_margin_c!r}")

    if plate_c is None or not math.isfinite(plate_c):
        return HeaterDecision(0.0, "sensor_failed", "heater off: the plate temperature could not be read")
    if plate_c > limits.shutdown_c:
        return HeaterDecision(
            0.0, "shutdown", f"plate at {plate_c:.2f} C is above the {limits.shutdown_c:g} C shutdown limit"
        )
    if plate_c > limits.disable_c:
        return HeaterDecision(
            0.0,
            "disable",
            f"plate at {plate_c:.2f} C is above the {limits.disable_c:g} C disable limit: heater off",
        )

    wanted = min(100.0, max(0.0, float(requested_duty)))
    duty = min(wanted, max_duty)
    tier: HeaterTier = "ok"
    notes: list[str] = []
    if duty < wanted:
        notes.append(f"capped at the {max_duty:g} % maximum")
    if plate_c > limits.reduce_c:
        duty *= REDUCE_FACTOR
        tier = "reduce"
        notes.append(f"plate at {plate_c:.2f} C is above the {limits.reduce_c:g} C reduce limit")
    if horizon_s > 0 and duty > 0:
        headroom_c = limits.disable_c - sensor_margin_c - plate_c
        worst_rise_c = max_rise_c_per_s * horizon_s * duty / 100.0
        if headroom_c <= 0 or worst_rise_c > headroom_c:
            # worst_rise_c > headroom_c > 0 here, so the divisor cannot be zero.
            duty = 0.0 if headroom_c <= 0 else 100.0 * headroom_c / (max_rise_c_per_s * horizon_s)
            tier = "reduce"
            notes.append(
                f"limited so the plate ({plate_c:.2f} C) cannot reach {limits.disable_c:g} C "
                f"within {horizon_s:g} s"
            )
    message = f"heater {duty:.1f} % (requested {wanted:.1f} %)"
    if notes:
        message += ": " + "; ".join(notes)
    return HeaterDecision(duty, tier, message)


def _check_ml(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"refusing dose: {name} must be a finite volume >= 0 ml, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be finite and > 0, got {value!r}")


def _margin(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen
class PumpGuard:
    """Volume and run-time limits the pump driver enforces on every dose.

    ``calibration_margin`` is the fraction by which a pump may deliver more than its calibration says
    (the simulator's pumps are off by up to 8 %); a dose is judged by its worst case.
    """

    max_fill_ml: float = attrs.field(validator=_positive)
    max_on_seconds_ceiling: float = attrs.field(default=60.0, validator=_positive)
    calibration_margin: float = attrs.field(default=0.10, kw_only=True, validator=_margin)

    def check_dose(self, current_volume_ml: float, media_ml: float, waste_ml_planned: float) -> None:
        """Raise ``ValueError`` if the dose is unsafe: media first, then waste, so the peak is media's.

        ``media_ml`` is the total to add (media and alternative media), ``waste_ml_planned`` what will be
        removed afterwards. The waste does not lower the peak, because it runs after the media.
        """
        _check_ml("current volume", current_volume_ml)
        _check_ml("media", media_ml)
        _check_ml("waste", waste_ml_planned)
        if media_ml == 0:
            return
        peak = current_volume_ml + media_ml * (1.0 + self.calibration_margin)
        if peak > self.max_fill_ml:
            raise ValueError(
                f"refusing dose: adding {media_ml:.3f} ml to {current_volume_ml:.3f} ml could reach "
                f"{peak:.3f} ml (allowing {self.calibration_margin:.0%} pump error), above the "
                f"{self.max_fill_ml:g} ml max fill; remove waste first or dose less"
            )

    def max_on_seconds(self, requested_seconds: float) -> float:
        """How long the driver lets the pump run for a request: ``min(1.5 x requested, ceiling)``."""
        if not (math.isfinite(requested_seconds) and requested_seconds >= 0):
            raise ValueError(f"requested_seconds must be finite and >= 0, got {requested_seconds!r}")
        return min(1.5 * requested_seconds, self.max_on_seconds_ceiling)


def cap_ir_intensity(pct: float, cap: float = IR_INTENSITY_CAP) -> tuple[float, str | None]:
    """Limit the IR LED intensity; return the intensity to apply and a warning if it was lowered."""
    if not (math.isfinite(pct) and pct >= 0):
        raise ValueError(f"IR intensity must be a finite percentage >= 0, got {pct!r}")
    if not (math.isfinite(cap) and 0 <= cap <= 100):
        raise ValueError(f"cap must be in [0, 100], got {cap!r}")
    if pct > cap:
        return cap, f"IR intensity {pct:g} % lowered to {cap:g} % to avoid damaging the LED"
    return float(pct), None


def adc_trip(volts: float) -> AdcStatus:
    """Classify a photodiode voltage: ``"warn"`` above 3.0 V, ``"trip"`` above 3.2 V.

    A NaN reading trips: the channel is not trustworthy, and LEDs off is the safe state.
    """
    if math.isnan(volts) or volts > ADC_TRIP_V:
        return "trip"
    if volts > ADC_WARN_V:
        return "warn"
    return "ok"
