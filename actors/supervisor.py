"""The node supervisor: the one named, top-level actor of a node.

It starts the drivers first, then the MQTT bridge, then jobs, all as its children, so it hears
(``ChildActorExited``, within a few ms) when any of them dies. On a job's death it sends the drivers
``ReleaseOwner`` (outputs to 0 at once), then applies the pure restart policy of
:mod:`actors.supervision`: restart with back-off, resuming the job's last settings, or give up and mark
the job ``lost``. A driver or bridge that dies is restarted at once and its dependants are told.

It also answers the ``pio`` CLI: run, kill (in the reference's safe order), list, set, status.
It follows the leader's desired state and answers its commands (:mod:`actors.reconcile` plans;
see docs/leader.md, "How a node follows its desired state").
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import deque
from typing import Any

import attrs
from thespian.actors import ActorExitRequest, ActorTypeDispatcher, ChildActorExited, WakeupMessage

import actors
from actors import logs, reconcile, topics
from actors.clock import Clock, utc_iso
from actors.files import atomic_write
from actors.hardware.hardware_access import SIM_HAT
from actors.hardware.adc_driver import AdcDriver
from actors.hardware.led_driver import LedDriver
from actors.hardware.pwm_driver import PwmDriver
from actors.hardware.sim_vessel import SimVessel
from actors.hardware.temperature_driver import TemperatureDriver
from actors.job_host import JobHost
from actors.messages import (
    AdcTrip,
    AllLedsOff,
    ApplySetting,
    Boot,
    BootDriver,
    DriverFailed,
    GetSimTruth,
    HardwareConfig,
    SimEndpoints,
    BridgeChanged,
    BridgeStatus,
    DriverStatus,
    GetStatus,
    Hello,
    JobConfig,
    JobInfo,
    JobStateReport,
    KillJobs,
    ListJobs,
    MqttMessage,
    NodeConfig,
    NodeInfo,
    Ping,
    Pong,
    Publish,
    ReleaseOwner,
    Reply,
    RunJob,
    SetJobSetting,
    SettingsReport,
    SimFault,
    StartJob,
    StopNode,
    Wire,
)
from actors.mqtt_bridge import MQTTBridge
from actors.registry import available_jobs
from actors.supervision import CrashHistory, RestartPolicy, decide_restart, record_start

log = logs.get("supervisor")

DRIVERS = {"pwm": PwmDriver, "temperature": TemperatureDriver, "adc": AdcDriver, "led": LedDriver}
KILL_GRACE_SECONDS = 5.0  # a job that has not exited this long after a stop request is SIGKILLed
HEALTH_EVERY_SECONDS = 5.0  # each live job is pinged this often (real seconds)
HEALTH_MISSES = 3  # unanswered pings in a row before a hung job is killed (and then restarted)
ACTUAL_EVERY_SECONDS = 0.1  # `$node/actual` is rebuilt at most this often (real seconds)


@attrs.define
class JobRecord:
    name: str
    source: str
    experiment: str
    settings: dict[str, str]  # raw text values to (re)start with; updated from the job's reports
    generation: int = 0
    address: Any = None
    state: str = "init"
    pid: int | None = None
    values: dict[str, Any] = attrs.field(factory=dict)
    desired: bool = True
    stopping: bool = False
    restart_now: bool = False  # restart at once after exit (a dependency was replaced), not a crash
    history: CrashHistory = attrs.field(factory=CrashHistory)
    restarts: int = 0
    missed_pings: int = 0
    kill_priority: int = 3
    long_running: bool = False
    resumable: bool = True
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    waiters: list[tuple[str, Any]] = attrs.field(factory=list)
    managed: bool = False  # started or adopted by a desired state (see actors.reconcile)
    settable: frozenset[str] = frozenset()  # names the job reported as settable in place

    def info(self) -> JobInfo:
        return JobInfo(
            name=self.name,
            state=self.state,
            experiment=self.experiment,
            pid=self.pid,
            settings=dict(self.values),
            restarts=self.restarts,
            source=self.source,
        )


@attrs.define
class KillOperation:
    request_id: str
    requester: Any
    groups: list[list[str]]
    waiting: set[str] = attrs.field(factory=set)
    stopped: list[str] = attrs.field(factory=list)


class NodeSupervisor(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: NodeConfig | None = None
        self.clock = Clock()
        self.drivers: dict[str, Any] = {}
        self.driver_errors: dict[str, str] = {}
        self.sim: Any = None
        self.hardware: HardwareConfig | None = None
        self.boot_reply: tuple[Any, bool] | None = None  # (who asked, resume) until the hardware is up
        self.bridge: Any = None
        self.jobs: dict[str, JobRecord] = {}
        self.relays: dict[str, Any] = {}  # request_id -> who asked (replies relayed from children)
        self.kills: dict[str, KillOperation] = {}
        self.bridge_status: BridgeStatus | None = None
        self.outputs: dict[str, dict[str, Any]] = {}
        self.started_at = time.time()
        self.shutting_down = False  # the node is stopping: children that exit stay down
        self._saved: str | None = None  # last content written to jobs.json
        self.keep_jobs_file = False
        # Following the leader's desired state (actors.reconcile; docs/leader.md).
        self.desired: reconcile.Desired | None = None
        self.desired_refused: str | None = None  # why the last desired-state payload was refused
        self.one_shot: set[str] = set()  # desired jobs found to be one-shot actions: never started by a plan
        self.reconcile_requests: dict[str, tuple[str, str]] = {}  # request_id -> ("plan", job) | ("command", id)
        self.reconcile_errors: dict[str, str] = {}  # job -> why the last planned action on it failed
        self.seen_commands: deque[str] = deque(maxlen=1000)  # a QoS 1 re-delivery is not run twice
        self._actual_text: str | None = None  # last `$node/actual` content published (timestamp aside)
        self.actual_pending = False

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        try:
            return super().receiveMessage(message, sender)
        except Exception:
            # The supervisor must outlive any bad message: log it, keep going.
            log.exception("supervisor failed to handle %r", message)
            if hasattr(message, "request_id") and not isinstance(message, (Reply,)):
                self.send(sender, Reply(request_id=message.request_id, ok=False, error="internal error; see the node log"))
            return None
        finally:
            self._actual_soon(message)  # any message may change a job's state or settings

    # --- boot and children ---------------------------------------------------------------------------

    @property
    def pwm(self) -> Any:
        return self.drivers.get("pwm")

    def receiveMsg_Boot(self, msg: Boot, sender: Any) -> None:
        if self.config is not None:
            if self.boot_reply is None:
                self.send(sender, self._node_info(""))
            return
        cfg = msg.config
        self.config = cfg
        self.clock = Clock(time_scale=cfg.time_scale, anchor=cfg.clock_anchor)
        self.boot_reply = (sender, msg.resume)
        if cfg.hardware == "sim":
            # The simulated device comes first: the drivers reach it like hardware, on its ports.
            self.hardware = HardwareConfig(hat=SIM_HAT, model=cfg.model)
            self.sim = self.createActor(SimVessel)
            self.send(self.sim, BootDriver(node=cfg, hardware=self.hardware))
        else:
            self._hardware_ready(HardwareConfig(hat=cfg.hardware, model=cfg.model))

    def receiveMsg_SimEndpoints(self, msg: SimEndpoints, _sender: Any) -> None:
        assert self.hardware is not None
        self._hardware_ready(attrs.evolve(self.hardware, pigpio_port=msg.pigpio_port, i2c_port=msg.i2c_port))

    def _hardware_ready(self, hardware: HardwareConfig) -> None:
        assert self.config is not None
        self.hardware = hardware
        for kind in DRIVERS:
            self._start_driver(kind)
        self._start_bridge()
        self._wire()
        self.wakeupAfter(HEALTH_EVERY_SECONDS, payload=("health",))
        log.info("node %s booted (hardware %s, model %s, time_scale %s)", self.config.unit, self.config.hardware, self.config.model, self.config.time_scale)
        if self.boot_reply is not None:
            requester, resume = self.boot_reply
            self.boot_reply = None
            if resume:
                self._resume_jobs()
            else:
                self._save_jobs()
            # The last desired state on disk, without waiting for the broker (the leader may be away).
            self._load_desired()
            self._reconcile("boot")
            self.send(requester, self._node_info(""))

    def _start_driver(self, kind: str) -> None:
        assert self.config is not None and self.hardware is not None
        self.drivers[kind] = self.createActor(DRIVERS[kind])
        self.send(self.drivers[kind], BootDriver(node=self.config, hardware=self.hardware))

    def _wire(self) -> None:
        for address in self.drivers.values():
            self.send(address, Wire(bridge=self.bridge, supervisor=self.myAddress, pwm=self.pwm, sim=self.sim, node=self.config))

    def receiveMsg_DriverFailed(self, msg: DriverFailed, _sender: Any) -> None:
        self.driver_errors[msg.driver] = msg.error
        log.error("%s", msg.error)
        if msg.driver == "sim_vessel" and self.boot_reply is not None:
            requester, _ = self.boot_reply
            self.boot_reply = None
            self.config = None
            self.send(requester, NodeInfo(request_id="", unit=None, version=actors.__version__, pid=os.getpid(), pgid=os.getpgid(0), booted=False))

    def receiveMsg_AdcTrip(self, msg: AdcTrip, _sender: Any) -> None:
        self.send(self.drivers["led"], AllLedsOff(reason=f"{msg.signal} read {msg.volts:.2f} V"))
        record = self.jobs.get("od_reading")
        if record is not None and record.address is not None and record.desired:
            record.desired = False
            record.stopping = True
            self._save_jobs()
            self.send(record.address, ActorExitRequest())

    def _start_bridge(self) -> None:
        assert self.config is not None
        self.bridge = self.createActor(MQTTBridge)
        self.send(self.bridge, Boot(config=self.config, subscribe=self._leader_filters()))
        logs.ship(self, self.bridge, self.config)  # the supervisor's own lines reach the leader too

    # --- jobs that survive the loss of the node ------------------------------------------------------

    def _jobs_file(self) -> str:
        assert self.config is not None
        return os.path.join(self.config.state_dir, "jobs.json")

    def _save_jobs(self) -> None:
        """Keep the wanted jobs and their settings on disk, so a node that was lost comes back as it was."""
        if self.config is None or self.keep_jobs_file:
            return
        wanted = {
            r.name: {"source": r.source, "experiment": r.experiment, "settings": r.settings, "managed": r.managed}
            for r in self.jobs.values()
            if r.desired and r.resumable  # a half-done pump run is not redone after a power cut
        }
        text = json.dumps(wanted, sort_keys=True)
        if text == self._saved:
            return
        atomic_write(self._jobs_file(), text)
        self._saved = text

    def _resume_jobs(self) -> None:
        try:
            with open(self._jobs_file(), encoding="utf-8") as f:
                wanted = json.load(f)
        except (OSError, ValueError):
            return
        for name, spec in sorted(wanted.items()):
            log.info("resuming %s after the node was lost", name)
            record = JobRecord(name=name, source=spec["source"], experiment=spec["experiment"], settings=dict(spec["settings"]))
            record.managed = bool(spec.get("managed", False))
            self.jobs[name] = record
            self._start_job(record)
        self._save_jobs()

    def _node_info(self, request_id: str) -> NodeInfo:
        return NodeInfo(
            request_id=request_id,
            unit=self.config.unit if self.config else None,
            version=actors.__version__,
            pid=os.getpid(),
            pgid=os.getpgid(0),
            booted=self.config is not None and self.boot_reply is None,
        )

    def receiveMsg_Hello(self, msg: Hello, sender: Any) -> None:
        self.send(sender, self._node_info(msg.request_id))

    def receiveMsg_Ping(self, msg: Ping, sender: Any) -> None:
        self.send(sender, Pong(request_id=msg.request_id))

    def receiveMsg_Pong(self, msg: Pong, _sender: Any) -> None:
        kind, _, rest = msg.request_id.partition(":")
        name, _, generation = rest.rpartition(":")
        record = self.jobs.get(name)
        if kind == "health" and record is not None and str(record.generation) == generation:
            record.missed_pings = 0

    def _check_health(self) -> None:
        """A job that stops answering (stuck in a handler) is killed, so its restart policy applies."""
        for record in self.jobs.values():
            if record.address is None or record.stopping:
                continue
            if record.missed_pings >= HEALTH_MISSES and record.pid:
                self._log("ERROR", record, f"{record.name} has not answered for {record.missed_pings * HEALTH_EVERY_SECONDS:.0f} s; killing it")
                record.missed_pings = 0
                try:
                    os.kill(record.pid, 9)
                except ProcessLookupError:
                    pass
                continue
            record.missed_pings += 1
            self.send(record.address, Ping(request_id=f"health:{record.name}:{record.generation}"))

    def receiveMsg_BridgeStatus(self, msg: BridgeStatus, _sender: Any) -> None:
        self.bridge_status = msg

    def receiveMsg_DriverStatus(self, msg: DriverStatus, _sender: Any) -> None:
        self.outputs[msg.driver] = {"outputs": msg.outputs, "owners": msg.owners}

    # --- CLI requests --------------------------------------------------------------------------------

    def _not_booted(self, request_id: str, sender: Any) -> bool:
        if self.config is None or self.boot_reply is not None:
            self.send(sender, Reply(request_id=request_id, ok=False, error="the node is still starting; try again"))
            return True
        return False

    def receiveMsg_RunJob(self, msg: RunJob, sender: Any) -> None:
        if self._not_booted(msg.request_id, sender):
            return
        assert self.config is not None
        known = available_jobs(self.config.plugin_dir)
        source = known.get(msg.job)
        if source is None:
            names = ", ".join(sorted(known))
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error=f"unknown job {msg.job!r}; jobs are: {names}"))
            return
        record = self.jobs.get(msg.job)
        if record is not None and record.desired:
            self.send(
                sender,
                Reply(
                    request_id=msg.request_id,
                    ok=False,
                    error=f"{msg.job} is already running on {self.config.unit} (state {record.state}); "
                    f"change a setting with `pio jobs set {msg.job} <setting> <value>` or stop it with `pio kill {msg.job}`",
                ),
            )
            return
        record = JobRecord(
            name=msg.job,
            source=source,
            experiment=msg.experiment or self.config.experiment,
            settings=dict(msg.settings),
            generation=(record.generation if record else 0),
        )
        record.waiters.append((msg.request_id, sender))
        self.jobs[msg.job] = record
        self._start_job(record)
        self._save_jobs()

    def _start_job(self, record: JobRecord) -> None:
        assert self.config is not None
        record.generation += 1
        record.state = "init"
        record.pid = None
        record.stopping = False
        record.restart_now = False
        record.address = self.createActor(JobHost)
        record.history = record_start(record.history, time.monotonic())
        config = JobConfig(
            job=record.name,
            source=record.source,
            unit=self.config.unit,
            experiment=record.experiment,
            settings=dict(record.settings),
            node=self.config,
            supervisor=self.myAddress,
            bridge=self.bridge,
            drivers=dict(self.drivers),
            generation=record.generation,
        )
        self.send(record.address, StartJob(config=config))

    def receiveMsg_SetJobSetting(self, msg: SetJobSetting, sender: Any) -> None:
        if self._not_booted(msg.request_id, sender):
            return
        record = self._running(msg.job, msg.request_id, sender)
        if record is None:
            return
        self.relays[msg.request_id] = sender
        self.send(record.address, ApplySetting(request_id=msg.request_id, setting=msg.setting, value=msg.value, source="cli"))

    def receiveMsg_SimFault(self, msg: SimFault, sender: Any) -> None:
        if self.sim is None:
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error="this unit is not simulated; fault knobs exist only on sim units"))
            return
        self.relays[msg.request_id] = sender
        self.send(self.sim, msg)

    def receiveMsg_GetSimTruth(self, msg: GetSimTruth, sender: Any) -> None:
        if self.sim is None:
            self.send(sender, Reply(request_id=msg.request_id, ok=False, error="this unit is not simulated"))
            return
        self.relays[msg.request_id] = sender
        self.send(self.sim, msg)

    def receiveMsg_Reply(self, msg: Reply, _sender: Any) -> None:
        requester = self.relays.pop(msg.request_id, None)
        if requester is not None:
            self.send(requester, msg)
            return
        self._reconcile_reply(msg)  # an answer to a planned action or a leader's command

    def _running(self, job: str, request_id: str, sender: Any) -> JobRecord | None:
        record = self.jobs.get(job)
        if record is None or not record.desired or record.address is None:
            running = ", ".join(sorted(n for n, r in self.jobs.items() if r.desired)) or "none"
            assert self.config is not None
            self.send(
                sender,
                Reply(request_id=request_id, ok=False, error=f"no job {job!r} is running on {self.config.unit}; running jobs: {running}"),
            )
            return None
        return record

    def receiveMsg_ListJobs(self, msg: ListJobs, sender: Any) -> None:
        infos = [r.info() for r in sorted(self.jobs.values(), key=lambda r: r.name)]
        self.send(sender, Reply(request_id=msg.request_id, ok=True, result=infos))

    def receiveMsg_GetStatus(self, msg: GetStatus, sender: Any) -> None:
        cfg = self.config
        bridge = self.bridge_status
        status = {
            "unit": cfg.unit if cfg else None,
            "version": actors.__version__,
            "booted": cfg is not None,
            "experiment": cfg.experiment if cfg else None,
            "hardware": cfg.hardware if cfg else None,
            "model": cfg.model if cfg else None,
            "driver_errors": dict(self.driver_errors),
            "time_scale": cfg.time_scale if cfg else None,
            "admin_port": cfg.admin_port if cfg else None,
            "state_dir": cfg.state_dir if cfg else None,
            "supervisor_pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "broker": {
                "address": bridge.broker if bridge else (f"{cfg.broker_host}:{cfg.broker_port}" if cfg else None),
                "connected": bool(bridge and bridge.connected),
                "last_error": bridge.last_error if bridge else None,
            },
            "outbox": bridge.outbox if bridge else {},
            "jobs": {r.name: r.state for r in self.jobs.values()},
            "outputs": self.outputs,
        }
        self.send(sender, Reply(request_id=msg.request_id, ok=True, result=status))

    def receiveMsg_KillJobs(self, msg: KillJobs, sender: Any) -> None:
        if self._not_booted(msg.request_id, sender):
            return
        if msg.job is not None:
            record = self.jobs.get(msg.job)
            if record is None or not (record.desired or record.state == "lost"):
                self._running(msg.job, msg.request_id, sender)  # answers with the error
                return
            if record.address is None:  # waiting for a restart, or lost: nothing to stop
                self._finish(record)
                self.send(sender, Reply(request_id=msg.request_id, ok=True, result=[msg.job]))
                return
            groups = [[msg.job]]
        else:
            groups = self._kill_groups(include_long_running=False)
        self._begin_kill(KillOperation(request_id=msg.request_id, requester=sender, groups=groups))

    def receiveMsg_StopNode(self, msg: StopNode, sender: Any) -> None:
        self.shutting_down = True
        groups = self._kill_groups(include_long_running=True)
        self._begin_kill(KillOperation(request_id=msg.request_id, requester=sender, groups=groups))

    def _kill_groups(self, include_long_running: bool) -> list[list[str]]:
        for record in list(self.jobs.values()):
            if record.address is None:
                self._finish(record)
        live = [r for r in self.jobs.values() if r.address is not None and (include_long_running or not r.long_running)]
        priorities = sorted({r.kill_priority for r in live})
        return [sorted(r.name for r in live if r.kill_priority == p) for p in priorities]

    def _begin_kill(self, op: KillOperation) -> None:
        self.kills[op.request_id] = op
        self._next_kill_group(op)

    def _next_kill_group(self, op: KillOperation) -> None:
        while op.groups and not op.waiting:
            group = op.groups.pop(0)
            for name in group:
                record = self.jobs.get(name)
                if record is None or record.address is None:
                    continue
                record.desired = False
                record.stopping = True
                op.waiting.add(name)
                self.send(record.address, ActorExitRequest())
            self._save_jobs()
            if op.waiting:
                self.wakeupAfter(KILL_GRACE_SECONDS, payload=("kill-timeout", op.request_id, tuple(sorted(op.waiting))))
        if not op.waiting and not op.groups:
            del self.kills[op.request_id]
            self.send(op.requester, Reply(request_id=op.request_id, ok=True, result=op.stopped))

    # --- reports from jobs ---------------------------------------------------------------------------

    def receiveMsg_JobStateReport(self, msg: JobStateReport, _sender: Any) -> None:
        record = self.jobs.get(msg.job)
        if record is None or record.generation != msg.generation:
            return
        record.pid = msg.pid
        record.kill_priority = msg.kill_priority
        record.long_running = msg.long_running
        if record.resumable != msg.resumable:
            record.resumable = msg.resumable
            self._save_jobs()
        if isinstance(msg.restart_policy, RestartPolicy):
            record.policy = msg.restart_policy
        if msg.error is not None:
            if record.waiters or record.generation == 1:
                # It could not even start while a user waits (bad option, broken code, hardware
                # refused): report it now; restarting would fail the same way.
                record.desired = False
                record.stopping = True
                self._save_jobs()
                self._answer_waiters(record, ok=False, error=msg.error)
            return  # a restarted job that fails to start goes through its restart policy
        record.state = msg.state
        if msg.state == "ready":
            self._answer_waiters(record, ok=True)
        elif msg.state == "disconnected" and msg.requested and not record.stopping:
            # Asked to disconnect over MQTT (`$state/set disconnected`): it is not wanted any more.
            record.desired = False
            self._save_jobs()
            record.stopping = True
            self.send(record.address, ActorExitRequest())

    def receiveMsg_SettingsReport(self, msg: SettingsReport, _sender: Any) -> None:
        record = self.jobs.get(msg.job)
        if record is None or record.generation != msg.generation:
            return
        record.values = dict(msg.values)
        record.settings.update(msg.settable)
        record.settable = frozenset(msg.settable)
        self._save_jobs()

    def _answer_waiters(self, record: JobRecord, ok: bool, error: str | None = None) -> None:
        for request_id, requester in record.waiters:
            self.send(requester, Reply(request_id=request_id, ok=ok, error=error, result=record.info() if ok else None))
        record.waiters.clear()

    # --- deaths and restarts -------------------------------------------------------------------------

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, _sender: Any) -> None:
        address = msg.childAddress
        kind = next((k for k, a in self.drivers.items() if a == address), None)
        if self.shutting_down and (kind is not None or address in (self.bridge, self.sim)):
            return
        if kind is not None:
            self._driver_died(kind)
            return
        if address == self.sim and self.sim is not None:
            log.error("the simulated vessel died; its drivers lose their device until the node restarts")
            return
        if address == self.bridge:
            self._bridge_died()
            return
        record = next((r for r in self.jobs.values() if r.address == address), None)
        if record is None:
            return  # duplicates arrive; unknown addresses are ignored
        record.address = None
        self.send(self.pwm, ReleaseOwner(owner=address))
        if record.restart_now and record.desired:
            self._start_job(record)
        elif record.stopping or not record.desired:
            self._finish(record)
        else:
            self._crashed(record)

    def _crashed(self, record: JobRecord) -> None:
        decision = decide_restart(record.policy, record.history, time.monotonic())
        record.history = decision.history
        if decision.restart:
            record.restarts += 1
            self._log("WARNING", record, f"{record.name} exited unexpectedly: {decision.reason}")
            self.wakeupAfter(decision.delay, payload=("restart", record.name, record.generation))
        else:
            record.desired = False
            record.state = "lost"
            self._save_jobs()
            self._log("ERROR", record, f"{record.name} keeps crashing: {decision.reason}. Start it again with `pio run {record.name}`.")
            self._publish_state(record, "lost")
            self._answer_waiters(record, ok=False, error=f"{record.name} crashed while starting; see `pio logs`")

    def _finish(self, record: JobRecord) -> None:
        """A job is gone for good: make the broker say so, answer whoever waits."""
        if record.state not in ("lost", "disconnected"):  # the job could not say so itself
            self._publish_state(record, "disconnected")
        if self.jobs.get(record.name) is record:
            del self.jobs[record.name]
        self._save_jobs()
        self._answer_waiters(record, ok=False, error=f"{record.name} stopped before it was ready; see `pio logs`")
        for op in list(self.kills.values()):
            if record.name in op.waiting:
                op.waiting.discard(record.name)
                op.stopped.append(record.name)
                self._next_kill_group(op)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, _sender: Any) -> None:
        payload = msg.payload
        if not isinstance(payload, tuple):
            return
        if payload[0] == "health":
            self.wakeupAfter(HEALTH_EVERY_SECONDS, payload=("health",))
            self._check_health()
        elif payload[0] == "actual":
            self.actual_pending = False
            self._publish_actual()
        elif payload[0] == "restart":
            _, name, generation = payload
            record = self.jobs.get(name)
            if record is not None and record.desired and record.address is None and record.generation == generation:
                self._start_job(record)
        elif payload[0] == "kill-timeout":
            _, request_id, names = payload
            if request_id in self.kills:
                for name in names:
                    record = self.jobs.get(name)
                    if record is not None and record.address is not None and record.pid:
                        log.warning("%s did not stop within %s s; killing pid %s", name, KILL_GRACE_SECONDS, record.pid)
                        try:
                            os.kill(record.pid, 9)
                        except ProcessLookupError:
                            pass

    def _driver_died(self, kind: str) -> None:
        log.error("the %s driver died; restarting it and the jobs that use it", kind)
        self._start_driver(kind)
        self._wire()
        for record in self.jobs.values():
            if record.address is not None and record.desired:
                record.restart_now = True
                self.send(record.address, ActorExitRequest())

    def _bridge_died(self) -> None:
        log.error("the MQTT bridge died; restarting it")
        self._start_bridge()
        self._wire()
        for record in self.jobs.values():
            if record.address is not None:
                self.send(record.address, BridgeChanged(bridge=self.bridge))

    def receiveMsg_ActorExitRequest(self, _msg: ActorExitRequest, _sender: Any) -> None:
        # Going down without StopNode (a signal, a lost admin): keep jobs.json so the jobs resume.
        self.shutting_down = True
        self.keep_jobs_file = True
        log.info("supervisor stopping")

    # --- publishing ------------------------------------------------------------------------------------

    def _publish_state(self, record: JobRecord, state: str) -> None:
        if self.bridge is None or self.config is None:
            return
        topic = topics.state_topic(self.config.unit, record.experiment, record.name)
        self.send(self.bridge, Publish(topic=topic, payload=state, retain=True, qos=1))

    def _log(self, level: str, record: JobRecord, message: str) -> None:
        log.log(logging.getLevelName(level), message, extra={logs.SHIPPED: True})
        if self.bridge is None or self.config is None:
            return
        import json

        payload = {
            "message": message,
            "level": level,
            "task": record.name,
            "source": "supervisor",
            "timestamp": utc_iso(self.clock.now()),
        }
        topic = topics.log_topic(self.config.unit, record.experiment, "supervisor", level)
        self.send(self.bridge, Publish(topic=topic, payload=json.dumps(payload), qos=1))

    # --- following the desired state, answering the leader's commands (docs/leader.md) ---------------

    def _leader_filters(self) -> tuple[str, ...]:
        assert self.config is not None
        return (topics.desired_topic(self.config.unit), topics.command_topic(self.config.unit))

    def receiveMsg_MqttMessage(self, msg: MqttMessage, _sender: Any) -> None:
        if self.config is None:
            return
        if msg.topic == topics.desired_topic(self.config.unit):
            self._on_desired(msg.payload)  # retained is the point: a node (re)joining learns its state
        elif msg.topic == topics.command_topic(self.config.unit):
            if msg.retain:
                # A command is for now: a retained one is stale whatever its expiry says.
                log.warning("ignored a retained command on %s; commands are never retained", msg.topic)
                return
            self._on_command(msg.payload)

    def _desired_file(self) -> str:
        assert self.config is not None
        return os.path.join(self.config.state_dir, "desired.json")

    def _save_desired(self) -> None:
        """Written before acting on it, atomically, so a power cut leaves the old or the new state."""
        body = {"desired": self.desired.to_json() if self.desired else None, "one_shot": sorted(self.one_shot)}
        atomic_write(self._desired_file(), json.dumps(body, sort_keys=True, indent=1))

    def _load_desired(self) -> None:
        try:
            with open(self._desired_file(), encoding="utf-8") as f:
                body = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.error("cannot read %s (%s); waiting for the leader's desired state", self._desired_file(), e)
            return
        try:
            raw = body.get("desired") if isinstance(body, dict) else None
            self.desired = reconcile.parse_desired(json.dumps(raw) if raw is not None else "")
            self.one_shot = {str(n) for n in body.get("one_shot", [])}
        except (reconcile.DesiredError, AttributeError, TypeError) as e:
            log.error("ignoring %s: %s", self._desired_file(), e)
            return
        if self.desired is not None:
            log.info("following the desired state %s kept on disk (experiment %s)", self.desired.generation, self.desired.experiment)

    def _on_desired(self, payload: str) -> None:
        try:
            desired = reconcile.parse_desired(payload)
        except reconcile.DesiredError as e:
            self.desired_refused = str(e)
            log.error("refused a desired state: %s; still following %s", e, self.desired.generation if self.desired else "none")
            return
        self.desired_refused = None
        if desired is None:
            if self.desired is not None:
                log.info("the desired state was cleared: jobs keep running as they are, no longer managed by the leader")
                for record in self.jobs.values():
                    record.managed = False
                self.desired = None
                self._save_desired()
                self._save_jobs()
            return
        if desired.same_as(self.desired):
            return  # a re-delivery after a reconnect, or a second apply: nothing new to do
        self.desired = desired
        self._save_desired()
        self._reconcile(f"desired state {desired.generation}")

    def _actual_jobs(self) -> dict[str, reconcile.Running]:
        return {
            r.name: reconcile.Running(
                state=r.state,
                experiment=r.experiment,
                settings=dict(r.settings),
                settable=r.settable,
                managed=r.managed,
                long_running=r.long_running,
                one_shot=not r.resumable,
            )
            for r in self.jobs.values()
        }

    def _reconcile(self, reason: str) -> None:
        """Plan against the jobs as they are and act through the same paths as `pio run/kill/jobs set`."""
        if self.desired is None or self.config is None:
            return
        desired = self.desired
        for name in desired.jobs:  # a desired job already running (started by hand) is adopted
            if name in self.jobs:
                self.jobs[name].managed = True
        actions = reconcile.plan(desired, self._actual_jobs(), frozenset(self.one_shot))
        skipped = sorted(self.one_shot & set(desired.jobs))
        if skipped:
            log.warning("not starting %s: one-shot actions are commands (`pios run`), not part of a desired state", ", ".join(skipped))
        if not actions:
            log.info("reconcile (%s): nothing to do", reason)
            self._save_jobs()
            return
        restarts = reconcile.restarts(actions)
        self.reconcile_errors = {j: e for j, e in self.reconcile_errors.items() if j in desired.jobs}
        for action in actions:
            if isinstance(action, reconcile.Stop) and action.job in restarts:
                continue  # done with its Start: one restart of the job
            self._reconcile_log(f"reconcile ({reason}): {reconcile.describe(action)}" + (" (restart)" if action.job in restarts else ""))
            self.reconcile_errors.pop(action.job, None)
            if isinstance(action, reconcile.Start) and action.job in restarts:
                self._restart_with(action.job, dict(action.options), desired.experiment)
                continue
            request_id = f"reconcile-{uuid.uuid4().hex}"
            self.reconcile_requests[request_id] = ("plan", action.job)
            if isinstance(action, reconcile.Start):
                self.receiveMsg_RunJob(
                    RunJob(request_id=request_id, job=action.job, settings=dict(action.options), experiment=desired.experiment), self.myAddress
                )
                record = self.jobs.get(action.job)
                if record is not None and any(rid == request_id for rid, _ in record.waiters):
                    record.managed = True
            elif isinstance(action, reconcile.Stop):
                self.receiveMsg_KillJobs(KillJobs(request_id=request_id, job=action.job), self.myAddress)
            else:
                self.receiveMsg_SetJobSetting(
                    SetJobSetting(request_id=request_id, job=action.job, setting=action.setting, value=action.value), self.myAddress
                )
        self._save_jobs()

    def _restart_with(self, name: str, options: dict[str, str], experiment: str) -> None:
        """A startup option or the experiment changed: the job stops and starts at once with the desired
        options (the path a replaced driver's dependants take), not as a crash."""
        record = self.jobs[name]
        record.settings = options
        record.experiment = experiment
        record.managed = True
        if record.address is None:
            self._start_job(record)
        else:
            record.restart_now = True
            self.send(record.address, ActorExitRequest())

    def _reconcile_reply(self, msg: Reply) -> None:
        entry = self.reconcile_requests.pop(msg.request_id, None)
        if entry is None or self.config is None:
            return
        kind, key = entry
        if kind == "plan":
            if msg.ok:
                self.reconcile_errors.pop(key, None)
            else:
                self.reconcile_errors[key] = msg.error or "failed"
                self._reconcile_log(f"reconcile: {key}: {msg.error}", level="WARNING")
            return
        result = {"id": key, "unit": self.config.unit, "ok": bool(msg.ok), "error": None if msg.ok else (msg.error or "failed")}
        self._publish_result(result)

    def _on_command(self, payload: str) -> None:
        assert self.config is not None
        try:
            command = reconcile.parse_command(payload, time.time())  # real epoch seconds, not the node clock
        except reconcile.CommandError as e:
            log.warning("refused a command: %s", e)
            if e.command_id is not None:
                self._publish_result({"id": e.command_id, "unit": self.config.unit, "ok": False, "error": str(e)})
            return
        if command.id in self.seen_commands:
            return  # QoS 1 may deliver twice; a command runs once
        self.seen_commands.append(command.id)
        log.info("command %s from the leader: %s %s", command.id, command.action, command.job or "--all")
        request_id = f"command-{uuid.uuid4().hex}"
        self.reconcile_requests[request_id] = ("command", command.id)
        if command.action == "run":
            assert command.job is not None
            experiment = command.experiment or (self.desired.experiment if self.desired else None)
            self.receiveMsg_RunJob(
                RunJob(request_id=request_id, job=command.job, settings=dict(command.options), experiment=experiment), self.myAddress
            )
        elif command.action == "kill":
            self.receiveMsg_KillJobs(KillJobs(request_id=request_id, job=command.job), self.myAddress)
        else:
            assert command.job is not None and command.setting is not None and command.value is not None
            self.receiveMsg_SetJobSetting(
                SetJobSetting(request_id=request_id, job=command.job, setting=command.setting, value=command.value), self.myAddress
            )

    def _publish_result(self, result: dict[str, Any]) -> None:
        assert self.config is not None
        if self.bridge is not None:
            self.send(self.bridge, Publish(topic=topics.result_topic(self.config.unit), payload=json.dumps(result), qos=1))

    def _reconcile_log(self, message: str, level: str = "INFO") -> None:
        log.log(logging.getLevelName(level), message, extra={logs.SHIPPED: True})
        if self.bridge is None or self.config is None:
            return
        experiment = self.desired.experiment if self.desired else topics.NO_EXPERIMENT
        payload = {"message": message, "level": level, "task": "reconcile", "source": "supervisor", "timestamp": utc_iso(self.clock.now())}
        self.send(self.bridge, Publish(topic=topics.log_topic(self.config.unit, experiment, "supervisor", level), payload=json.dumps(payload), qos=1))

    def _actual_soon(self, message: Any) -> None:
        """Look at `$node/actual` at most every ACTUAL_EVERY_SECONDS: at a fast clock a busy job reports
        its settings hundreds of times a second, and each would otherwise rebuild the view."""
        if self.actual_pending or self.config is None:
            return
        if isinstance(message, WakeupMessage) and message.payload == ("actual",):
            return
        self.actual_pending = True
        self.wakeupAfter(ACTUAL_EVERY_SECONDS, payload=("actual",))

    def _publish_actual(self) -> None:
        """The node's view against its desired state, retained, whenever it changes (`pios status`)."""
        if self.config is None or self.bridge is None or self.boot_reply is not None:
            return
        try:
            desired = self.desired
            for record in self.jobs.values():  # a desired one-shot job: remember it, never start it again
                if desired is not None and not record.resumable and record.name in desired.jobs and record.name not in self.one_shot:
                    log.warning("%s is a one-shot action; the desired state cannot keep it running", record.name)
                    self.one_shot.add(record.name)
                    self._save_desired()
            actual = self._actual_jobs()
            wanted = desired.jobs if desired else {}
            body = {
                "unit": self.config.unit,
                "generation": desired.generation if desired else None,
                "experiment": desired.experiment if desired else None,
                "in_sync": reconcile.in_sync(desired, actual, frozenset(self.one_shot)),
                "jobs": {
                    r.name: {
                        "state": r.state,
                        "experiment": r.experiment,
                        "managed": r.managed,
                        "settings": {k: r.settings.get(k) for k in sorted(wanted.get(r.name, {}))},
                    }
                    for r in sorted(self.jobs.values(), key=lambda r: r.name)
                },
                "errors": dict(sorted(self.reconcile_errors.items())),
                "refused": self.desired_refused,
            }
            text = json.dumps(body, sort_keys=True)
            if text == self._actual_text:
                return
            self._actual_text = text
            body["timestamp"] = utc_iso(self.clock.now())
            self.send(self.bridge, Publish(topic=topics.actual_topic(self.config.unit), payload=json.dumps(body, sort_keys=True), retain=True, qos=1))
        except Exception:
            log.exception("cannot publish the node's actual state")
