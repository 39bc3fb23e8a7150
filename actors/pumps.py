"""The pump actions: ``add_media``, ``add_alt_media``, ``remove_waste``, ``circulate_media``,
``circulate_alt_media``. One-shot jobs: each runs its pump(s), publishes dosing events, and stops.

Reference behaviour (pioreactor.md §3.1): exactly one of ``--ml``, ``--duration`` (s) or ``--continuously``;
``--source-of-event`` (default ``CLI``). ``--ml`` and continuous inflow need a real pump calibration; the
default one is fine for ``--duration``. Dosing events ``{volume_change, event, source_of_event,
timestamp}`` go to ``dosing_events`` (QoS 1, not retained) per 0.5 s of pumping, so a pump stopped midway
(``$state/set disconnected``, ``pio kill``) has published exactly what it moved. Continuous inflow follows
the vial's books and stops at the model's max fill.

The arithmetic (which run a request means, the chunks, the circulation pulses) is in
:mod:`actors.pump_run`; this module wires it to the node clock, the PWM driver and the bridge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from actors import topics
from actors.calibration_store import CalibrationStore
from actors.calibrations import PUMP_BY_CHANNEL, PumpCalibration
from actors.clock import utc_iso
from actors.job import PUMPS, Job, JobContext
from actors.messages import NodeConfig
from actors.pump_run import (
    ADDING_EVENTS,
    CHUNK_SECONDS,
    DEFAULT_SOURCE_OF_EVENT,
    CirculationPlan,
    Ledger,
    PumpPlan,
    inflow_seconds_left,
    media_fraction,
    ml_per_second,
    plan_pump_action,
    projected_volume,
)
from actors.settings import Setting, SettingError
from actors.supervision import RestartPolicy

BOOKS_WAIT_REAL_SECONDS = 3.0
"""How long continuous inflow waits for the vial's retained volume before refusing (real seconds)."""
NO_RESTART = RestartPolicy(max_restarts=0)
"""A pump action that crashed must not run again by itself: it would dose its whole request twice."""


def _one_line(error: Exception) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def load_pump_calibration(node: NodeConfig, device: str) -> PumpCalibration:
    """The active calibration of ``device`` (the default stand-in if none), or a one-line SettingError
    naming the file, the line and what to fix when the file is malformed."""
    try:
        return CalibrationStore.for_node(node.state_dir).pump(device)
    except ValueError as e:  # CalibrationFileError, CalibrationStoreError, CalibrationError
        raise SettingError(f"cannot use the calibration of {device}: {_one_line(e)}") from None


def max_fill_ml(node: NodeConfig) -> float:
    from actors.hardware.hardware_access import node_description

    return node_description(node).vessel.max_fill_ml


def _busy(channel: str, device: str, error: str | None) -> str:
    owner = (error or "").rpartition(" held by ")[2]
    hint = f"; wait for it to finish or stop it with `pio kill {owner}`" if " held by " in (error or "") else ""
    return f"cannot run the {device}: {error}{hint}"


class PumpAction(Job):
    """One pump, one run. Subclasses name the device, the PWM channel and the dosing event."""

    device: ClassVar[str] = ""
    channel: ClassVar[str] = ""
    event: ClassVar[str] = ""
    kill_priority = PUMPS
    restart_policy = NO_RESTART
    resumable = False  # a one-shot action: never redone after a power cut
    settings = (
        Setting(name="ml", datatype="float", startup=True, unit="ml", minimum=0, description="volume to move"),
        Setting(name="duration", datatype="float", startup=True, unit="s", minimum=0, description="seconds to run"),
        Setting(name="continuously", datatype="boolean", startup=True, default=False, description="run until stopped"),
        Setting(name="source_of_event", datatype="string", startup=True, default=DEFAULT_SOURCE_OF_EVENT),
        Setting(
            name="duty_cycle", datatype="float", startup=True, unit="%", minimum=0, maximum=100,
            description="override the calibration's duty (with --duration only; calibration runs use it)",
        ),
    )

    @classmethod
    def plan(cls, values: Mapping[str, Any], node: NodeConfig) -> PumpPlan:
        cal = load_pump_calibration(node, cls.device)
        try:
            return plan_pump_action(
                device=cls.device,
                event=cls.event,
                cal=cal,
                max_fill_ml=max_fill_ml(node),
                ml=values.get("ml"),
                duration=values.get("duration"),
                continuously=bool(values.get("continuously")),
                source_of_event=values.get("source_of_event") or DEFAULT_SOURCE_OF_EVENT,
                duty_cycle=values.get("duty_cycle"),
            )
        except ValueError as e:
            raise SettingError(_one_line(e)) from None

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        cls.plan(values, node)

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.run = self.plan(ctx.values, ctx.node)
        self.ledger = Ledger(self.run)
        self.max_fill = max_fill_ml(ctx.node)
        self.follows_books = self.run.mode == "continuously" and self.event in ADDING_EVENTS
        self.start_books: float | None = None
        self.latest_books: float | None = None
        self.waiting_for_books = False
        self.started_at: float | None = None
        self.running = False
        self.end_scheduled = False

    # --- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.follows_books:
            self.ctx.acquire("pwm", self.channel, self._acquired)
            return
        # Continuous inflow stops at max fill by the books: it needs them before it pumps anything.
        self.waiting_for_books = True
        books = topics.bioreactor_topic(self.ctx.unit, self.ctx.experiment, "current_volume_ml")
        self.ctx.subscribe(books, self._on_books)
        self.ctx.after(BOOKS_WAIT_REAL_SECONDS * self.ctx.node.time_scale, self._no_books, name="books")

    def _on_books(self, _topic: str, payload: str) -> None:
        try:
            value = float(payload)
        except ValueError:
            return
        self.latest_books = value
        if self.waiting_for_books:
            self.waiting_for_books = False
            self.ctx.cancel("books")
            self.start_books = value
            if value >= self.max_fill:
                self.ctx.fail(
                    f"refusing continuous {self.event}: the vial is at {value:g} ml by the books, at or above its "
                    f"max fill of {self.max_fill:g} ml; remove waste first"
                )
                return
            self.ctx.acquire("pwm", self.channel, self._acquired)

    def _no_books(self) -> None:
        if self.waiting_for_books:
            self.waiting_for_books = False
            books = topics.bioreactor_topic(self.ctx.unit, self.ctx.experiment, "current_volume_ml")
            self.ctx.fail(
                f"refusing continuous {self.event}: the vial's volume is unknown (nothing retained on {books}), so "
                "nothing would stop it at the max fill; start the monitor job (it keeps the books) or use --ml/--duration"
            )

    def _acquired(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.fail(_busy(self.channel, self.device, error))
            return
        self.started_at = self.ctx.clock.now()
        self.running = True
        if self.ledger.end == 0:  # nothing to move: never switch the pump on
            self.ctx.ready()
            self._finish()
            return
        self.ctx.set_duty(self.channel, self.run.duty, seconds=self._run_seconds())
        self.ctx.ready()
        if self.ledger.end is not None:
            self._schedule_end(self.ledger.end)
        self.ctx.every(CHUNK_SECONDS, self._tick, "chunks")

    # --- running -------------------------------------------------------------------------------------

    def _on_seconds(self) -> float:
        assert self.started_at is not None
        return max(0.0, self.ctx.clock.now() - self.started_at)

    def _run_seconds(self) -> float | None:
        """The run's length to announce with every duty write: the driver caps the pump at 1.5x of it (at
        most 60 s after the last write, so a hung job stops), and a simulated pump holds the run to exactly
        this length of simulated time. Unknown (None) while a continuous run has no end yet."""
        return self.ledger.end

    def _schedule_end(self, end: float) -> None:
        self.end_scheduled = True
        self.ctx.after(max(0.0, end - (self._on_seconds() if self.started_at is not None else 0.0)), self._finish, name="end")

    def _tick(self) -> None:
        if not self.running:
            return
        on = self._on_seconds()
        self._publish(self.ledger.due(on))
        if self.ledger.end is not None and on >= self.ledger.end:
            self._finish()
            return
        if self.follows_books and not self.end_scheduled:
            assert self.start_books is not None
            projected = projected_volume(self.start_books, self.latest_books, self.run.volume_at(on))
            left = inflow_seconds_left(projected, self.max_fill, self.run.rate)
            if left <= CHUNK_SECONDS:
                self.ledger.end = on + left
                self.ctx.log("INFO", f"continuous {self.event} stops: the vial reaches its max fill of {self.max_fill:g} ml")
                self._schedule_end(self.ledger.end)
        # Re-written every chunk: it re-arms the driver's on-time cap, so runs past 60 s are not cut short.
        self.ctx.set_duty(self.channel, self.run.duty, seconds=self._run_seconds())

    def _finish(self) -> None:
        if not self.running:
            return
        self.running = False
        self.ctx.set_duty(self.channel, 0.0)
        self._publish(self.ledger.finish())
        self.ctx.cancel("chunks")
        self.ctx.stop()

    def _publish(self, chunks: list[float]) -> None:
        if not chunks:
            return
        topic = topics.dosing_events_topic(self.ctx.unit, self.ctx.experiment)
        stamp = utc_iso(self.ctx.clock.now())
        for ml in chunks:
            payload = {"volume_change": ml, "event": self.event, "source_of_event": self.run.source_of_event, "timestamp": stamp}
            self.ctx.publish_topic(topic, payload, qos=1)

    # --- stopping ------------------------------------------------------------------------------------

    def on_sleep(self) -> None:
        # A pump action cannot pause and resume safely (the books would move under it): sleeping ends it.
        self.on_stop()
        self.ctx.stop()

    def on_stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.ctx.set_duty(self.channel, 0.0)  # off first: the publishing can wait a millisecond, the pump cannot
        self._publish(self.ledger.stop(self._on_seconds()))


def _names(channel: str) -> tuple[str, str, str]:
    pump = PUMP_BY_CHANNEL[channel]
    return pump.device, pump.channel, pump.event


class AddMedia(PumpAction):
    name = "add_media"
    device, channel, event = _names("media")


class AddAltMedia(PumpAction):
    name = "add_alt_media"
    device, channel, event = _names("alt_media")


class RemoveWaste(PumpAction):
    name = "remove_waste"
    device, channel, event = _names("waste")


class Circulate(Job):
    """Waste runs for ``--duration`` s while media is pulsed (0.85 s of each second by default), so the
    level stays at the efflux tube while the liquid is exchanged."""

    media_device: ClassVar[str] = ""
    media_channel: ClassVar[str] = ""
    media_event: ClassVar[str] = ""
    kill_priority = PUMPS
    restart_policy = NO_RESTART
    resumable = False  # a one-shot action: never redone after a power cut
    settings = (Setting(name="duration", datatype="float", startup=True, unit="s", minimum=0, description="seconds to circulate"),)

    @classmethod
    def plan(cls, values: Mapping[str, Any], node: NodeConfig) -> tuple[CirculationPlan, PumpCalibration, PumpCalibration]:
        duration = values.get("duration")
        if duration is None:
            raise SettingError(f"{cls.name} needs --duration <seconds>: how long to circulate")
        media = load_pump_calibration(node, cls.media_device)
        waste = load_pump_calibration(node, "waste_pump")
        try:
            return CirculationPlan(duration=duration, fraction=media_fraction(media, waste)), media, waste
        except ValueError as e:
            raise SettingError(_one_line(e)) from None

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        cls.plan(values, node)

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.circulation, self.media_cal, self.waste_cal = self.plan(ctx.values, ctx.node)
        source = self.name
        c = self.circulation
        media_run = PumpPlan(mode="continuously", seconds=None, ml=None, rate=ml_per_second(self.media_cal), duty=self.media_cal.dc, source_of_event=source)
        waste_run = PumpPlan(mode="continuously", seconds=None, ml=None, rate=ml_per_second(self.waste_cal), duty=self.waste_cal.dc, source_of_event=source)
        # Media is sampled at pulse ends (its on-time grid is one pulse), waste every 0.5 s.
        self.media = Ledger(media_run, chunk_seconds=c.pulse, end=c.media_seconds)
        self.waste = Ledger(waste_run, end=c.duration)
        self.started_at: float | None = None
        self.running = False
        self.media_on = False
        self.pulses = 0

    def start(self) -> None:
        def waste_acquired(ok: bool, error: str | None) -> None:
            if not ok:
                self.ctx.fail(_busy("waste", "waste_pump", error))
                return
            self.ctx.acquire("pwm", self.media_channel, media_acquired)

        def media_acquired(ok: bool, error: str | None) -> None:
            if not ok:
                self.ctx.fail(_busy(self.media_channel, self.media_device, error))
                return
            self._begin()

        self.ctx.acquire("pwm", "waste", waste_acquired)

    def _begin(self) -> None:
        self.started_at = self.ctx.clock.now()
        self.running = True
        c = self.circulation
        self.ctx.set_duty("waste", self.waste_cal.dc, seconds=c.duration)
        self.ctx.ready()
        self.ctx.after(c.duration, self._finish, name="end")
        self.ctx.every(CHUNK_SECONDS, self._tick, "chunks")
        self.ctx.every(c.period, self._pulse, "pulses")
        self._pulse()

    def _elapsed(self) -> float:
        assert self.started_at is not None
        return max(0.0, self.ctx.clock.now() - self.started_at)

    def _pulse(self) -> None:
        k, self.pulses = self.pulses, self.pulses + 1
        seconds = self.circulation.pulse_in(k)
        if not self.running or seconds <= 0:
            return
        self._media(True, seconds)
        self.ctx.after(seconds, lambda: self._media(False), name="pulse-off")

    def _media(self, on: bool, seconds: float | None = None) -> None:
        if not self.running:
            return
        self.media_on = on
        # Each pulse is a run of its own length (the driver caps it, a simulated pump holds it exactly).
        self.ctx.set_duty(self.media_channel, self.media_cal.dc if on else 0.0, seconds=seconds)
        if not on:
            self._publish_media(self.media.due(self.circulation.media_on_seconds(self._elapsed())))

    def _tick(self) -> None:
        if not self.running:
            return
        t = self._elapsed()
        if t < self.circulation.duration:  # re-arm the driver's on-time cap, so a long circulation is not cut at 60 s
            self.ctx.set_duty("waste", self.waste_cal.dc, seconds=self.circulation.duration)
        self._publish_waste(self.waste.due(t))
        self._publish_media(self.media.due(self.circulation.media_on_seconds(t)))

    def _finish(self) -> None:
        if not self.running:
            return
        self._halt(self.circulation.duration)
        self.ctx.stop()

    def _halt(self, t: float) -> None:
        self.running = False
        self.ctx.set_duty(self.media_channel, 0.0)
        self.ctx.set_duty("waste", 0.0)
        self._publish_media(self.media.stop(self.circulation.media_on_seconds(t)))
        self._publish_waste(self.waste.stop(t))

    def _publish_media(self, chunks: list[float]) -> None:
        self._publish(self.media_event, chunks)

    def _publish_waste(self, chunks: list[float]) -> None:
        self._publish("remove_waste", chunks)

    def _publish(self, event: str, chunks: list[float]) -> None:
        topic = topics.dosing_events_topic(self.ctx.unit, self.ctx.experiment)
        stamp = utc_iso(self.ctx.clock.now())
        for ml in chunks:
            payload = {"volume_change": ml, "event": event, "source_of_event": self.name, "timestamp": stamp}
            self.ctx.publish_topic(topic, payload, qos=1)

    def on_sleep(self) -> None:
        self.on_stop()
        self.ctx.stop()

    def on_stop(self) -> None:
        if self.running:
            self._halt(self._elapsed())


class CirculateMedia(Circulate):
    name = "circulate_media"
    media_device, media_channel, media_event = _names("media")


class CirculateAltMedia(Circulate):
    name = "circulate_alt_media"
    media_device, media_channel, media_event = _names("alt_media")
