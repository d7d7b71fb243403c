"""Train each registered family on one dataset with one budget, evaluate, report.

Families are discovered through the registry: a new family joins the bench
by registering itself, with no edit here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from genzoo.bench.report import write_reports
from genzoo.core.atomic import write_atomic_file
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.registry import families, get_family


def eligible_families(data_kind: str) -> list[str]:
    """The generative families (they sample or give a likelihood: what the bench compares) whose
    default variant handles ``data_kind``; a classifier or a scorer is named explicitly if wanted."""
    from genzoo.models.base import LOG_PROB, SAMPLE

    return [n for n, f in sorted(families().items())
            if f.handles(f.default_variant_for(data_kind), data_kind) and not n.startswith("test-") and f.capabilities & {SAMPLE, LOG_PROB}]


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
    if len(set(names)) != len(names):
        raise GenzooError(f"bench entries repeat: {names}; give each entry once (label variants with [KEY=VALUE])")
    for name in names:
        family, variant, overrides = parse_entry(name)
        info = get_family(family)
        if kind not in info.data_kinds:
            raise GenzooError(f"{family} does not handle {kind} data")
        # refuses an unknown variant, or one that does not handle this data, now rather than after hours
        info.variant_overrides(variant or info.default_variant_for(kind), load_dataset(data, "train").spec())
        if overrides:  # an unknown field or a bad value (backbone=dti) is refused before any training
            api.build_model(family, load_dataset(data, "train"), variant, overrides, seed)
    rows = []
    budget = {"minutes": minutes, "steps": steps}
    for name in names:
        family, variant, overrides = parse_entry(name)
        run_dir = out_dir / f"{_entry_slug(name)}-{data.replace(':', '-').replace('/', '_')}"
        t0 = time.perf_counter()
        try:
            model, summary = api.train(family, data, variant=variant, out=run_dir, steps=steps, minutes=minutes, seed=seed,
                                       model_overrides=overrides or None, progress=progress)
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
            "overrides": overrides,
            "train_steps": summary["steps"],
            "selected_step": summary.get("best_step"),
            "train_seconds": summary["train_seconds"],
            # a fixed --steps budget compares quality per step; this says what each step cost here
            "train_steps_per_second": summary.get("steps_per_s"),
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
    of a family can be benched beside the others; None means the family's default variant.
    A config override in brackets may follow (see ``parse_entry``); it is dropped here."""
    family, variant, _ = parse_entry(name)
    return family, variant


def parse_entry(name: str) -> tuple[str, str | None, dict]:
    """FAMILY[:VARIANT][[KEY=VALUE,...]] -> (family, variant, config overrides).

    The bracket sets model config fields, as `genzoo train --set` does, so that one family can be
    benched twice with different settings at the same budget: ``diffusion`` and
    ``diffusion[backbone=dit]`` compare the UNet and DiT backbones. Variants stay the family's own
    named presets (``gan:wgan-gp``); the bracket is for any other field."""
    from genzoo import api

    head, bracket, rest = name.strip().partition("[")
    overrides: dict = {}
    if bracket:
        if not rest.endswith("]") or not _balanced(rest[:-1]):
            raise GenzooError(f"bench entry {name!r}: write overrides as FAMILY[KEY=VALUE,KEY=VALUE], e.g. diffusion[backbone=dit]")
        items = split_entries(rest[:-1])  # values may be lists: diffusion[channels=[8,16]]
        if not items:
            raise GenzooError(f"bench entry {name!r}: empty brackets; give KEY=VALUE inside, e.g. diffusion[backbone=dit]")
        overrides = api.parse_assignments(items)
    family, sep, variant = head.partition(":")
    if not family or (sep and not variant):
        raise GenzooError(f"bench entry {name!r}: give FAMILY or FAMILY:VARIANT, e.g. gan:wgan-gp")
    return family, (variant or None), overrides


def split_entries(text: str) -> list[str]:
    """The --families list: commas separate entries except inside brackets
    ("diffusion,diffusion[backbone=dit,dit_depth=2]" is two entries)."""
    entries, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += ch
    entries.append(current.strip())
    return [e for e in entries if e]


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _entry_slug(name: str) -> str:
    """A folder name for an entry: diffusion[backbone=dit] -> diffusion-backbone=dit."""
    slug = name.replace(":", "-").replace("[", "-", 1)
    return slug.translate(str.maketrans({"[": "", "]": "", ",": "-", " ": "_", "/": "_"}))


def _options_for(options: dict[str, dict] | None, name: str) -> dict | None:
    """Per-entry options: those given for the whole entry ("diffusion[backbone=dit]"), else for
    "family:variant", else for the family."""
    options = options or {}
    family, variant, _ = parse_entry(name)
    for key in (name, f"{family}:{variant}" if variant else None, family):
        if key in options:
            return options[key]
    return None


def _last_png(run_dir: Path) -> str | None:
    """The grid of the evaluated weights: those selected on validation, else the last."""
    pngs = sorted((run_dir / "samples").glob("best_step_*.png")) or sorted((run_dir / "samples").glob("step_*.png"))
    return str(pngs[-1]) if pngs else None
