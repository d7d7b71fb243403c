"""Load local Hugging Face BERT folders (``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``)
into genzoo's own ``BERT``; nothing downloaded, ``transformers`` not needed.

Config: hidden_size -> width, intermediate_size -> mlp_hidden, num_hidden_layers -> layers,
num_attention_heads -> heads, max_position_embeddings -> context, type_vocab_size,
layer_norm_eps -> norm_eps, vocab_size, pad_token_id.

Weights (an optional ``bert.`` prefix is stripped; old ``LayerNorm.gamma/beta`` names are read as
weight/bias): embeddings.{word,position,token_type}_embeddings -> {tok,pos,type}_emb,
embeddings.LayerNorm -> emb_norm; encoder.layer.N.attention.self.{query,key,value} stacked into
blocks.N.attn.qkv, attention.output.dense -> attn.proj, attention.output.LayerNorm -> norm1,
intermediate.dense -> mlp.fc, output.dense -> mlp.proj, output.LayerNorm -> norm2;
cls.predictions.transform.{dense,LayerNorm} -> head_{dense,norm}, cls.predictions.bias -> head_bias
(the decoder matrix is the word embedding; a checkpoint whose stored decoder differs is refused).

Dropped on purpose: ``pooler.*`` (the [CLS] tanh layer of next-sentence prediction: neither the
masked-LM head nor mean pooling reads it), ``cls.seq_relationship.*`` (the next-sentence head) and
the ``position_ids`` / ``token_type_ids`` buffers. Anything else unknown is refused, as are
configurations genzoo computes differently: activations other than the erf GELU, relative
position embeddings, decoder (cross-attention) BERTs.

Special ids ([CLS], [SEP], [MASK], [PAD]) come from the folder's tokenizer: ``tokenizer.json``, or
a WordPiece tokenizer rebuilt from ``vocab.txt`` (lower-casing as ``tokenizer_config.json`` says).
"""

from __future__ import annotations

from pathlib import Path

import torch

from genzoo.data.tokenizer import TextTokenizer, _read_json
from genzoo.core.errors import GenzooError
from genzoo.models.bert import BERT, BERTConfig
from genzoo.models.hf.loader import _read_config, _read_weights, _weight_files, build_with_weights

_DROPPED = ("pooler.", "cls.seq_relationship.", "embeddings.position_ids", "embeddings.token_type_ids")


def hf_bert_config(hf: dict, tokenizer: TextTokenizer | None = None) -> BERTConfig:
    """The BERTConfig of a Hugging Face BERT ``config.json`` (a dict)."""
    if hf.get("model_type") != "bert":
        raise GenzooError(f"model_type {hf.get('model_type')!r} is not a BERT; genzoo loads 'bert' folders here "
                          "(Llama / Mistral / Qwen2: genzoo.models.hf.loader)")
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise GenzooError(f"hidden_act {act!r} is not supported (genzoo's BERT uses the exact erf GELU, 'gelu')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise GenzooError(f"position_embedding_type {hf['position_embedding_type']!r} is not supported (genzoo's BERT: absolute)")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise GenzooError("this BERT is a decoder (is_decoder / add_cross_attention); genzoo's BERT is an encoder")
    try:
        cfg = dict(vocab_size=int(hf["vocab_size"]), width=int(hf["hidden_size"]), layers=int(hf["num_hidden_layers"]),
                   heads=int(hf["num_attention_heads"]), mlp_hidden=int(hf["intermediate_size"]))
    except KeyError as e:
        raise GenzooError(f"config.json lacks {e.args[0]!r}, which a BERT config has") from None
    ids = {}
    if tokenizer is not None:
        for key, text in (("cls", "[CLS]"), ("sep", "[SEP]"), ("mask", "[MASK]"), ("pad", "[PAD]")):
            ids[f"{key}_token_id"] = tokenizer.tokenizer.token_to_id(text)
    if ids.get("mask_token_id") is None:
        ids["mask_token_id"] = 0  # placeholder: without a tokenizer there is no fill anyway (refused there)
    if ids.get("pad_token_id") is None:
        ids["pad_token_id"] = int(hf.get("pad_token_id") or 0)
    return BERTConfig(
        data={"name": "hf:bert", "kind": "tokens", "vocab_size": cfg["vocab_size"], "shape": []}, variant="bert",
        context=int(hf.get("max_position_embeddings", 512)), type_vocab_size=int(hf.get("type_vocab_size", 2)),
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)), dropout=0.0, **ids, **cfg,
    )


def _hf_tokenizer(folder: Path) -> TextTokenizer | None:
    if (folder / "tokenizer.json").is_file():
        return TextTokenizer.from_hf_folder(folder)
    if (folder / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        lower = bool(_read_json(folder / "tokenizer_config.json").get("do_lower_case", True))
        wp = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)
        return TextTokenizer(wp._tokenizer, kind="hf", eos_token=None, unk_token="[UNK]")
    return None


def _map_weights(hf: dict[str, torch.Tensor], cfg: BERTConfig) -> tuple[dict[str, torch.Tensor], bool]:
    """Hugging Face names -> genzoo's; also whether the checkpoint has a masked-LM head."""
    state = {}
    for k, v in hf.items():
        k = k.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not k.startswith(_DROPPED):
            state[k] = v

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise GenzooError(f"the checkpoint lacks weight {name!r}, which its config.json implies")
        return state.pop(name)

    out = {"tok_emb.weight": take("embeddings.word_embeddings.weight"),
           "pos_emb.weight": take("embeddings.position_embeddings.weight"),
           "type_emb.weight": take("embeddings.token_type_embeddings.weight"),
           "emb_norm.weight": take("embeddings.LayerNorm.weight"), "emb_norm.bias": take("embeddings.LayerNorm.bias")}
    for i in range(cfg.layers):
        p, q = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[q + f"attn.qkv.{part}"] = torch.cat([take(p + f"attention.self.{n}.{part}") for n in ("query", "key", "value")])
            out[q + f"attn.proj.{part}"] = take(p + f"attention.output.dense.{part}")
            out[q + f"norm1.{part}"] = take(p + f"attention.output.LayerNorm.{part}")
            out[q + f"mlp.fc.{part}"] = take(p + f"intermediate.dense.{part}")
            out[q + f"mlp.proj.{part}"] = take(p + f"output.dense.{part}")
            out[q + f"norm2.{part}"] = take(p + f"output.LayerNorm.{part}")
    has_head = "cls.predictions.bias" in state or "cls.predictions.transform.dense.weight" in state
    if has_head:
        out["head_dense.weight"] = take("cls.predictions.transform.dense.weight")
        out["head_dense.bias"] = take("cls.predictions.transform.dense.bias")
        out["head_norm.weight"] = take("cls.predictions.transform.LayerNorm.weight")
        out["head_norm.bias"] = take("cls.predictions.transform.LayerNorm.bias")
        bias = state.pop("cls.predictions.decoder.bias", None)
        out["head_bias"] = take("cls.predictions.bias") if "cls.predictions.bias" in state else bias
        if out["head_bias"] is None:
            raise GenzooError("the checkpoint lacks the masked-LM output bias (cls.predictions.bias)")
        decoder = state.pop("cls.predictions.decoder.weight", None)
        if decoder is not None and not torch.equal(decoder, out["tok_emb.weight"]):
            raise GenzooError("this checkpoint's masked-LM decoder is not tied to its word embeddings; genzoo's BERT ties them")
    if state:
        extra = sorted(state)
        raise GenzooError(f"the checkpoint has weights genzoo's {cfg.layers}-layer BERT does not use "
                          f"({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}); it is not a plain BERT")
    return out, has_head


def load_hf_bert(folder: str | Path, *, device: str | torch.device = "cpu") -> BERT:
    """A local Hugging Face BERT folder as a genzoo ``BERT`` in eval mode, float32, its tokenizer attached
    (``mlm_head`` False when the folder has no masked-LM head, e.g. all-MiniLM-L6-v2: embed, not fill)."""
    folder = Path(folder)
    hf = _read_config(folder)
    tokenizer = _hf_tokenizer(folder)
    cfg = hf_bert_config(hf, tokenizer)
    state, has_head = _map_weights(_read_weights(_weight_files(folder), torch.float32), cfg)
    cfg.mlm_head = has_head
    model = build_with_weights(BERT, cfg, state)
    model.tokenizer = tokenizer
    return model.to(device).eval()
