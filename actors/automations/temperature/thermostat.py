"""Temperature automations as pure policies: the thermostat, only_record_temperature, and their cadence.

Reference behaviour (pioreactor.md §3.1-3.2, hardware.md §4.2):

* The temperature job turns the heater off every 200 s, takes 21 plate readings 5 s apart, infers the
  liquid's temperature (:mod:`actors.temperature_inference`) and then hands it to the automation, which
  returns the heater duty for the next heating phase. :class:`TemperatureCycle` is that cadence as data,
  so the job (and the scenario tests) follow one definition instead of re-deriving the timings.
* ``thermostat``: a PID (Kp 2.6, Ki 0, Kd 4.6) whose output, clamped to +-25 % duty per step, is *added*
  to the current duty; ``dt`` is 1 per inference whatever the period, so the gains are per inference.
  The duty itself therefore acts as the integrator (Kp moves it in proportion to the error, like an
  integral; Kd on the measurement damps it), which is why Ki is 0. The target is clamped to
  ``[0, reduce limit]`` of the vessel model, with a message saying so.
* ``only_record_temperature``: heater off, temperature reported.

Every temperature automation, built-in or plugin, subclasses :class:`TemperaturePolicy`: it declares
``name`` and ``PARAMETERS``, is built by :meth:`TemperaturePolicy.from_parameters` from the run's parameter
values and the vessel model's heater limits, and answers :meth:`~TemperaturePolicy.decide` once per
inference. The temperature job (actors/temperature_automation.py) does the rest: cadence, heater, publishing.

Nothing here reads the clock or touches hardware; the caller passes the estimate and the current duty
and applies the returned duty through the heater driver, which caps it further (actors/hardware/safety.py).
The ``current_duty`` to pass is the one the heater actually ran at, when known: if the driver capped
it, feeding back the request instead would let the duty wind up above what is delivered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from actors.automations.events import AutomationEvent, NoEvent, UpdatedHeaterDC
from actors.automations.parameters import Parameter
from actors.hardware.safety import HEATER_MAX_DUTY, HeaterLimits, heater_limits_for
from actors.pid import PID
from actors.temperature_inference import MIN_READINGS
from actors.validators import finite_positive

DEFAULT_KP = 2.6
DEFAULT_KI = 0.0
DEFAULT_KD = 4.6
MAX_STEP_PCT = 25.0
"""Largest change of heater duty one inference may make (Pioreactor clamps the PID output to +-25 %)."""
PID_DT = 1.0
"""Pioreactor feeds the PID ``dt=1`` per inference, so Kp and Kd are per inference, not per second."""


TemperatureEvent = UpdatedHeaterDC | NoEvent


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def clamp_target(target_c: float, limits: HeaterLimits) -> tuple[float, str | None]:
    """Clamp a thermostat target to ``[0, limits.reduce_c]``; return it and a message if it moved.

    The reduce limit is a *plate* temperature; a liquid target at or above it would have the heater
    fighting its own safety tier forever, so Pioreactor refuses anything higher.
    """
    value = _check_finite("target_temperature", target_c)
    if value > limits.reduce_c:
        return limits.reduce_c, (
            f"target {value:g} C is above this vessel's heater reduce limit of {limits.reduce_c:g} C; "
            f"using {limits.reduce_c:g} C"
        )
    if value < 0:
        return 0.0, f"target {value:g} C is below 0 C; using 0 C (the heater cannot cool)"
    return value, None


class TemperaturePolicy:
    """The base of every temperature automation: what the temperature job calls, once per inference.

    Subclass it, set ``name`` (what ``--automation-name`` takes) and ``PARAMETERS``, and implement
    :meth:`decide`. ``heats`` says whether the policy ever turns the heater on (the job warns when a
    heating policy runs without stirring). Override :meth:`from_parameters` when the constructor needs the
    heater limits, and :meth:`set_parameter` when a settable parameter needs more than storing.
    """

    family: ClassVar[str] = "temperature"
    name: ClassVar[str] = ""
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()
    heats: ClassVar[bool] = True

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], limits: HeaterLimits) -> TemperaturePolicy:
        """Build the policy for a run: ``parameters`` are the run's values by name (given or default),
        ``limits`` the vessel model's heater limits. The default passes the parameters as keywords."""
        return cls(**parameters)

    def decide(self, liquid_c_estimate: float, current_duty: float) -> tuple[float, AutomationEvent]:
        """The heater duty (%) for the next heating phase, from the inferred liquid temperature and the
        duty the heater ran at, and the event to publish."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget history (called when the job wakes from sleep: the pause was not one inference)."""

    def set_parameter(self, name: str, value: Any) -> tuple[Any, str | None]:
        """A settable parameter changed while running: return the value in force and a note to log
        (why it differs from the request), or raise ``ValueError`` to refuse. Default: store it."""
        setattr(self, name, value)
        return value, None


class Thermostat(TemperaturePolicy):
    """PID on the inferred liquid temperature, adding its output to the heater duty each inference.

    ``limits`` are the vessel model's heater limits; only ``reduce_c`` is used here (the target's upper
    bound), the rest is the driver's business. ``max_duty`` bounds the duty this policy will ask for; it
    defaults to 100 and the driver caps further. ``target_note`` holds the clamping message of the
    latest target, for the job to log.
    """

    name = "thermostat"
    PARAMETERS = (
        Parameter(
            "target_temperature",
            "float",
            "C",
            None,
            settable=True,
            description="liquid temperature to hold; at most the vessel's heater reduce limit",
        ),
    )

    def __init__(
        self,
        target_temperature: float,
        limits: HeaterLimits,
        kp: float = DEFAULT_KP,
        ki: float = DEFAULT_KI,
        kd: float = DEFAULT_KD,
        *,
        max_step: float = MAX_STEP_PCT,
        max_duty: float = 100.0,
    ) -> None:
        for name, value in (("kp", kp), ("ki", ki), ("kd", kd)):
            if _check_finite(name, value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not _check_finite("max_step", max_step) > 0:
            raise ValueError(f"max_step must be > 0, got {max_step!r}")
        if not 0 < _check_finite("max_duty", max_duty) <= 100:
            raise ValueError(f"max_duty must be in (0, 100], got {max_duty!r}")
        self.limits = limits
        self.max_duty = float(max_duty)
        target, self.target_note = clamp_target(target_temperature, limits)
        self._pid = PID(kp, ki, kd, setpoint=target, output_limits=(-max_step, max_step))

    @classmethod
    def for_model(cls, target_temperature: float, model: str, version: str, **kwargs: float) -> Thermostat:
        """A thermostat for a Pioreactor model name and version, e.g. ``("pioreactor_20ml", "1.0")``."""
        return cls(target_temperature, heater_limits_for(model, version), **kwargs)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], limits: HeaterLimits) -> Thermostat:
        """The job's thermostat: it never asks for more than the heater driver's cap
        (:data:`actors.hardware.safety.HEATER_MAX_DUTY`), so the duty it adds to is the one delivered."""
        return cls(float(parameters["target_temperature"]), limits, max_duty=HEATER_MAX_DUTY)

    def set_parameter(self, name: str, value: Any) -> tuple[Any, str | None]:
        if name != "target_temperature":
            return super().set_parameter(name, value)
        note = self.set_target_temperature(float(value))
        return self.target_temperature, note

    @property
    def target_temperature(self) -> float:
        return self._pid.setpoint

    def set_target_temperature(self, value: float) -> str | None:
        """Change the target (a settable setting); return the clamping message, if any.

        The PID's derivative acts on the measurement, so a new target gives no step in the output; the
        next inference moves the duty by ``Kp * error`` (at most ``max_step``).
        """
        target, self.target_note = clamp_target(value, self.limits)
        self._pid.setpoint = target
        return self.target_note

    def decide(self, liquid_c_estimate: float, current_duty: float) -> tuple[float, UpdatedHeaterDC]:
        """One inference: return the heater duty for the next heating phase and the event to publish."""
        liquid = _check_finite("liquid_c_estimate", liquid_c_estimate)
        current = _check_finite("current_duty", current_duty)
        step = self._pid.update(liquid, PID_DT)
        duty = min(self.max_duty, max(0.0, current + step))
        message = (
            f"heater duty {current:.1f} % -> {duty:.1f} % "
            f"(liquid {liquid:.2f} C, target {self.target_temperature:g} C)"
        )
        return duty, UpdatedHeaterDC(
            message,
            {"previous_duty": current, "duty": duty, "liquid_c": liquid, "target_c": self.target_temperature},
        )

    def reset(self) -> None:
        """Forget the previous measurement, e.g. after the job slept: the first derivative after a pause
        would otherwise span the whole pause as if it were one inference."""
        self._pid.reset()


class OnlyRecordTemperature(TemperaturePolicy):
    """Heater off; the temperature is only reported. Same interface as :class:`Thermostat`."""

    name = "only_record_temperature"
    heats = False

    def decide(self, liquid_c_estimate: float, current_duty: float) -> tuple[float, TemperatureEvent]:
        liquid = _check_finite("liquid_c_estimate", liquid_c_estimate)
        current = _check_finite("current_duty", current_duty)
        if current != 0.0:
            return 0.0, UpdatedHeaterDC(
                f"heater duty {current:.1f} % -> 0 % (only recording temperature)",
                {"previous_duty": current, "duty": 0.0, "liquid_c": liquid, "target_c": None},
            )
        return 0.0, NoEvent(f"liquid at {liquid:.2f} C (only recording temperature)")

    def reset(self) -> None:
        """Nothing to forget; here so the job can treat every temperature automation alike."""


CycleAction = Literal["heater_off", "read_plate", "infer_and_heat"]


@attrs.frozen(kw_only=True)
class CycleStep:
    """One thing the temperature job does at ``at_s``: switch the heater off, take plate reading
    ``index``, or infer the liquid from the readings and restore the heater at the new duty."""

    at_s: float
    action: CycleAction
    index: int | None = None


def _enough_samples(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_READINGS:
        raise ValueError(f"{attribute.name} must be an integer >= {MIN_READINGS}, got {value!r}")


@attrs.frozen(kw_only=True)
class TemperatureCycle:
    """The temperature job's cadence: every ``period_s`` the heater goes off for ``n_samples`` readings
    ``sample_interval_s`` apart, then back on at the new duty for the rest of the period.

    Readings are at ``0, interval, ..., (n-1)*interval`` after the cycle starts, and the heater comes
    back on one interval after the last reading (Pioreactor sleeps after every read), so it is off for
    ``n * interval`` (105 s of every 200 s by default) and on for the remaining ``on_duration_s``. The
    inferred temperature is the liquid's at the last reading.

    The off window costs heating power: the heater only heats for ``on_fraction`` of the time (47.5 %),
    so the duty that holds a temperature is about ``1 / on_fraction`` times the continuous duty.
    """

    period_s: float = attrs.field(default=200.0, validator=finite_positive)
    n_samples: int = attrs.field(default=21, validator=_enough_samples)
    sample_interval_s: float = attrs.field(default=5.0, validator=finite_positive)

    def __attrs_post_init__(self) -> None:
        if not self.off_duration_s < self.period_s:
            raise ValueError(
                f"{self.n_samples} readings {self.sample_interval_s:g} s apart keep the heater off for "
                f"{self.off_duration_s:g} s, which does not fit in a {self.period_s:g} s period"
            )

    @classmethod
    def for_model(cls, model: str, version: str) -> TemperatureCycle:
        """Pioreactor's cadence: 225 s and 29 readings on the 20 ml v1.0, 200 s and 21 otherwise."""
        if model == "pioreactor_20ml" and version == "1.0":
            return cls(period_s=225.0, n_samples=29)
        return cls()

    @property
    def off_duration_s(self) -> float:
        return self.n_samples * self.sample_interval_s

    @property
    def on_duration_s(self) -> float:
        return self.period_s - self.off_duration_s

    @property
    def on_fraction(self) -> float:
        return self.on_duration_s / self.period_s

    def sample_offsets_s(self) -> tuple[float, ...]:
        """When each plate reading is taken, relative to the cycle's start (the heater-off instant)."""
        return tuple(k * self.sample_interval_s for k in range(self.n_samples))

    def steps(self, cycle_start_s: float) -> tuple[CycleStep, ...]:
        """Everything the job does in the cycle starting at ``cycle_start_s``, in time order."""
        start = _check_finite("cycle_start_s", cycle_start_s)
        out = [CycleStep(at_s=start, action="heater_off")]
        out += [
            CycleStep(at_s=start + offset, action="read_plate", index=k)
            for k, offset in enumerate(self.sample_offsets_s())
        ]
        out.append(CycleStep(at_s=start + self.off_duration_s, action="infer_and_heat"))
        return tuple(out)

    def heater_is_off(self, t_since_start_s: float) -> bool:
        """Whether the heater is held off (inference window) at a time since the job's first cycle."""
        t = _check_finite("t_since_start_s", t_since_start_s)
        if t < 0:
            raise ValueError(f"t_since_start_s must be >= 0, got {t!r}")
        return math.fmod(t, self.period_s) < self.off_duration_s
