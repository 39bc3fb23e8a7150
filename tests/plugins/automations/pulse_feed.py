"""``pulse_feed``: a worked example of a dosing automation plugin (drop-in file).

What it does, as a biologist would put it: "every 30 minutes, swap 1 ml of culture for fresh media, but
only once the culture has grown to 1.2 times its starting density, so a young culture is not washed out
before it is established."

How to use it: copy this file to ``<plugin_dir>/automations/pulse_feed.py`` on the unit (``$PIO_PLUGIN_DIR``,
by default ``~/.local/state/pioactors/plugins``), then

    pio run dosing_automation --automation-name pulse_feed --exchange-volume-ml 1 --min-normalized-od 1.2

Its ``PARAMETERS`` become the run's settings: ``pio run`` options, retained topics, ``/set`` (cast and
checked by :meth:`validate`). Nothing to install, nothing to restart: the next ``pio run`` reads the file
afresh.

The rules a dosing automation follows (see docs/automations.md, "Writing an automation plugin"):

* It is a *policy*: a plain class that decides, and nothing else. No clock, no MQTT, no pumps, no files.
  The ``dosing_automation`` job hands it an :class:`Inputs` snapshot (the latest readings and the vial's
  books) and the time, and runs the :class:`Exchange` it returns as pump runs, split into sub-doses of at
  most 1 ml, each followed by an extra waste run; it also refuses any addition that would pass the max
  fill (the automation goes to sleep instead). So the whole decision is testable by calling a method.
* ``PeriodicPolicy`` (the base of the built-in chemostat) is the base for timer-driven automations: it calls
  :meth:`_run` 2 s after the start and then every ``duration`` minutes, and reschedules when
  ``duration`` is changed. Event-driven ones (like the turbidostat) subclass ``DosingPolicy``, set
  ``triggered_by_readings = True`` and implement ``_decide(inputs, now)`` instead.
"""

from __future__ import annotations

import math

from actors.automations.dosing.policies import (
    STALE_AFTER_S,
    Decision,
    Exchange,
    Inputs,
    StaleInput,
    PeriodicPolicy,
)
from actors.automations.events import DilutionEvent, NoEvent
from actors.automations.parameters import Parameter
from actors.bioreactor import BioreactorState


class PulseFeed(PeriodicPolicy):
    # What --automation-name takes; "dosing" is inherited as ``family``, which is how the registry knows.
    name = "pulse_feed"
    # The pumps its exchanges use: the job refuses to start unless each has a pump calibration.
    pumps = ("media", "waste")
    # One line per parameter: name, type ("float", "str" or "bool"), unit, default (None = required).
    # Each becomes an option (--exchange-volume-ml) and a retained, settable setting of the job.
    PARAMETERS = (
        Parameter("exchange_volume_ml", "float", "ml", None, description="culture swapped for fresh media per pulse"),
        Parameter("min_normalized_od", "float", "AU", 1.2, description="pulse only when the normalised OD is at least this"),
        Parameter("duration", "float", "min", 30.0, description="time between pulses"),
    )

    def __init__(self, exchange_volume_ml: float, min_normalized_od: float = 1.2, duration: float = 30.0) -> None:
        super().__init__(duration)
        # Attributes carry the parameters' names: the job reads and sets them by name.
        self.exchange_volume_ml = float(exchange_volume_ml)
        self.min_normalized_od = float(min_normalized_od)
        self.validate()

    def validate(self, bioreactor: BioreactorState | None = None) -> None:
        """Refuse values that make no sense. Called at start (``pio run`` prints the message and starts
        nothing) and after every ``/set`` (refused, and the old value stays)."""
        self._validate_duration()
        if not (math.isfinite(self.exchange_volume_ml) and self.exchange_volume_ml > 0):
            raise ValueError(f"exchange_volume_ml must be a volume > 0 ml, got {self.exchange_volume_ml!r}")
        if bioreactor is not None and self.exchange_volume_ml > bioreactor.max_fill_ml:
            raise ValueError(
                f"exchange_volume_ml={self.exchange_volume_ml:g} ml is more than the vial's max fill "
                f"({bioreactor.max_fill_ml:g} ml); send a smaller volume"
            )
        if not (math.isfinite(self.min_normalized_od) and self.min_normalized_od >= 0):
            raise ValueError(f"min_normalized_od must be >= 0, got {self.min_normalized_od!r}")

    def _run(self, inputs: Inputs, now: float) -> Decision:
        """One period: pulse if the culture is dense enough. ``now`` and reading timestamps are seconds on
        the same clock, so the age of a reading is a subtraction."""
        reading = inputs.normalized_od  # growth_rate_calculating's od_filtered; None until the first one
        if reading is None or now - reading.timestamp > STALE_AFTER_S:
            # Never dose blind: the base turns this into an ErrorOccurred event and asks again next period.
            raise StaleInput("no recent normalized OD; is growth_rate_calculating running?")
        if reading.value < self.min_normalized_od:
            return Decision(None, NoEvent(
                f"normalized OD {reading.value:.3g} is below {self.min_normalized_od:g}; not feeding yet",
                {"normalized_od": reading.value},
            ))
        volume = self.exchange_volume_ml
        # Exchange(media, alt_media, waste): waste must cover the additions, so the volume stays put.
        return Decision(
            Exchange(volume, 0.0, volume),
            DilutionEvent(
                f"normalized OD {reading.value:.3g} >= {self.min_normalized_od:g}; exchanging {volume:g} ml",
                {"normalized_od": reading.value, "exchange_volume_ml": volume},
            ),
        )
