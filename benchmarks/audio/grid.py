"""Real vs generated spoken digits: one spectrogram grid (rows: real test voices, then each run's
class-conditional samples, digits 0..9 across) and WAVs of each row, under docs/audio/.

    .venv/bin/python benchmarks/audio/grid.py runs/bench-audio/wavenet runs/bench-audio/diffusion
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.data.audio import clips_waveform, write_wav
from genzoo.viz.audio import save_spectrograms

OUT = Path("docs/audio")
test = load_dataset("spoken-digits", "test")
rows, titles = [], []
real = torch.stack([test.x[(test.y == d).nonzero()[0, 0]] for d in range(10)])
rows.append(real)
titles += [f"real {d}" for d in range(10)]
write_wav(OUT / "real-digits.wav", clips_waveform(real, 8000), 8000)
for run in sys.argv[1:]:
    model = api.load(run)
    x = model.sample(10, condition=torch.arange(10), generator=torch.Generator().manual_seed(0)).float()
    rows.append(x)
    titles += [f"{model.family} {d}" for d in range(10)]
    write_wav(OUT / f"{model.family}-digits.wav", clips_waveform(x, 8000), 8000)
save_spectrograms(torch.cat(rows), OUT / "real-vs-generated.png", 8000, titles, ncol=10)
print("wrote", OUT / "real-vs-generated.png")
