"""Atomic file writes: a reader never sees a half-written file under the real name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes | str,
                 check: Callable[[Path], object] | None = None) -> None:
    """Write via a temp file in the same folder, fsync, then os.replace.

    `check(tmp)` (e.g. re-reading what was written) runs before the replace, so a file that
    fails it never replaces the old one. Mode 0644: mkstemp's 0600 would hide a shared file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
