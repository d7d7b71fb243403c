"""Chorale samples a person can play: token ids -> MIDI files (pretty_midi) and a WAV rendered with sines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genzoo.core.atomic import write_atomic_with
from genzoo.data import chorales
from genzoo.data.audio import write_wav

RATE = 8000  # sines below 1 kHz: 8 kHz is plenty, and half the file


def save_chorales(ids: torch.Tensor, path: str | Path, tokenizer) -> Path:
    """Sample 0 as ``path`` (.mid), sample i as ``stem-i.mid``; every sample, one after another, in ``stem.wav``."""
    path = Path(path)
    mid = path if path.suffix.lower() in (".mid", ".midi") else path.with_suffix(".mid")
    mid.parent.mkdir(parents=True, exist_ok=True)
    waves = []
    for i, row in enumerate(torch.as_tensor(ids).tolist()):
        pm = chorales.to_midi(tokenizer.decode([t for t in row if t != tokenizer.eos_id]))
        target = mid if i == 0 else mid.with_name(f"{mid.stem}-{i}{mid.suffix}")
        write_atomic_with(target, lambda tmp, pm=pm: pm.write(str(tmp)))
        waves += [chorales.render(pm, RATE), np.zeros(RATE // 2, np.float32)]
    write_wav(mid.with_suffix(".wav"), np.concatenate(waves), RATE)
    return path
