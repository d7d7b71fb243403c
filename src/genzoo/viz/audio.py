"""Audio samples a person can hear and see: a WAV of the clips one after another and a spectrogram grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genzoo.data.audio import DEFAULT_RATE, clips_waveform, log_spectrogram, mu_law_decode, write_wav


def save_spectrograms(levels: torch.Tensor, path: str | Path, sample_rate: int, titles: list[str] | None = None,
                      ncol: int | None = None) -> Path:
    """A grid of log spectrograms of (N, 1, T) mu-law clips (dB, 0-4 kHz at 8 kHz)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI (genzoo.viz.samples imports this module: no import back)
    import matplotlib.pyplot as plt

    n = len(levels)
    ncol = ncol or min(n, 5)
    nrow = math.ceil(n / ncol)
    spec = log_spectrogram(mu_law_decode(levels.reshape(n, -1)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), squeeze=False)
    seconds = levels.shape[-1] / sample_rate
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(spec[i].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                      extent=(0, seconds, 0, sample_rate / 2000))
            if titles:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def save_audio(levels: torch.Tensor, path: str | Path, data_spec: dict, titles: list[str] | None = None) -> Path:
    """Write clips as a WAV (one after another, 0.25 s apart) and their spectrogram grid (PNG), one
    beside the other: ``path`` names either; returns ``path``."""
    path = Path(path)
    rate = int(data_spec.get("sample_rate") or DEFAULT_RATE)
    levels = torch.as_tensor(levels).detach().cpu().float().reshape(len(levels), 1, -1)
    wav, png = (path, path.with_suffix(".png")) if path.suffix.lower() == ".wav" else (path.with_suffix(".wav"), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(wav, clips_waveform(levels, rate), rate)
    save_spectrograms(levels, png, rate, titles)
    return path
