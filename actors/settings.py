"""Published settings, declared once per job as data.

Everything about a setting derives from its spec: the ``pio run --<setting>`` options, the parsing and
one-line refusal of ``/set`` requests, retained publishing, and clearing when the job ends.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import attrs

DATATYPES = ("float", "integer", "string", "boolean", "json")
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_TRUE = {"true", "1", "y", "yes", "on", "t"}
_FALSE = {"false", "0", "n", "no", "off", "f"}


class SettingError(ValueError):
    """A value or a request a job refuses; the message says what is wrong and what to send instead."""


def _check_name(_inst: Any, _attr: Any, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"setting name {value!r} must be lowercase words joined by '_'")


def _check_datatype(_inst: Any, _attr: Any, value: str) -> None:
    if value not in DATATYPES:
        raise ValueError(f"datatype {value!r} must be one of {', '.join(DATATYPES)}")


@attrs.frozen(kw_only=True)
class Setting:
    name: str = attrs.field(validator=_check_name)
    datatype: str = attrs.field(validator=_check_datatype)
    settable: bool = False
    startup: bool = False  # may be given when the job starts (`pio run --x v`) even if not settable later
    unit: str | None = None
    persist: bool = False
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    description: str = ""
    choices: tuple[str, ...] | None = None  # string settings: the only values accepted

    def parse(self, raw: str | bytes) -> Any:
        """Cast a text payload (from MQTT or the CLI) to this setting's type, within its bounds."""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        text = text.strip()
        if self.datatype == "string":
            if self.choices is not None and text not in self.choices:
                raise SettingError(f"{self.name}: {text!r} is not one of the choices; send one of: {', '.join(self.choices)}")
            return text
        if self.datatype == "json":
            try:
                return json.loads(text)
            except ValueError:
                raise SettingError(f"{self.name}: {text!r} is not valid JSON") from None
        if self.datatype == "boolean":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise SettingError(f"{self.name}: {text!r} is not a boolean; send true or false")
        if self.datatype == "integer":
            try:
                value: float = int(text)
            except ValueError:
                raise SettingError(f"{self.name}: {text!r} is not a whole number{self._range_hint()}") from None
        else:
            try:
                value = float(text)
            except ValueError:
                raise SettingError(f"{self.name}: {text!r} is not a number{self._range_hint()}") from None
            if not math.isfinite(value):
                raise SettingError(f"{self.name}: {text!r} is not a finite number{self._range_hint()}")
        return self.check_bounds(value)

    def check_bounds(self, value: Any) -> Any:
        if self.minimum is not None and value < self.minimum:
            raise SettingError(f"{self.name}: {value} is below the minimum{self._range_hint()}")
        if self.maximum is not None and value > self.maximum:
            raise SettingError(f"{self.name}: {value} is above the maximum{self._range_hint()}")
        return value

    def _range_hint(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.minimum is not None and self.maximum is not None:
            return f"; send a value from {_fmt(self.minimum)} to {_fmt(self.maximum)}{unit}"
        if self.minimum is not None:
            return f"; send a value of at least {_fmt(self.minimum)}{unit}"
        if self.maximum is not None:
            return f"; send a value of at most {_fmt(self.maximum)}{unit}"
        return ""

    @property
    def option(self) -> str:
        """The ``pio run`` option for this setting."""
        return "--" + self.name.replace("_", "-")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_settable(settings: dict[str, Setting], name: str) -> Setting:
    """The spec for a `/set` of ``name``, or a SettingError saying why it cannot be set."""
    spec = settings.get(name)
    if spec is None:
        known = ", ".join(sorted(s.name for s in settings.values() if s.settable)) or "none"
        raise SettingError(f"unknown setting {name!r}; settable settings are: {known}")
    if not spec.settable:
        known = ", ".join(sorted(s.name for s in settings.values() if s.settable)) or "none"
        raise SettingError(f"{name} is read-only; settable settings are: {known}")
    return spec


def index(specs: tuple[Setting, ...]) -> dict[str, Setting]:
    """Settings by name; refuses duplicates and the reserved name ``state``."""
    out: dict[str, Setting] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"setting {spec.name!r} is declared twice")
        if spec.name == "state":
            raise ValueError("'state' is reserved; the job base publishes $state itself")
        out[spec.name] = spec
    return out
