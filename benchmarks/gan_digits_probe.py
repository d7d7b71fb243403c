"""Short digits probe of one GAN setting: train N steps, then FD_digits / precision / recall / class metrics
of 1000 EMA samples. Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gan_digits_probe.py dcgan '{"spectral_norm": false}' 1500"""
import json
import sys
import time

import torch

torch.set_num_threads(1)
from genzoo import api
from genzoo.data import load_dataset
from genzoo.train import Trainer
from genzoo.eval.report import digits_sample_metrics
d = load_dataset("digits", "train")
variant=sys.argv[1]; ov=json.loads(sys.argv[2]); steps=int(sys.argv[3])
m = api.build_model("gan", d, variant, ov)
cfg = api.train_config_for(type(m), d, steps=steps, progress=False)
t=time.time(); tr=Trainer(m, d, cfg); tr.fit(); dt=time.time()-t
x = tr.sampling_model.sample(1000, generator=torch.Generator().manual_seed(0))
r = digits_sample_metrics(x)
print(variant, ov, steps, round(dt), "s", {k: round(r[k],3) for k in ("fd_digits","precision","recall","class_coverage","class_kl")}, flush=True)
