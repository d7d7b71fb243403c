"""privbayes on full diamonds (target cut): train, sample 2,000 rows, score ML efficacy and quality on a split.

The choices of the family's defaults used the VALIDATION split (benchmarks/privacy/results.md, session 8):

    GENZOO_DP_SEEDED_NOISE=1 .venv/bin/python benchmarks/privacy/privbayes_val.py EPSILON SEED val '{"usefulness": 2}'

EPSILON 0 trains without DP; the last argument sets model config fields (JSON).
"""
import json
import os
import shutil
import sys
import time

import torch

from genzoo import api
from genzoo.data import table as tables
from genzoo.eval import tables as ev

eps = float(sys.argv[1]); seed = int(sys.argv[2]); split = sys.argv[3]; over = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
name = "diamonds#target=cut"
t0 = time.time()
kw = {"dp_epsilon": eps, "dp_delta": 1e-6} if eps > 0 else {}
shutil.rmtree(f"{os.environ.get('TMPDIR', '/tmp')}/privbayes-val/{eps}-{seed}", ignore_errors=True)
model, summary = api.train("privbayes", name, out=f"{os.environ.get('TMPDIR', '/tmp')}/privbayes-val/{eps}-{seed}", progress=False, seed=seed, model_overrides=over, **kw)
t1 = time.time()
x = model.sample(2000, generator=torch.Generator().manual_seed(seed))
spec = model.data_spec["table"]
syn = tables.decode(x, spec)
train, held = tables.split_frame(name, "train"), tables.split_frame(name, split)
f1 = ev.ml_efficacy(syn, held, "cut", spec["columns"], seed=0)
q = ev.quality(ev._sample(train, ev.MAX_REAL, 0), syn, spec["columns"])
print(f"{over} eps {eps} seed {seed} split {split}: fit {t1-t0:.1f}s  ML efficacy {f1:.3f} quality {q['quality']:.3f} shapes {q['column_shapes']:.3f} pairs {q['column_pairs']:.3f} spent {summary.get('privacy', {}).get('epsilon')}", flush=True)
print([ (spec['columns'][v]['name'], [spec['columns'][p]['name'] for p in model.config.parents[v]]) for v in model.config.order])
