"""``pio calibrations``: list, display, activate, delete and record a unit's calibrations.

Files live under the node's own folder, ``<node dir>/calibrations/<device>/<name>.yaml``, with the active
one per device in ``active.json`` (:mod:`actors.calibration_store`). ``list``, ``display``, ``set-active``
and ``delete`` work on the files alone (no node needs to run); ``run`` drives the node's hardware:

* pumps (``--device media_pump|alt_media_pump|waste_pump``), the duration-based protocol: the pump job runs
  for a few durations (``source_of_event=pump_calibration``, so the vial's books ignore it), the user
  weighs what each run moved and types it in, a line is fitted through the points, saved and activated;
* ``--device stirring``, the duty-based protocol: stirring runs open loop at several duties, the node's
  measured RPM is read back, a line is fitted, saved and activated.

Every error is one line on stderr and a non-zero exit, and changes nothing.

The commands are attached to ``pio`` by :func:`register` (called from :mod:`worker.cli`), which keeps this
module importable on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import click

from actors.calibration_store import DEVICES, CalibrationStore
from actors.calibrations import (
    PUMP_DEVICES,
    Calibration,
    PumpCalibration,
    StirringCalibration,
    dumps,
    poly_eval,
)
from actors.pump_run import CALIBRATION_SOURCE

PUMP_JOBS = {"media_pump": "add_media", "alt_media_pump": "add_alt_media", "waste_pump": "remove_waste"}
PUMP_CHANNELS = {"media_pump": "media", "alt_media_pump": "alt_media", "waste_pump": "waste"}
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

    def run(self, job: str, settings: dict[str, str]) -> None:
        from actors.messages import RunJob

        self.node.request(RunJob(request_id=self._id(), job=job, settings=settings), 45.0)

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
    job = PUMP_JOBS[device]
    hz = _channel_hz(target, PUMP_CHANNELS[device])
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
    @click.option("--device", required=True, help=f"{', '.join(PUMP_DEVICES)} or stirring")
    @click.option("--name", default=None, help="name of the new calibration (default: <device>-<UTC time>)")
    @click.option("--durations", default=",".join(f"{d:g}" for d in DEFAULT_DURATIONS), show_default=True, help="pump run seconds")
    @click.option("--dc", "duty", type=click.FloatRange(min=0, max=100, min_open=True), default=100.0, show_default=True, help="pump duty %")
    @click.option("--duties", default=",".join(f"{d:g}" for d in DEFAULT_DUTIES), show_default=True, help="stirring duties %")
    @click.option("-y", "--yes", is_flag=True, help="do not ask before starting")
    @pass_target
    @guarded
    def run_cmd(target: Any, device: str, name: str | None, durations: str, duty: float, duties: str, yes: bool) -> None:
        """Record a new calibration on the node's hardware, save it and make it active."""
        if device in PUMP_DEVICES:
            run_pump_protocol(target, device, name, _numbers(durations, "durations"), duty, yes)
        elif device == "stirring":
            run_stirring_protocol(target, name, _numbers(duties, "duties"), yes)
        elif device in DEVICES:
            raise click.ClickException(
                f"no recording protocol for {device} yet; write the calibration YAML by hand (see docs/pumps-and-calibrations.md) "
                "and activate it with `pio calibrations set-active`"
            )
        else:
            raise click.ClickException(f"unknown device {device!r}; devices are: {', '.join(DEVICES)}")

