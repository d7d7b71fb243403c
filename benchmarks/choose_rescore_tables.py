"""The chooser's table cases, their 5M benches scored again with the fixed column-pair trends (session 7).

``genzoo.eval.tables.quality`` used sdmetrics 0.32's QualityReport for the column-pair half until session 7;
that report bins the real and the synthetic rows each on its own range (see ``column_pair_trends``). The
validation's table cases were scored with it. This loads each case's bench checkpoints (kept by
``choose_validation.py run --out``), scores them again through the chooser's own ``_evaluate`` (same seed,
same samples; only the metric changed) and says whether the recorded pick is still the best or within 10%.
The chooser's own pick is not redone: it was made on the old metric, in rounds whose models are gone.

    python benchmarks/choose_rescore_tables.py "penguins=penguins=/tmp/s6/cvA/penguins" \\
        "user CSV: carData Chile survey (missing cells)=/tmp/chv_chile.csv=/tmp/s6/cvA/_tmp_chv_chile.csv" ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from choose_validation import verdict  # noqa: E402

CURVES = Path(__file__).parent / "results" / "choose_validation_curves.jsonl"
OUT = Path(__file__).parent / "results" / "choose_validation_tables_rescored.jsonl"


def main(argv: list[str]) -> None:
    import torch

    from genzoo import api
    from genzoo.bench import choose as C

    torch.set_num_threads(1)
    rows = {r["data"]: r for r in map(json.loads, CURVES.read_text().splitlines())}
    out = []
    for case in argv:
        label, data, folder = (case.split("=", 2) + ["", ""])[:3]
        if label not in rows or not folder:
            raise SystemExit(f"expected LABEL=DATA=FOLDER with LABEL one of {sorted(rows)}, got {case!r}")
        row = rows[label]
        metrics = {}
        for family in row["bench_scores"]:
            model = api.load(Path(folder) / "bench" / family).eval()
            m = C._evaluate(model, data, family, row["seed"], nll=False)
            metrics[family] = m
            print(f"{label}: {family:8s} quality {row['bench_table_quality'][family]:.3f} -> {m['quality']:.3f} "
                  f"(pairs {m['column_pairs']:.3f}, report's {m['column_pairs_report']:.3f}; floor {m['quality_floor']:.3f})", flush=True)
        ranking = C.rank_for(row["goal"])(metrics)  # as the validation ranked its bench
        best = ranking[0]
        new = {"data": label, "pick": row["pick"], "verdict_before": row["verdict"], "bench_best_before": row["bench_best"],
               "bench_table_quality_before": row["bench_table_quality"],
               "bench_table_quality": {f: v["quality"] for f, v in metrics.items()},
               "quality_floor": m["quality_floor"], "bench_ranking": ranking, "bench_best": best,
               "verdict": verdict(row["pick"], best, metrics[row["pick"]]["quality_gap"], metrics[best]["quality_gap"])}
        print(f"{label}: pick {row['pick']}, bench best {row['bench_best']} -> {best}: {row['verdict']} -> {new['verdict']}", flush=True)
        out.append(new)
    with OUT.open("a") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
