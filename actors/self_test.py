"""The self_test job: runs the hardware checks of :mod:`actors.self_test_checks` and publishes each result.

Each check's result is retained at ``.../self_test/<check>`` (1 passed, 0 failed) with its detail in the
``results`` setting, then ``all_tests_passed``. A failing check is named in an error log line. The job
holds the stirring and heater channels while it runs (so it refuses to run beside stirring or a
temperature automation), puts every output back to 0, and then disconnects by itself.
"""

from __future__ import annotations

from typing import Any

from actors.job import OTHERS, Job, JobContext
from actors.self_test_checks import CHECKS, Check, CheckError
from actors.settings import Setting


class SelfTest(Job):
    name = "self_test"
    resumable = False  # a one-shot action: never redone after a power cut
    kill_priority = OTHERS
    settings = (
        Setting(name="k", datatype="string", startup=True, default="", description="run only checks whose name contains this"),
        Setting(name="ir_channel", datatype="string", startup=True, default="A", description="LED pocket of the IR LED"),
        Setting(name="results", datatype="json", persist=True),
        Setting(name="all_tests_passed", datatype="boolean", persist=True),
    )

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(ctx)
        wanted = ctx.values["k"]
        self.queue = [name for name in CHECKS if wanted in name]
        self.results: dict[str, dict[str, Any]] = {}
        self.current: tuple[str, Check] | None = None
        self.held: list[str] = []

    def start(self) -> None:
        if not self.queue:
            self.ctx.fail(f"no check matches -k {self.ctx.values['k']!r}; checks are: {', '.join(CHECKS)}")
            return
        self._acquire(["stirring", "heater"])

    def _acquire(self, channels: list[str]) -> None:
        if not channels:
            self.ctx.ready()
            self._next_check()
            return

        def done(ok: bool, error: str | None) -> None:
            if not ok:
                self.ctx.fail(f"cannot run the self-test: {error}; stop that job first")
                return
            self.held.append(channels[0])
            self._acquire(channels[1:])

        self.ctx.acquire("pwm", channels[0], done)

    # --- driving the check generators -------------------------------------------------------------

    def _next_check(self) -> None:
        if not self.queue:
            self._finish()
            return
        name = self.queue.pop(0)
        self.current = (name, CHECKS[name](self.ctx.values["ir_channel"]))
        self._step(None)

    def _step(self, value: Any, error: str | None = None) -> None:
        assert self.current is not None
        name, check = self.current
        try:
            request = check.throw(CheckError(error)) if error is not None else check.send(value)
        except StopIteration as done:
            passed, detail = done.value
            self._record(name, passed, detail)
            return
        except CheckError as e:
            self._record(name, False, str(e))
            return
        self._perform(request)

    def _perform(self, request: tuple[Any, ...]) -> None:
        kind = request[0]
        if kind == "led":
            self.ctx.set_led(request[1], request[2], lambda ok, err: self._step(None, None if ok else err))
        elif kind == "duty":
            self.ctx.set_duty(request[1], request[2])
            self._step(None)
        elif kind == "adc":
            self.ctx.read_adc(request[1], lambda volts, _at, err: self._step(volts, err))
        elif kind == "temperature":
            self.ctx.read_temperature(lambda celsius, err: self._step(celsius, err if celsius is None else None))
        elif kind == "edges":
            self.ctx.read_hall_edges(lambda edges, at: self._step((edges, at)))
        elif kind == "wait":
            self.ctx.after(request[1], lambda: self._step(None))
        else:
            raise ValueError(f"unknown self-test request {request!r}")

    def _record(self, name: str, passed: bool, detail: str) -> None:
        self._outputs_off()
        self.results[name] = {"passed": passed, "detail": detail}
        self.ctx.publish(name, 1 if passed else 0, retain=True)
        self.ctx.update("results", dict(self.results))
        if not passed:
            self.ctx.log("ERROR", f"self-test check {name} failed: {detail}")
        self.current = None
        self._next_check()

    def _finish(self) -> None:
        failed = [n for n, r in self.results.items() if not r["passed"]]
        self.ctx.update("all_tests_passed", not failed)
        if failed:
            self.ctx.log("ERROR", f"self-test failed: {', '.join(failed)}")
        else:
            self.ctx.log("INFO", f"self-test passed ({len(self.results)} checks)")
        self.ctx.stop()

    def _outputs_off(self) -> None:
        for channel in self.held:
            self.ctx.set_duty(channel, 0.0)
        self.ctx.set_led(self.ctx.values["ir_channel"], 0.0)

    def on_stop(self) -> None:
        self._outputs_off()
