"""``load(path)``: the one way to open a model folder.

- a genzoo run folder: its ``best/`` weights where training selected some, else ``checkpoint/``
  (``genzoo.runs.checkpoint.resolve_checkpoint``);
- a genzoo checkpoint folder (``config.json`` with a ``family`` + ``model.safetensors``);
- a local Hugging Face folder (``config.json`` with a ``model_type``): Llama / Mistral / Qwen2
  causal LMs, BERT (also a sentence-transformers folder such as all-MiniLM-L6-v2) and T5, loaded
  into genzoo's own implementations with their tokenizer attached;
- an adapter folder (``adapter_config.json``, written by `genzoo finetune`): its base, checked
  against the sha256 it recorded, with the adapter merged in (``genzoo.runs.adapters``); ``base``
  names a base that moved.

The model comes back in eval mode on ``device``; text models carry their tokenizer as ``model.tokenizer``.
"""

from __future__ import annotations

from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.core.folders import hf_model_type  # noqa: F401  (re-exported: callers import it from here)



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


def load(path: str | Path, device: str = "cpu", *, base: str | Path | None = None):
    """The model in ``path`` (a run, checkpoint, Hugging Face or adapter folder), ready to use.
    ``base``: for an adapter, the base model to put it on instead of the one it names."""
    from genzoo.core.folders import is_adapter, resolve_checkpoint
    from genzoo.registry import GenerativeModel

    if is_adapter(path):
        from genzoo.runs.adapters import load_adapter_model

        return load_adapter_model(path, device, base=base, load_base=load)
    if base is not None:
        raise GenzooError(f"{path} is not an adapter folder (no adapter_config.json); a base is given for adapters only")
    kind = hf_model_type(path)
    if kind is not None:
        return _load_hf(Path(path), kind, device).eval()
    return GenerativeModel.from_pretrained(resolve_checkpoint(path), device)  # any family (runs.checkpoint.load_model's own path)
