"""Functional core, actor shell: the science and decision modules import no actor, MQTT or hardware
library, so they can be tested (and reasoned about) on their own."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PURE = [
    "actors/clock.py",
    "actors/reconcile.py",
    "actors/lifecycle.py",
    "actors/settings.py",
    "actors/topics.py",
    "actors/pid.py",
    "actors/supervision.py",
    "actors/stirring_control.py",
    "actors/topology.py",
    "leader/deployer.py",
    "leader/parsers.py",
    "actors/hardware/sim_motor.py",
    "actors/hardware/sim_culture.py",
    "actors/hardware/sim_optics.py",
    "actors/hardware/sim_thermal.py",
    "actors/hardware/sim_pumps.py",
    "actors/hardware/vessel.py",
    "actors/hardware/safety.py",
    "actors/od_processing.py",
    "actors/growth_rate_filter.py",
    "actors/bioreactor.py",
    "actors/bioreactor_books.py",
    "actors/node_health.py",
    "actors/calibrations.py",
    "actors/pump_run.py",
    "actors/temperature_inference.py",
    "actors/automations/events.py",
    "actors/automations/dosing/policies.py",
    "actors/automations/dosing/subdosing.py",
    "actors/automations/temperature/thermostat.py",
    "actors/automations/led/light_dark_cycle.py",
]
FORBIDDEN = {"thespian", "paho", "pigpio", "lgpio", "board", "busio", "aiohttp", "sqlite3"}


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE)
def test_core_module_imports_no_io_library(module):
    assert not imported_roots(ROOT / module) & FORBIDDEN


@pytest.mark.parametrize("module", PURE)
def test_core_module_never_reads_the_time(module):
    source = (ROOT / module).read_text()
    if module == "actors/clock.py":
        return  # the one place that does
    for call in ("time.time(", "time.monotonic(", "datetime.now(", "time.sleep("):
        assert call not in source, f"{module} calls {call}"
