"""A user's folder of ``.wav`` files as audio data: one sub-folder per class gives labels.

Every file is read with ``soundfile``, mixed down to mono, resampled to ``SAMPLE_RATE`` and cut or
padded (silence at the end) to ``SECONDS``, then stored as 8-bit mu-law levels like the built-in
audio (``genzoo.data.audio``). A file that cannot be read stops the load with an error that names
it. The split is the same seeded 80/10/10 by file as for other user files (``files.split_rows``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genzoo.core.errors import GenzooError
from genzoo.data.audio import DEFAULT_RATE, LEVELS, fit_length, mu_law_encode, resample
from genzoo.data.base import Dataset

SUFFIXES = {".wav"}
SAMPLE_RATE = DEFAULT_RATE
SECONDS = 1.0


def wav_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))


def is_wav_folder(name: str) -> bool:
    path = Path(name)
    return path.is_dir() and bool(wav_files(path))


def read_wav(f: Path) -> np.ndarray:
    """Mono float32 at SAMPLE_RATE, or a GenzooError naming the file."""
    import soundfile

    try:
        data, rate = soundfile.read(str(f), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001  soundfile raises several types for broken files
        raise GenzooError(f"cannot read audio file {f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                          "remove or replace the file (a .wav soundfile can open)") from None
    if data.size == 0:
        raise GenzooError(f"audio file {f} holds no samples; remove or replace it")
    return resample(data.mean(axis=1), int(rate), SAMPLE_RATE)


def load(path: str | Path, split: str) -> Dataset:
    from genzoo.data.files import split_rows

    root = Path(path)
    files = wav_files(root)
    clips, classes = [], []
    length = int(SECONDS * SAMPLE_RATE)
    for f in files:
        clips.append(fit_length(read_wav(f), length))
        rel = f.relative_to(root)
        classes.append(rel.parts[0] if len(rel.parts) > 1 else None)
    idx = split_rows(len(clips), split, str(root))
    x = mu_law_encode(np.stack([clips[i] for i in idx])).unsqueeze(1)
    names, y = [], None
    if all(c is not None for c in classes):
        names = sorted(set(classes))
        y = torch.tensor([names.index(classes[i]) for i in idx], dtype=torch.long)
    meta = {"path": str(root.resolve()), "class_names": names, "sample_rate": SAMPLE_RATE}
    return Dataset(str(root), split, x, y, levels=LEVELS, num_classes=len(names), meta=meta, kind="audio")
