"""Loggers that work inside Thespian actor processes.

Thespian replaces the logging manager in every actor process it forks, so a logger object created at
import time (before the fork) would bypass Thespian's forwarder to the node log. :func:`get` returns a
proxy that looks the logger up on each call, in whatever process it runs.
"""

from __future__ import annotations

import logging
from typing import Any


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(logging.getLogger(self._name), attr)


def get(name: str) -> Any:
    return _LazyLogger(name)
