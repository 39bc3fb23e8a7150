"""A real node for tests: `pio node start` as an OS process, driven with the real `pio` CLI.

Each node gets its own state directory, a free admin port and the test's broker. ``cleanup()`` stops
the node and then every process of its actor group, whatever state the test left it in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from worker.processes import admin_pid, group_members, pid_alive, stop_group

from .broker import Mosquitto, free_port
from .waiting import wait_until

PIO = os.path.join(os.path.dirname(sys.executable), "pio")


class Node:
    def __init__(
        self, root: Path, broker: Mosquitto, unit: str = "sim01", time_scale: float = 10.0, simulation: dict[str, float] | None = None
    ) -> None:
        self.root = root
        self.unit = unit
        self.broker = broker
        self.experiment = "demo"
        self.admin_port = free_port()
        self.state_dir = root / "state"
        self.plugin_dir = root / "plugins"
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.topology = root / "topology.yaml"
        sim = f", simulation: {json.dumps(simulation)}" if simulation else ""
        self.topology.write_text(
            textwrap.dedent(
                f"""\
                broker: {{host: {broker.host}, port: {broker.port}}}
                units:
                  {unit}: {{hardware: sim, admin_port: {self.admin_port}, time_scale: {time_scale}{sim}}}
                experiments:
                  {self.experiment}: {{units: [{unit}]}}
                """
            )
        )
        self.env = {
            **os.environ,
            "PIO_STATE_DIR": str(self.state_dir),
            "PIO_TOPOLOGY": str(self.topology),
            "PIO_UNIT": unit,
            "PIO_PLUGIN_DIR": str(self.plugin_dir),
        }
        self._groups: set[int] = set()
        self._daemons: set[int] = set()

    # --- running pio ---------------------------------------------------------------------------------

    def pio(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PIO, *args], env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pio {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def pio_json(self, *args: str) -> Any:
        return json.loads(self.pio(*args, "--json").stdout)

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> "Node":
        self.pio("node", "start")
        self._remember()
        return self

    def _remember(self) -> None:
        info = self.pidfile()
        if info:
            self._groups.add(info["pgid"])
            self._daemons.add(info["daemon_pid"])

    def pidfile(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / self.unit / "node.json").read_text())
        except (OSError, ValueError):
            return None

    @property
    def pgid(self) -> int:
        info = self.pidfile()
        assert info, "node is not running"
        return int(info["pgid"])

    @property
    def daemon_pid(self) -> int:
        info = self.pidfile()
        assert info, "node is not running"
        return int(info["daemon_pid"])

    @property
    def admin_pid(self) -> int:
        pid = admin_pid(self.pgid)
        assert pid, "no admin process found"
        return pid

    def processes(self) -> list[int]:
        """Live actor processes of every actor group this node has had."""
        return sorted(p for g in self._groups for p in group_members(g))

    def job(self, name: str) -> dict[str, Any] | None:
        return next((j for j in self.pio_json("jobs", "list") if j["name"] == name), None)

    def wait_job_state(self, name: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        return wait_until(lambda: (j := self.job(name)) and j["state"] == state and j, timeout, 0.1, f"{name} {state}")

    def topic(self, job: str, attr: str) -> str:
        return f"pioreactor/{self.unit}/{self.experiment}/{job}/{attr}"

    def write_plugin(self, name: str, source: str) -> Path:
        path = self.plugin_dir / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def log_text(self) -> str:
        parts = []
        for name in ("node.log", "daemon.log"):
            p = self.state_dir / self.unit / name
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def cleanup(self) -> None:
        self._remember()
        try:
            # Explicit target: a test may have changed the environment the node was started with.
            self.pio("--unit", self.unit, "--topology", str(self.topology), "node", "stop", check=False, timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for pid in self._daemons:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for pgid in self._groups:
            stop_group(pgid, grace=2.0)
