"""Automation events: one definition for every automation, the reference's names, frozen values."""

from __future__ import annotations

import attrs
import pytest

from actors.automations import events
from actors.automations.events import AutomationEvent, DilutionEvent, NoEvent, UpdatedHeaterDC

KINDS = [
    "NoEvent",
    "DilutionEvent",
    "DosingStarted",
    "DosingStopped",
    "AddMediaEvent",
    "AddAltMediaEvent",
    "ChangedLedIntensity",
    "ErrorOccurred",
    "UpdatedHeaterDC",
]


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_is_an_automation_event_carrying_its_reference_name(name):
    kind = getattr(events, name)
    event = kind("something happened", {"x": 1.0})
    assert isinstance(event, AutomationEvent)
    assert (event.event_name, event.message, event.data) == (name, "something happened", {"x": 1.0})
    assert event.display() == f"{name}: something happened"
    with pytest.raises(TypeError):
        kind(event_name="Other")  # the name is fixed by the kind


def test_defaults_and_display_without_a_message():
    assert NoEvent().display() == "NoEvent"
    assert NoEvent().data == {}
    assert AutomationEvent("Custom").display() == "Custom"


def test_events_are_frozen_values():
    event = DilutionEvent("exchanging 1 ml", {"exchange_volume_ml": 1.0})
    assert event == DilutionEvent("exchanging 1 ml", {"exchange_volume_ml": 1.0})
    assert event != NoEvent("exchanging 1 ml", {"exchange_volume_ml": 1.0})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.message = "changed"  # type: ignore[misc]


def test_automations_share_the_one_definition():
    from actors.automations.dosing import policies
    from actors.automations.led import light_dark_cycle
    from actors.automations.temperature import thermostat

    assert policies.AutomationEvent is AutomationEvent and policies.NoEvent is NoEvent
    assert thermostat.UpdatedHeaterDC is UpdatedHeaterDC and thermostat.NoEvent is NoEvent
    assert light_dark_cycle.ChangedLedIntensity is events.ChangedLedIntensity
