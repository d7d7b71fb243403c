"""Real vs generated spoken digits: one spectrogram grid (rows: real test voices, then each run's
class-conditional samples, digits 0..9 across) and WAVs of each row, under docs/audio/.

    .venv/bin/python benchmarks/audio/grid.py runs/bench-audio/wavenet runs/bench-audio/diffusion
    .venv/bin/python benchmarks/audio/grid.py --out real-vs-trained.png \
        runs/s7/wavenet:wavenet-12979steps runs/s9/mel-snr:diffusion-mel-11500steps:3

Each run is RUN[:LABEL[:GUIDANCE]]: LABEL names its row and its WAV (default: the family), GUIDANCE is
the classifier-free guidance scale its samples are drawn with (default: the family's sampler default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.data.audio import clips_waveform, write_wav
from genzoo.viz.audio import save_spectrograms

OUT = Path("docs/audio")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("runs", nargs="+", help="RUN[:LABEL[:GUIDANCE]]")
parser.add_argument("--out", default="real-vs-generated.png", help="grid file name under docs/audio/")
args = parser.parse_args()

test = load_dataset("spoken-digits", "test")
rows, titles = [], []
real = torch.stack([test.x[(test.y == d).nonzero()[0, 0]] for d in range(10)])
rows.append(real)
titles += [f"real {d}" for d in range(10)]
write_wav(OUT / "real-digits.wav", clips_waveform(real, 8000), 8000)
for spec in args.runs:
    run, label, guidance = (spec.split(":") + ["", ""])[:3]
    model = api.load(run)
    label = label or model.family
    options = {"guidance": float(guidance)} if guidance else {}
    x = model.sample(10, condition=torch.arange(10), generator=torch.Generator().manual_seed(0), **options).float()
    rows.append(x)
    titles += [f"{label} {d}" for d in range(10)]
    write_wav(OUT / f"{label}-digits.wav", clips_waveform(x, 8000), 8000)
save_spectrograms(torch.cat(rows), OUT / args.out, 8000, titles, ncol=10)
print("wrote", OUT / args.out)
