"""The job host: the actor (one OS process) that runs one job.

It gives the job its :class:`~actors.job.JobContext`, owns the job's lifecycle state (from the table in
:mod:`actors.lifecycle`), casts and validates `/set` requests against the job's declared settings, and
publishes state and settings through the bridge.

Fresh code at each start: Thespian's admin keeps the modules it imported, and every actor process is
forked from its parent with the parent's modules. So the host drops the job's modules from
``sys.modules`` and imports the job's source again, in its own new process, before building the job.
An edited job or automation file, or a new drop-in plugin, is picked up by the next ``pio run``.

If a job's code raises, the host logs it and exits; the supervisor sees the exit and applies its
restart policy. No job limps on with half-updated state.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
import traceback
import uuid
from typing import Any, Callable

from thespian.actors import ActorExitRequest, ActorTypeDispatcher, WakeupMessage

from actors import logs, lifecycle, topics
from actors.clock import Clock, Ticker, utc_iso
from actors.job import Job
from actors.lifecycle import State
from actors.messages import (
    AcquireChannel,
    AdcReading,
    ApplySetting,
    BridgeChanged,
    HallEdges,
    JobConfig,
    JobStateReport,
    MqttMessage,
    Ping,
    Pong,
    Publish,
    PublishMany,
    Published,
    ReadAdc,
    ReadHallEdges,
    ReadTemperature,
    ReleaseChannel,
    RenewLease,
    Reply,
    SetDuty,
    SetLed,
    SettingsReport,
    StartJob,
    Subscribe,
    Unsubscribe,
)
from actors.settings import Setting, SettingError, check_settable, index

log = logs.get("job")

LEASE_RENEW_SECONDS = 2.0  # real seconds; the PWM driver zeroes a channel after 10 s of silence

# Framework modules keep their identity across reloads (message classes, the job base); everything
# else of ours is imported fresh in each job process.
_FRAMEWORK = {
    "actors",
    "actors.messages",
    "actors.job",
    "actors.job_host",
    "actors.settings",
    "actors.lifecycle",
    "actors.clock",
    "actors.topics",
    "actors.actor_system",
    "actors.supervision",
    "actors.logs",
}
_OURS = ("actors.", "worker.", "leader.")


def load_job_class(source: str, job_name: str) -> type[Job]:
    """Import ``source`` fresh and return the Job subclass it names."""
    own = source.partition(":")[0] if not source.startswith("file:") else None
    for name in list(sys.modules):
        fresh = name.startswith(_OURS) and name not in _FRAMEWORK
        plugin = name.startswith("pioactors_plugin_") or (own is not None and (name == own or name.startswith(own + ".")))
        if fresh or plugin:
            del sys.modules[name]
    importlib.invalidate_caches()
    if source.startswith("file:"):
        path = source[len("file:"):]
        mod_name = "pioactors_plugin_" + job_name
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        candidates = [
            v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Job) and v is not Job and v.name == job_name
        ]
        if not candidates:
            raise ImportError(f"{path} defines no Job subclass with name = {job_name!r}")
        return candidates[0]
    module_name, _, class_name = source.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise ImportError(f"{source} is not a Job subclass")
    return cls


def initial_values(specs: dict[str, Setting], raw: dict[str, str]) -> dict[str, Any]:
    """Defaults overlaid with the given text values, each cast and checked; unknown names refused."""
    values = {name: spec.default for name, spec in specs.items()}
    for name, text in raw.items():
        # Setting names are lowercase; options need not be (the reference's `led_intensity --A 50`).
        spec = specs.get(name) or specs.get(name.lower())
        if spec is None or not (spec.settable or spec.startup):
            known = ", ".join(s.option for s in specs.values() if s.settable or s.startup) or "none"
            raise SettingError(f"unknown option --{name.replace('_', '-')}; options are: {known}")
        values[spec.name] = spec.parse(text)
    return values


SYNC_ACK = "$stop-sync"
SYNC_TIMEOUT_S = 10.0

class JobHost(ActorTypeDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: JobConfig | None = None
        self.job: Job | None = None
        self.outgoing: list[Publish] = []  # this handler's publications, sent together by _flush
        self.exiting = False
        self.report_after_sync: bool | None = None  # a self-stop's `requested`, reported once the bridge confirms
        self.specs: dict[str, Setting] = {}
        self.values: dict[str, Any] = {}
        self.state = State.INIT
        self.clock = Clock()
        self.unit = self.experiment = self.job_name = ""
        self.bridge: Any = None
        self.timers: dict[str, tuple[int, Callable[[], None], Ticker | None]] = {}
        self.timer_gen = 0
        self.pending: dict[str, Callable[[Any], None]] = {}
        self.held: dict[str, set[str]] = {}  # driver -> channels
        self.subscriptions: list[tuple[str, Callable[[str, str], None], bool]] = []  # filter, callback, retained too
        self.crashed = False
        self.stopped = False

    # --- dispatch with the crash rule -------------------------------------------------------------

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        if self.crashed and not isinstance(message, ActorExitRequest):
            return None
        try:
            return super().receiveMessage(message, sender)
        except Exception:
            self._crash(f"error while handling {type(message).__name__}:\n{traceback.format_exc()}")
            return None
        finally:
            self._flush()

    def _out(self, publish: Publish) -> None:
        self.outgoing.append(publish)

    def _flush(self, ack: str | None = None) -> None:
        """Everything one handler published goes to the bridge as one message, in order: a reading's
        several topics cost one actor message, and a burst cannot pile up thousands of queued sends
        (past ~950 Thespian blocks the sender, and timers were seen to stall)."""
        if (not self.outgoing and ack is None) or self.bridge is None:
            self.outgoing.clear()
            return
        batch, self.outgoing = self.outgoing, []
        if ack is None and len(batch) == 1:
            self.send(self.bridge, batch[0])
        else:
            self.send(self.bridge, PublishMany(items=tuple(batch), ack=ack))

    def receiveMsg_Published(self, msg: Published, _sender: Any) -> None:
        if msg.ack == SYNC_ACK:
            self._report_after_sync()

    def _report_after_sync(self) -> None:
        if self.report_after_sync is None:
            return
        requested, self.report_after_sync = self.report_after_sync, None
        self._report_state(requested=requested)

    def _crash(self, reason: str) -> None:
        if self.crashed:
            return
        self.crashed = True
        summary = reason.strip().splitlines()[-1] if reason.strip() else "unknown error"
        log.error("%s crashed: %s", self.job_name or "job", reason)
        self.log("ERROR", f"{self.job_name} crashed: {summary}")
        if self.state == State.INIT and self.config is not None:
            self._report_state(error=summary)  # it never became ready: whoever waits on `pio run` hears why
        self.send(self.myAddress, ActorExitRequest())

    # --- start ------------------------------------------------------------------------------------

    def receiveMsg_StartJob(self, msg: StartJob, sender: Any) -> None:
        cfg = msg.config
        self.config = cfg
        self.unit, self.experiment, self.job_name = cfg.unit, cfg.experiment, cfg.job
        self.bridge = cfg.bridge
        self.clock = Clock(time_scale=cfg.node.time_scale, anchor=cfg.node.clock_anchor)
        try:
            cls = load_job_class(cfg.source, cfg.job)
            self.specs = index(cls.settings_for(cfg.settings, cfg.node))
            self.values = initial_values(self.specs, cfg.settings)
            cls.check(self.values, cfg.node)
        except Exception as e:  # a bad option or broken job code: report, then leave
            error = str(e) if isinstance(e, (SettingError, ImportError)) else f"{type(e).__name__}: {e}"
            self._report_state(error=error)
            self.stopped = True
            self.send(self.myAddress, ActorExitRequest())
            return
        self.kill_priority = cls.kill_priority
        self.long_running = cls.long_running
        self.restart_policy = cls.restart_policy
        self.resumable = cls.resumable
        self._report_state()  # init: tells the supervisor the job's kill order and restart policy
        self._publish_state()
        self.send(self.bridge, Subscribe(filters=self._set_filters()))
        self.job = cls(self)
        for name in self.specs:
            self._publish_setting(name)
        self._report_settings()
        self.every(LEASE_RENEW_SECONDS * self.clock.time_scale, self._renew_leases, "$lease")
        self.job.start()

    def _set_filters(self) -> tuple[str, ...]:
        return (
            topics.job_topic(self.unit, self.experiment, self.job_name, "+/set"),
            topics.job_topic(topics.BROADCAST, self.experiment, self.job_name, "+/set"),
        )

    # --- JobContext -------------------------------------------------------------------------------

    def ready(self) -> None:
        if self.state == State.INIT:
            self._transition(State.READY)

    def update(self, name: str, value: Any) -> None:
        if name not in self.specs:
            raise KeyError(f"{self.job_name} has no setting {name!r}")
        if self.values.get(name) == value:
            return
        self.values[name] = value
        self._publish_setting(name)
        self._report_settings()

    def publish(self, attr: str, payload: Any, retain: bool = False, qos: int = 0) -> None:
        topic = topics.job_topic(self.unit, self.experiment, self.job_name, attr)
        self._out(Publish(topic=topic, payload=topics.encode(payload), retain=retain, qos=qos))

    def publish_topic(self, topic: str, payload: Any, retain: bool = False, qos: int = 0) -> None:
        """A record outside the job's own topics (``dosing_events``, ``bioreactor/...``): local
        subscribers get it at once, the broker when connected."""
        self._out(Publish(topic=topic, payload=topics.encode(payload), retain=retain, qos=qos))

    def log(self, level: str, message: str) -> None:
        level = level.upper()
        log.log(logging.getLevelName(level) if level != "NOTICE" else logging.INFO, "%s: %s", self.job_name, message)
        if self.bridge is None or level == "DEBUG":
            return
        now = utc_iso(self.clock.now())
        payload = {"message": message, "level": level, "task": self.job_name, "source": "app", "timestamp": now}
        topic = topics.log_topic(self.unit, self.experiment, "app", level)
        self._out(Publish(topic=topic, payload=json.dumps(payload), qos=1))

    def subscribe(self, topic_filter: str, callback: Callable[[str, str], None], retained: bool = True) -> None:
        """Data from other jobs: delivered by the bridge from local publishers (even with the broker
        down) and from the broker (other nodes). ``retained=False`` skips the retained value replayed
        on subscribing: a controller must not act on a reading taken before it started."""
        self.subscriptions.append((topic_filter, callback, retained))
        self.send(self.bridge, Subscribe(filters=(topic_filter,)))

    @property
    def node(self) -> Any:
        assert self.config is not None
        return self.config.node

    def topic(self, job: str, attr: str) -> str:
        """A topic of another job on this unit and experiment."""
        return topics.job_topic(self.unit, self.experiment, job, attr)

    def after(self, sim_seconds: float, callback: Callable[[], None], name: str | None = None) -> str:
        name = name or f"$once-{uuid.uuid4().hex[:8]}"
        self.timer_gen += 1
        self.timers[name] = (self.timer_gen, callback, None)
        self.wakeupAfter(self.clock.real_delay(sim_seconds), payload=(name, self.timer_gen))
        return name

    def every(self, sim_seconds: float, callback: Callable[[], None], name: str) -> str:
        self.timer_gen += 1
        ticker = Ticker(self.clock.real_delay(sim_seconds), start=_monotonic())
        self.timers[name] = (self.timer_gen, callback, ticker)
        self.wakeupAfter(ticker.next_delay(_monotonic()), payload=(name, self.timer_gen))
        return name

    def cancel(self, name: str) -> None:
        self.timers.pop(name, None)

    def acquire(self, driver: str, channel: str, callback: Callable[[bool, str | None], None]) -> None:
        assert self.config is not None
        address = self.config.drivers.get(driver)
        if address is None:
            callback(False, f"this node has no {driver} driver")
            return

        def done(reply: Reply) -> None:
            if reply.ok:
                self.held.setdefault(driver, set()).add(channel)
            callback(reply.ok, reply.error)

        request_id = self._expect(done)
        self.send(address, AcquireChannel(request_id=request_id, channel=channel, owner=self.job_name))

    def set_duty(self, channel: str, duty: float, seconds: float | None = None) -> None:
        assert self.config is not None
        self.send(self.config.drivers["pwm"], SetDuty(channel=channel, duty=float(duty), seconds=seconds))

    def request(self, driver: str, build: Callable[[str], Any], callback: Callable[[Any], None]) -> None:
        """Send ``build(request_id)`` to a driver; ``callback`` gets its reply (Reply, AdcReading, ...)."""
        assert self.config is not None
        address = self.config.drivers.get(driver)
        if address is None:
            raise KeyError(f"this node has no {driver} driver")
        self.send(address, build(self._expect(callback)))

    def read_adc(
        self, signals: tuple[str, ...], callback: Callable[[dict[str, float], float, str | None], None], samples: int = 1
    ) -> None:
        self.request("adc", lambda rid: ReadAdc(request_id=rid, signals=tuple(signals), samples=samples), lambda r: callback(r.volts, r.at, r.error))

    def set_led(self, channel: str, intensity: float, callback: Callable[[bool, str | None], None] | None = None) -> None:
        self.request("led", lambda rid: SetLed(request_id=rid, channel=channel, intensity=float(intensity)),
                     lambda r: callback(r.ok, r.error) if callback else None)

    def read_temperature(self, callback: Callable[[float | None, str | None], None]) -> None:
        self.request("temperature", lambda rid: ReadTemperature(request_id=rid), lambda r: callback(r.result, r.error))

    def read_hall_edges(self, callback: Callable[[int, float], None]) -> None:
        assert self.config is not None
        request_id = self._expect(lambda reply: callback(reply.edges, reply.at))
        self.send(self.config.drivers["pwm"], ReadHallEdges(request_id=request_id))

    def stop(self) -> None:
        """The job is done (a one-shot action): disconnect, as if a user had asked for it."""
        if self.state not in (State.DISCONNECTED, State.LOST):
            self._transition(State.DISCONNECTED, requested=True)

    def sleep(self) -> None:
        """The job puts itself to sleep (a dosing automation at max fill): outputs safe until woken."""
        if self.state == State.READY:
            self._transition(State.SLEEPING)

    def fail(self, reason: str) -> None:
        """A job that cannot go on (hardware refused, impossible state) exits; the supervisor decides."""
        self._crash(reason)

    # --- messages ---------------------------------------------------------------------------------

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, _sender: Any) -> None:
        if msg.payload == SYNC_ACK:  # the bridge did not confirm in time (it was restarting): go on
            self._report_after_sync()
            return
        if not isinstance(msg.payload, tuple) or self.stopped:
            return
        name, gen = msg.payload
        entry = self.timers.get(name)
        if entry is None or entry[0] != gen:
            return  # cancelled or re-armed since
        _, callback, ticker = entry
        if ticker is None:
            del self.timers[name]
        else:  # re-arm first, so a failing callback cannot end the chain
            self.wakeupAfter(ticker.next_delay(_monotonic()), payload=(name, gen))
        if self.state in (State.READY, State.INIT) or name == "$lease":
            callback()

    def receiveMsg_Ping(self, msg: Ping, sender: Any) -> None:
        self.send(sender, Pong(request_id=msg.request_id))

    def receiveMsg_Reply(self, msg: Reply, _sender: Any) -> None:
        callback = self.pending.pop(msg.request_id, None)
        if callback is not None:
            callback(msg)

    def receiveMsg_AdcReading(self, msg: AdcReading, _sender: Any) -> None:
        callback = self.pending.pop(msg.request_id, None)
        if callback is not None:
            callback(msg)

    def receiveMsg_HallEdges(self, msg: HallEdges, _sender: Any) -> None:
        callback = self.pending.pop(msg.request_id, None)
        if callback is not None:
            callback(msg)

    def receiveMsg_MqttMessage(self, msg: MqttMessage, _sender: Any) -> None:
        request = topics.parse_set_topic(msg.topic)
        if request is not None and (request.job == self.job_name or msg.retain):
            # A retained /set is a stale command, never applied (as in the reference), whoever it is for.
            if not msg.retain:
                self._apply(ApplySetting(request_id="", setting=request.attr, value=msg.payload, source="mqtt"))
            return
        # Another job's /set (the monitor's `bioreactor/<field>/set`) reaches the job's own subscription.
        if self.state not in (State.READY, State.INIT) or msg.payload == "":
            return
        for topic_filter, callback, retained in self.subscriptions:
            if topics.matches(topic_filter, msg.topic) and (retained or not msg.retain):
                callback(msg.topic, msg.payload)

    def receiveMsg_ApplySetting(self, msg: ApplySetting, sender: Any) -> None:
        ok, error, value = self._apply(msg)
        self.send(sender, Reply(request_id=msg.request_id, ok=ok, error=error, result=value))

    def receiveMsg_BridgeChanged(self, msg: BridgeChanged, _sender: Any) -> None:
        self.bridge = msg.bridge
        self.send(self.bridge, Subscribe(filters=self._set_filters() + tuple(f for f, _, _ in self.subscriptions)))
        self._publish_state()
        for name in self.specs:
            self._publish_setting(name)

    def receiveMsg_ActorExitRequest(self, _msg: ActorExitRequest, _sender: Any) -> None:
        self.exiting = True
        if self.job is not None and not self.crashed and self.state not in (State.DISCONNECTED, State.LOST):
            self._transition(State.DISCONNECTED)
        elif self.job is not None and self.crashed:
            try:
                self.job.on_stop()
            except Exception:
                log.exception("%s: on_stop failed while crashing", self.job_name)
        self._release_all()
        if self.bridge is not None and self.job is not None:
            if not self.crashed:
                for name, spec in self.specs.items():
                    if not spec.persist:
                        topic = topics.job_topic(self.unit, self.experiment, self.job_name, name)
                        self._out(Publish(topic=topic, payload="", retain=True, qos=1))
            self.send(self.bridge, Unsubscribe())
        self.stopped = True

    # --- internals ---------------------------------------------------------------------------------

    def _apply(self, msg: ApplySetting) -> tuple[bool, str | None, Any]:
        if msg.setting in (topics.STATE, "state"):
            return self._apply_state(msg)
        try:
            spec = check_settable(self.specs, msg.setting.lstrip("$"))
            value = spec.parse(msg.value)
            if self.state == State.DISCONNECTED:
                raise SettingError("the job is disconnected")
            hook = getattr(self.job, "apply_" + spec.name, None)
            old = self.values.get(spec.name)
            value = hook(value) if hook is not None else self.job.apply_setting(spec.name, value)
            self.update(spec.name, value)
        except SettingError as e:
            self.log("WARNING", f"refused {msg.setting}={msg.value!r} from {msg.source}: {e}")
            return False, str(e), None
        unit = f" {spec.unit}" if spec.unit else ""
        self.log("INFO", f"Updated {spec.name} from {old}{unit} to {value}{unit}.")
        return True, None, value

    def _apply_state(self, msg: ApplySetting) -> tuple[bool, str | None, Any]:
        requested = msg.value.strip()
        reason = lifecycle.refusal(self.state, requested)
        if reason is not None:
            self.log("WARNING", f"refused $state={requested!r} from {msg.source}: {reason}")
            return False, reason, None
        new = State(requested)
        if new != self.state:
            self._transition(new, requested=True)
        return True, None, new.value

    def _transition(self, new: State, requested: bool = False) -> None:
        old = self.state
        if not lifecycle.can_transition(old, new):
            return
        self.state = new
        assert self.job is not None
        hook = {State.SLEEPING: self.job.on_sleep, State.DISCONNECTED: self.job.on_stop}.get(new)
        if old == State.SLEEPING and new == State.READY:
            hook = self.job.on_wake
        if hook is not None:
            try:
                hook()
            except Exception:
                # A failing hook is logged and does not stop the transition (reference behaviour).
                log.exception("%s: %s -> %s hook failed", self.job_name, old, new)
        self._publish_state()
        if new == State.DISCONNECTED and not self.exiting and self.bridge is not None:
            # A job that ends by itself (a finished dose): what it published must be in the bridge's
            # hands (its outbox) before the supervisor hears it is done and ends its process.
            self.log("INFO", f"{new.value}.")
            self.report_after_sync = requested
            self._flush(ack=SYNC_ACK)
            self.wakeupAfter(SYNC_TIMEOUT_S, payload=SYNC_ACK)
            return
        self._report_state(requested=requested)
        if new in (State.READY, State.DISCONNECTED):
            self.log("INFO", f"{new.value}.")

    def _publish_state(self) -> None:
        topic = topics.state_topic(self.unit, self.experiment, self.job_name)
        self._out(Publish(topic=topic, payload=self.state.value, retain=True, qos=1))

    def _publish_setting(self, name: str) -> None:
        value = self.values.get(name)
        if value is None:
            return
        topic = topics.job_topic(self.unit, self.experiment, self.job_name, name)
        self._out(Publish(topic=topic, payload=topics.encode(value), retain=True, qos=1))

    def _report_state(self, error: str | None = None, requested: bool = False) -> None:
        assert self.config is not None
        self.send(
            self.config.supervisor,
            JobStateReport(
                job=self.job_name,
                generation=self.config.generation,
                state=self.state.value,
                pid=os.getpid(),
                kill_priority=getattr(self, "kill_priority", 3),
                long_running=getattr(self, "long_running", False),
                restart_policy=getattr(self, "restart_policy", None),
                resumable=getattr(self, "resumable", True),
                requested=requested,
                error=error,
            ),
        )

    def _report_settings(self) -> None:
        assert self.config is not None
        settable = {n: topics.encode(v) for n, v in self.values.items() if self.specs[n].settable and v is not None}
        values = {n: v for n, v in self.values.items() if v is not None}
        self.send(
            self.config.supervisor,
            SettingsReport(job=self.job_name, generation=self.config.generation, values=values, settable=settable),
        )

    def _expect(self, callback: Callable[[Any], None]) -> str:
        request_id = uuid.uuid4().hex
        self.pending[request_id] = callback
        return request_id

    def _renew_leases(self) -> None:
        assert self.config is not None
        for driver in self.held:
            self.send(self.config.drivers[driver], RenewLease())

    def _release_all(self) -> None:
        if self.config is None:
            return
        for driver, channels in self.held.items():
            for channel in channels:
                self.send(self.config.drivers[driver], ReleaseChannel(channel=channel))
        self.held.clear()


def _monotonic() -> float:
    import time

    return time.monotonic()
