"""MQTT topic builders and payload encoding: the only place the wire format is spelled.

Topics follow the reference convention ``pioreactor/<unit>/<experiment>/<job>/<attr>``. Our own
additions sit under names starting with ``$`` (for example ``pioreactor/<unit>/$node/$state``).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

ROOT = "pioreactor"
BROADCAST = "$broadcast"
NO_EXPERIMENT = "$experiment"  # long-running jobs and system logs live outside any experiment
NODE = "$node"
STATE = "$state"
SET = "set"


def job_topic(unit: str, experiment: str, job: str, attr: str) -> str:
    return f"{ROOT}/{unit}/{experiment}/{job}/{attr}"


def state_topic(unit: str, experiment: str, job: str) -> str:
    return job_topic(unit, experiment, job, STATE)


def set_topic(unit: str, experiment: str, job: str, attr: str) -> str:
    return job_topic(unit, experiment, job, attr) + "/" + SET


def node_topic(unit: str, attr: str) -> str:
    """Node-level topics: ``$state`` (last will ``lost``), ``jobs``, ``health``."""
    return f"{ROOT}/{unit}/{NODE}/{attr}"


def desired_topic(unit: str) -> str:
    """The unit's desired state (retained, written only by the leader): ``{generation, experiment,
    jobs: {job: {setting: text}}, issued_at}``; an empty payload means no desired state."""
    return node_topic(unit, "desired")


def command_topic(unit: str) -> str:
    """Commands to the unit (not retained, written only by the leader): ``{id, expires_at, action,
    job, options | setting, value}``."""
    return node_topic(unit, "command")


def result_topic(unit: str) -> str:
    """The unit's answer to each command (not retained): ``{id, unit, ok, error}``."""
    return node_topic(unit, "result")


def actual_topic(unit: str) -> str:
    """The unit's view of itself against its desired state (retained): ``{unit, generation,
    experiment, in_sync, jobs: {job: {state, experiment, managed, settings}}, errors, timestamp}``."""
    return node_topic(unit, "actual")


def outbox_topic(unit: str) -> str:
    """Batches of the unit's outbox records for the leader's ingest (not retained; see actors/records.py)."""
    return node_topic(unit, "outbox")


def ingest_ack_topic(unit: str) -> str:
    """The leader's acknowledgement of the unit's records (retained, written only by the leader):
    ``{stream: highest seq stored with nothing missing below it}``."""
    return node_topic(unit, "ingest_ack")


def log_topic(unit: str, experiment: str, source: str, level: str) -> str:
    return f"{ROOT}/{unit}/{experiment}/logs/{source}/{level.lower()}"


def dosing_events_topic(unit: str, experiment: str) -> str:
    """Every pump movement: ``{volume_change, event, source_of_event, timestamp}`` (not retained)."""
    return f"{ROOT}/{unit}/{experiment}/dosing_events"


def bioreactor_topic(unit: str, experiment: str, attr: str) -> str:
    """The vial's books (``current_volume_ml``, ``alt_media_fraction``, ...), retained, per experiment."""
    return job_topic(unit, experiment, "bioreactor", attr)


def broker_link_topic(unit: str) -> str:
    """Local only, retained in the node's bridge: ``connected`` or ``disconnected``, whether this node's
    bridge is connected to the broker (the monitor's error code 2). Never sent to the broker."""
    return node_topic(unit, "broker_link")


def led_change_events_topic(unit: str, experiment: str) -> str:
    """Every LED change a job makes: ``{channel, intensity, source_of_event, timestamp}`` (not retained)."""
    return f"{ROOT}/{unit}/{experiment}/led_change_events"


def leds_topic(unit: str) -> str:
    """The LED driver's retained ``{"A": %, "B": %, ...}``."""
    return job_topic(unit, NO_EXPERIMENT, "leds", "intensity")


def set_filters(unit: str) -> tuple[str, ...]:
    """What a node subscribes to for commands: its own `/set` topics and broadcast ones."""
    return (f"{ROOT}/{unit}/+/+/+/{SET}", f"{ROOT}/{BROADCAST}/+/+/+/{SET}")


@attrs.frozen(kw_only=True)
class SetRequest:
    unit: str
    experiment: str
    job: str
    attr: str  # without a leading '$' except for "$state"


def parse_set_topic(topic: str) -> SetRequest | None:
    """``pioreactor/<unit>/<exp>/<job>/<attr>/set`` -> its parts, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != ROOT or parts[5] != SET:
        return None
    _, unit, experiment, job, attr, _ = parts
    return SetRequest(unit=unit, experiment=experiment, job=job, attr=attr)


def encode(value: Any) -> str:
    """Scalars go raw (strings as they are, numbers and booleans as JSON); dicts and lists as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def decode(payload: str | bytes) -> Any:
    """Inverse of :func:`encode` for a consumer that does not know the datatype."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    try:
        return json.loads(text)
    except ValueError:
        return text


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest), for the bridge's local fan-out."""
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, f in enumerate(fparts):
        if f == "#":
            return True
        if i >= len(tparts):
            return False
        if f != "+" and f != tparts[i]:
            return False
    return len(fparts) == len(tparts)
