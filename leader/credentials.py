"""Broker identities: one password per unit and one for the leader, generated and kept by the leader.

The leader's ``credentials.json`` (mode 0600, under the leader's state dir) maps each identity to its
password; the broker user name is the identity itself (``leader`` or the unit's name). Generating is
idempotent: existing passwords are kept, new units get new ones, units gone from the topology are
dropped (so their old password stops working at the next broker start).

A unit's node reads its own ``<PIO_STATE_DIR>/<unit>/broker_credentials.json``
(``{"username": ..., "password": ...}``); on one machine (the demo) the leader writes those files itself,
for a real unit ``pios broker credentials <unit>`` prints what to put there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from typing import Callable, Iterable, Mapping

from worker import node_files

LEADER = "leader"
CREDENTIALS_FILE = "credentials.json"
UNIT_CREDENTIALS_FILE = "broker_credentials.json"
PASSWORD_BYTES = 24  # 32 URL-safe characters: far beyond guessing over a network

# A broker user name ends up in ACL patterns (%u) and file lines: keep it to plain host-name characters.
# Mosquitto itself denies pattern ACLs to names holding + or #, and ':' would break the password file.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CredentialsError(ValueError):
    """A credentials file or identity the leader cannot use, worded for the user."""


def default_leader_dir() -> str:
    """The leader's own folder: ``$PIO_STATE_DIR/leader`` (next to the units' folders in the demo)."""
    return os.path.join(node_files.state_root(), LEADER)


def credentials_path(leader_dir: str) -> str:
    return os.path.join(leader_dir, CREDENTIALS_FILE)


def check_identity(name: str) -> None:
    if not _NAME.match(name):
        raise CredentialsError(
            f"{name!r} cannot be a broker user name; use letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )


def plan(existing: Mapping[str, str], units: Iterable[str], new_password: Callable[[], str]) -> dict[str, str]:
    """The identities a topology needs: ``leader`` plus each unit, keeping passwords already issued.

    Pure: `new_password` is the only source of fresh secrets, so tests can pass a deterministic one.
    """
    wanted = [LEADER]
    for unit in units:
        check_identity(unit)
        if unit == LEADER:
            raise CredentialsError(f"a unit cannot be named {LEADER!r}: that is the leader's broker identity; rename the unit")
        wanted.append(unit)
    return {name: existing[name] if existing.get(name) else new_password() for name in wanted}


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def load(leader_dir: str) -> dict[str, str]:
    """The stored identities and passwords; {} when none were generated yet."""
    path = credentials_path(leader_dir)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CredentialsError(f"{path}: cannot read the broker credentials ({e}); remove the file to generate new ones") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise CredentialsError(
            f"{path}: expected a JSON object of identity -> password strings; remove the file to generate new ones"
        )
    return data


def ensure(leader_dir: str, units: Iterable[str]) -> dict[str, str]:
    """Make sure ``credentials.json`` holds exactly ``leader`` and `units`; return identity -> password."""
    existing = load(leader_dir)
    wanted = plan(existing, units, generate_password)
    if wanted != existing:
        write_secret_json(credentials_path(leader_dir), wanted)
    return wanted


def lookup(leader_dir: str, identity: str) -> tuple[str, str]:
    """(username, password) of one identity, or a CredentialsError naming the known ones."""
    stored = load(leader_dir)
    if identity not in stored:
        known = ", ".join(sorted(stored)) or "none yet (start the leader first)"
        raise CredentialsError(f"no broker identity {identity!r}; known identities: {known}")
    return identity, stored[identity]


def unit_credentials_path(unit: str, state_root: str | None = None) -> str:
    root = state_root if state_root is not None else node_files.state_root()
    return os.path.join(root, unit, UNIT_CREDENTIALS_FILE)


def write_unit_files(credentials: Mapping[str, str], units: Iterable[str], state_root: str | None = None) -> list[str]:
    """Write each unit's own ``broker_credentials.json`` (0600) for units run on this machine; return the paths."""
    paths = []
    for unit in units:
        if unit not in credentials:
            raise CredentialsError(f"no broker credentials for unit {unit!r}; generate them first")
        path = unit_credentials_path(unit, state_root)
        write_secret_json(path, {"username": unit, "password": credentials[unit]})
        paths.append(path)
    return paths


def write_secret_json(path: str, data: object) -> None:
    """Atomic write readable by the owner only: created 0600 in the same folder, then renamed over."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)  # mkstemp creates the file 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
