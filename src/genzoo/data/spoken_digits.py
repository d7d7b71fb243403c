"""``spoken-digits``: the ten digit words spoken by eSpeak NG in many voices, SC09's shape, made here.

Each clip is one word ("zero" .. "nine", label = the digit), 1 s at 8 kHz, 8-bit mu-law levels
(``genzoo.data.audio``). A *speaker* is an English accent (``ACCENTS``) with a voice variant
(``+m3``, ``+f2``, ``+klatt`` ...). The splits hold disjoint variants, so every test voice is one no
model heard in training: a model cannot pass by remembering speakers. Each rendition draws its
speaking rate, pitch, pitch range, gain, a small synthetic room (an exponentially decaying noise
impulse response mixed in) and its place in the second from a generator seeded by its name, so the
set is the same on every machine with the same eSpeak NG data. eSpeak NG keeps internal state from one
utterance to the next that neither its seed nor a re-initialisation resets (measured: the same call
gives 11916, 11920, 11914 ... samples in turn), so the whole set is rendered in a fresh process, in
a fixed order (``render_fresh``): same process history, same samples. Built on first use (about 15 s)
and cached in ``$GENZOO_CACHE/data`` (default ``~/.cache/genzoo/data``).
"""

from __future__ import annotations

import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genzoo.core.atomic import write_atomic_with
from genzoo.data.audio import DEFAULT_RATE, LEVELS, fit_length, mu_law_encode, resample
from genzoo.data.base import Dataset

NAME = "spoken-digits"
VERSION = 1  # bump when the recipe changes: the cache file is named by it
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = {
    "train": ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "klatt", "klatt3", "croak", "david", "Andy", "annie"),
    "val": ("m6", "f4"),
    "test": ("m7", "f5", "klatt2", "benjamin"),
}
RENDITIONS = {"train": 2, "val": 1, "test": 1}  # per (accent, variant, word)
SAMPLE_RATE = DEFAULT_RATE
SECONDS = 1.0


def cache_path() -> Path:
    root = Path(os.environ.get("GENZOO_CACHE") or Path.home() / ".cache" / "genzoo")
    return root / "data" / f"{NAME}-v{VERSION}-{SAMPLE_RATE}hz.npz"


def voices(split: str) -> list[str]:
    """The eSpeak NG voice names of ``split`` (accent+variant)."""
    return [f"{a}+{v}" for a in ACCENTS for v in VARIANTS[split]]


def render(word: str, voice: str, key: str) -> np.ndarray:
    """One rendition of ``word`` by ``voice``, its randomness seeded by ``key``: 1 s of float32 at SAMPLE_RATE."""
    from scipy.signal import fftconvolve

    from genzoo.data import espeak

    rng = np.random.default_rng(zlib.crc32(key.encode()))
    wav = espeak.synthesize(word, voice, rate=int(rng.integers(130, 221)), pitch=int(rng.integers(25, 76)),
                            pitch_range=int(rng.integers(30, 71)), seed=int(rng.integers(2**31)))
    wav = resample(wav, espeak.sample_rate(), SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(wav) > 0.02)  # trim the synthesizer's silence around the word
    wav = wav[loud[0] : loud[-1] + 1] if len(loud) else wav
    # a small room: exponentially decaying noise, 50-250 ms, mixed in at 0-30%
    decay = rng.uniform(0.05, 0.25)
    t = np.arange(int(decay * SAMPLE_RATE)) / SAMPLE_RATE
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / decay)
    ir /= np.sqrt((ir**2).sum())
    wet = fftconvolve(wav, ir)[: len(wav) + len(ir) // 2]
    wav = np.pad(wav, (0, len(wet) - len(wav))) + rng.uniform(0, 0.3) * wet
    wav = wav / max(np.abs(wav).max(), 1e-6) * rng.uniform(0.5, 0.95)  # peak gain
    length = int(SECONDS * SAMPLE_RATE)
    offset = int(rng.integers(0, max(1, length - len(wav)) // 2 + 1))  # somewhere in the first half of the slack
    wav = fit_length(wav.astype(np.float32), length, offset)
    wav += rng.standard_normal(length).astype(np.float32) * 1e-4  # a faint noise floor (mu-law magnifies it: 1e-3 would be +-5 levels)
    return np.clip(wav, -1, 1)


def _render_all(items: list[tuple[str, str, str]]) -> list[np.ndarray]:
    return [render(*item) for item in items]


def render_fresh(items: list[tuple[str, str, str]]) -> list[np.ndarray]:
    """``render(word, voice, key)`` of every item, in order, in a freshly started process (see the module doc)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_render_all, (items,))


def build() -> dict[str, np.ndarray]:
    """Every split's clips (uint8 mu-law levels), labels and voice ids."""
    out = {}
    plan = {split: [(voice, digit, word, r) for voice in voices(split) for digit, word in enumerate(WORDS)
                    for r in range(RENDITIONS[split])] for split in VARIANTS}
    clips_all = render_fresh([(word, voice, f"{NAME}/{VERSION}/{voice}/{word}/{r}")
                              for split in VARIANTS for voice, _, word, r in plan[split]])
    start = 0
    for split in VARIANTS:
        clips = clips_all[start : start + len(plan[split])]
        start += len(plan[split])
        labels = [digit for _, digit, _, _ in plan[split]]
        speakers = [voice for voice, _, _, _ in plan[split]]
        out[f"{split}_x"] = mu_law_encode(np.stack(clips)).numpy().astype(np.uint8)  # one call: per-clip torch ops cost ms each
        out[f"{split}_y"] = np.array(labels, np.int64)
        out[f"{split}_voice"] = np.array(speakers)
    return out


@lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    path = cache_path()
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError):
        pass  # missing or torn: build it again
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic_with(path, lambda tmp: _save_npz(tmp, arrays))
    except OSError:
        pass  # a read-only cache only costs a rebuild next time
    return arrays


def _save_npz(tmp: Path, arrays: dict) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load(split: str) -> Dataset:
    a = _arrays()
    x = torch.from_numpy(a[f"{split}_x"].astype(np.float32)).unsqueeze(1)  # (N, 1, T) levels 0..255
    y = torch.from_numpy(a[f"{split}_y"])
    meta = {"sample_rate": SAMPLE_RATE, "class_names": list(WORDS), "voices": a[f"{split}_voice"].tolist(),
            "synthesizer": "eSpeak NG (espeakng-loader)"}
    return Dataset(NAME, split, x, y, levels=LEVELS, num_classes=len(WORDS), meta=meta, kind="audio")
