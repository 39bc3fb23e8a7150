"""The built-in dosing automations as decision policies (pioreactor.md §3.2, the dosing rows).

Pure: no clock, no I/O, no pumps. A policy is a plain object the dosing actor owns. On each trigger (a
fresh reading, or the time the last :class:`Decision` asked to be woken at) the actor builds an
:class:`Inputs` snapshot and calls ``decide(inputs, now)``. The decision says what to exchange (media,
alt media, waste), which :class:`AutomationEvent` to publish as ``latest_event``, when to be asked again
and whether to go to sleep. The actor turns the exchange into pump runs with
:func:`~actors.automations.dosing.subdosing.plan_exchange`, runs them, then calls
``on_dosing_finished(now)``. Splitting it this way means every behaviour below is tested by calling a
function with numbers, and the actor is left with plumbing.

Shared rules (``DosingPolicy.decide``), from the reference's ``AutomationJob``:

* Inputs older than :data:`STALE_AFTER_S` (5 min), or missing, give an ``ErrorOccurred`` event and no
  dose: a turbidostat acting on an OD from before its OD job died would dose blind. Each policy reads
  only the inputs it uses, so a chemostat, which the reference runs without OD, keeps running without it.
* Books at or above the max fill put the automation to sleep (``DosingStopped`` event, ``sleep=True``);
  from 95 % of it every decision carries a warning.

Units: volumes in ml, durations in minutes (``duration``, the reference's name and unit), growth rates
per hour, ``now`` and timestamps in seconds on the caller's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from actors.automations.dosing.subdosing import (
    MAX_SUBDOSE_ML,
    PAUSE_BETWEEN_SUBDOSES_S,
    WASTE_REMOVAL_MULTIPLIER,
    Step,
    plan_exchange,
)
from actors.automations.parameters import Parameter
from actors.automations.events import (
    AddAltMediaEvent,
    AddMediaEvent,
    AutomationEvent,
    DilutionEvent,
    DosingStopped,
    ErrorOccurred,
    NoEvent,
)
from actors.bioreactor import BioreactorState
from actors.pid import PID

STALE_AFTER_S = 300.0
"""The reference's ``JobRequiredError`` age: data older than 5 min means its producer is not running."""
SETTLING_WINDOW_S = 30.0
"""After a turbidostat exchange, readings are left alone this long so the new liquid mixes in."""
FIRST_RUN_AFTER_S = 2.0
"""Timer-driven automations run for the first time this long after they start (unless skip_first_run)."""

BIOMASS_SIGNALS: tuple[str, ...] = ("auto", "normalized_od", "od", "od_fused")
_PRODUCERS = {
    "normalized_od": "growth_rate_calculating",
    "growth_rate": "growth_rate_calculating",
    "od": "od_reading",
    "od_fused": "od_reading with an OD estimator",
}


# -- values in and out ------------------------------------------------------------------------------------


def _finite(_instance: object, attribute: Any, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


@attrs.frozen
class Reading:
    """One published value and when it was measured (seconds on the caller's clock)."""

    value: float = attrs.field(converter=float, validator=_finite)
    timestamp: float = attrs.field(converter=float, validator=_finite)


@attrs.frozen(kw_only=True)
class Inputs:
    """The latest of everything a dosing policy may look at; ``None`` means never received."""

    bioreactor: BioreactorState = attrs.field(factory=BioreactorState)
    bioreactor_timestamp: float | None = None
    normalized_od: Reading | None = None
    od: Reading | None = None
    od_fused: Reading | None = None
    growth_rate: Reading | None = None


def _ml(_instance: object, attribute: Any, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite volume >= 0 ml, got {value!r}")


@attrs.frozen
class Exchange:
    """Volumes for one exchange. ``net_addition`` (fed-batch only) lets the additions exceed the waste."""

    media_ml: float = attrs.field(converter=float, validator=_ml)
    alt_media_ml: float = attrs.field(default=0.0, converter=float, validator=_ml)
    waste_ml: float = attrs.field(default=0.0, converter=float, validator=_ml)
    net_addition: bool = False

    def plan(
        self,
        max_subdose: float = MAX_SUBDOSE_ML,
        waste_removal_multiplier: float = WASTE_REMOVAL_MULTIPLIER,
        pause_between_subdoses_s: float = PAUSE_BETWEEN_SUBDOSES_S,
    ) -> list[Step]:
        """The pump runs for this exchange (see :func:`plan_exchange`)."""
        return plan_exchange(
            self.media_ml,
            self.alt_media_ml,
            self.waste_ml,
            max_subdose,
            waste_removal_multiplier,
            pause_between_subdoses_s=pause_between_subdoses_s,
            allow_net_addition=self.net_addition,
        )


@attrs.frozen
class Decision:
    """The outcome of one ``decide``.

    ``next_check`` is the time (same clock as ``now``) the policy wants to be asked again; ``None`` means
    "on the next fresh reading" (event-driven) or "never" (silent, sleeping). ``sleep=True`` means the
    actor must go to sleeping, which stops every pump.
    """

    exchange: Exchange | None
    event: AutomationEvent
    next_check: float | None = None
    sleep: bool = False
    warnings: tuple[str, ...] = ()


class StaleInput(Exception):
    """A required input is missing or older than :data:`STALE_AFTER_S`; becomes an ``ErrorOccurred``."""


def _event(kind: type[AutomationEvent], message: str = "", **data: object) -> AutomationEvent:
    return kind(message, data)


def _check_now(now: float) -> float:
    if not (isinstance(now, (int, float)) and math.isfinite(now)):
        raise ValueError(f"now must be a finite time in seconds, got {now!r}")
    return float(now)


def _fresh(inputs: Inputs, name: str, now: float) -> Reading:
    """The reading ``name`` if it exists and is at most 5 min old; else :class:`StaleInput` saying why."""
    reading: Reading | None = getattr(inputs, name)
    producer = _PRODUCERS.get(name, "its producer")
    if reading is None:
        raise StaleInput(f"no {name} received yet; is {producer} running?")
    age = now - reading.timestamp
    if age > STALE_AFTER_S:
        raise StaleInput(
            f"latest {name} is {age:.0f} s old (limit {STALE_AFTER_S:.0f} s); is {producer} running?"
        )
    return reading


def _positive(name: str, value: float, unit: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 {unit}, got {value!r}")


def _non_negative(name: str, value: float, unit: str) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 {unit}, got {value!r}")


def _volume_fits(name: str, value: float, bioreactor: BioreactorState | None) -> None:
    _positive(name, value, "ml")
    if bioreactor is not None and value > bioreactor.max_fill_ml:
        raise ValueError(
            f"{name}={value:g} ml is more than the vial's max fill ({bioreactor.max_fill_ml:g} ml); "
            f"send a volume of at most {bioreactor.max_fill_ml:g} ml (typically 0.5-2 ml)"
        )


# -- the policies -----------------------------------------------------------------------------------------


class DosingPolicy:
    """Base: the shared max-fill and stale-input rules around each policy's own ``_decide``."""

    family: ClassVar[str] = "dosing"  # how the automation registry tells a plugin's kind
    name: ClassVar[str] = ""
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()
    doses: ClassVar[bool] = True
    pumps: ClassVar[tuple[str, ...]] = ("media", "waste")  # the pumps its exchanges use (calibrations required)
    triggered_by_readings: ClassVar[bool] = False  # decide on each fresh reading, not only on its timer

    def decide(self, inputs: Inputs, now: float) -> Decision:
        """Decide what to do at ``now`` given ``inputs``."""
        now = _check_now(now)
        books = inputs.bioreactor
        if self.doses and books.at_max_fill:
            return Decision(
                None,
                _event(
                    DosingStopped,
                    f"volume {books.current_volume_ml:.2f} ml has reached the max fill "
                    f"{books.max_fill_ml:g} ml; sleeping (remove liquid, then wake the automation)",
                    current_volume_ml=books.current_volume_ml,
                    max_fill_ml=books.max_fill_ml,
                ),
                sleep=True,
            )
        try:
            decision = self._decide(inputs, now)
        except StaleInput as exc:
            decision = Decision(None, _event(ErrorOccurred, str(exc)), next_check=self._next_check())
        if self.doses and books.near_max_fill:
            warning = (
                f"volume {books.current_volume_ml:.2f} ml is at {books.fraction_of_max_fill:.0%} of the "
                f"max fill {books.max_fill_ml:g} ml"
            )
            decision = attrs.evolve(decision, warnings=(*decision.warnings, warning))
        return decision

    def _decide(self, inputs: Inputs, now: float) -> Decision:
        raise NotImplementedError

    def _next_check(self) -> float | None:
        """When to be asked again after a failed run: event-driven policies wait for the next reading."""
        return None

    def on_dosing_finished(self, now: float) -> None:
        """Called by the actor when the pump runs of the last exchange have ended (default: nothing)."""

    def next_due(self) -> float | None:
        """When a timer-driven policy wants to be asked next (after a settings change, a wake-up)."""
        return self._next_check()

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        """Refuse parameters that make no sense, and volumes the vial cannot take (given its books)."""

    def settings(self) -> dict[str, object]:
        """Current parameter values, keyed like :attr:`PARAMETERS`: the published settings."""
        return {p.name: getattr(self, p.name) for p in self.PARAMETERS}

    def update(self, changes: Mapping[str, object], bioreactor: BioreactorState | None = None) -> None:
        """Change settable parameters while running; all-or-nothing, validated like construction."""
        by_name = {p.name: p for p in self.PARAMETERS}
        parsed: dict[str, object] = {}
        for key, value in changes.items():
            spec = by_name.get(key)
            if spec is None:
                raise ValueError(f"{self.name} has no parameter {key!r}; it has {tuple(by_name)}")
            if not spec.settable:
                settable = tuple(p.name for p in self.PARAMETERS if p.settable)
                raise ValueError(f"{key} cannot change while {self.name} runs; settable: {settable}")
            parsed[key] = spec.parse(value)
        before = {key: getattr(self, key) for key in parsed}
        for key, value in parsed.items():
            setattr(self, key, value)
        try:
            self.validate(bioreactor)
        except ValueError:
            for key, value in before.items():
                setattr(self, key, value)
            raise
        self._after_update(set(parsed))

    def _after_update(self, changed: set[str]) -> None:
        """Hook for policies whose internal state follows a parameter (schedules, PID setpoints)."""


class Silent(DosingPolicy):
    """Does nothing, but keeps receiving readings (so switching to another automation needs no warm-up)."""

    name = "silent"
    PARAMETERS = ()
    doses = False
    pumps = ()

    def __init__(self) -> None:
        """No parameters; defined so the registry can introspect every policy's constructor alike."""

    def _decide(self, inputs: Inputs, now: float) -> Decision:
        return Decision(None, _event(NoEvent, "silent: never doses"))


class Turbidostat(DosingPolicy):
    """Event-driven: exchange whenever a fresh biomass reading is at or above the target.

    Each reading is acted on once (a repeat of the same timestamp is not "fresh"). After an exchange the
    policy waits :data:`SETTLING_WINDOW_S`, counted from the end of the pump runs if the actor reports it
    through :meth:`on_dosing_finished` (from the decision otherwise), and ignores readings measured
    before the window ended: they saw the vial mid-exchange.

    ``biomass_signal="auto"`` follows the reference's preference, fixed at the first decision: ``od_fused``
    if an estimator publishes it, else calibrated ``od`` if present, else ``normalized_od``.
    """

    name = "turbidostat"
    triggered_by_readings = True
    PARAMETERS = (
        Parameter(
            "target_biomass", "float", "OD or AU", None, description="exchange when biomass reaches this"
        ),
        Parameter("exchange_volume_ml", "float", "ml", None, description="volume swapped per exchange"),
        Parameter(
            "biomass_signal",
            "str",
            "",
            "normalized_od",
            choices=BIOMASS_SIGNALS,
            description="which reading is compared with the target",
        ),
    )

    def __init__(
        self, target_biomass: float, exchange_volume_ml: float, biomass_signal: str = "normalized_od"
    ) -> None:
        self.target_biomass = float(target_biomass)
        self.exchange_volume_ml = float(exchange_volume_ml)
        self.biomass_signal = biomass_signal
        self._signal: str | None = None if biomass_signal == "auto" else biomass_signal
        self._last_seen: float | None = None
        self._settle_until: float | None = None
        self.validate()

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        _positive("target_biomass", self.target_biomass, "(OD or AU)")
        _volume_fits("exchange_volume_ml", self.exchange_volume_ml, bioreactor)
        if self.biomass_signal not in BIOMASS_SIGNALS:
            raise ValueError(f"biomass_signal must be one of {BIOMASS_SIGNALS}, got {self.biomass_signal!r}")

    def _after_update(self, changed: set[str]) -> None:
        if "biomass_signal" in changed:
            self._signal = None if self.biomass_signal == "auto" else self.biomass_signal
            self._last_seen = None

    def _resolve_signal(self, inputs: Inputs) -> str:
        if self._signal is None:
            if inputs.od_fused is not None:
                self._signal = "od_fused"
            elif inputs.od is not None:
                self._signal = "od"
            else:
                self._signal = "normalized_od"
        return self._signal

    def _decide(self, inputs: Inputs, now: float) -> Decision:
        signal = self._resolve_signal(inputs)
        reading = _fresh(inputs, signal, now)
        if self._last_seen is not None and reading.timestamp <= self._last_seen:
            return Decision(None, _event(NoEvent, f"no new {signal} reading since the last check"))
        self._last_seen = reading.timestamp
        if self._settle_until is not None and (
            now < self._settle_until or reading.timestamp < self._settle_until
        ):
            return Decision(
                None, _event(NoEvent, f"settling after the last exchange until {self._settle_until:.0f} s")
            )
        if reading.value < self.target_biomass:
            return Decision(
                None,
                _event(
                    NoEvent,
                    f"{signal} {reading.value:.3g} is below the target {self.target_biomass:.3g}",
                ),
            )
        self._settle_until = now + SETTLING_WINDOW_S
        volume = self.exchange_volume_ml
        return Decision(
            Exchange(volume, 0.0, volume),
            _event(
                DilutionEvent,
                f"{signal} {reading.value:.3g} >= target {self.target_biomass:.3g}; exchanging {volume:g} ml",
                latest_biomass=reading.value,
                target_biomass=self.target_biomass,
                biomass_signal=signal,
                exchange_volume_ml=volume,
            ),
        )

    def on_dosing_finished(self, now: float) -> None:
        self._settle_until = _check_now(now) + SETTLING_WINDOW_S


class PeriodicPolicy(DosingPolicy):
    """Base for timer-driven policies: run at start + 2 s (or one period in), then every ``duration``.

    Changing ``duration`` reschedules counting from the last run, as the reference does. A decision
    requested before the run is due is a ``NoEvent`` carrying the due time.
    """

    def __init__(self, duration: float, skip_first_run: bool = False) -> None:
        self.duration = float(duration)
        self.skip_first_run = bool(skip_first_run)
        self._last_run: float | None = None
        self._next_due: float | None = None

    @property
    def period_s(self) -> float:
        return self.duration * 60.0

    def _validate_duration(self) -> None:
        _positive("duration", self.duration, "min")

    def _after_update(self, changed: set[str]) -> None:
        if "duration" in changed and self._last_run is not None:
            self._next_due = self._last_run + self.period_s

    def _next_check(self) -> float | None:
        return self._next_due

    def _decide(self, inputs: Inputs, now: float) -> Decision:
        if self._next_due is None:
            self._next_due = now + (self.period_s if self.skip_first_run else FIRST_RUN_AFTER_S)
        if now < self._next_due:
            return Decision(
                None, _event(NoEvent, f"next run at {self._next_due:.0f} s"), next_check=self._next_due
            )
        self._last_run = now
        self._next_due = now + self.period_s
        return attrs.evolve(self._run(inputs, now), next_check=self._next_due)

    def _run(self, inputs: Inputs, now: float) -> Decision:
        raise NotImplementedError


class Chemostat(PeriodicPolicy):
    """Every ``duration``, exchange ``exchange_volume_ml``: dilution rate ``D = exchange/V`` per period.

    It reads no OD (neither does the reference's), so a dead OD job does not stop a chemostat.
    """

    name = "chemostat"
    PARAMETERS = (
        Parameter("exchange_volume_ml", "float", "ml", None, description="volume swapped each period"),
        Parameter("duration", "float", "min", 20.0, description="time between exchanges"),
        Parameter(
            "skip_first_run",
            "bool",
            "",
            False,
            settable=False,
            description="wait a period before the first exchange",
        ),
    )

    def __init__(
        self, exchange_volume_ml: float, duration: float = 20.0, skip_first_run: bool = False
    ) -> None:
        super().__init__(duration, skip_first_run)
        self.exchange_volume_ml = float(exchange_volume_ml)
        self.validate()

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        self._validate_duration()
        _volume_fits("exchange_volume_ml", self.exchange_volume_ml, bioreactor)

    def dilution_rate_per_hour(self, volume_ml: float) -> float:
        """``D = exchange / V / period`` in 1/h: the growth rate a steady chemostat culture settles at."""
        return self.exchange_volume_ml / volume_ml / (self.duration / 60.0)

    def _run(self, inputs: Inputs, now: float) -> Decision:
        volume = self.exchange_volume_ml
        return Decision(
            Exchange(volume, 0.0, volume),
            _event(DilutionEvent, f"exchanging {volume:g} ml", exchange_volume_ml=volume),
        )


class FedBatch(PeriodicPolicy):
    """Every ``duration``, add ``dosing_volume_ml`` of media and remove nothing.

    The volume only rises, so before each dose the books are projected: if ``volume + dose`` would reach
    the max fill, the dose is skipped and the automation goes to sleep; from 95 % it warns.
    """

    name = "fed_batch"
    pumps = ("media",)
    PARAMETERS = (
        Parameter("dosing_volume_ml", "float", "ml", None, description="media added each period"),
        Parameter("duration", "float", "min", 720.0, description="time between doses"),
        Parameter(
            "skip_first_run",
            "bool",
            "",
            False,
            settable=False,
            description="wait a period before the first dose",
        ),
    )

    def __init__(
        self, dosing_volume_ml: float, duration: float = 720.0, skip_first_run: bool = False
    ) -> None:
        super().__init__(duration, skip_first_run)
        self.dosing_volume_ml = float(dosing_volume_ml)
        self.validate()

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        self._validate_duration()
        _volume_fits("dosing_volume_ml", self.dosing_volume_ml, bioreactor)

    def _run(self, inputs: Inputs, now: float) -> Decision:
        books = inputs.bioreactor
        dose = self.dosing_volume_ml
        projected = books.current_volume_ml + dose
        if projected >= books.max_fill_ml:
            return Decision(
                None,
                _event(
                    DosingStopped,
                    f"adding {dose:g} ml to {books.current_volume_ml:.2f} ml would reach the max fill "
                    f"{books.max_fill_ml:g} ml; skipping and sleeping",
                    projected_volume_ml=projected,
                    max_fill_ml=books.max_fill_ml,
                ),
                sleep=True,
            )
        warnings: tuple[str, ...] = ()
        if projected >= 0.95 * books.max_fill_ml:
            warnings = (
                f"after this dose the volume will be {projected:.2f} ml, "
                f"near the max fill {books.max_fill_ml:g} ml",
            )
        return Decision(
            Exchange(dose, 0.0, 0.0, net_addition=True),
            _event(
                AddMediaEvent, f"adding {dose:g} ml of media", media_ml=dose, projected_volume_ml=projected
            ),
            warnings=warnings,
        )


class PidMorbidostat(PeriodicPolicy):
    """Hold the growth rate at a target by choosing, each period, what fraction of the inflow is alt media.

    The reference's behaviour:

    * nothing while the normalised OD is at or below 70 % of ``target_normalized_od`` (too little biomass
      to bother diluting);
    * a PID on the growth rate with *negated* gains, output clamped to [0, 1]: growing faster than the
      target raises the alt-media (drug) fraction. The integral term is clamped to [0, 1] too, so it
      cannot wind up while the output is saturated. ``dt`` is in hours, the growth rate's unit;
    * inflow per period ``target_growth_rate * V * duration/60``: the dilution that matches the target
      rate; 2.5 times that when the OD is above 125 % of its target, to pull it back;
    * a pump dose below ``minimum_dosing_volume_ml`` (0.1) is dropped: pumps are inaccurate at tiny volumes.
      Waste equals what is actually added.
    """

    name = "pid_morbidostat"
    pumps = ("media", "alt_media", "waste")
    PARAMETERS = (
        Parameter("target_growth_rate", "float", "1/h", None, description="growth rate to hold"),
        Parameter("target_normalized_od", "float", "AU", None, description="biomass to hold"),
        Parameter("duration", "float", "min", 60.0, description="time between doses"),
        Parameter(
            "kp", "float", "", 1.0, settable=False, description="PID proportional gain (applied negated)"
        ),
        Parameter("ki", "float", "", 0.0, settable=False, description="PID integral gain (applied negated)"),
        Parameter(
            "kd", "float", "", 0.0, settable=False, description="PID derivative gain (applied negated)"
        ),
        Parameter(
            "minimum_dosing_volume_ml",
            "float",
            "ml",
            0.1,
            settable=False,
            description="smaller doses are dropped",
        ),
        Parameter(
            "skip_first_run",
            "bool",
            "",
            False,
            settable=False,
            description="wait a period before the first dose",
        ),
    )

    START_FRACTION = 0.7
    BOOST_FRACTION = 1.25
    BOOST_FACTOR = 2.5

    def __init__(
        self,
        target_growth_rate: float,
        target_normalized_od: float,
        duration: float = 60.0,
        kp: float = 1.0,
        ki: float = 0.0,
        kd: float = 0.0,
        minimum_dosing_volume_ml: float = 0.1,
        skip_first_run: bool = False,
    ) -> None:
        super().__init__(duration, skip_first_run)
        self.target_growth_rate = float(target_growth_rate)
        self.target_normalized_od = float(target_normalized_od)
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.minimum_dosing_volume_ml = float(minimum_dosing_volume_ml)
        self.validate()
        self.pid = PID(
            -self.kp,
            -self.ki,
            -self.kd,
            setpoint=self.target_growth_rate,
            output_limits=(0.0, 1.0),
            integral_limits=(0.0, 1.0),
        )
        self._last_pid_update: float | None = None

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        self._validate_duration()
        _positive("target_growth_rate", self.target_growth_rate, "1/h")
        _positive("target_normalized_od", self.target_normalized_od, "AU")
        for gain in ("kp", "ki", "kd"):
            _non_negative(gain, getattr(self, gain), "(the policy negates it)")
        _non_negative("minimum_dosing_volume_ml", self.minimum_dosing_volume_ml, "ml")

    def _after_update(self, changed: set[str]) -> None:
        super()._after_update(changed)
        self.pid.setpoint = self.target_growth_rate

    def _run(self, inputs: Inputs, now: float) -> Decision:
        nod = _fresh(inputs, "normalized_od", now).value
        growth_rate = _fresh(inputs, "growth_rate", now).value
        if nod <= self.START_FRACTION * self.target_normalized_od:
            return Decision(
                None,
                _event(
                    NoEvent,
                    f"normalized OD {nod:.3g} is at or below {self.START_FRACTION:.0%} of the target "
                    f"{self.target_normalized_od:.3g}; not diluting yet",
                ),
            )
        hours = self.duration / 60.0
        dt_h = hours if self._last_pid_update is None else max((now - self._last_pid_update) / 3600.0, 1e-9)
        self._last_pid_update = now
        fraction = self.pid.update(growth_rate, dt_h)
        volume = self.target_growth_rate * inputs.bioreactor.current_volume_ml * hours
        if nod > self.BOOST_FRACTION * self.target_normalized_od:
            volume *= self.BOOST_FACTOR
        alt_ml = fraction * volume
        media_ml = (1.0 - fraction) * volume
        if alt_ml < self.minimum_dosing_volume_ml:
            alt_ml = 0.0
        if media_ml < self.minimum_dosing_volume_ml:
            media_ml = 0.0
        data = dict(
            pid_output=fraction,
            growth_rate=growth_rate,
            normalized_od=nod,
            media_ml=media_ml,
            alt_media_ml=alt_ml,
        )
        if media_ml == 0 and alt_ml == 0:
            return Decision(
                None, _event(NoEvent, f"dose of {volume:.3g} ml is below the pump minimum", **data)
            )
        return Decision(
            Exchange(media_ml, alt_ml, media_ml + alt_ml),
            _event(
                AddAltMediaEvent if alt_ml > 0 else AddMediaEvent,
                f"PID output {fraction:.2f}: {alt_ml:.2f} ml alt media, {media_ml:.2f} ml media",
                **data,
            ),
        )


# -- registry ---------------------------------------------------------------------------------------------

POLICIES: dict[str, type[DosingPolicy]] = {
    cls.name: cls for cls in (Turbidostat, Chemostat, FedBatch, PidMorbidostat, Silent)
}
"""Automation name (as ``--automation-name`` takes it) to policy class."""


def _policy_class(name: str) -> type[DosingPolicy]:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown dosing automation {name!r}; known: {sorted(POLICIES)}") from None


def parameters(name: str) -> tuple[Parameter, ...]:
    """The parameters of automation ``name``: enough to build its start form and parse what comes back."""
    return _policy_class(name).PARAMETERS


def create(name: str, bioreactor: BioreactorState | None = None, **params: object) -> DosingPolicy:
    """Build automation ``name`` from (possibly string) parameters, as the CLI, MQTT or a form sends them.

    Unknown names and parameters, missing required ones, and values out of range (including volumes past
    ``bioreactor``'s max fill) raise ``ValueError`` saying what is expected.
    """
    return build(_policy_class(name), bioreactor, **params)


def build(cls: type[DosingPolicy], bioreactor: BioreactorState | None = None, **params: object) -> DosingPolicy:
    """:func:`create` for a policy class (a plugin's as well as a built-in)."""
    name = cls.name
    specs = {p.name: p for p in cls.PARAMETERS}
    parsed: dict[str, object] = {}
    for key, value in params.items():
        if key not in specs:
            raise ValueError(f"{name} has no parameter {key!r}; it accepts {tuple(specs) or 'none'}")
        parsed[key] = specs[key].parse(value)
    missing = [p.name for p in cls.PARAMETERS if p.required and p.name not in parsed]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)}; see parameters({name!r})")
    policy = cls(**parsed)  # type: ignore[arg-type]
    policy.validate(bioreactor)
    return policy
