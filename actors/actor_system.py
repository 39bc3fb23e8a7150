"""Starting and attaching to a node's Thespian actor system, safely.

Three Thespian facts shape this module (see docs/architecture.md):
- ``ActorSystem(base, {'Admin Port': N})`` silently *starts* a system when nothing listens on N, so
  attaching always probes the port first and never starts anything by accident;
- every actor socket binds to all interfaces and unpickles what arrives, so before any system is
  created we make every address bind to loopback (the patch is inherited by every forked actor);
- the node supervisor is the only named actor, looked up with its real, importable class.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

BASE = "multiprocTCPBase"
SUPERVISOR_NAME = "node-supervisor"
LOOPBACK = "127.0.0.1"

_patched = False


def make_loopback_only() -> None:
    """Advertise and bind every Thespian address of this process (and its forks) on 127.0.0.1."""
    global _patched
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    if _patched:
        return
    from thespian.system.transport import IPBase

    original = IPBase.IPActorAddress.__init__

    def loopback_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.bindname and self.bindname[0] in ("", "0.0.0.0"):
            self.bindname = (LOOPBACK,) + tuple(self.bindname[1:])

    IPBase.IPActorAddress.__init__ = loopback_init  # type: ignore[method-assign]
    _patched = True


def admin_answers(port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on the loopback admin port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def attach(port: int) -> Any:
    """Handle on the running system at ``port``. Callers must have checked :func:`admin_answers`."""
    make_loopback_only()
    from thespian.actors import ActorSystem

    return ActorSystem(BASE, {"Admin Port": port}, logDefs=False)


def start(port: int, capabilities: dict[str, Any], log_path: str) -> Any:
    """Start a new system on ``port``; actor log records go to ``log_path``."""
    make_loopback_only()
    from thespian.actors import ActorSystem

    caps = {"Admin Port": port, **capabilities}
    # transientUnique: a daemon that rebuilds a lost system must not get the dead one's handle back.
    return ActorSystem(BASE, caps, logDefs=log_definitions(log_path), transientUnique=True)


def supervisor(asys: Any) -> Any:
    from actors.supervisor import NodeSupervisor

    return asys.createActor(NodeSupervisor, globalName=SUPERVISOR_NAME)


def log_definitions(log_path: str) -> dict[str, Any]:
    """A ``logging.dictConfig`` applied by Thespian's logger process: one file per node."""
    return {
        "version": 1,
        "formatters": {
            "line": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"},
        },
        "handlers": {
            "file": {
                "class": "logging.handlers.RotatingFileHandler",
                "filename": log_path,
                "maxBytes": 10_000_000,
                "backupCount": 3,
                "formatter": "line",
                "level": logging.INFO,
            }
        },
        "root": {"handlers": ["file"], "level": logging.INFO},
        "disable_existing_loggers": False,
    }
