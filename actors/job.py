"""The job base: what every job (built-in or plugin) subclasses.

A job is a plain class. It declares its published settings as data and reacts to a few hooks; it
reaches the world only through its :class:`JobContext` (timers on the node clock, hardware requests,
publishing, logging), which the job host actor provides. That keeps jobs testable without actors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Protocol

from actors.clock import Clock
from actors.messages import NodeConfig
from actors.settings import Setting
from actors.supervision import RestartPolicy

# `pio kill --all` stops jobs in this order (the reference's): pumps first, LEDs last.
PUMPS, HEATING, AUTOMATIONS, OTHERS, LEDS = 0, 1, 2, 3, 4


class JobContext(Protocol):
    unit: str
    experiment: str
    job: str
    clock: Clock
    values: dict[str, Any]
    node: NodeConfig  # the node's files (state_dir), vessel model, time scale, plugin folder

    def ready(self) -> None: ...

    def update(self, name: str, value: Any) -> None: ...

    def publish(self, attr: str, payload: Any, retain: bool = False, qos: int = 0) -> None: ...

    def publish_topic(self, topic: str, payload: Any, retain: bool = False, qos: int = 0) -> None: ...

    def log(self, level: str, message: str) -> None: ...

    def subscribe(self, topic_filter: str, callback: Callable[[str, str], None], retained: bool = True) -> None: ...

    def topic(self, job: str, attr: str) -> str: ...

    def after(self, sim_seconds: float, callback: Callable[[], None], name: str | None = None) -> str: ...

    def every(self, sim_seconds: float, callback: Callable[[], None], name: str) -> str: ...

    def cancel(self, name: str) -> None: ...

    def acquire(self, driver: str, channel: str, callback: Callable[[bool, str | None], None]) -> None: ...

    def set_duty(self, channel: str, duty: float, seconds: float | None = None) -> None: ...

    def read_adc(
        self, signals: tuple[str, ...], callback: Callable[[dict[str, float], float, str | None], None], samples: int = 1
    ) -> None: ...

    def set_led(self, channel: str, intensity: float, callback: Callable[[bool, str | None], None] | None = None) -> None: ...

    def read_temperature(self, callback: Callable[[float | None, str | None], None]) -> None: ...

    def read_hall_edges(self, callback: Callable[[int, float], None]) -> None: ...

    def stop(self) -> None: ...

    def sleep(self) -> None: ...

    def fail(self, reason: str) -> None: ...


class Job:
    """Subclass, set ``name`` and ``settings``, and override the hooks you need.

    A setting ``x`` may have a hook ``apply_x(value) -> value`` that acts on a `/set` and returns the
    value to publish (or raises :class:`actors.settings.SettingError` to refuse it). Without a hook the
    value is simply stored and published.
    """

    name: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    kill_priority: ClassVar[int] = OTHERS
    long_running: ClassVar[bool] = False  # excluded from `pio kill --all`, like the reference's monitor
    restart_policy: ClassVar[RestartPolicy] = RestartPolicy()  # how the supervisor treats its crashes
    resumable: ClassVar[bool] = True  # restarted when a lost node comes back; False for one-shot actions

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    @classmethod
    def settings_for(cls, options: Mapping[str, str], node: NodeConfig) -> tuple[Setting, ...]:
        """The settings of this run. Override when they depend on the options (an automation's
        parameters depend on ``--automation-name``); may raise SettingError to refuse the options."""
        return cls.settings

    @classmethod
    def check(cls, values: Mapping[str, Any], node: NodeConfig) -> None:
        """Refuse a combination of options before anything starts (raise SettingError saying what to
        send instead). A refusal here is reported to ``pio run`` and never restarted."""

    def apply_setting(self, name: str, value: Any) -> Any:
        """The `/set` hook for settings without an ``apply_<name>`` method (settings that exist only
        for some runs, like an automation's parameters). Return the value to publish."""
        return value

    def start(self) -> None:
        """Called in ``init``. Acquire hardware, arm timers, then call ``self.ctx.ready()``."""
        self.ctx.ready()

    def on_sleep(self) -> None:
        """``ready -> sleeping``: pause, putting outputs in their safe state."""

    def on_wake(self) -> None:
        """``sleeping -> ready``: resume."""

    def on_stop(self) -> None:
        """``-> disconnected``: put every output in its safe state. Must not raise."""
