"""Picks the table families' default sampling temperature on the VALIDATION split (never the test split).

Why: the ctgan package's TVAE decodes every one-hot block (a category, a numeric column's mode) by
its argmax (temperature 0), genzoo's tvae drew it from its softmax (temperature 1). This loads tvae
runs that ``bench_sdv.py`` trained (same data, split and minutes; ``--runs``; their training does not
depend on the sampling temperature) and scores samples drawn from each at several temperatures, with
and without ``keep_marginals`` (each block's share held at the model's T = 1 share): ML efficacy
trained on the synthetic rows and tested on the 600 real *validation* rows, quality and detection
against the training rows. The test split is not read.

    python benchmarks/tabular/tune_temperature.py --out benchmarks/tabular   # session 4: the "T=1 (old default)" runs, seeds 0, 1
    python benchmarks/tabular/tune_temperature.py --keep-marginals --runs $TMPDIR/gz-bench-tabular-seed{0,1,2,3,4}/run-tvae \
        --json tune_temperature_marginals.json --out benchmarks/tabular   # session 8: 5 runs, shares kept or not
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sdv import N_SYNTH, TARGET  # noqa: E402

TEMPERATURES = (1.0, 0.5, 0.3, 0.2, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    ap.add_argument("--runs", type=Path, nargs="+", default=[tmp / f"gz-bench-tabular-seed{s}" / "run-tvae-old-default" for s in (0, 1)])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/tabular"))
    ap.add_argument("--keep-marginals", action="store_true", help="also sample each temperature with keep_marginals (else without)")
    ap.add_argument("--json", default="tune_temperature.json", help="file under --out for the results")
    args = ap.parse_args()
    cases = [(t, k) for t in TEMPERATURES for k in ((False, True) if args.keep_marginals and t not in (0.0, 1.0) else (False,))]
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
        for t, keep in cases:
            with torch.no_grad():  # one sample per temperature and run
                x = model.sample(N_SYNTH, generator=torch.Generator().manual_seed(100 + seed), temperature=t, keep_marginals=keep)
            synth = tables.decode(x, spec)
            with threadpool_limits(limits=1):
                f1 = ev.ml_efficacy(synth, val, TARGET, columns, seed=0)
                q = ev.quality(ev._sample(train, ev.MAX_REAL, 0), synth, columns)
                det = ev.detection_auc(ev._sample(train, ev.MAX_REAL, 0), synth, columns, 0)
                # per class: F1 on validation of each `cut` class, and the synthetic class shares
                from sklearn.ensemble import HistGradientBoostingClassifier

                feats = [c for c in columns if c["name"] != TARGET]
                enc = ev.Features(synth, feats)
                clf = HistGradientBoostingClassifier(random_state=0).fit(enc(synth), synth[TARGET].astype(str))
                labels = sorted(val[TARGET].astype(str).unique())
                per = f1_score(val[TARGET].astype(str), clf.predict(enc(val)), average=None, labels=labels, zero_division=0)
            shares = synth[TARGET].astype(str).value_counts(normalize=True).reindex(labels).fillna(0).round(3).to_dict()
            key = f"tvae run {run.parent.name} T={t}" + (" keep_marginals" if keep else "")
            out[key] = {"ml_efficacy_val": f1, "quality": q["quality"], "column_shapes": q["column_shapes"],
                        "column_pairs": q["column_pairs"], "detection_auc": det,
                        "per_class_f1_val": dict(zip(labels, np.round(per, 3).tolist())), "class_shares": shares}
            print(key, json.dumps(out[key]), flush=True)
    real = train[TARGET].astype(str).value_counts(normalize=True).round(3).to_dict()
    out["real training class shares"] = real
    print("real training class shares", real)
    for t, keep in cases:  # the mean over runs, per case
        rows = [v for k, v in out.items() if k.endswith(f" T={t}" + (" keep_marginals" if keep else ""))]
        mean = {m: round(float(np.mean([r[m] for r in rows])), 4) for m in ("ml_efficacy_val", "quality", "column_shapes", "column_pairs", "detection_auc")}
        out[f"mean over {len(rows)} runs T={t}" + (" keep_marginals" if keep else "")] = mean
        print(f"mean over {len(rows)} runs, T={t}{' keep_marginals' if keep else ''}: {mean}", flush=True)
    (args.out / args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
