"""FD_digits of an untrained model of each family: the baseline "learns" is measured against.

Run: .venv/bin/python benchmarks/untrained.py diffusion vae --samples 1000
"""

import argparse
import json

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.eval.report import digits_sample_metrics

ap = argparse.ArgumentParser()
ap.add_argument("families", nargs="+")
ap.add_argument("--samples", type=int, default=1000)
args = ap.parse_args()
train = load_dataset("digits", "train")
for family in args.families:
    model = api.build_model(family, train, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.cat([model.sample(min(250, args.samples - i), generator=g) for i in range(0, args.samples, 250)])
    m = digits_sample_metrics(x)
    print(json.dumps({"family": family, "untrained_fd_digits": round(m["fd_digits"], 2), "floor": round(m["fd_digits_floor"], 2)}))
