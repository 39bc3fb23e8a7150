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
