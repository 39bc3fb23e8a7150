"""attrs validators for numeric parameters: finite, and positive or non-negative where it matters.

Parameters of models and policies are refused at construction rather than producing NaN later.
"""

from __future__ import annotations

import math
from typing import Any


def finite(_instance: object, attribute: Any, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


def finite_positive(_instance: object, attribute: Any, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be finite and > 0, got {value!r}")


def finite_non_negative(_instance: object, attribute: Any, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be finite and >= 0, got {value!r}")
