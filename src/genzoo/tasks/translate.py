"""``genzoo translate RUN --from A``: load a translation run and write its before / after grid
(the grid itself: ``genzoo.viz.cyclegan``)."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.domains import check_side, domain_images
from genzoo.core.errors import GenzooError
from genzoo.viz.cyclegan import save_translation_grid, test_split_of, translation_rows  # noqa: F401


def translate_run(run: str | Path, side: str, out: str | Path, n: int = 32, data_name: str | None = None) -> dict:
    """``genzoo translate``: load the run, translate the first ``n`` test images of domain ``side``,
    write the grid; returns what was done (and the mean round-trip error in levels)."""
    from genzoo.data import load_dataset
    from genzoo.runs.checkpoint import load_model, run_data  # not genzoo.api: it is a layer above tasks

    model = load_model(run)
    if "translate" not in model.capabilities:
        raise GenzooError(f"{run} holds a {model.family} model, which cannot translate; train a cyclegan on two domains "
                          "(genzoo train cyclegan --data digits2typed)")
    if n < 1:
        raise GenzooError(f"--n must be at least 1, got {n}")
    name = data_name or run_data(run, model)
    test = load_dataset(name, "test")
    path = save_translation_grid(model, test, side, out, n)
    x = domain_images(test, side)[0][:n]
    return {"run": str(run), "data": name, "from": check_side(side), "images": len(x), "grid": str(path),
            "cycle_error_levels": round(float(model.cycle_error(x, side).mean()), 4)}
