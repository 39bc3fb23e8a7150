"""Loggers that work inside Thespian actor processes.

Thespian replaces the logging manager in every actor process it forks, so a logger object created at
import time (before the fork) would bypass Thespian's forwarder to the node log. :func:`get` returns a
proxy that looks the logger up on each call, in whatever process it runs. Once an actor calls
:func:`ship`, the proxy also sends that process's lines to the leader through the node's bridge.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "exception": logging.ERROR, "critical": logging.CRITICAL}


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        target = getattr(logging.getLogger(self._name), attr)
        if _shipper is None or (attr not in _LEVELS and attr != "log"):
            return target
        shipper, name = _shipper, self._name

        def logged(*args: Any, **kwargs: Any) -> Any:
            result = target(*args, **kwargs)
            if attr == "log":
                level, rest = args[0], args[1:]
            else:
                level, rest = _LEVELS[attr], args
            if rest and not (kwargs.get("extra") or {}).get(SHIPPED):
                try:
                    text = str(rest[0]) % rest[1:] if len(rest) > 1 else str(rest[0])
                except (TypeError, ValueError):
                    text = " ".join(str(a) for a in rest)
                shipper.ship(name, level, text)
            return result

        return logged


def get(name: str) -> Any:
    return _LazyLogger(name)


SHIPPED = "shipped"  # a record marked so (``extra={SHIPPED: True}``) already went out as an MQTT log line


class Shipper:
    """Sends an actor process's log lines (INFO and above, logged through :func:`get`) through the
    node's bridge as MQTT log records (``pioreactor/<unit>/$experiment/logs/node/<level>``), so they
    reach the outbox and the leader's database as well as the node's log file. (Thespian forbids
    logging handlers in actor processes, hence a hook in our logger proxy.) Lines logged before the
    bridge is known (a driver boots before the bridge exists) are held, up to ``HOLD``, and sent when
    it is. Only lines logged on the actor's own thread are sent: Thespian's ``send`` is not
    thread-safe, and the simulator's server threads log too (those stay in the node's log file)."""

    HOLD = 200

    def __init__(self, actor: Any, config: Any) -> None:
        from actors.clock import Clock

        self.actor, self.config = actor, config
        self.pid = os.getpid()  # a forked child inherits this object; it must not send as its parent
        self.bridge: Any = None
        self.clock = Clock(time_scale=config.time_scale, anchor=config.clock_anchor)
        self.held: list[Any] = []
        self.sending = False

    def set_bridge(self, bridge: Any) -> None:
        self.bridge = bridge
        held, self.held = self.held, []
        for publish in held:
            self._send(publish)

    def ship(self, task: str, level: int, message: str) -> None:
        if (level < logging.INFO or self.sending or os.getpid() != self.pid
                or threading.current_thread() is not threading.main_thread()):
            return
        import json

        from actors import topics
        from actors.clock import utc_iso
        from actors.messages import Publish

        name = logging.getLevelName(level)
        payload = {"message": message, "level": name, "task": task, "source": "node", "timestamp": utc_iso(self.clock.now())}
        publish = Publish(topic=topics.log_topic(self.config.unit, topics.NO_EXPERIMENT, "node", name),
                          payload=json.dumps(payload), qos=1)
        if self.bridge is None:
            if len(self.held) < self.HOLD:
                self.held.append(publish)
            return
        self._send(publish)

    def _send(self, publish: Any) -> None:
        self.sending = True  # a line logged while sending must not send again
        try:
            self.actor.send(self.bridge, publish)
        except Exception:  # logging must never break the actor
            pass
        finally:
            self.sending = False


_shipper: Shipper | None = None


def ship(actor: Any, bridge: Any, config: Any) -> None:
    """Send this actor process's log lines through ``bridge`` from now on (None: hold them until a
    later call names the bridge; a new bridge replaces the old one)."""
    global _shipper
    if config is None:
        return
    if _shipper is None or _shipper.actor is not actor or _shipper.pid != os.getpid():
        _shipper = Shipper(actor, config)
    if bridge is not None:
        _shipper.set_bridge(bridge)
