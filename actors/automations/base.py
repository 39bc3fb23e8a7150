"""What every automation job shares: ``--automation-name``, the automation's parameters as settings,
``latest_event``, and the event log line.

``pio run dosing_automation --automation-name turbidostat --target-biomass 1.5 --exchange-volume-ml 1``:
the job class is the family's (dosing, temperature, LED); the automation is a pure policy class found by
:mod:`actors.automations.registry` (built-in or plugin), whose ``PARAMETERS`` become this run's settings.
So ``pio run`` options, ``/set`` casting and refusals, retained publishing and the dashboard's form all
come from the one declaration, for built-ins and plugins alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from actors.automations.events import AutomationEvent
from actors.automations.parameters import Parameter
from actors.automations.registry import UnknownAutomation, broken_drop_ins, find
from actors.job import AUTOMATIONS, Job, JobContext
from actors.messages import NodeConfig
from actors.settings import Setting, SettingError

_DATATYPES = {"float": "float", "str": "string", "bool": "boolean"}


def parameter_setting(p: Parameter) -> Setting:
    """The job setting for an automation parameter (given at start, settable later if the policy allows)."""
    return Setting(
        name=p.name,
        datatype=_DATATYPES[p.type],
        settable=p.settable,
        startup=True,
        unit=p.unit or None,
        default=p.default,
        description=p.description,
        choices=p.choices,
    )


def automation_class(family: str, options: Mapping[str, Any], node: NodeConfig) -> type:
    name = options.get("automation_name")
    if not name:
        raise SettingError(f"--automation-name is required; for example --automation-name {_example(family)}")
    try:
        return find(family, str(name), node.plugin_dir)
    except UnknownAutomation as e:
        raise SettingError(str(e)) from None


def _example(family: str) -> str:
    return {"dosing": "turbidostat", "temperature": "thermostat", "led": "light_dark_cycle"}.get(family, "silent")


class AutomationJob(Job):
    """Base of ``dosing_automation``, ``temperature_automation`` and ``led_automation``."""

    family: ClassVar[str] = ""
    kill_priority = AUTOMATIONS
    settings = (
        Setting(name="automation_name", datatype="string", startup=True, description="which automation runs"),
        Setting(name="latest_event", datatype="json"),
    )

    @classmethod
    def settings_for(cls, options: Mapping[str, str], node: NodeConfig) -> tuple[Setting, ...]:
        policy = automation_class(cls.family, options, node)
        own = {s.name for s in cls.settings}
        clash = [p.name for p in policy.PARAMETERS if p.name in own]
        if clash:
            raise SettingError(f"automation {policy.name} declares parameters the job already has: {', '.join(clash)}; rename them")
        return cls.settings + tuple(parameter_setting(p) for p in policy.PARAMETERS)

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        policy = automation_class(cls.family, values, node)
        missing = [p.name for p in policy.PARAMETERS if p.required and values.get(p.name) is None]
        if missing:
            options = " ".join(f"--{m.replace('_', '-')} <value>" for m in missing)
            raise SettingError(f"{policy.name} needs {options}")

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        self.policy_class: Any = automation_class(self.family, ctx.values, ctx.node)
        # A broken drop-in is skipped so this automation can run; say so, it may be someone's next one.
        for error in broken_drop_ins(ctx.node.plugin_dir):
            ctx.log("WARNING", f"skipped an automation plugin file that could not be loaded: {error}")

    def parameters(self) -> dict[str, Any]:
        """The automation's parameter values of this run (given or default)."""
        return {p.name: self.ctx.values.get(p.name) for p in self.policy_class.PARAMETERS if self.ctx.values.get(p.name) is not None}

    def report(self, event: AutomationEvent, quiet: bool = False) -> None:
        """Publish an automation's run as ``latest_event`` and log it (the reference's run_once ending).
        ``quiet`` runs (nothing happened, every few seconds) are logged at DEBUG, which stays on the node."""
        self.ctx.update("latest_event", {"event_name": event.event_name, "message": event.message, "data": dict(event.data)})
        self.ctx.log("DEBUG" if quiet else "INFO", event.display())
