"""Atomic writes: a reader, or a crash, sees the old file (folder) or the new one whole, never a torn one.

Torch-free and a leaf (it imports nothing from genzoo), so the store, the checkpoint code and the
benchmarks share it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


def write_atomic_file(path: str | os.PathLike, payload: bytes | str, *, private: bool = False) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.
    ``private``: created readable by its owner only (0600), never wider even for a moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a killed process that had our pid: O_EXCL below creates it afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)  # 0o666: the umask decides
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload.encode() if isinstance(payload, str) else payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """For writers that want a file name (``np.save``, ``fig.savefig``, ``torch.save``): call
    ``write(tmp)`` on a temporary path beside ``path`` (same suffix, so a writer that picks the
    format from it still does), fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Call ``fill(tmp)`` to populate a temporary folder, then swap it in for ``target``."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    for f in tmp.iterdir():  # make the bytes durable before the rename publishes them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
