"""Where a node keeps its files, and its pid file.

``$PIO_STATE_DIR`` (default ``$XDG_STATE_HOME/pioactors`` or ``~/.local/state/pioactors``) holds one
directory per unit: ``node.json`` (the running daemon's pid, the actor system's process group, the admin
port), ``node.log`` (every actor's log lines) and ``daemon.log`` (the daemon's own output).
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs


def state_root() -> str:
    root = os.environ.get("PIO_STATE_DIR")
    if root:
        return os.path.abspath(root)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "pioactors")


def node_dir(unit: str) -> str:
    return os.path.join(state_root(), unit)


def plugin_dir() -> str:
    return os.environ.get("PIO_PLUGIN_DIR") or os.path.join(state_root(), "plugins")


@attrs.frozen(kw_only=True)
class PidFile:
    unit: str
    daemon_pid: int
    pgid: int
    admin_port: int
    started_at: float

    @staticmethod
    def path(unit: str) -> str:
        return os.path.join(node_dir(unit), "node.json")

    @classmethod
    def read(cls, unit: str) -> "PidFile | None":
        try:
            with open(cls.path(unit), encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def write(self) -> None:
        path = self.path(self.unit)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(attrs.asdict(self), f)
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    @classmethod
    def remove(cls, unit: str) -> None:
        try:
            os.remove(cls.path(unit))
        except FileNotFoundError:
            pass
