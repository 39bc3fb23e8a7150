"""Every message that crosses an actor boundary on a node, as frozen attrs values.

They are pickled by Thespian, so they stay plain data: keyword-only, fully typed, no behaviour, no
``init=False`` fields. Replies carry the ``request_id`` of the request they answer, because an
external ``ask()`` returns whatever message reaches the caller next, late replies included.
"""

from __future__ import annotations

from typing import Any

import attrs

# --- configuration handed down at boot ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NodeConfig:
    unit: str
    experiment: str
    hardware: str  # "sim" or a HAT version
    broker_host: str
    broker_port: int
    admin_port: int
    time_scale: float
    clock_anchor: float  # every process of the node derives simulated time from this
    state_dir: str  # this node's own directory
    plugin_dir: str  # drop-in job files: <plugin_dir>/<job_name>.py
    model: str  # vessel model (a file under actors/hardware/models); its default lives in topology.Unit
    broker_username: str | None = None
    broker_password: str | None = None
    simulation: tuple[tuple[str, float], ...] = ()  # sim units: topology's `simulation:` overrides


@attrs.frozen(kw_only=True)
class JobConfig:
    """What a job host needs to start one job; built by the supervisor."""

    job: str
    source: str  # "module:Class" or "file:/path/plugin.py:Class"
    unit: str
    experiment: str
    settings: dict[str, str]  # raw text values (CLI options or resumed values), parsed by the job
    node: NodeConfig
    supervisor: Any
    bridge: Any
    drivers: dict[str, Any]
    generation: int


# --- CLI <-> supervisor ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Boot:
    config: NodeConfig
    resume: bool = False  # restart the jobs that ran when the node was lost (crash, power cut)
    # The bridge's first subscriptions for the sender, in place before its first connection says
    # `ready`: a command sent as soon as the node is seen ready is never missed.
    subscribe: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Hello:
    """The first thing a CLI asks: confirms the actor system is ours and for which unit."""

    request_id: str


@attrs.frozen(kw_only=True)
class NodeInfo:
    request_id: str
    unit: str | None  # None until booted
    version: str
    pid: int
    pgid: int
    booted: bool


@attrs.frozen(kw_only=True)
class RunJob:
    request_id: str
    job: str
    settings: dict[str, str]
    experiment: str | None = None


@attrs.frozen(kw_only=True)
class KillJobs:
    request_id: str
    job: str | None = None  # None: every job but the long-running ones, in the safe order


@attrs.frozen(kw_only=True)
class SetJobSetting:
    request_id: str
    job: str
    setting: str
    value: str


@attrs.frozen(kw_only=True)
class ListJobs:
    request_id: str


@attrs.frozen(kw_only=True)
class GetStatus:
    request_id: str


@attrs.frozen(kw_only=True)
class StopNode:
    request_id: str


@attrs.frozen(kw_only=True)
class Ping:
    request_id: str


@attrs.frozen(kw_only=True)
class Pong:
    request_id: str


@attrs.frozen(kw_only=True)
class JobInfo:
    name: str
    state: str
    experiment: str
    pid: int | None
    settings: dict[str, Any]
    restarts: int
    source: str


@attrs.frozen(kw_only=True)
class Reply:
    """Generic answer: ``ok`` with a ``result`` payload, or an ``error`` sentence for the user."""

    request_id: str
    ok: bool
    error: str | None = None
    result: Any = None


# --- supervisor <-> job host ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StartJob:
    config: JobConfig


@attrs.frozen(kw_only=True)
class JobStateReport:
    job: str
    generation: int
    state: str
    pid: int
    kill_priority: int = 3
    long_running: bool = False
    restart_policy: Any = None  # actors.supervision.RestartPolicy declared by the job class
    resumable: bool = True  # False: a one-shot action (a pump run) is never redone after a power cut
    requested: bool = False  # a `disconnected` asked for by a user (`$state/set`), not an exit
    error: str | None = None  # set when the job could not start (bad setting, import error)


@attrs.frozen(kw_only=True)
class SettingsReport:
    """The job's current published values; the supervisor keeps them to resume after a crash."""

    job: str
    generation: int
    values: dict[str, Any]
    settable: dict[str, str]  # name -> raw text, for resuming


@attrs.frozen(kw_only=True)
class ApplySetting:
    """A `/set` request, from MQTT or from `pio jobs set`; ``setting`` may be ``$state``."""

    request_id: str
    setting: str
    value: str
    source: str = "cli"


@attrs.frozen(kw_only=True)
class BridgeChanged:
    """The bridge was restarted: republish everything retained and subscribe again."""

    bridge: Any


# --- MQTT bridge -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Publish:
    topic: str
    payload: str
    retain: bool = False
    qos: int = 0


@attrs.frozen(kw_only=True)
class PublishMany:
    """Several publications from one sender, handled by the bridge in order as if sent one by one."""

    items: tuple[Publish, ...]
    ack: str | None = None  # when set, the bridge answers Published(ack) once it holds every item


@attrs.frozen(kw_only=True)
class Published:
    """The bridge's answer to a PublishMany with ``ack``: every item is appended and sent on."""

    ack: str


@attrs.frozen(kw_only=True)
class Subscribe:
    """Deliver messages matching these filters to the sender (from the broker and from local publishers)."""

    filters: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Unsubscribe:
    pass


@attrs.frozen(kw_only=True)
class MqttMessage:
    topic: str
    payload: str
    retain: bool = False


@attrs.frozen(kw_only=True)
class BridgeStatus:
    connected: bool
    broker: str
    reconnects: int
    published: int
    received: int
    last_error: str | None = None
    outbox: dict[str, Any] = attrs.field(factory=dict)  # pending, in_flight, dropped, ... (mqtt_bridge.outbox_figures)


# --- hardware drivers -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HardwareConfig:
    """How this node's drivers reach their hardware: a HAT and vessel model, and the endpoints.

    On a Pi: pigpiod on localhost and I2C bus 1. On a sim unit: the simulated device's loopback ports.
    """

    hat: str
    model: str
    pigpio_host: str = "127.0.0.1"
    pigpio_port: int = 8888
    i2c_bus: int = 1
    i2c_port: int | None = None  # set on sim units: I2C over loopback to the simulated device


@attrs.frozen(kw_only=True)
class BootDriver:
    node: NodeConfig
    hardware: HardwareConfig


@attrs.frozen(kw_only=True)
class DriverFailed:
    """A driver could not reach its hardware; the supervisor reports it and keeps outputs safe."""

    driver: str
    error: str


@attrs.frozen(kw_only=True)
class Wire:
    """Tells a driver where the bridge is (drivers start before it), who supervises it, and where the
    PWM driver is (the temperature driver feeds it plate readings for the heater's safety)."""

    bridge: Any
    supervisor: Any
    pwm: Any = None
    sim: Any = None  # the simulated vessel on a sim unit (timed pump runs, see TimedPumpRun)
    node: Any = None  # the NodeConfig: where the driver's log lines go (actors.logs.ship)


@attrs.frozen(kw_only=True)
class AcquireChannel:
    request_id: str
    channel: str
    owner: str  # the owning job's name, for messages and the status


@attrs.frozen(kw_only=True)
class ReleaseChannel:
    channel: str


@attrs.frozen(kw_only=True)
class ReleaseOwner:
    """Sent by the supervisor when a job actor exits: every channel it held goes to its safe state."""

    owner: Any


@attrs.frozen(kw_only=True)
class SetDuty:
    channel: str
    duty: float
    seconds: float | None = None  # pumps: how long the command is meant to run (the driver caps it)


@attrs.frozen(kw_only=True)
class TimedPumpRun:
    """Sim units only: the pump run just commanded lasts ``seconds`` of simulated time. At an
    accelerated clock a few milliseconds of message latency would be many simulated seconds of extra
    pumping; the simulated device enforces the run's length in its own time instead."""

    channel: str
    seconds: float


@attrs.frozen(kw_only=True)
class RenewLease:
    pass


@attrs.frozen(kw_only=True)
class ReadHallEdges:
    request_id: str


@attrs.frozen(kw_only=True)
class HallEdges:
    request_id: str
    edges: int
    at: float  # simulated time of the count


@attrs.frozen(kw_only=True)
class DriverStatus:
    driver: str
    outputs: dict[str, float]
    owners: dict[str, str]


@attrs.frozen(kw_only=True)
class PlateReading:
    """The heater plate's temperature (None: the sensor did not answer), for the heater's safety tiers."""

    celsius: float | None
    at: float


@attrs.frozen(kw_only=True)
class ReadTemperature:
    request_id: str


@attrs.frozen(kw_only=True)
class ReadAdc:
    request_id: str
    signals: tuple[str, ...]  # e.g. ("pd1", "pd2"), ("aux",)
    samples: int = 1  # oversampling: each signal is read this many times, interleaved; the trimmed mean is returned


@attrs.frozen(kw_only=True)
class AdcReading:
    request_id: str
    volts: dict[str, float]
    at: float
    error: str | None = None


@attrs.frozen(kw_only=True)
class AdcTrip:
    """A photodiode read above the over-voltage limit: LEDs off, OD stopped."""

    signal: str
    volts: float


@attrs.frozen(kw_only=True)
class SetLed:
    request_id: str
    channel: str
    intensity: float


@attrs.frozen(kw_only=True)
class AllLedsOff:
    reason: str


@attrs.frozen(kw_only=True)
class SimEndpoints:
    """Where a simulated unit's drivers reach its device (both ports on loopback)."""

    pigpio_port: int
    i2c_port: int
    host: str = "127.0.0.1"


@attrs.frozen(kw_only=True)
class GetSimTruth:
    request_id: str


@attrs.frozen(kw_only=True)
class SimFault:
    """Switches a simulator fault knob (for tests and demos); ignored by real backends."""

    request_id: str
    knob: str
    on: bool
