"""Waveforms as genzoo data: 8-bit mu-law levels, resampling and WAV files.

An audio dataset (kind "audio") holds clips as (N, 1, T) float32 tensors of integer mu-law levels
0..255 (``levels=256``), like images hold pixel levels: every family sees the same discrete data,
and a likelihood is in bits per sample of it. Mu-law (ITU-T G.711's curve, mu = 255) spends its
levels where speech spends its time, near silence, so 8 bits sound far better than 8 linear bits.
``meta["sample_rate"]`` (and the spec's ``sample_rate``) says how fast to play them.
"""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path

import numpy as np
import torch

from genzoo.core.atomic import write_atomic_file

MU = 255
LEVELS = MU + 1
DEFAULT_RATE = 8000


def mu_law_encode(x, mu: int = MU) -> torch.Tensor:
    """Waveform in [-1, 1] -> integer levels 0..mu (as float32)."""
    x = torch.as_tensor(x, dtype=torch.float32).clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu).round().clamp(0, mu)


def mu_law_decode(levels, mu: int = MU) -> torch.Tensor:
    """Integer levels 0..mu -> waveform in [-1, 1] (the inverse of ``mu_law_encode`` up to its rounding)."""
    y = torch.as_tensor(levels, dtype=torch.float32).clamp(0, mu) / mu * 2 - 1
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy's ``resample_poly``, anti-aliasing filter included)."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def fit_length(x: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """``x`` placed at ``offset`` in ``length`` samples of silence (cut where it runs over)."""
    out = np.zeros(length, np.float32)
    piece = x[: max(0, length - offset)]
    out[offset : offset + len(piece)] = piece
    return out


def wav_bytes(waveform, sample_rate: int) -> bytes:
    """A mono 16-bit PCM WAV file of ``waveform`` (floats in [-1, 1], any shape: flattened in order)."""
    pcm = (np.clip(np.asarray(waveform, dtype=np.float64).reshape(-1), -1, 1) * 32767).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, waveform, sample_rate: int) -> Path:
    write_atomic_file(path, wav_bytes(waveform, sample_rate))
    return Path(path)


def clips_waveform(levels: torch.Tensor, sample_rate: int, gap_seconds: float = 0.25) -> np.ndarray:
    """(N, 1, T) mu-law levels -> one waveform: the clips one after another with a short silence between."""
    clips = mu_law_decode(torch.as_tensor(levels).reshape(len(levels), -1)).numpy()
    gap = np.zeros(int(gap_seconds * sample_rate), np.float32)
    parts = []
    for i, clip in enumerate(clips):
        parts += [gap, clip] if i else [clip]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def log_spectrogram(waveform: torch.Tensor, n_fft: int = 256, hop: int = 64) -> torch.Tensor:
    """(..., T) waveform -> (..., n_fft // 2 + 1, frames) log power spectrogram (Hann window), in dB."""
    x = torch.as_tensor(waveform, dtype=torch.float32)
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = spec.abs().pow(2)
    return (10 * torch.log10(power + 1e-10)).reshape(*lead, *power.shape[-2:])
