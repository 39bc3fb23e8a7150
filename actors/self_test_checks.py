"""The self-test's checks, as plain generators: each yields hardware requests and receives their results.

A check never touches hardware or time itself; the ``self_test`` job performs each request through the
drivers and sends the result back in. So the decisions (thresholds, correlations) are testable alone.

Requests (tuples) and what is sent back:
    ("led", channel, pct)          -> None
    ("duty", channel, pct)         -> None
    ("adc", (signal, ...))         -> {signal: volts}   (raises CheckError if the read failed)
    ("temperature",)               -> celsius           (raises CheckError if the read failed)
    ("edges",)                     -> (hall edges, simulated time)
    ("wait", seconds)              -> None              (simulated seconds)
A check returns ``(passed, detail)``.

Thresholds follow the reference's self-test: REF 0.01-0.256 V, correlations above 0.9, blank 90° under
0.035 V, aux rail under 18 V (and, added here, above 4.8 V: an under-powered HAT browns out pumps).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Generator

Request = tuple[Any, ...]
Check = Generator[Request, Any, tuple[bool, str]]


class CheckError(Exception):
    """A hardware request failed during a check (the check fails with this message)."""


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation; 0 when either series is constant (no evidence of a relation)."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


IR_SWEEP = (0.0, 15.0, 30.0, 45.0, 60.0)
HEATER_SWEEP = tuple(float(d) for d in range(0, 28, 3))  # 0..27 % in 3 % steps, as the reference
STIRRING_SWEEP = (30.0, 35.0, 40.0, 45.0, 50.0)


def hat_responds(ir: str) -> Check:
    yield ("led", ir, 0.0)
    volts = yield ("adc", ("aux",))
    return True, f"aux input reads {volts['aux']:.3f} V"


def aux_power_in_range(ir: str) -> Check:
    volts = yield ("adc", ("aux",))
    rail = volts["aux"] / 0.134
    ok = 4.8 <= rail <= 18.0
    return ok, f"supply rail {rail:.2f} V ({'within' if ok else 'outside'} 4.8-18 V)"


def pds_correlate_with_ir_led(ir: str) -> Check:
    ref, ninety = [], []
    for pct in IR_SWEEP:
        yield ("led", ir, pct)
        yield ("wait", 0.2)
        volts = yield ("adc", ("pd1", "pd2"))
        ref.append(volts["pd1"])
        ninety.append(volts["pd2"])
    yield ("led", ir, 0.0)
    r_ref, r_90 = correlation(list(IR_SWEEP), ref), correlation(list(IR_SWEEP), ninety)
    ok = r_ref > 0.9 and r_90 > 0.9
    return ok, f"correlation with IR intensity: REF {r_ref:.3f}, 90° {r_90:.3f} (need > 0.9)"


def ref_in_range(ir: str) -> Check:
    yield ("led", ir, 80.0)
    yield ("wait", 0.2)
    volts = yield ("adc", ("pd1",))
    yield ("led", ir, 0.0)
    v = volts["pd1"]
    ok = 0.01 <= v < 0.256
    return ok, f"REF reads {v:.4f} V at 80 % IR (need 0.01-0.256 V)"


def dark_near_zero(ir: str) -> Check:
    yield ("led", ir, 0.0)
    yield ("wait", 0.2)
    volts = yield ("adc", ("pd1", "pd2"))
    ok = all(v <= 0.035 for v in volts.values())
    return ok, "with the IR LED off: " + ", ".join(f"{k} {v:.4f} V" for k, v in sorted(volts.items())) + " (need <= 0.035 V)"


def ref_ignores_stirring(ir: str) -> Check:
    """The REF photodiode looks at the LED, not through the vial: stirring must barely move it."""
    yield ("led", ir, 80.0)
    yield ("duty", "stirring", 0.0)
    yield ("wait", 2.0)
    still = (yield ("adc", ("pd1",)))["pd1"]
    yield ("duty", "stirring", 40.0)
    yield ("wait", 2.0)
    stirred = (yield ("adc", ("pd1",)))["pd1"]
    yield ("duty", "stirring", 0.0)
    yield ("led", ir, 0.0)
    change = abs(stirred - still) / max(still, 1e-6)
    ok = change < 0.05
    return ok, f"REF moved {100 * change:.1f} % with stirring (need < 5 %)"


def heating_pcb_present(ir: str) -> Check:
    celsius = yield ("temperature",)
    ok = -10.0 < celsius < 100.0
    return ok, f"heater plate reads {celsius:.2f} °C"


def heating_raises_temperature(ir: str) -> Check:
    duties, temps = [], []
    for duty in HEATER_SWEEP:
        yield ("duty", "heater", duty)
        yield ("wait", 1.5)
        temps.append((yield ("temperature",)))
        duties.append(duty)
    yield ("duty", "heater", 0.0)
    r = correlation(duties, temps)
    return r > 0.9, f"plate temperature vs heater duty correlation {r:.3f} (need > 0.9)"


def stirring_follows_duty(ir: str) -> Check:
    duties, rpms = [], []
    yield ("duty", "stirring", 100.0)  # kick: break stiction
    yield ("wait", 0.5)
    for duty in STIRRING_SWEEP:
        yield ("duty", "stirring", duty)
        yield ("wait", 2.0)
        edges0, t0 = yield ("edges",)
        yield ("wait", 4.0)
        edges1, t1 = yield ("edges",)
        rpms.append(60.0 * (edges1 - edges0) / max(t1 - t0, 1e-9))
        duties.append(duty)
    yield ("duty", "stirring", 0.0)
    r = correlation(duties, rpms)
    ok = r > 0.9 and max(rpms) > 0
    return ok, f"RPM vs duty correlation {r:.3f}, RPM {min(rpms):.0f}-{max(rpms):.0f} (need > 0.9)"


CHECKS: dict[str, Callable[[str], Check]] = {
    "hat_responds": hat_responds,
    "aux_power_in_range": aux_power_in_range,
    "pds_correlate_with_ir_led": pds_correlate_with_ir_led,
    "ref_in_range": ref_in_range,
    "dark_near_zero": dark_near_zero,
    "ref_ignores_stirring": ref_ignores_stirring,
    "heating_pcb_present": heating_pcb_present,
    "heating_raises_temperature": heating_raises_temperature,
    "stirring_follows_duty": stirring_follows_duty,
}
