"""Where a unit keeps its calibrations: one YAML file per calibration, per device, one active per device.

Layout under the node's state directory (``<state_dir>/calibrations/``)::

    <device>/<name>.yaml     one calibration (actors.calibrations.dumps / loads)
    active.json              {"<device>": "<name>", ...}

Values, fits and YAML checks live in :mod:`actors.calibrations`; this module is only the files. Writes are
atomic (temporary file, then rename), so a power cut never leaves half a calibration or a half-written
``active.json``: a job reading them sees the old version or the new one.
"""

from __future__ import annotations

import json
import os

from actors.calibrations import (
    OD_DEVICES,
    PUMP_DEVICES,
    STIRRING_DEVICES,
    Calibration,
    CalibrationError,
    PumpCalibration,
    _name_problem,
    default_pump_calibration,
    dumps,
    loads,
)
from actors.files import atomic_write

DEVICES: tuple[str, ...] = OD_DEVICES + PUMP_DEVICES + STIRRING_DEVICES
ACTIVE_FILE = "active.json"


class CalibrationStoreError(ValueError):
    """A request the store refuses; the message says what exists and what to do."""


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise CalibrationStoreError(f"unknown device {device!r}; devices are: {', '.join(DEVICES)}")
    return device


class CalibrationStore:
    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def for_node(cls, state_dir: str) -> CalibrationStore:
        return cls(os.path.join(state_dir, "calibrations"))

    def path(self, device: str, name: str) -> str:
        # The name becomes a file name: refuse '../x' and the like before it can point outside the folder.
        problem = _name_problem(name)
        if problem is not None:
            raise CalibrationStoreError(f"calibration name: {problem}")
        return os.path.join(self.root, _check_device(device), f"{name}.yaml")

    # --- reading -------------------------------------------------------------------------------------

    def names(self, device: str) -> list[str]:
        folder = os.path.join(self.root, _check_device(device))
        if not os.path.isdir(folder):
            return []
        return sorted(e[: -len(".yaml")] for e in os.listdir(folder) if e.endswith(".yaml") and not e.startswith("."))

    def load(self, device: str, name: str) -> Calibration:
        """The calibration, or CalibrationStoreError naming the ones that exist; a malformed file raises
        ValueError with its file, line and what to fix (from :func:`actors.calibrations.loads`)."""
        path = self.path(device, name)
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            known = ", ".join(self.names(device)) or "none"
            raise CalibrationStoreError(f"no calibration {name!r} for {device}; calibrations for {device}: {known}") from None
        cal = loads(text, path)
        if cal.device != device:
            raise CalibrationStoreError(f"{path} is for device {cal.device!r}, not {device!r}; move it under {cal.device}/")
        return cal

    def active_names(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.root, ACTIVE_FILE)) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise CalibrationStoreError(f"{os.path.join(self.root, ACTIVE_FILE)} is not valid JSON ({e}); fix or delete it") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def active(self, device: str) -> Calibration | None:
        """The active calibration of ``device``, or None when none is set."""
        name = self.active_names().get(_check_device(device))
        return None if name is None else self.load(device, name)

    def pump(self, device: str) -> PumpCalibration:
        """The active pump calibration, or the default stand-in (fine for durations, refused for ml)."""
        cal = self.active(device)
        if cal is None:
            return default_pump_calibration(device)
        if not isinstance(cal, PumpCalibration):
            raise CalibrationError(f"the active calibration of {device} is not a pump calibration")
        return cal

    # --- writing -------------------------------------------------------------------------------------

    def save(self, cal: Calibration, *, activate: bool = True) -> str:
        path = self.path(cal.device, cal.name)
        atomic_write(path, dumps(cal))
        if activate:
            self.set_active(cal.device, cal.name)
        return path

    def write_active(self, active: dict[str, str]) -> None:
        """Replace the whole device -> active name map (a protocol that sets calibrations aside and puts
        them back); every named calibration must exist."""
        for device, name in active.items():
            self.load(device, name)
        atomic_write(os.path.join(self.root, ACTIVE_FILE), json.dumps(active, indent=2, sort_keys=True))

    def set_active(self, device: str, name: str) -> None:
        self.load(device, name)  # refuses unknown or malformed ones before anything changes
        active = self.active_names()
        active[device] = name
        atomic_write(os.path.join(self.root, ACTIVE_FILE), json.dumps(active, indent=2, sort_keys=True))

    def delete(self, device: str, name: str) -> None:
        path = self.path(device, name)
        if not os.path.exists(path):
            known = ", ".join(self.names(device)) or "none"
            raise CalibrationStoreError(f"no calibration {name!r} for {device}; calibrations for {device}: {known}")
        active = self.active_names()
        if active.get(device) == name:
            del active[device]
            atomic_write(os.path.join(self.root, ACTIVE_FILE), json.dumps(active, indent=2, sort_keys=True))
        os.unlink(path)
