"""Finding and stopping a node's processes by their process group.

Thespian's admin calls ``setsid``; every actor it forks shares its process group. When the admin or a
parent actor dies, the actors live on as orphans that keep their hardware. The process group is the
one handle that reaches all of them, so cleanup goes by group, after checking that each member is a
Thespian actor process (its title, set by Thespian with setproctitle, names its actor address).
"""

from __future__ import annotations

import os
import signal
import time


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone for our purposes
    except OSError:
        return False


def _pgrp(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[2])


def _is_actor_process(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ActorAddr-" in f.read()
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live Thespian actor processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            if _pgrp(pid) == pgid and _is_actor_process(pid):
                members.append(pid)
    return members


def stop_group(pgid: int, grace: float = 3.0) -> int:
    """SIGTERM the group's actor processes, then SIGKILL what is left after ``grace`` seconds.

    The group is listed again on every round: a dying supervisor can still fork a replacement child
    between two looks, and that one must not be left behind. Returns how many processes were stopped.
    """
    stopped: set[int] = set()
    start = time.monotonic()
    while True:
        members = group_members(pgid)
        if not members:
            break
        elapsed = time.monotonic() - start
        if elapsed > 3 * grace:
            break  # unkillable (D state): give up rather than hang the caller
        sig = signal.SIGTERM if elapsed < grace else signal.SIGKILL
        for pid in members:
            _signal(pid, sig)
            stopped.add(pid)
        time.sleep(0.05)
    return len(stopped)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def admin_pid(pgid: int) -> int | None:
    """The Thespian admin of an actor group (titled ``MultiProcAdmin``); the group leader itself is a
    short-lived intermediate fork, so it is not the admin."""
    for pid in group_members(pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"MultiProcAdmin"):
                    return pid
        except OSError:
            continue
    return None
