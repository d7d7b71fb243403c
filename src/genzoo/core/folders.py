"""Where a run folder keeps its weights: path logic only (no torch), so that every layer that opens
a folder, the models' sentence encoder included, finds the same weights the same way."""

from __future__ import annotations

from pathlib import Path

from genzoo.core.errors import GenzooError

WEIGHT_FOLDERS = ("best", "checkpoint", "best.old", "checkpoint.old")  # inside a run folder, in order of preference
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA adapter folder (`genzoo finetune`): it names its base (genzoo.runs.adapters)


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is an adapter folder: a model too, its base named in its adapter_config.json."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def run_root(checkpoint: Path) -> Path:
    """The run folder a resolved checkpoint folder belongs to (itself when it stands alone)."""
    return checkpoint.parent if checkpoint.name in WEIGHT_FOLDERS else checkpoint


def resolve_checkpoint(path: str | Path, prefer_best: bool = True) -> Path:
    """Accept a run folder or a checkpoint folder; fall back to ``.old`` if a swap was interrupted.

    In a run folder the weights selected on validation (``best/``) come first, unless
    ``prefer_best`` is off (resuming needs ``checkpoint/``, which has the trainer state).
    An adapter folder is returned as it is: its weights are its own adapter file, loaded over
    its base by ``genzoo.runs.load`` (never a run to resume, so not with ``prefer_best`` off)."""
    path = Path(path)
    if not path.exists():
        raise GenzooError(f"{path} does not exist; pass a run folder made by `genzoo train` or a checkpoint folder")
    inside = WEIGHT_FOLDERS if prefer_best else ("checkpoint", "checkpoint.old")
    for cand in (path, path.with_name(path.name + ".old"), *(path / name for name in inside)):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    if prefer_best and is_adapter(path):
        return path
    raise GenzooError(f"{path} holds no checkpoint (config.json + model.safetensors); was training stopped before its first save?")


def hf_model_type(path) -> str | None:
    """The ``model_type`` of a Hugging Face folder, or None for anything else (a genzoo folder,
    a run folder, a file, a missing path)."""
    import json

    f = Path(path) / "config.json"
    try:
        config = json.loads(f.read_text()) if f.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "family" in config:  # genzoo's own config.json names its family
        return None
    kind = config.get("model_type")
    return kind if isinstance(kind, str) else None
