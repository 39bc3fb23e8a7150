"""``pio calibrations``: list, display, activate, delete and record a unit's calibrations.

Files live under the node's own folder, ``<node dir>/calibrations/<device>/<name>.yaml``, with the active
one per device in ``active.json`` (:mod:`actors.calibration_store`). ``list``, ``display``, ``set-active``
and ``delete`` work on the files alone (no node needs to run); ``run`` drives the node's hardware:

* pumps (``--device media_pump|alt_media_pump|waste_pump``), the duration-based protocol: the pump job runs
  for a few durations (``source_of_event=pump_calibration``, so the vial's books ignore it), the user
  weighs what each run moved and types it in, a line is fitted through the points, saved and activated;
* ``--device stirring``, the duty-based protocol: stirring runs open loop at several duties, the node's
  measured RPM is read back, a line is fitted, saved and activated;
* ``--device od90`` (or ``od``, ``od45``, ``od135``), the ``standards`` protocol: od_reading runs in a
  ``_testing_`` experiment with the OD calibrations it would apply set aside (so it reports plain
  REF-normalised volts, with no blank subtracted and nothing in the user's experiment), the user places
  vials of known OD600 one after the other and types each OD in, the volts of a few fresh readings are
  averaged, a polynomial is fitted, saved and activated, and what was set aside is put back.

Every error is one line on stderr and a non-zero exit, and changes nothing.

The commands are attached to ``pio`` by :func:`register` (called from :mod:`worker.cli`), which keeps this
module importable on its own.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import click

from actors.calibration_store import DEVICES, CalibrationStore
from actors.calibrations import (
    OD_DEVICES,
    PUMP_BY_DEVICE,
    PUMP_DEVICES,
    Calibration,
    ODCalibration,
    PumpCalibration,
    StirringCalibration,
    dumps,
    poly_eval,
)
from actors.pump_run import CALIBRATION_SOURCE

DEFAULT_DURATIONS = (5.0, 10.0, 15.0, 20.0)
"""Seconds per calibration run: long enough to weigh on a 0.01 g scale, short enough to keep it quick."""
DEFAULT_DUTIES = (25.0, 35.0, 45.0, 55.0, 65.0)
RPM_READINGS_PER_DUTY = 3
"""Fresh RPM readings to wait for at each duty; the last is recorded (the first ones still settle)."""


def one_line(error: Exception) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def store_for(unit: str) -> CalibrationStore:
    from worker.node_files import node_dir

    return CalibrationStore.for_node(node_dir(unit))


def curve_text(cal: Calibration) -> str:
    """``volume = 0.0912*duration + 0.0031`` for the fitted polynomial."""
    degree = len(cal.curve) - 1
    terms = []
    for i, c in enumerate(cal.curve):
        power = degree - i
        x = "" if power == 0 else (cal.x_name if power == 1 else f"{cal.x_name}^{power}")
        terms.append(f"{c:.6g}" + (f"*{x}" if x else ""))
    return f"{cal.y_name} = " + " + ".join(terms).replace("+ -", "- ")


# --- file commands --------------------------------------------------------------------------------------


def list_rows(store: CalibrationStore, device: str | None) -> list[dict[str, Any]]:
    try:
        active = store.active_names()
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None
    rows = []
    for dev in [device] if device else list(DEVICES):
        for name in store.names(dev):
            row: dict[str, Any] = {
                "device": dev,
                "name": name,
                "active": active.get(dev) == name,
                "calibration_type": None,
                "created_at": None,
                "path": store.path(dev, name),
                "error": None,
            }
            try:
                cal = store.load(dev, name)
                row.update(calibration_type=cal.calibration_type, created_at=cal.created_at)
            except ValueError as e:  # a malformed file is listed, with what is wrong with it
                row["error"] = one_line(e)
            rows.append(row)
    return rows


def _check_device(device: str | None) -> None:
    if device is not None and device not in DEVICES:
        raise click.ClickException(f"unknown device {device!r}; devices are: {', '.join(DEVICES)}")


def do_list(unit: str, device: str | None, as_json: bool) -> None:
    _check_device(device)
    rows = list_rows(store_for(unit), device)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no calibrations" + (f" for {device}" if device else "") + f" on {unit}")
        return
    click.echo(f"{'DEVICE':<16} {'NAME':<32} {'ACTIVE':<7} {'TYPE':<24} CREATED")
    for r in rows:
        kind = r["calibration_type"] or "MALFORMED"
        created = r["created_at"] or r["error"]
        click.echo(f"{r['device']:<16} {r['name']:<32} {'yes' if r['active'] else '':<7} {kind:<24} {created}")


def _load(store: CalibrationStore, device: str, name: str) -> Calibration:
    _check_device(device)
    try:
        return store.load(device, name)
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None


def do_display(unit: str, device: str, name: str) -> None:
    store = store_for(unit)
    cal = _load(store, device, name)
    active = store.active_names().get(device) == name
    click.echo(f"# {store.path(device, name)}{' (active)' if active else ''}")
    click.echo(dumps(cal).rstrip("\n"))
    click.echo(f"# fitted curve: {curve_text(cal)}")
    click.echo(f"# {cal.x_name:>12} {cal.y_name:>12} {'fitted':>12}")
    for x, y in zip(cal.recorded_x, cal.recorded_y):
        click.echo(f"# {x:>12.6g} {y:>12.6g} {poly_eval(cal.curve, x):>12.6g}")


def do_set_active(unit: str, device: str, name: str) -> None:
    store = store_for(unit)
    _load(store, device, name)  # refuses unknown and malformed files, naming file and line
    try:
        store.set_active(device, name)
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None
    click.echo(f"{name} is now the active calibration of {device} on {unit}")


def do_delete(unit: str, device: str, name: str, yes: bool) -> None:
    _check_device(device)
    store = store_for(unit)
    if name not in store.names(device):
        known = ", ".join(store.names(device)) or "none"
        raise click.ClickException(f"no calibration {name!r} for {device}; calibrations for {device}: {known}")
    if not yes:
        click.confirm(f"delete calibration {name} of {device} on {unit}?", abort=True)
    try:
        store.delete(device, name)
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None
    click.echo(f"deleted {name} of {device} on {unit}")


# --- run: protocols on the node -------------------------------------------------------------------------


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.ClickException(f"--{what} {text!r} is not a list of numbers; send e.g. 5,10,15,20") from None
    if len(set(values)) < 2 or any(not (v > 0 and v < float("inf")) for v in values):
        raise click.ClickException(f"--{what} needs at least two different positive numbers, e.g. 5,10,15,20")
    return values


def _channel_hz(target: Any, channel: str) -> float:
    from actors.hardware.description import load
    from actors.hardware.hardware_access import SIM_HAT

    unit = target.topology.units[target.unit]
    hat = SIM_HAT if unit.hardware == "sim" else unit.hardware
    return float(load(hat, unit.model).pwm.channels[channel].hz)


def _new_name(store: CalibrationStore, device: str, name: str | None) -> str:
    from actors.calibrations import _name_problem

    name = name or f"{device}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    problem = _name_problem(name)
    if problem:
        raise click.ClickException(f"--name: {problem}")
    if name in store.names(device):
        raise click.ClickException(f"a calibration {name!r} of {device} exists already; choose another --name or delete it first")
    return name


def _created_at() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out after {timeout:.0f} s waiting for {what}; see `pio logs`")
        time.sleep(0.05)


class _NodeJobs:
    """The few node requests a protocol needs, over the CLI's connection."""

    def __init__(self, target: Any) -> None:
        from worker.cli import Node

        self.node = Node(target)
        self.unit = target.unit
        self.time_scale = float(target.topology.units[target.unit].time_scale)

    def _id(self) -> str:
        from worker.cli import new_id

        return new_id()

    def jobs(self) -> dict[str, Any]:
        from actors.messages import ListJobs

        return {i.name: i for i in self.node.request(ListJobs(request_id=self._id()))}

    def run(self, job: str, settings: dict[str, str], experiment: str | None = None) -> None:
        from actors.messages import RunJob

        self.node.request(RunJob(request_id=self._id(), job=job, settings=settings, experiment=experiment), 45.0)

    def set(self, job: str, setting: str, value: str) -> None:
        from actors.messages import SetJobSetting

        self.node.request(SetJobSetting(request_id=self._id(), job=job, setting=setting, value=value))

    def kill(self, job: str) -> None:
        from actors.messages import KillJobs

        if job in self.jobs():
            self.node.request(KillJobs(request_id=self._id(), job=job), 45.0)

    def real(self, sim_seconds: float) -> float:
        return sim_seconds / self.time_scale


def run_pump_protocol(target: Any, device: str, name: str | None, durations: Sequence[float], dc: float, yes: bool) -> PumpCalibration:
    store = store_for(target.unit)
    name = _new_name(store, device, name)
    job = PUMP_BY_DEVICE[device].event
    hz = _channel_hz(target, PUMP_BY_DEVICE[device].channel)
    node = _NodeJobs(target)
    if job in node.jobs():
        raise click.ClickException(f"{job} is running on {target.unit}; wait for it to finish or stop it with `pio kill {job}`")
    click.echo(f"Calibrating {device} on {target.unit} at {dc:g} % duty ({hz:g} Hz): {len(durations)} runs of "
               f"{', '.join(f'{d:g}' for d in durations)} s.")
    click.echo("Put the pump's outlet tube in a beaker on a scale (1 g of water is 1 ml), with the inlet in liquid and the tubing primed.")
    if not yes:
        click.confirm("Ready to pump?", default=True, abort=True)
    mls: list[float] = []
    try:
        for seconds in durations:
            click.echo(f"Running {device} for {seconds:g} s...")
            node.run(job, {"duration": f"{seconds!r}", "source_of_event": CALIBRATION_SOURCE, "duty_cycle": f"{dc!r}"})
            _wait(lambda: job not in node.jobs(), node.real(seconds) + 30.0, f"{job} to finish")
            mls.append(click.prompt(f"How many ml did it move in {seconds:g} s?", type=click.FloatRange(min=0, min_open=True)))
    finally:
        node.kill(job)  # an interrupted protocol never leaves the pump on
    try:
        cal = PumpCalibration.from_points(
            list(durations), mls, degree=1, name=name, device=device, created_at=_created_at(),
            hz=hz, dc=dc, calibrated_on_unit=target.unit,
        )
    except ValueError as e:
        raise click.ClickException(f"cannot fit these points: {one_line(e)}") from None
    path = store.save(cal, activate=True)
    click.echo(f"saved {path} and made it the active calibration of {device}")
    click.echo(f"fitted curve: {curve_text(cal)}")
    return cal


def run_stirring_protocol(target: Any, name: str | None, duties: Sequence[float], yes: bool) -> StirringCalibration:
    store = store_for(target.unit)
    name = _new_name(store, "stirring", name)
    hz = _channel_hz(target, "stirring")
    node = _NodeJobs(target)
    if "stirring" in node.jobs():
        raise click.ClickException("stirring is running; stop it first (`pio kill stirring`): the calibration drives the motor itself")
    click.echo(f"Calibrating stirring on {target.unit}: duty {', '.join(f'{d:g}' for d in duties)} %, RPM from the hall sensor.")
    click.echo("Put a vial with liquid and a stir bar in the unit.")
    if not yes:
        click.confirm("Ready?", default=True, abort=True)
    rpms: list[float] = []

    def stamp() -> Any:
        info = node.jobs().get("stirring")
        reading = info.settings.get("measured_rpm") if info else None
        return reading if isinstance(reading, dict) else None

    try:
        node.run("stirring", {"use_rpm": "false", "duty_cycle": f"{duties[0]!r}"})
        for duty in duties:
            node.set("stirring", "duty_cycle", f"{duty!r}")
            last = stamp()
            for _ in range(RPM_READINGS_PER_DUTY):
                seen = last
                last = _wait(lambda: (s := stamp()) and s != seen and s, node.real(20.0) + 15.0, "an RPM reading")
            rpms.append(float(last["measured_rpm"]))
            click.echo(f"  {duty:g} % -> {rpms[-1]:g} RPM")
    finally:
        node.kill("stirring")
    try:
        cal = StirringCalibration.from_points(
            list(duties), rpms, degree=1, name=name, device="stirring", created_at=_created_at(), pwm_hz=hz,
            calibrated_on_unit=target.unit,
        )
    except ValueError as e:
        raise click.ClickException(f"cannot fit these points: {one_line(e)}") from None
    path = store.save(cal, activate=True)
    click.echo(f"saved {path} and made it the active calibration of stirring")
    click.echo(f"fitted curve: {curve_text(cal)}")
    return cal


# --- the OD standards protocol ----------------------------------------------------------------------

OD_EXPERIMENT = "_testing_od_calibration"
"""The experiment od_reading runs under while standards are read: it has no blank, and the standards'
readings stay out of the user's experiment (its growth rate, its charts); ``_testing_`` as in the reference."""
OD_INTERVAL = 2.0
"""Seconds between OD readings during the protocol: short, so a standard takes seconds, not minutes."""
DEFAULT_OD_IR_INTENSITY = 80.0
"""od_reading's own default: a calibration only holds at the IR intensity it was recorded at."""
DEFAULT_SAMPLES_PER_STANDARD = 3
MIN_STANDARDS = 3
STANDARD_PROMPT = "Place the standard vial, then enter its OD600 (empty to finish)"


def od_channel_for(device: str, signals: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """``(channel, angle)`` of the photodiode an OD ``device`` calibrates, from od_reading's ``signals``
    (``{input: (channel, angle)}``); ValueError saying which devices this unit can calibrate."""
    from actors.od_processing import od_device_for_angle

    if device == "od":  # the generic device: fine when there is exactly one photodiode to mean
        channels = list(signals.values())
    else:
        channels = [(c, a) for c, a in signals.values() if od_device_for_angle(a) == device]
    possible = sorted({od_device_for_angle(a) for _c, a in signals.values()} | ({"od"} if len(signals) == 1 else set()))
    if len(channels) != 1:
        why = f"this unit has no photodiode for {device}" if not channels else f"{device} is ambiguous on this unit"
        raise ValueError(f"{why}; OD devices it can calibrate: {', '.join(possible) or 'none'}")
    return channels[0]


def od_devices_applied(angle: str) -> tuple[str, ...]:
    """The devices whose active calibration od_reading would apply to a channel at ``angle`` (its own
    angle's device first, then the generic ``od``): the ones to set aside while reading raw volts."""
    from actors.od_processing import od_device_for_angle

    return tuple(dict.fromkeys((od_device_for_angle(angle), "od")))


def parse_standard(text: str, recorded: Sequence[float]) -> float | None:
    """The OD600 a user typed for a standard; None for an empty answer (finish). ValueError with a
    one-line reason for anything else: not a number, negative or not finite, or a repeat."""
    text = text.strip()
    if not text:
        return None
    try:
        od = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; enter the standard's OD600, e.g. 0.5 (0 for a blank)") from None
    if not math.isfinite(od) or od < 0:
        raise ValueError(f"OD600 {text} is not possible; enter 0 or a positive number, e.g. 0.5")
    if od in recorded:  # "0.5" and "0.50" are the same standard
        raise ValueError(f"OD600 {od:g} was already recorded; place a standard of another OD (or press Enter to finish)")
    return od


def fit_degree(n_points: int) -> int:
    """Cubic at most (the scatter signal saturates, so a line is too stiff), and never more than the points bear."""
    return max(1, min(3, n_points - 1))


def od_residuals(cal: ODCalibration) -> list[tuple[float, float, float, float]]:
    """``(OD600, volts measured, volts fitted, OD600 the curve gives for the measured volts)`` per standard."""
    rows = []
    for od, volts in zip(cal.recorded_x, cal.recorded_y):
        back = cal.voltage_to_od(volts, enforce_bounds=False, hint=od).value
        rows.append((od, volts, poly_eval(cal.curve, od), back))
    return rows


def od_curve_warning(cal: ODCalibration) -> str | None:
    """A warning when the fitted curve turns inside the recorded ODs: one voltage then means two ODs."""
    from actors.calibrations import _derivative, real_roots

    lo, hi = cal.x_bounds or (0.0, 0.0)
    turns = [x for x in real_roots(_derivative(cal.curve)) if lo < x < hi]
    if not turns:
        return None
    where = ", ".join(f"{x:.3g}" for x in turns)
    return (f"the fitted curve turns at OD600 {where}, inside the recorded range: a voltage there matches two ODs; "
            "check the standards, or record more of them")


def _set_aside(store: CalibrationStore, devices: Sequence[str]) -> dict[str, str]:
    """Deactivate the given devices' calibrations; returns ``{device: name}`` of those that were active."""
    try:
        active = store.active_names()
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None
    removed = {d: active.pop(d) for d in devices if d in active}
    if removed:
        store.write_active(active)
    return removed


def _put_back(store: CalibrationStore, removed: dict[str, str]) -> None:
    """Reactivate what :func:`_set_aside` removed, unless the device has a new active one meanwhile."""
    if not removed:
        return
    active = store.active_names()
    for device, name in removed.items():
        active.setdefault(device, name)
    store.write_active(active)


class _Interrupted(KeyboardInterrupt):
    """SIGTERM during a protocol: unwind like Ctrl-C, so od_reading is stopped and calibrations put back."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise _Interrupted()


def _read_volts(node: _NodeJobs, channel: str, samples: int, ir_led_intensity: float) -> list[float]:
    """Volts of ``samples`` fresh readings of ``channel``; the first new one is skipped (it may have been
    taken while the vial was being swapped)."""

    def reading() -> dict[str, Any] | None:
        info = node.jobs().get("od_reading")
        if info is None:
            raise click.ClickException("od_reading stopped during the calibration; see `pio logs`")
        value = info.settings.get(f"od{channel}")
        if isinstance(value, dict) and value.get("calibrated"):  # defensive: the raw one is the volts
            value = info.settings.get(f"raw_od{channel}")
        return value if isinstance(value, dict) else None

    timeout = node.real(OD_INTERVAL * 5) + 30.0
    last = reading()
    volts: list[float] = []
    for i in range(samples + 1):
        seen = (last or {}).get("timestamp")
        last = _wait(lambda: (r := reading()) and r.get("timestamp") != seen and r, timeout, "an OD reading")
        if float(last.get("ir_led_intensity", ir_led_intensity)) != ir_led_intensity:
            raise click.ClickException(
                f"od_reading's IR intensity changed to {last['ir_led_intensity']} %; the calibration needs {ir_led_intensity:g} %"
            )
        if i:
            volts.append(float(last["od"]))
    return volts


def _ask_standards(node: _NodeJobs, channel: str, samples: int, ir_led_intensity: float) -> tuple[list[float], list[float]]:
    ods: list[float] = []
    volts: list[float] = []
    while True:
        answer = click.prompt(STANDARD_PROMPT, default="", show_default=False)
        try:
            od = parse_standard(answer, ods)
        except ValueError as e:
            click.echo(one_line(e))
            continue
        if od is None:
            if len(ods) >= MIN_STANDARDS:
                return ods, volts
            click.echo(f"at least {MIN_STANDARDS} standards are needed ({len(ods)} so far); place another one")
            continue
        click.echo(f"  reading {samples} times...")
        values = _read_volts(node, channel, samples, ir_led_intensity)
        mean = math.fsum(values) / len(values)
        ods.append(od)
        volts.append(mean)
        spread = max(values) - min(values)
        click.echo(f"  OD600 {od:g} -> {mean:.6g} V (mean of {len(values)}, spread {spread:.3g} V)")


def run_od_protocol(
    target: Any, device: str, name: str | None, ir_led_intensity: float, samples: int, yes: bool
) -> ODCalibration:
    from actors.od_reading import SIGNALS

    store = store_for(target.unit)
    try:
        channel, angle = od_channel_for(device, SIGNALS)
    except ValueError as e:
        raise click.ClickException(one_line(e)) from None
    name = _new_name(store, device, name)
    node = _NodeJobs(target)
    # Refused rather than reused: a running od_reading serves an experiment (its interval, its IR intensity,
    # its calibration and blank) and its readings feed growth rate and dosing; hijacking it would be worse.
    if "od_reading" in node.jobs():
        raise click.ClickException("od_reading is running; stop it first (`pio kill od_reading`): the calibration reads the photodiodes itself")
    click.echo(
        f"Calibrating {device} on {target.unit}: photodiode channel {channel} at {angle} degrees, IR LED at "
        f"{ir_led_intensity:g} %, {samples} readings per standard."
    )
    click.echo(
        f"You need at least {MIN_STANDARDS} vials of known OD600 spanning the range you will measure (a blank of "
        "media only, OD 0, is a good first one), each with a stir bar, filled like a culture. Stir as in your "
        "experiments (`pio run stirring`): the spinning bar is part of the signal."
    )
    if not yes:
        click.confirm("Ready?", default=True, abort=True)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    set_aside: dict[str, str] = {}
    started = False
    try:
        set_aside = _set_aside(store, od_devices_applied(angle))
        for dev, old in sorted(set_aside.items()):
            click.echo(f"(calibration {old} of {dev} is set aside while reading volts; it is put back if you stop)")
        started = True
        node.run("od_reading", {"interval": f"{OD_INTERVAL!r}", "ir_led_intensity": f"{ir_led_intensity!r}"}, experiment=OD_EXPERIMENT)
        ods, volts = _ask_standards(node, channel, samples, ir_led_intensity)
        node.kill("od_reading")
        started = False
        try:
            cal = ODCalibration.from_points(
                ods, volts, degree=fit_degree(len(ods)), name=name, device=device, created_at=_created_at(),
                ir_led_intensity=ir_led_intensity, angle=angle, pd_channel=channel, calibrated_on_unit=target.unit,
            )
        except ValueError as e:
            raise click.ClickException(f"cannot fit these points: {one_line(e)}") from None
        path = store.save(cal, activate=True)
    finally:
        if started:
            node.kill("od_reading")
        _put_back(store, set_aside)  # the new one stays active for its device; the rest come back
        signal.signal(signal.SIGTERM, previous)
    click.echo(f"saved {path} and made it the active calibration of {device}")
    click.echo(f"fitted curve: {curve_text(cal)}")
    click.echo(f"{'OD600':>10} {'volts':>12} {'fitted':>12} {'residual':>12} {'curve OD600':>12}")
    for od, measured, fitted, back in od_residuals(cal):
        click.echo(f"{od:>10.4g} {measured:>12.6g} {fitted:>12.6g} {measured - fitted:>12.3g} {back:>12.4g}")
    warning = od_curve_warning(cal)
    if warning:
        click.echo(f"warning: {warning}")
    click.echo(f"od_reading uses it from its next start, at --ir-led-intensity {ir_led_intensity:g} (the default is 80).")
    return cal


# --- click wiring ---------------------------------------------------------------------------------------


def register(pio: click.Group) -> None:
    """Attach ``pio calibrations`` to the ``pio`` group (called by :mod:`worker.cli` once it is defined)."""
    from worker.cli import fail, pass_target

    def guarded(f: Callable[..., None]) -> Callable[..., None]:
        """ClickException -> the CLI's one-line ``error: ...`` and exit 1."""

        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                f(*args, **kwargs)
            except click.ClickException as e:
                fail(e.format_message())

        wrapper.__name__, wrapper.__doc__ = f.__name__, f.__doc__
        return wrapper

    device_option = click.option("--device", required=True, help=f"one of {', '.join(DEVICES)}")
    name_option = click.option("--name", required=True, help="the calibration's name (its file name)")

    @pio.group("calibrations")
    def calibrations() -> None:
        """List, show, activate, delete and record calibrations (pumps, stirring, OD)."""

    @calibrations.command("list")
    @click.option("--device", default=None, help="only this device")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output (see docs/pumps-and-calibrations.md)")
    @pass_target
    @guarded
    def list_cmd(target: Any, device: str | None, as_json: bool) -> None:
        """Every calibration on this unit, and which is active."""
        do_list(target.unit, device, as_json)

    @calibrations.command("display")
    @device_option
    @name_option
    @pass_target
    @guarded
    def display_cmd(target: Any, device: str, name: str) -> None:
        """Show a calibration's YAML and its fitted curve."""
        do_display(target.unit, device, name)

    @calibrations.command("set-active")
    @device_option
    @name_option
    @pass_target
    @guarded
    def set_active_cmd(target: Any, device: str, name: str) -> None:
        """Make a calibration the one the device's jobs use."""
        do_set_active(target.unit, device, name)

    @calibrations.command("delete")
    @device_option
    @name_option
    @click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
    @pass_target
    @guarded
    def delete_cmd(target: Any, device: str, name: str, yes: bool) -> None:
        """Delete a calibration (if it was active, the device has none afterwards)."""
        do_delete(target.unit, device, name, yes)

    @calibrations.command("run")
    @click.option("--device", required=True, help=f"{', '.join(PUMP_DEVICES)}, stirring or {', '.join(OD_DEVICES)}")
    @click.option("--name", default=None, help="name of the new calibration (default: <device>-<UTC time>)")
    @click.option("--durations", default=",".join(f"{d:g}" for d in DEFAULT_DURATIONS), show_default=True, help="pump run seconds")
    @click.option("--dc", "duty", type=click.FloatRange(min=0, max=100, min_open=True), default=100.0, show_default=True, help="pump duty %")
    @click.option("--duties", default=",".join(f"{d:g}" for d in DEFAULT_DUTIES), show_default=True, help="stirring duties %")
    @click.option(
        "--ir-led-intensity", "ir_led_intensity", type=click.FloatRange(min=0, max=90, min_open=True),
        default=DEFAULT_OD_IR_INTENSITY, show_default=True, help="OD: IR LED % (od_reading must use the same)",
    )
    @click.option(
        "--samples-per-standard", "samples", type=click.IntRange(min=1, max=100), default=DEFAULT_SAMPLES_PER_STANDARD,
        show_default=True, help="OD: readings averaged per standard",
    )
    @click.option("-y", "--yes", is_flag=True, help="do not ask before starting")
    @pass_target
    @guarded
    def run_cmd(
        target: Any, device: str, name: str | None, durations: str, duty: float, duties: str, ir_led_intensity: float,
        samples: int, yes: bool,
    ) -> None:
        """Record a new calibration on the node's hardware, save it and make it active."""
        if device in PUMP_DEVICES:
            run_pump_protocol(target, device, name, _numbers(durations, "durations"), duty, yes)
        elif device == "stirring":
            run_stirring_protocol(target, name, _numbers(duties, "duties"), yes)
        elif device in OD_DEVICES:
            run_od_protocol(target, device, name, ir_led_intensity, samples, yes)
        else:
            raise click.ClickException(f"unknown device {device!r}; devices are: {', '.join(DEVICES)}")

