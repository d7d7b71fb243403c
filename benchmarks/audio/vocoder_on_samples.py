"""The vocoder on a mel model's own samples, not only on real clips.

A real clip's mel is exactly F P for some power spectrum P >= 0, so any mel -> linear solver that
starts near the answer looks perfect on real clips (vocoder_floor.py). A sampled mel is not in that
cone; there the solver has to be run to its optimum. This samples 100 mel images from RUN (digit
i % 10, DPM-Solver++ 20, guidance 3, one seed) once, decodes them with each number of NNLS (FISTA)
steps and with the solver genzoo had before (20 plain projected-gradient steps), and prints per
setting: the worst mel row's bias after the round trip (re-encoded minus sampled, mean over clips
and frames, in image units), and the listener's heard-as-asked and FD.

    .venv/bin/python benchmarks/audio/vocoder_on_samples.py runs/s10/mel-6000 --steps 20,50,100,200 --seed 0
"""

import argparse
import dataclasses

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.eval.audio_classifier import get_audio_evaluator
from genzoo.eval.audio_report import listen_metrics

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--steps", default="20,50,100,200")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--guidance", type=float, default=3.0)
args = parser.parse_args()

model = api.load(args.run)
if model.mel is None:
    raise SystemExit(f"{args.run} is not a mel-diffusion run")
asked = torch.arange(100) % 10
model.to_data_space = lambda images: images  # keep the sampled images; decode them below
images = model.sample(100, condition=asked, generator=torch.Generator().manual_seed(args.seed), guidance=args.guidance)
evaluator = get_audio_evaluator()
centres = torch.linspace(0, model.mel.sample_rate / 2, model.mel.n_fft // 2 + 1)[model.mel.filterbank.argmax(1)]


class PlainPG20(type(model.mel)):
    """The solver before session 10: 20 projected-gradient steps from the clamped pseudo-inverse."""

    def linear_power(self, mel):
        fb = self.filterbank.to(mel)
        p = (self._pinv.to(mel) @ mel).clamp(min=0)
        step = 1.0 / float(torch.linalg.matrix_norm(fb, 2)) ** 2
        for _ in range(20):
            p = (p - step * (fb.T @ (fb @ p - mel))).clamp(min=0)
        return p


settings = [("plain PG 20 (before)", PlainPG20(**dataclasses.asdict(model.mel)))]
settings += [(f"FISTA {s}", dataclasses.replace(model.mel, nnls_steps=int(s))) for s in args.steps.split(",")]
print("| NNLS solver | worst row bias | at | heard as asked | FD | FD floor |")
print("|---|---|---|---|---|---|")
for name, mel in settings:
    clips = mel.decode(images)
    bias = (mel.encode(clips) - images).mean((0, 1, 3))
    row = int(bias.abs().argmax())
    m = listen_metrics(evaluator, clips, asked, load_dataset)
    print(f"| {name} | {bias[row]:+.3f} | row {row} ({centres[row]:.0f} Hz) | {m['heard_as_asked']:.2f} | "
          f"{m['fd_audio']:.1f} | {m['fd_audio_floor']:.1f} |", flush=True)
