"""``load(path)``: the one way to open a model folder.

- a genzoo run folder: its ``best/`` weights where training selected some, else ``checkpoint/``
  (``genzoo.runs.checkpoint.resolve_checkpoint``);
- a genzoo checkpoint folder (``config.json`` with a ``family`` + ``model.safetensors``);
- a local Hugging Face folder (``config.json`` with a ``model_type``): Llama / Mistral / Qwen2
  causal LMs, BERT (also a sentence-transformers folder such as all-MiniLM-L6-v2) and T5, loaded
  into genzoo's own implementations with their tokenizer attached.

The model comes back in eval mode on ``device``; text models carry their tokenizer as ``model.tokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from genzoo.core.errors import GenzooError


def hf_model_type(path: str | Path) -> str | None:
    """The ``model_type`` of a Hugging Face folder, or None for anything else (a genzoo folder,
    a run folder, a file, a missing path)."""
    f = Path(path) / "config.json"
    try:
        config = json.loads(f.read_text()) if f.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "family" in config:  # genzoo's own config.json names its family
        return None
    kind = config.get("model_type")
    return kind if isinstance(kind, str) else None


def _load_hf(path: Path, kind: str, device: str):
    if kind == "bert":
        from genzoo.models.hf.bert import load_hf_bert

        return load_hf_bert(path, device=device)
    if kind == "t5":
        from genzoo.models.hf.t5 import load_hf_t5

        return load_hf_t5(path, device=device)
    from genzoo.data.tokenizer import TextTokenizer
    from genzoo.models.hf.loader import SUPPORTED, load_hf_causal_lm

    if kind not in SUPPORTED:
        raise GenzooError(f"{path} is a Hugging Face {kind!r} folder; genzoo opens {', '.join(SUPPORTED)}, bert and t5 folders")
    model = load_hf_causal_lm(path, device=device)
    model.tokenizer = TextTokenizer.from_hf_folder(path)
    return model


def load(path: str | Path, device: str = "cpu"):
    """The model in ``path`` (a run, checkpoint or Hugging Face folder), ready to use."""
    from genzoo.runs.checkpoint import load_model

    kind = hf_model_type(path)
    if kind is not None:
        return _load_hf(Path(path), kind, device).eval()
    return load_model(path, device)
