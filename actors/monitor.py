"""The monitor job: the node's health checks and status LED, and the vial's books (pioreactor.md §3.3, §3.2).

Long-running (``pio kill --all`` leaves it alone). Two duties, both thin over pure cores:

* **Health** (:mod:`actors.node_health`): at start and every ``self_check_interval_hours`` (12 h, the
  reference's) it checks free disk on the node's state directory, the CPU temperature, the supply rail
  (through the ADC driver) and that the HAT answers; the broker link is followed as it changes (the
  bridge keeps a local retained ``$node/broker_link``). It publishes ``computer_statistics``,
  ``voltage_on_pwm_rail``, ``versions``, ``checks`` and ``error_code``, warns once per change, and blinks
  the error code on the HAT's status LED (the PWM driver's ``status_led`` output).
* **Books** (:mod:`actors.bioreactor_books`): every ``pioreactor/<unit>/+/dosing_events`` record is folded
  into that experiment's :class:`~actors.bioreactor.BioreactorState`, saved atomically under
  ``<state_dir>/bioreactor/`` and published retained on ``<exp>/bioreactor/<field>``; a user corrects the
  books with ``<exp>/bioreactor/<field>/set``.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import quote, unquote

import actors
from actors import topics
from actors.bioreactor import BioreactorState
from actors.bioreactor_books import BadEvent, Books, vessel_defaults
from actors.clock import utc_iso
from actors.files import atomic_write
from actors.job import OTHERS, Job, JobContext
from actors.node_health import (
    CheckResult,
    HealthLog,
    aux_rail_volts,
    blink_pattern,
    check_broker,
    check_cpu_temperature,
    check_disk,
    check_hat,
    check_power,
    computer_statistics,
    error_code,
    parse_meminfo,
    parse_thermal_zone,
)
from actors.settings import Setting

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"
MEMINFO = "/proc/meminfo"
STATUS_LED = "status_led"  # the PWM driver's output for the HAT's status LED
BOOKS_DIR = "bioreactor"


class Monitor(Job):
    name = "monitor"
    kill_priority = OTHERS
    long_running = True
    settings = (
        Setting(
            name="self_check_interval_hours", datatype="float", settable=True, unit="h", minimum=0.0003,
            maximum=24 * 30, default=12.0, description="how often the health checks run",
        ),
        Setting(name="error_code", datatype="integer", default=0, description="0 = okay; else the reference's 1-8"),
        Setting(name="checks", datatype="json", description="the last verdict of each check"),
        Setting(name="computer_statistics", datatype="json"),
        Setting(name="voltage_on_pwm_rail", datatype="json"),
        Setting(name="versions", datatype="json"),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.results: dict[str, CheckResult] = {}
        self.health = HealthLog()
        self.books: dict[str, Books] = {}
        self.vessel = BioreactorState()
        self.led = False  # holds the status LED
        self.led_steps: list[tuple[bool, float]] = []
        self.led_index = 0
        self.led_repeat = False

    # --- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        unit = self.ctx.unit
        self.vessel = self._vessel_defaults()
        self._load_books()
        self._books_for(self.ctx.experiment)  # the unit's experiment: automations read its volume from the start
        self.ctx.subscribe(topics.dosing_events_topic(unit, "+"), self._on_dosing_event)
        self.ctx.subscribe(topics.set_topic(unit, "+", "bioreactor", "+"), self._on_books_set)
        self.ctx.subscribe(topics.broker_link_topic(unit), self._on_broker_link)
        self.ctx.update("versions", self._versions())
        self.ctx.ready()
        self._self_check()
        self._arm_checks()
        try:
            self.ctx.acquire("pwm", STATUS_LED, self._led_acquired)
        except KeyError:  # a node without a PWM driver: no LED to blink
            pass

    def _arm_checks(self, hours: float | None = None) -> None:
        hours = self.ctx.values["self_check_interval_hours"] if hours is None else hours
        self.ctx.every(hours * 3600.0, self._self_check, "self_check")

    def apply_self_check_interval_hours(self, value: float) -> float:
        self._arm_checks(value)  # re-armed from now with the new period
        return value

    def _vessel_defaults(self) -> BioreactorState:
        from actors.hardware.hardware_access import node_description

        node = self.ctx.node
        try:
            vessel = node_description(node).vessel
            return vessel_defaults(vessel.capacity_ml, vessel.max_fill_ml, vessel.default_efflux_tube_ml)
        except Exception as e:  # a broken description: the books still need a vial, say which one
            self.ctx.log("ERROR", f"cannot read vessel model {node.model!r} ({e}); the books assume a 20 ml vial")
            return BioreactorState()

    # --- health ---------------------------------------------------------------------------------

    def _self_check(self) -> None:
        try:
            usage = shutil.disk_usage(self.ctx.node.state_dir)
        except OSError:
            usage = shutil.disk_usage(os.path.dirname(self.ctx.node.state_dir) or "/")
        cpu = _read_cpu_temperature()
        self.results["disk"] = check_disk(usage.free, usage.total)
        self.results["cpu_temperature"] = check_cpu_temperature(cpu)
        self.ctx.update(
            "computer_statistics",
            computer_statistics(
                disk_free_bytes=usage.free,
                disk_total_bytes=usage.total,
                cpu_temperature_c=cpu,
                load_average=os.getloadavg(),
                memory=_read_meminfo(),
                timestamp=utc_iso(self.ctx.clock.now()),
            ),
        )
        self._conclude()
        try:
            self.ctx.read_adc(("aux",), self._on_aux)
        except KeyError as e:  # this node has no ADC driver at all
            self._on_aux({}, self.ctx.clock.now(), str(e).strip("'\""))

    def _on_aux(self, volts: dict[str, float], at: float, error: str | None) -> None:
        reading = volts.get("aux") if error is None else None
        self.results["hat"] = check_hat(reading is not None, error)
        rail = aux_rail_volts(reading) if reading is not None else None
        self.results["power"] = check_power(rail, error)
        if rail is not None:
            self.ctx.update("voltage_on_pwm_rail", {"voltage": round(rail, 3), "timestamp": utc_iso(at)})
        self._conclude()

    def _on_broker_link(self, _topic: str, payload: str) -> None:
        node = self.ctx.node
        self.results["broker"] = check_broker(payload == "connected", f"the broker at {node.broker_host}:{node.broker_port}")
        self._conclude()

    def _conclude(self) -> None:
        self.health, lines = self.health.update(self.results.values())
        for level, line in lines:
            self.ctx.log(level, line)
        self.ctx.update("checks", {n: {"ok": r.ok, "message": r.message} for n, r in sorted(self.results.items())})
        code = error_code(self.results.values())
        if code != self.ctx.values.get("error_code"):
            self.ctx.update("error_code", code)
            self._show(code)

    def _versions(self) -> dict[str, str]:
        from actors.hardware.hardware_access import SIM_HAT

        node = self.ctx.node
        hat = f"{SIM_HAT} (simulated)" if node.hardware == "sim" else node.hardware
        return {"app": actors.__version__, "hat": hat, "model": node.model}

    # --- status LED -----------------------------------------------------------------------------

    def _led_acquired(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.ctx.log("INFO", f"no status LED ({error}): error codes are published but not blinked")
            return
        self.led = True
        self._show(self.ctx.values["error_code"])

    def _show(self, code: int) -> None:
        """Okay: 4 double blinks, once. An error: its pattern, repeated while the error lasts."""
        if not self.led:
            return
        self.ctx.cancel("led")
        self.led_steps, self.led_index, self.led_repeat = blink_pattern(code), 0, code != 0
        self._led_step()

    def _led_step(self) -> None:
        if self.led_index >= len(self.led_steps):
            if not self.led_repeat:
                self.ctx.set_duty(STATUS_LED, 0.0)
                return
            self.led_index = 0
        on, seconds = self.led_steps[self.led_index]
        self.led_index += 1
        self.ctx.set_duty(STATUS_LED, 100.0 if on else 0.0)
        # A person reads the LED: its steps are real seconds, whatever the node's time scale.
        self.ctx.after(seconds * self.ctx.node.time_scale, self._led_step, name="led")

    # --- the books ------------------------------------------------------------------------------

    def _books_dir(self) -> str:
        return os.path.join(self.ctx.node.state_dir, BOOKS_DIR)

    def _books_path(self, experiment: str) -> str:
        return os.path.join(self._books_dir(), quote(experiment, safe="") + ".json")

    def _load_books(self) -> None:
        folder = self._books_dir()
        if not os.path.isdir(folder):
            return
        for entry in sorted(os.listdir(folder)):
            if not entry.endswith(".json"):
                continue
            experiment = unquote(entry[: -len(".json")])
            path = os.path.join(folder, entry)
            try:
                with open(path, encoding="utf-8") as f:
                    books = Books.from_json(f.read(), self.vessel)
            except (OSError, ValueError, TypeError) as e:
                os.replace(path, path + ".unreadable")
                self.ctx.log("ERROR", f"the books of {experiment} in {path} are unreadable ({e}); kept as "
                             f"{entry}.unreadable, starting from the vessel defaults")
                continue
            self.books[experiment] = books
            self._publish_books(experiment, books.state.as_dict())

    def _books_for(self, experiment: str) -> Books:
        books = self.books.get(experiment)
        if books is None:
            books = Books(self.vessel)
            self.books[experiment] = books
            self._publish_books(experiment, books.state.as_dict())
        return books

    def _save(self, experiment: str, books: Books) -> None:
        atomic_write(self._books_path(experiment), books.to_json())  # a restarted node reads the old books or the new
        self.books[experiment] = books

    def _publish_books(self, experiment: str, fields: dict[str, float]) -> None:
        for attr, value in fields.items():
            self.ctx.publish_topic(topics.bioreactor_topic(self.ctx.unit, experiment, attr), value, retain=True, qos=1)

    def _on_dosing_event(self, topic: str, payload: str) -> None:
        experiment = topic.split("/")[2]
        books = self._books_for(experiment)
        try:
            new, changed, note = books.record(payload)
        except BadEvent as e:
            self.ctx.log("WARNING", f"ignored a dosing event of {experiment}: {e}")
            return
        if note is not None:
            self.ctx.log("DEBUG", note)
        if new is books:
            return
        self._save(experiment, new)
        self._publish_books(experiment, changed)
        if "spilled_ml" in changed:
            self.ctx.log("WARNING", f"{experiment}: the vial overflowed; {new.state.spilled_ml:.2f} ml spilled so far")

    def _on_books_set(self, topic: str, payload: str) -> None:
        experiment, field = topic.split("/")[2], topic.split("/")[4]
        books = self._books_for(experiment)
        try:
            new, changed = books.edit(field, payload)
        except ValueError as e:
            self.ctx.log("WARNING", f"refused bioreactor/{field}={payload!r} for {experiment}: {e}")
            return
        self._save(experiment, new)
        self._publish_books(experiment, changed)
        old = books.state.as_dict()[field]
        self.ctx.log("INFO", f"{experiment}: bioreactor {field} set by hand from {old:g} to {new.state.as_dict()[field]:g}")

    # --- lifecycle ------------------------------------------------------------------------------

    def on_sleep(self) -> None:
        if self.led:
            self.ctx.cancel("led")
            self.ctx.set_duty(STATUS_LED, 0.0)

    def on_wake(self) -> None:
        if self.ctx.values["error_code"]:
            self._show(self.ctx.values["error_code"])

    def on_stop(self) -> None:
        if self.led:
            self.ctx.set_duty(STATUS_LED, 0.0)


def _read_cpu_temperature() -> float | None:
    try:
        with open(THERMAL_ZONE, encoding="ascii") as f:
            return parse_thermal_zone(f.read())
    except OSError:
        return None


def _read_meminfo() -> dict[str, int]:
    try:
        with open(MEMINFO, encoding="ascii") as f:
            return parse_meminfo(f.read())
    except OSError:
        return {}

