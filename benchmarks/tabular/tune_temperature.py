"""Picks the table families' default sampling temperature on the VALIDATION split (never the test split).

Why: the ctgan package's TVAE decodes every one-hot block (a category, a numeric column's mode) by
its argmax (temperature 0), genzoo's tvae drew it from its softmax (temperature 1). This loads the
tvae runs that ``bench_sdv.py`` trained for its "T=1 (old default)" row at seeds 0 and 1 (same
data, split and minutes; ``--runs``) and scores samples drawn from it at several temperatures: ML efficacy trained on the synthetic rows and tested on the 600 real
*validation* rows, quality and detection against the training rows. The test split is not read.

    python benchmarks/tabular/tune_temperature.py --out benchmarks/tabular   # after bench_sdv.py --seed 0 and --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sdv import N_SYNTH, TARGET  # noqa: E402

TEMPERATURES = (1.0, 0.5, 0.3, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    ap.add_argument("--runs", type=Path, nargs="+", default=[tmp / f"gz-bench-tabular-seed{s}" / "run-tvae-old-default" for s in (0, 1)])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/tabular"))
    args = ap.parse_args()
    import numpy as np
    import torch
    from sklearn.metrics import f1_score
    from threadpoolctl import threadpool_limits

    from genzoo import api
    from genzoo.data import table as tables
    from genzoo.eval import tables as ev

    torch.set_num_threads(1)
    out = {}
    for seed, run in enumerate(args.runs):
        model = api.load(run).eval()
        name = api.run_data(run, model)
        spec = model.data_spec["table"]
        train, val = (tables.split_frame(name, s) for s in ("train", "val"))
        columns = spec["columns"]
        for t in TEMPERATURES:
            with torch.no_grad():  # one sample per temperature and run
                x = model.sample(N_SYNTH, generator=torch.Generator().manual_seed(100 + seed), temperature=t)
            synth = tables.decode(x, spec)
            with threadpool_limits(limits=1):
                f1 = ev.ml_efficacy(synth, val, TARGET, columns, seed=0)
                q = ev.quality(ev._sample(train, ev.MAX_REAL, 0), synth, columns)["quality"]
                det = ev.detection_auc(ev._sample(train, ev.MAX_REAL, 0), synth, columns, 0)
                # per class: F1 on validation of each `cut` class, and the synthetic class shares
                from sklearn.ensemble import HistGradientBoostingClassifier

                feats = [c for c in columns if c["name"] != TARGET]
                enc = ev.Features(synth, feats)
                clf = HistGradientBoostingClassifier(random_state=0).fit(enc(synth), synth[TARGET].astype(str))
                labels = sorted(val[TARGET].astype(str).unique())
                per = f1_score(val[TARGET].astype(str), clf.predict(enc(val)), average=None, labels=labels, zero_division=0)
            shares = synth[TARGET].astype(str).value_counts(normalize=True).reindex(labels).fillna(0).round(3).to_dict()
            key = f"tvae run {run.parent.name} T={t}"
            out[key] = {"ml_efficacy_val": f1, "quality": q, "detection_auc": det,
                        "per_class_f1_val": dict(zip(labels, np.round(per, 3).tolist())), "class_shares": shares}
            print(key, json.dumps(out[key]), flush=True)
    real = train[TARGET].astype(str).value_counts(normalize=True).round(3).to_dict()
    out["real training class shares"] = real
    print("real training class shares", real)
    (args.out / "tune_temperature.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
