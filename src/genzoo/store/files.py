"""Atomic file writes for the store's outputs (key files, cleaned datasets): a reader or a crash
sees the old file or the new one whole, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, payload: bytes, *, private: bool = False) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.
    ``private``: created readable by its owner only (0600), never wider even for a moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a killed process that had our pid: O_EXCL below creates it afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)  # 0o666: the umask decides
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
