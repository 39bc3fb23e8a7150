"""Writing a node's state files so that a power cut never leaves half a file.

Every file a job or the supervisor keeps (calibrations, blanks, the vial's books, growth-rate caches,
wanted and desired jobs) goes through :func:`atomic_write`: the text goes to a temporary file in the same
folder, is flushed to disk, and then replaces the old file in one rename. A reader sees the old content or
the new, never a mix.
"""

from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, text: str) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def output_problem(path: str, replace: bool, example_name: str) -> str | None:
    """Why a file cannot be written at ``path`` (a folder, an existing file without ``replace``, a
    missing folder), as one message saying what to do instead; None when it can."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        return f"{path} is a directory; give a file name, e.g. {os.path.join(path, example_name)}"
    if os.path.exists(target) and not replace:
        return f"{path} already exists; choose another name or replace it (--force)"
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist; create it first or write elsewhere"
    return None
