"""Volume bookkeeping of one vial: what the dosing events say is in it (pioreactor.md §3.2).

Pure: no clock, no I/O. The monitor (the owner of this projection in the reference) feeds every
:class:`DosingEvent` it receives to :meth:`BioreactorState.apply` and publishes the returned state;
dosing automations only read it. A frozen value per step makes the projection replayable: the state after
a list of events is a left fold, so a restarted monitor, a test, or the leader can recompute it from the
``dosing_events`` history and get the same numbers.

Rules, the reference's (hardware.md §4.2 mirrors them in the simulator, so the two agree):

* ``add_media`` / ``add_alt_media`` add their volume. The alternative-media fraction follows the mass
  balance ``(f*V + alt_added) / (V + added)``: fresh media dilutes it, alt media raises it.
* ``remove_waste`` removes well-mixed liquid (so the fraction does not change) but only down to the
  efflux tube: the waste needle sits at that level and pulls air below it. ``cumulative_waste_removed_ml``
  counts the *liquid actually removed*, not what the pump moved, so ``volume = initial + added - removed``
  holds exactly and the alt-media mass balance closes; the pump's own total is in the events.
* Liquid added past the vial's physical capacity spills over the rim. That is a failure the automations
  exist to prevent, but if it happened the books must still say what is in the vial, so the surplus (well
  mixed) is recorded in ``spilled_ml`` rather than refused after the fact.
* Events whose ``source_of_event`` is ``"pump_calibration"`` are ignored: calibration pumps into a beaker,
  not the vial (the reference monitor skips them too).

Manual edits (the dashboard's "set current volume" and friends) go through :meth:`BioreactorState.edit`,
which refuses anything the vial cannot hold with a message telling the user what to send instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

import attrs

DosingEventName = Literal["add_media", "add_alt_media", "remove_waste"]
DOSING_EVENT_NAMES: tuple[str, ...] = get_args(DosingEventName)

IGNORED_SOURCES: frozenset[str] = frozenset({"pump_calibration"})
"""``source_of_event`` values the projection skips: those pumps do not empty into or out of the vial."""

WARN_FRACTION_OF_MAX_FILL = 0.95
"""The reference warns when the volume reaches 95 % of the max fill, before it stops dosing at 100 %."""

EDITABLE_FIELDS: tuple[str, ...] = ("current_volume_ml", "efflux_tube_volume_ml", "alt_media_fraction")
"""What a user may set by hand; the cumulative totals only ever come from dosing events."""


def _number(name: str, value: object) -> float:
    """Coerce a manual or wire value to a float, refusing what is not a finite number."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; send e.g. {name}=15.0") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _volume_change(_instance: object, _attribute: object, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"volume_change must be a finite volume >= 0 ml, got {value!r}; a removal is the event "
            "'remove_waste' with a positive volume, not a negative addition"
        )


def _event_name(_instance: object, _attribute: object, value: str) -> None:
    if value not in DOSING_EVENT_NAMES:
        raise ValueError(f"unknown dosing event {value!r}; expected one of {DOSING_EVENT_NAMES}")


@attrs.frozen(kw_only=True)
class DosingEvent:
    """One pump movement, as the pump jobs publish it (the reference's ``DosingEvent`` fields).

    ``timestamp`` is seconds on the caller's clock (simulated or epoch); this module never compares it with
    the current time, it is carried for the record.
    """

    volume_change: float = attrs.field(converter=float, validator=_volume_change)
    event: DosingEventName = attrs.field(validator=_event_name)
    source_of_event: str = "unknown"
    timestamp: float = 0.0


@attrs.frozen(kw_only=True)
class BioreactorState:
    """What is in the vial, by the books. Defaults: a 20 ml Pioreactor at the efflux level (15 of 20 ml).

    ``max_fill_ml`` is where automations stop adding (18 of 20 ml, 36 of 40 ml); ``capacity_ml`` is the
    vial's physical volume, past which liquid spills.
    """

    current_volume_ml: float = 15.0
    efflux_tube_volume_ml: float = 15.0
    alt_media_fraction: float = 0.0
    cumulative_media_added_ml: float = 0.0
    cumulative_alt_media_added_ml: float = 0.0
    cumulative_waste_removed_ml: float = 0.0
    max_fill_ml: float = 18.0
    capacity_ml: float = 20.0
    spilled_ml: float = 0.0

    def __attrs_post_init__(self) -> None:
        # Construction and manual edits share these checks, so no path can build a state the vial
        # cannot hold.
        for name in ("capacity_ml", "max_fill_ml"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite volume > 0 ml, got {value!r}")
        if self.max_fill_ml > self.capacity_ml:
            raise ValueError(
                f"max_fill_ml={self.max_fill_ml:g} is above capacity_ml={self.capacity_ml:g}; send a "
                f"max fill of at most {self.capacity_ml:g} ml (18 for a 20 ml vial, 36 for a 40 ml vial)"
            )
        v = self.current_volume_ml
        if not math.isfinite(v) or v < 0:
            raise ValueError(
                f"current_volume_ml={v!r} is not a volume; send a number of ml between 0 and "
                f"{self.capacity_ml:g} (the vial's capacity)"
            )
        if v > self.capacity_ml:
            raise ValueError(
                f"current_volume_ml={v:g} is above the vial's {self.capacity_ml:g} ml capacity; send a "
                f"volume between 0 and {self.capacity_ml:g} ml "
                f"(automations stop adding at {self.max_fill_ml:g} ml)"
            )
        e = self.efflux_tube_volume_ml
        if not (math.isfinite(e) and 0 <= e <= self.max_fill_ml):
            raise ValueError(
                f"efflux_tube_volume_ml={e!r} must be between 0 and the max fill {self.max_fill_ml:g} ml; "
                "send the volume at which the waste needle sits (15 ml by default)"
            )
        f = self.alt_media_fraction
        if not (math.isfinite(f) and 0.0 <= f <= 1.0):
            raise ValueError(
                f"alt_media_fraction={f!r} is outside [0, 1]; send a fraction between 0 and 1 "
                "(0.25 means a quarter of the liquid is alternative media)"
            )
        for name in (
            "cumulative_media_added_ml",
            "cumulative_alt_media_added_ml",
            "cumulative_waste_removed_ml",
            "spilled_ml",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite volume >= 0 ml, got {value!r}")

    # -- projection ---------------------------------------------------------------------------------------

    def apply(self, event: DosingEvent) -> BioreactorState:
        """The state after ``event``. Ignored sources return ``self`` unchanged."""
        if event.source_of_event in IGNORED_SOURCES or event.volume_change == 0:
            return self
        dv = event.volume_change
        v = self.current_volume_ml
        if event.event == "remove_waste":
            available = max(0.0, v - self.efflux_tube_volume_ml)
            if available == 0:
                return self
            if dv >= available:
                # Drained to the needle: land on the efflux level itself, not a rounding error off it.
                removed, new_v = available, self.efflux_tube_volume_ml
            else:
                removed, new_v = dv, v - dv
            return attrs.evolve(
                self,
                current_volume_ml=new_v,
                cumulative_waste_removed_ml=self.cumulative_waste_removed_ml + removed,
            )
        alt_added = dv if event.event == "add_alt_media" else 0.0
        total = v + dv
        fraction = min(1.0, max(0.0, (self.alt_media_fraction * v + alt_added) / total))
        spilled = max(0.0, total - self.capacity_ml)
        return attrs.evolve(
            self,
            current_volume_ml=total - spilled,
            alt_media_fraction=fraction,
            cumulative_media_added_ml=self.cumulative_media_added_ml + (dv - alt_added),
            cumulative_alt_media_added_ml=self.cumulative_alt_media_added_ml + alt_added,
            spilled_ml=self.spilled_ml + spilled,
        )

    def apply_all(self, events: Iterable[DosingEvent]) -> BioreactorState:
        """Fold :meth:`apply` over ``events`` in order (replaying a dosing history)."""
        state = self
        for event in events:
            state = state.apply(event)
        return state

    # -- manual edits -------------------------------------------------------------------------------------

    def edit(self, changes: Mapping[str, object]) -> BioreactorState:
        """A user's change to the volume, efflux level or fraction, validated like construction.

        Values may arrive as strings (MQTT payloads, form fields); anything that is not a finite number,
        or that the vial cannot hold, raises ``ValueError`` saying what to send instead.
        """
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise ValueError(
                f"cannot set {', '.join(unknown)} by hand; editable fields are {EDITABLE_FIELDS} "
                "(cumulative totals only change through dosing events)"
            )
        values = {name: _number(name, value) for name, value in changes.items()}
        return attrs.evolve(self, **values)

    # -- questions automations ask --------------------------------------------------------------------------

    @property
    def fraction_of_max_fill(self) -> float:
        """``current / max_fill``; 1.0 means dosing must stop."""
        return self.current_volume_ml / self.max_fill_ml

    @property
    def at_max_fill(self) -> bool:
        """True once the books reach the max fill: the reference puts the dosing automation to sleep."""
        return self.current_volume_ml >= self.max_fill_ml

    @property
    def near_max_fill(self) -> bool:
        """True from 95 % of the max fill, where the reference logs a warning."""
        return self.current_volume_ml >= WARN_FRACTION_OF_MAX_FILL * self.max_fill_ml

    @property
    def alt_media_volume_ml(self) -> float:
        """Millilitres of alternative media in the vial (``fraction * volume``)."""
        return self.alt_media_fraction * self.current_volume_ml

    def as_dict(self) -> dict[str, float]:
        """The retained ``bioreactor/<field>`` values, for publishing."""
        return attrs.asdict(self)
