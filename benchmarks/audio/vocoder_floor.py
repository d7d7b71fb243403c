"""Vocoder floor: real clips -> normalized log-mel -> NNLS + fast Griffin-Lim -> the listener.

Prints one Markdown row per candidate: n_fft | hop | mels | frames | Griffin-Lim iterations |
listener accuracy on the vocoded test clips | heard as asked on 100 vocoded training clips | their FD |
the FD floor | milliseconds a clip.

    .venv/bin/python benchmarks/audio/vocoder_floor.py 512,128,64,32 256,128,64,32   # n_fft,hop,mels,iterations
"""
import sys
import time

import torch

from genzoo.data import load_dataset
from genzoo.data.vocoder import MelSpec
from genzoo.eval.audio_classifier import get_audio_evaluator
from genzoo.eval.audio_report import listen_metrics, FLOOR_SEED

ev = get_audio_evaluator()
train, test = load_dataset("spoken-digits", "train"), load_dataset("spoken-digits", "test")
rows = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(FLOOR_SEED))[:100]
cands = [tuple(int(v) for v in c.split(",")) for c in sys.argv[1:]]  # n_fft,hop,mels,iterations
for n_fft, hop, mels, it in cands:
    m = MelSpec(8000, n_fft=n_fft, hop=hop, mels=mels, iterations=it)
    t = time.perf_counter()
    voc_test = torch.cat([m.round_trip(test.x[i:i + 64]) for i in range(0, len(test.x), 64)])
    sec = (time.perf_counter() - t) / len(test.x)
    acc = (ev.predict(voc_test) == test.y).float().mean().item()
    r = listen_metrics(ev, m.round_trip(train.x[rows]), train.y[rows], load_dataset)
    print(f"| {n_fft} | {hop} | {mels} | {m.frames} | {it} | {acc:.3f} | {r['heard_as_asked']:.2f} | {r['fd_audio']:.1f} | {r['fd_audio_floor']:.1f} | {sec*1000:.0f} |", flush=True)
