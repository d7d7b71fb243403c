"""Where a run folder keeps its weights: path logic only (no torch), so that every layer that opens
a folder, the models' sentence encoder included, finds the same weights the same way."""

from __future__ import annotations

from pathlib import Path

from genzoo.core.errors import GenzooError

WEIGHT_FOLDERS = ("best", "checkpoint", "best.old", "checkpoint.old")  # inside a run folder, in order of preference


def run_root(checkpoint: Path) -> Path:
    """The run folder a resolved checkpoint folder belongs to (itself when it stands alone)."""
    return checkpoint.parent if checkpoint.name in WEIGHT_FOLDERS else checkpoint


def resolve_checkpoint(path: str | Path, prefer_best: bool = True) -> Path:
    """Accept a run folder or a checkpoint folder; fall back to ``.old`` if a swap was interrupted.

    In a run folder the weights selected on validation (``best/``) come first, unless
    ``prefer_best`` is off (resuming needs ``checkpoint/``, which has the trainer state)."""
    path = Path(path)
    if not path.exists():
        raise GenzooError(f"{path} does not exist; pass a run folder made by `genzoo train` or a checkpoint folder")
    inside = WEIGHT_FOLDERS if prefer_best else ("checkpoint", "checkpoint.old")
    for cand in (path, path.with_name(path.name + ".old"), *(path / name for name in inside)):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise GenzooError(f"{path} holds no checkpoint (config.json + model.safetensors); was training stopped before its first save?")
