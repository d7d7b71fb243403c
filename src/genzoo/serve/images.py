"""Drawing images for /v1/images/generations, as ``genzoo sample`` does: one PNG per sample, the grid
and the provenance manifest (what the store records and ``genzoo reproduce`` replays)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Drawn:
    pngs: list[bytes]
    grid: bytes
    manifest: dict
    outputs: object  # the samples tensor (the store keeps digits-shaped ones one by one)


def condition_for(model, prompt: str):
    """A text-to-image model takes the prompt; a class-conditional one a label given as digits; else none."""
    prompt = (prompt or "").strip()
    if not prompt:
        return None
    if getattr(model.config, "text_encoder", ""):
        return prompt
    return int(prompt) if prompt.isdigit() else None


def draw(served, prompt: str, n: int, seed: int) -> Drawn:
    from genzoo.runs import manifest as provenance
    from genzoo.viz.samples import save_samples

    model = served.model
    condition = condition_for(model, prompt)
    if condition is not None:
        model.check_condition(condition, n)
    gen = provenance.generate(model, n, seed=seed, condition=condition, checkpoint=served.checkpoint, device="cpu")
    with tempfile.TemporaryDirectory(prefix="genzoo-serve-") as tmp:
        pngs = []
        for i in range(n):
            pngs.append(save_samples(gen.outputs[i:i + 1], Path(tmp) / f"{i}.png", model.data_spec).read_bytes())
        grid = save_samples(gen.outputs, Path(tmp) / "grid.png", model.data_spec).read_bytes()
    return Drawn(pngs, grid, gen.manifest, gen.outputs)
