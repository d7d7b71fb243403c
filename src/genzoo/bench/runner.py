"""Train each registered family on one dataset with one budget, evaluate, report.

Families are discovered through the registry: a new family joins the bench
by registering itself, with no edit here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from genzoo.bench.report import write_reports
from genzoo.checkpoint import write_atomic_file
from genzoo.data import load_dataset
from genzoo.errors import GenzooError
from genzoo.registry import families, get_family


def eligible_families(data_kind: str) -> list[str]:
    """Families whose default variant handles ``data_kind`` (a family:variant entry may name another)."""
    return [n for n, f in sorted(families().items())
            if f.handles(f.default_variant, data_kind) and not n.startswith("test-")]


def run_bench(
    data: str,
    *,
    families: list[str] | None = None,
    minutes: float | None = None,
    steps: int | None = None,
    out_dir: str | Path = "bench_runs",
    n_samples: int = 1000,
    nll_options: dict[str, dict] | None = None,
    sample_options: dict[str, dict] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    from genzoo import api
    from genzoo.eval import evaluate

    out_dir = Path(out_dir)
    kind = load_dataset(data, "train").kind
    names = families or eligible_families(kind)
    for name in names:
        family, variant = split_entry(name)
        info = get_family(family)
        if kind not in info.data_kinds:
            raise GenzooError(f"{family} does not handle {kind} data")
        # refuses an unknown variant, or one that does not handle this data, now rather than after hours
        info.variant_overrides(variant or info.default_variant, load_dataset(data, "train").spec())
    rows = []
    budget = {"minutes": minutes, "steps": steps}
    for name in names:
        family, variant = split_entry(name)
        run_dir = out_dir / f"{name.replace(':', '-')}-{data.replace(':', '-').replace('/', '_')}"
        t0 = time.perf_counter()
        try:
            model, summary = api.train(family, data, variant=variant, out=run_dir, steps=steps, minutes=minutes, seed=seed, progress=progress)
        except GenzooError as e:  # one family failing must not lose the others' results
            rows.append({"family": name, "error": str(e), "run": str(run_dir)})
            write_reports(rows, data, out_dir, budget)
            continue
        metrics = evaluate(
            model, data, n_samples=n_samples, nll_options=_options_for(nll_options, name),
            sampler_options=_options_for(sample_options, name), seed=seed, progress=progress,
        )
        row = {
            "family": name,
            "variant": model.config.variant,
            "train_steps": summary["steps"],
            "selected_step": summary.get("best_step"),
            "train_seconds": summary["train_seconds"],
            "run": str(run_dir),
            "samples_png": _last_png(run_dir),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            **metrics,
        }
        write_atomic_file(run_dir / "eval.json", json.dumps(row, indent=2))
        rows.append(row)
        write_reports(rows, data, out_dir, budget)  # partial results survive a crash
    return write_reports(rows, data, out_dir, budget)


def split_entry(name: str) -> tuple[str, str | None]:
    """A bench entry is a family ("gan") or "family:variant" ("gan:wgan-gp"), so that every variant
    of a family can be benched beside the others; None means the family's default variant."""
    family, sep, variant = name.partition(":")
    if sep and not variant:
        raise GenzooError(f"bench entry {name!r}: give FAMILY or FAMILY:VARIANT, e.g. gan:wgan-gp")
    return family, (variant or None)


def _options_for(options: dict[str, dict] | None, name: str) -> dict | None:
    """Per-entry options: those given for "family:variant", else those for the family."""
    options = options or {}
    return options.get(name, options.get(split_entry(name)[0]))


def _last_png(run_dir: Path) -> str | None:
    """The grid of the evaluated weights: those selected on validation, else the last."""
    pngs = sorted((run_dir / "samples").glob("best_step_*.png")) or sorted((run_dir / "samples").glob("step_*.png"))
    return str(pngs[-1]) if pngs else None
