"""Automation events, the one definition every automation (dosing, temperature, LED) imports. Pure.

Each run of an automation ends in one event, published as the job's ``latest_event`` and logged at
INFO (the reference's ``events.py``). An event is a frozen value: ``event_name`` (the reference's name,
e.g. ``DilutionEvent``), a human ``message``, and ``data``, a JSON-ready mapping of whatever numbers the
run wants to report (volumes, duties, intensities).

The named kinds are subclasses whose ``event_name`` is fixed, so ``NoEvent("nothing to do")`` and
``isinstance(event, NoEvent)`` both read naturally, while a consumer that only publishes needs nothing
beyond :class:`AutomationEvent`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class AutomationEvent:
    """What happened on one run of an automation."""

    event_name: str
    message: str = ""
    data: Mapping[str, object] = attrs.field(factory=dict, hash=False)

    def display(self) -> str:
        """The log line the reference writes at INFO for every run."""
        return f"{self.event_name}: {self.message}" if self.message else self.event_name


# Each kind re-declares ``event_name`` with a fixed default and no init argument, so it is built as
# ``Kind(message, data)``.


@attrs.frozen
class NoEvent(AutomationEvent):
    """The automation ran and changed nothing."""

    event_name: str = attrs.field(default="NoEvent", init=False)


@attrs.frozen
class DilutionEvent(AutomationEvent):
    """An exchange of media for waste (turbidostat, chemostat)."""

    event_name: str = attrs.field(default="DilutionEvent", init=False)


@attrs.frozen
class DosingStarted(AutomationEvent):
    """A dosing automation started dosing."""

    event_name: str = attrs.field(default="DosingStarted", init=False)


@attrs.frozen
class DosingStopped(AutomationEvent):
    """A dosing automation stopped for good (e.g. a fed-batch reached its volume)."""

    event_name: str = attrs.field(default="DosingStopped", init=False)


@attrs.frozen
class AddMediaEvent(AutomationEvent):
    """Media added without an exchange volume target (fed-batch, morbidostat)."""

    event_name: str = attrs.field(default="AddMediaEvent", init=False)


@attrs.frozen
class AddAltMediaEvent(AutomationEvent):
    """Alternative media added (morbidostat)."""

    event_name: str = attrs.field(default="AddAltMediaEvent", init=False)


@attrs.frozen
class ChangedLedIntensity(AutomationEvent):
    """An LED automation switched channel intensities; ``data["intensities"]`` maps channel to %."""

    event_name: str = attrs.field(default="ChangedLedIntensity", init=False)


@attrs.frozen
class ErrorOccurred(AutomationEvent):
    """The automation could not decide (stale or missing input); nothing was done."""

    event_name: str = attrs.field(default="ErrorOccurred", init=False)


@attrs.frozen
class UpdatedHeaterDC(AutomationEvent):
    """A temperature automation set the heater duty; ``data`` holds the previous and new duty."""

    event_name: str = attrs.field(default="UpdatedHeaterDC", init=False)


__all__ = [
    "AddAltMediaEvent",
    "AddMediaEvent",
    "AutomationEvent",
    "ChangedLedIntensity",
    "DilutionEvent",
    "DosingStarted",
    "DosingStopped",
    "ErrorOccurred",
    "NoEvent",
    "UpdatedHeaterDC",
]
