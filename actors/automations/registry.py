"""Which automations exist, per family, and where their code is.

Three sources, later ones winning (so a plugin can replace a built-in, as in the reference):

* the built-ins below;
* pip packages declaring an entry point in the ``pioactors.automations`` group, whose value is
  ``module:Class``; the class says its ``family`` and ``name``;
* drop-in files ``<plugin_dir>/automations/*.py``: every class in them with a ``family`` and a ``name``.

An automation class is a pure policy: ``family`` ("dosing", "temperature" or "led"), ``name`` (what
``--automation-name`` takes), ``PARAMETERS`` (:class:`actors.automations.parameters.Parameter`), and the
decision method its family's job calls (see docs/automations.md). Resolution runs in the automation job's
own process, which imports everything fresh, so an edited plugin file is picked up by the next start.

A drop-in file that fails to import (a syntax error, a bad import) is skipped, so one broken file does not
stop the built-ins or the other plugins (nor a supervisor's restart of a running automation); when the
name asked for is not found, the refusal names every file that failed and why, since the automation
may well be in one of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import traceback
from typing import Any

FAMILIES: tuple[str, ...] = ("dosing", "temperature", "led")
ENTRY_POINT_GROUP = "pioactors.automations"

BUILTIN: dict[str, dict[str, str]] = {
    "dosing": {
        "turbidostat": "actors.automations.dosing.policies:Turbidostat",
        "chemostat": "actors.automations.dosing.policies:Chemostat",
        "fed_batch": "actors.automations.dosing.policies:FedBatch",
        "pid_morbidostat": "actors.automations.dosing.policies:PidMorbidostat",
        "silent": "actors.automations.dosing.policies:Silent",
    },
    "temperature": {
        "thermostat": "actors.automations.temperature.thermostat:Thermostat",
        "only_record_temperature": "actors.automations.temperature.thermostat:OnlyRecordTemperature",
    },
    "led": {
        "light_dark_cycle": "actors.automations.led.light_dark_cycle:LightDarkCycle",
        "silent": "actors.automations.led.light_dark_cycle:SilentLeds",
    },
}


class UnknownAutomation(LookupError):
    pass


def _load(source: str) -> Any:
    module_name, _, attr = source.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _drop_in_dir(plugin_dir: str | None) -> str | None:
    if not plugin_dir:
        return None
    folder = os.path.join(plugin_dir, "automations")
    return folder if os.path.isdir(folder) else None


def _load_error(path: str, exc: BaseException) -> str:
    """``<path>: <what went wrong> (line N)``: the line in the plugin file itself, not in importlib."""
    if isinstance(exc, SyntaxError):
        return f"{path}: {type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    where = f" (line {lines[-1]})" if lines else ""
    return f"{path}: {type(exc).__name__}: {exc}{where}"


def _drop_ins(plugin_dir: str | None) -> tuple[list[Any], list[str]]:
    """Automation classes in the drop-in files, and one message per file that could not be imported."""
    folder = _drop_in_dir(plugin_dir)
    if folder is None:
        return [], []
    found: list[Any] = []
    errors: list[str] = []
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        if ext != ".py" or stem.startswith("_"):
            continue
        path = os.path.join(folder, entry)
        spec = importlib.util.spec_from_file_location(f"pioactors_plugin_automation_{stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # any error in a user's file: skip it, say why if it was wanted
            errors.append(_load_error(path, exc))
            continue
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and getattr(value, "name", "") and getattr(value, "family", None) in FAMILIES:
                found.append(value)
    return found, errors


def _drop_in_classes(plugin_dir: str | None) -> list[Any]:
    return _drop_ins(plugin_dir)[0]


def broken_drop_ins(plugin_dir: str | None) -> list[str]:
    """One message per drop-in automation file that fails to import (for a job to warn about)."""
    return _drop_ins(plugin_dir)[1]


def available(family: str, plugin_dir: str | None) -> dict[str, str]:
    """Automation names of ``family`` to where they come from (a source string or a file path)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown automation family {family!r}; families: {', '.join(FAMILIES)}")
    out = dict(BUILTIN[family])
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if getattr(cls, "family", None) == family:
            out[getattr(cls, "name", ep.name)] = ep.value
    for cls in _drop_in_classes(plugin_dir):
        if cls.family == family:
            out[cls.name] = f"file:{cls.__module__}"
    return out


def find(family: str, name: str, plugin_dir: str | None) -> type:
    """The class of automation ``name`` in ``family``; UnknownAutomation names the known ones, and the
    drop-in files that could not be imported."""
    drop_ins, errors = _drop_ins(plugin_dir)
    for cls in reversed(drop_ins):
        if cls.family == family and cls.name == name:
            return cls
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if getattr(cls, "family", None) == family and getattr(cls, "name", None) == name:
            return cls
    source = BUILTIN.get(family, {}).get(name)
    if source is None:
        known = ", ".join(sorted(available(family, plugin_dir)))
        message = f"unknown {family} automation {name!r}; {family} automations are: {known}"
        if errors:
            message += "; these plugin files could not be loaded: " + "; ".join(errors)
        raise UnknownAutomation(message)
    return _load(source)
