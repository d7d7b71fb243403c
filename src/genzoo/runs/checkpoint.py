"""Checkpoint folders: where they are, and loading any family's model (written by ``genzoo.core.atomic``).

A checkpoint folder holds ``config.json`` + ``model.safetensors`` (the
inference weights: the EMA weights when EMA is on) and, for training runs,
``trainer_state.pt`` (raw weights, optimizers, schedulers, scaler, RNG,
step). Writes go to a fresh sibling folder that is then renamed into place,
so a crash mid-write never leaves a half-written checkpoint: at every moment
either ``<dir>`` or ``<dir>.old`` is complete.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genzoo.core.errors import GenzooError
from genzoo.core.folders import WEIGHT_FOLDERS, resolve_checkpoint, run_root  # noqa: F401  (re-exported)


def read_config(directory: str | Path) -> dict:
    from genzoo.models.base import GenerativeModel

    return GenerativeModel.read_meta(resolve_checkpoint(directory))


def load_model(directory: str | Path, map_location="cpu"):
    """The model in a run folder (its ``best/`` weights first) or a checkpoint folder, any family."""
    from genzoo.core.folders import is_adapter
    from genzoo.registry import GenerativeModel

    folder = resolve_checkpoint(directory)
    if is_adapter(folder) and not (folder / "model.safetensors").is_file():  # its base + the adapter (genzoo.runs.load)
        from genzoo.runs.load import load

        return load(folder, str(map_location))
    return GenerativeModel.from_pretrained(folder, map_location)


def run_data(run: str | Path, model) -> str:
    """The dataset a run was trained on (its run.json), else the one named in the model's data spec."""
    import json

    run_file = run_root(resolve_checkpoint(run)) / "run.json"
    if run_file.is_file():
        return json.loads(run_file.read_text())["data"]
    return model.data_spec["name"]


def load_trainer_state(directory: str | Path) -> dict:
    f = Path(directory) / "trainer_state.pt"
    if not f.is_file():
        raise GenzooError(f"{directory} has no trainer_state.pt; it can be sampled but not resumed")
    try:
        return torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:
        raise GenzooError(f"{f} is corrupt ({e}); resume from an earlier copy or start again") from e
