"""The node's health: the monitor's checks, the reference error codes and the status-LED blink patterns.

Pure: every function takes the readings (free bytes, a temperature, the aux voltage, whether the broker
link is up) and returns a verdict; the monitor job does the reading and the publishing. So the
thresholds and the "warn once per change" rule are tested here without a node.

Error codes are the reference's table (pioreactor.md §3.3). A node shows one code at a time: the
*lowest* failing code, because lower codes are the more basic failures (no network explains a lost
broker, a lost broker explains nothing about the disk) and the blinking LED can only say one number.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

DISK_WARN_BELOW_BYTES = 3 * 1024**3  # the reference warns below 3 GB free
CPU_WARN_ABOVE_C = 80.0
AUX_RAIL_WARN_AT_OR_BELOW_V = 4.80
AUX_DIVIDER = 0.134  # the HAT's divider on the supply rail: rail volts = ADC volts / 0.134


class ErrorCode(enum.IntEnum):
    """The reference's error codes; 0 (``OK``) is ours: nothing to report."""

    OK = 0
    NO_NETWORK = 1
    MQTT_NOT_CONNECTED = 2
    DISK_ALMOST_FULL = 3
    STIRRING_FAILED = 4
    ADC_INPUT_TOO_HIGH = 5
    PCB_TEMPERATURE_TOO_HIGH = 6
    VOLTAGE_PROBLEM = 7
    WEB_SERVER_OFFLINE = 8


ERROR_MEANINGS: dict[int, str] = {
    ErrorCode.OK: "no error",
    ErrorCode.NO_NETWORK: "no network",
    ErrorCode.MQTT_NOT_CONNECTED: "MQTT not connected to the leader's broker",
    ErrorCode.DISK_ALMOST_FULL: "disk almost full",
    ErrorCode.STIRRING_FAILED: "stirring failed",
    ErrorCode.ADC_INPUT_TOO_HIGH: "ADC input too high",
    ErrorCode.PCB_TEMPERATURE_TOO_HIGH: "PCB temperature too high",
    ErrorCode.VOLTAGE_PROBLEM: "voltage problem",
    ErrorCode.WEB_SERVER_OFFLINE: "web server offline",
}


@attrs.frozen(kw_only=True)
class CheckResult:
    """One check's verdict. ``ok`` is None when the check could not run here (say why in ``message``)."""

    name: str
    ok: bool | None
    message: str
    error_code: int = ErrorCode.OK  # the code a failure shows; OK for checks without one
    value: Any = None  # the measured value, for publishing

    @property
    def failed(self) -> bool:
        return self.ok is False


# --- the checks -------------------------------------------------------------------------------------


def check_disk(free_bytes: int, total_bytes: int) -> CheckResult:
    free_gb = free_bytes / 1024**3
    if free_bytes < DISK_WARN_BELOW_BYTES:
        return CheckResult(
            name="disk", ok=False, error_code=ErrorCode.DISK_ALMOST_FULL, value=free_bytes,
            message=f"disk almost full: {free_gb:.2f} GB free of {total_bytes / 1024**3:.1f} GB "
            f"(warns below {DISK_WARN_BELOW_BYTES / 1024**3:.0f} GB); delete old exports or logs",
        )
    return CheckResult(name="disk", ok=True, value=free_bytes, message=f"{free_gb:.1f} GB free")


def check_cpu_temperature(celsius: float | None) -> CheckResult:
    if celsius is None:
        return CheckResult(name="cpu_temperature", ok=None, message="no CPU temperature sensor on this machine: skipped")
    if celsius > CPU_WARN_ABOVE_C:
        return CheckResult(
            name="cpu_temperature", ok=False, value=celsius,
            message=f"CPU temperature is {celsius:.1f} °C (warns above {CPU_WARN_ABOVE_C:.0f} °C); "
            "give the Pi air or a heat sink",
        )
    return CheckResult(name="cpu_temperature", ok=True, value=celsius, message=f"CPU at {celsius:.1f} °C")


def aux_rail_volts(adc_volts: float) -> float:
    """The supply rail, from the ADC's reading of it through the HAT's divider."""
    return adc_volts / AUX_DIVIDER


def check_power(rail_volts: float | None, error: str | None = None) -> CheckResult:
    if rail_volts is None:
        return CheckResult(name="power", ok=None, message=f"no aux-rail reading ({error or 'no ADC'}): skipped")
    if rail_volts <= AUX_RAIL_WARN_AT_OR_BELOW_V:
        return CheckResult(
            name="power", ok=False, error_code=ErrorCode.VOLTAGE_PROBLEM, value=rail_volts,
            message=f"supply rail at {rail_volts:.2f} V (warns at or below {AUX_RAIL_WARN_AT_OR_BELOW_V:.2f} V); "
            "use the official 5 V / 3 A power supply and a short cable",
        )
    return CheckResult(name="power", ok=True, value=rail_volts, message=f"supply rail at {rail_volts:.2f} V")


def check_broker(connected: bool | None, broker: str = "the broker") -> CheckResult:
    if connected is None:
        return CheckResult(name="broker", ok=None, message="broker link not known yet")
    if not connected:
        return CheckResult(
            name="broker", ok=False, error_code=ErrorCode.MQTT_NOT_CONNECTED, value=False,
            message=f"not connected to {broker}; jobs keep running and the node keeps reconnecting",
        )
    return CheckResult(name="broker", ok=True, value=True, message=f"connected to {broker}")


def check_hat(adc_answered: bool, error: str | None = None) -> CheckResult:
    if not adc_answered:
        return CheckResult(
            name="hat", ok=False, value=False,
            message=f"the HAT does not answer ({error or 'no reply from the ADC'}); check that it is seated on the header",
        )
    return CheckResult(name="hat", ok=True, value=True, message="HAT present")


# --- the node's verdict --------------------------------------------------------------------------------


def error_code(results: Iterable[CheckResult]) -> int:
    """The one code the node shows: the lowest code among failing checks, 0 when none has a code."""
    codes = [r.error_code for r in results if r.failed and r.error_code != ErrorCode.OK]
    return int(min(codes)) if codes else int(ErrorCode.OK)


@attrs.frozen
class HealthLog:
    """What was last said about each check, so a failure is warned about once, not every cycle.

    :meth:`update` returns the new log and the lines to log: a WARNING when a check starts failing (or
    fails differently: its message changed), an INFO when it recovers. Skipped checks are said once.
    """

    last: Mapping[str, tuple[bool | None, str]] = attrs.field(factory=dict)

    def update(self, results: Iterable[CheckResult]) -> tuple[HealthLog, list[tuple[str, str]]]:
        last = dict(self.last)
        lines: list[tuple[str, str]] = []
        for r in results:
            before = last.get(r.name)
            last[r.name] = (r.ok, r.message if r.ok is not True else "")
            if before == last[r.name] or (before is None and r.ok is True):
                continue  # unchanged, or healthy from the start: nothing to say
            if r.failed:
                lines.append(("WARNING", r.message))
            elif r.ok is None:
                lines.append(("INFO", r.message))
            elif before is not None and before[0] is False:
                lines.append(("INFO", f"{r.name} recovered: {r.message}"))
        return HealthLog(last), lines


# --- computer statistics --------------------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` -> bytes by field (``MemTotal``, ``MemAvailable``, ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        out[name.strip()] = value * 1024 if len(parts) > 1 and parts[1].lower() == "kb" else value
    return out


def parse_thermal_zone(text: str) -> float | None:
    """``/sys/class/thermal/thermal_zone0/temp`` (millidegrees) -> °C, or None if unreadable."""
    try:
        value = int(text.strip()) / 1000.0
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def computer_statistics(
    *,
    disk_free_bytes: int,
    disk_total_bytes: int,
    cpu_temperature_c: float | None,
    load_average: tuple[float, float, float],
    memory: Mapping[str, int],
    timestamp: str,
) -> dict[str, Any]:
    """The ``monitor/computer_statistics`` payload."""
    total = memory.get("MemTotal")
    available = memory.get("MemAvailable")
    memory_percent = round(100.0 * (1 - available / total), 1) if total and available is not None else None
    return {
        "disk_free_bytes": disk_free_bytes,
        "disk_total_bytes": disk_total_bytes,
        "disk_usage_percent": round(100.0 * (1 - disk_free_bytes / disk_total_bytes), 1) if disk_total_bytes else None,
        "cpu_temperature_celsius": None if cpu_temperature_c is None else round(cpu_temperature_c, 1),
        "load_average": [round(x, 2) for x in load_average],
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "memory_usage_percent": memory_percent,
        "timestamp": timestamp,
    }


# --- the status LED --------------------------------------------------------------------------------------

LONG_ON_S = 2.0
SHORT_ON_S = 0.2
SHORT_OFF_S = 0.3
PAUSE_S = 2.0  # dark gap between repeats of an error pattern, so the count can be read
DOUBLE_GAP_S = 0.15
DOUBLE_OFF_S = 0.6
OKAY_DOUBLE_BLINKS = 4

Step = tuple[bool, float]  # (LED on?, seconds)


def blink_pattern(code: int) -> list[Step]:
    """One cycle of the status LED for ``code``; the monitor repeats it while the error lasts.

    Error N: 2 s on, a short dark gap, then N short blinks, then a pause. ``0`` (okay) is 4 double
    blinks, shown once when the monitor starts.
    """
    if not isinstance(code, int) or isinstance(code, bool) or code < 0:
        raise ValueError(f"error code must be a whole number >= 0, got {code!r}")
    if code == ErrorCode.OK:
        double = [(True, SHORT_ON_S / 2), (False, DOUBLE_GAP_S), (True, SHORT_ON_S / 2), (False, DOUBLE_OFF_S)]
        return double * OKAY_DOUBLE_BLINKS
    steps: list[Step] = [(True, LONG_ON_S), (False, SHORT_OFF_S * 2)]
    for _ in range(code):
        steps += [(True, SHORT_ON_S), (False, SHORT_OFF_S)]
    steps[-1] = (False, PAUSE_S)
    return steps


def count_blinks(steps: Iterable[Step], longer_than: float = 1.0) -> tuple[int, int]:
    """(long blinks, short blinks) in a pattern: how a person reads it. Used to check patterns."""
    long = short = 0
    for on, seconds in steps:
        if on:
            if seconds > longer_than:
                long += 1
            else:
                short += 1
    return long, short
