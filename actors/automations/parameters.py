"""An automation's parameters, described as data: enough to build its start form, its ``pio run``
options and its settings, and to parse what comes back. Pure.

Every automation family (dosing, temperature, LED) and every plugin declares ``PARAMETERS`` with these;
the automation job turns them into job settings (:func:`actors.automations.base.parameter_setting`), so
the CLI, ``/set`` and a dashboard form all read one declaration.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs


@attrs.frozen
class Parameter:
    """One constructor parameter, described well enough to build a dashboard form and parse its values.

    ``default`` is ``None`` for a required parameter. ``settable`` ones may change while running.
    """

    name: str
    type: Literal["float", "str", "bool"]
    unit: str
    default: float | str | bool | None
    settable: bool = True
    choices: tuple[str, ...] | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def parse(self, value: object) -> float | str | bool:
        """Turn a CLI, MQTT or form value (often a string) into this parameter's type, or explain why not."""
        if self.type == "float":
            if isinstance(value, bool):
                raise ValueError(f"{self.name} must be a number ({self.unit}), got {value!r}")
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"{self.name} must be a number ({self.unit}), got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"{self.name} must be a finite number ({self.unit}), got {value!r}")
            return number
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"{self.name} must be true or false, got {value!r}")
        text = str(value)
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}")
        return text
