"""A worked example of an automation shipped as a package: the entry-point route.

``pyproject.toml`` of such a package declares

    [project.entry-points."pioactors.automations"]
    constant_light = "pioactors_constant_light:ConstantLight"

and ``pip install`` writes it to ``pioactors_constant_light-0.1.0.dist-info/entry_points.txt``, next to
this folder (the tests put this folder on PYTHONPATH instead of installing it: importlib.metadata finds a
``*.dist-info`` folder on any sys.path entry). The class says its ``family`` and ``name``.
"""

from __future__ import annotations

import math

from actors.automations.events import ChangedLedIntensity
from actors.automations.led.light_dark_cycle import LedDecision, LedPolicy
from actors.automations.parameters import Parameter


class ConstantLight(LedPolicy):
    """``constant_light``: LEDs C and D at ``intensity`` %, all the time (``family`` "led" is inherited)."""

    name = "constant_light"
    PARAMETERS = (Parameter("intensity", "float", "%", 30.0, description="LEDs C and D, 0-100"),)

    def __init__(self, intensity: float = 30.0) -> None:
        self.intensity = self._checked(intensity)

    @staticmethod
    def _checked(value: float) -> float:
        value = float(value)
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise ValueError(f"intensity must be 0-100 %, got {value!r}")
        return value

    def decide(self, t_minutes: float) -> LedDecision:
        level = self.intensity
        return LedDecision(
            lit=level > 0,
            intensities=(("C", level), ("D", level)),
            next_boundary_minutes=None,  # nothing changes until a /set
            event=ChangedLedIntensity(f"C/D at {level:g} %", {"intensities": {"C": level, "D": level}}),
        )

    def with_parameter(self, name: str, value: float, t_minutes: float) -> ConstantLight:
        if name != "intensity":
            raise ValueError(f"constant_light has no parameter {name!r}")
        return ConstantLight(self._checked(value))
