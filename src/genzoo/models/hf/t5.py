"""Load local Hugging Face T5 folders (``T5ForConditionalGeneration``, v1.0 and v1.1 style) into
genzoo's own ``T5``; nothing downloaded, ``transformers`` not needed.

Config: d_model -> width, d_kv, d_ff, num_layers -> layers, num_decoder_layers, num_heads -> heads,
relative_attention_num_buckets / _max_distance -> num_buckets / max_distance, feed_forward_proj
("relu" or "gated-gelu") -> ffn, layer_norm_epsilon -> norm_eps, pad / eos / decoder_start ids.
``tie_word_embeddings`` false (v1.1 saved by transformers 4) means a separate ``lm_head`` and no
width^-0.5 scaling; transformers 5 writes ``scale_decoder_outputs`` (false for v1.1) and ties always.

Weights: shared -> shared (``encoder.embed_tokens`` / ``decoder.embed_tokens`` are the same
matrix); {encoder,decoder}.block.N.layer.0.SelfAttention.{q,k,v,o} -> {enc,dec}_blocks.N.self_attn,
layer.0.layer_norm -> self_norm; block.0's SelfAttention.relative_attention_bias -> {enc,dec}_bias.table;
decoder layer.1.EncDecAttention -> cross_attn, layer.1.layer_norm -> cross_norm; the last layer's
DenseReluDense.{wi | wi_0, wi_1, wo} -> ff, its layer_norm -> ff_norm; final_layer_norm ->
{enc,dec}_norm; lm_head -> lm_head (v1.1 only; a v1.0 folder's stored lm_head must equal ``shared``).
Anything else is refused, as are activations genzoo does not compute (only relu and gated-gelu).

Sentinels: T5's vocabulary ends with its 100 ``<extra_id_N>`` tokens, N counting down from the last
id, which is genzoo's convention; ``num_sentinels`` is read from the tokenizer when present (else 100).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genzoo.core.errors import GenzooError
from genzoo.models.hf.loader import _read_config, _read_weights, _weight_files, build_with_weights
from genzoo.models.t5 import T5, T5Config

_FFN = {"relu": "relu", "gated-gelu": "gated-gelu", "gated-gelu_new": "gated-gelu"}


def hf_t5_config(hf: dict, num_sentinels: int = 100) -> T5Config:
    """The T5Config of a Hugging Face T5 ``config.json`` (a dict)."""
    if hf.get("model_type") != "t5":
        raise GenzooError(f"model_type {hf.get('model_type')!r} is not a T5; genzoo loads 't5' folders here")
    ffn = hf.get("feed_forward_proj", "relu")
    if ffn not in _FFN:
        raise GenzooError(f"feed_forward_proj {ffn!r} is not supported (genzoo's T5: relu or gated-gelu)")
    tie = hf.get("tie_word_embeddings", True) is not False
    # transformers < 5 scales exactly when tied; transformers 5 writes the choice as scale_decoder_outputs
    scale = bool(hf.get("scale_decoder_outputs", tie))
    try:
        vocab = int(hf["vocab_size"])
        cfg = T5Config(
            data={"name": "hf:t5", "kind": "pairs", "vocab_size": vocab}, variant="t5", vocab_size=vocab,
            width=int(hf["d_model"]), d_kv=int(hf["d_kv"]), d_ff=int(hf["d_ff"]), layers=int(hf["num_layers"]),
            decoder_layers=int(hf.get("num_decoder_layers") or hf["num_layers"]), heads=int(hf["num_heads"]),
            num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
            max_distance=int(hf.get("relative_attention_max_distance", 128)), ffn=_FFN[ffn],
            norm_eps=float(hf.get("layer_norm_epsilon", 1e-6)), dropout=0.0,
            tie_lm_head=tie, scale_logits=scale, num_sentinels=min(num_sentinels, vocab - 3),
            pad_token_id=int(hf.get("pad_token_id", 0)), eos_token_id=int(hf.get("eos_token_id", 1)),
            decoder_start_token_id=int(hf.get("decoder_start_token_id", hf.get("pad_token_id", 0))),
            max_input_tokens=int(hf.get("n_positions") or 512),  # what generate_text keeps of an input by default
        )
    except KeyError as e:
        raise GenzooError(f"config.json lacks {e.args[0]!r}, which a T5 config has") from None
    return cfg.resolved()


def _map_weights(hf: dict[str, torch.Tensor], cfg: T5Config) -> dict[str, torch.Tensor]:
    state = dict(hf)

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise GenzooError(f"the checkpoint lacks weight {name!r}, which its config.json implies")
        return state.pop(name)

    out = {"shared.weight": take("shared.weight") if "shared.weight" in state else take("encoder.embed_tokens.weight")}
    for stack in ("encoder", "decoder"):
        emb = state.pop(f"{stack}.embed_tokens.weight", None)
        if emb is not None and not torch.equal(emb, out["shared.weight"]):
            raise GenzooError(f"{stack}.embed_tokens differs from shared; genzoo's T5 shares one embedding")
    for stack, ours, n in (("encoder", "enc", cfg.layers), ("decoder", "dec", cfg.decoder_layers)):
        out[f"{ours}_bias.table.weight"] = take(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        for i in range(n):
            p, q = f"{stack}.block.{i}.layer.", f"{ours}_blocks.{i}."
            for w in "qkvo":
                out[q + f"self_attn.{w}.weight"] = take(p + f"0.SelfAttention.{w}.weight")
            out[q + "self_norm.weight"] = take(p + "0.layer_norm.weight")
            ff = 1
            if stack == "decoder":
                for w in "qkvo":
                    out[q + f"cross_attn.{w}.weight"] = take(p + f"1.EncDecAttention.{w}.weight")
                out[q + "cross_norm.weight"] = take(p + "1.layer_norm.weight")
                ff = 2
            names = ("wi_0", "wi_1", "wo") if cfg.ffn == "gated-gelu" else ("wi", "wo")
            for w in names:
                out[q + f"ff.{w}.weight"] = take(p + f"{ff}.DenseReluDense.{w}.weight")
            out[q + "ff_norm.weight"] = take(p + f"{ff}.layer_norm.weight")
        out[f"{ours}_norm.weight"] = take(f"{stack}.final_layer_norm.weight")
    head = state.pop("lm_head.weight", None)
    if not cfg.tie_lm_head:
        out["lm_head.weight"] = head if head is not None else out["shared.weight"].clone()
    elif head is not None and not torch.equal(head, out["shared.weight"]):
        raise GenzooError("this checkpoint's lm_head differs from its embedding although tie_word_embeddings is set; "
                          "set tie_word_embeddings false in config.json if it is a v1.1-style model")
    if state:
        extra = sorted(state)
        raise GenzooError(f"the checkpoint has weights genzoo's T5 does not use ({', '.join(extra[:5])}"
                          f"{', ...' if len(extra) > 5 else ''}); it is not a plain T5ForConditionalGeneration")
    return out


def _tokenizer(folder: Path):
    """The folder's ``tokenizer.json`` as a TextTokenizer, or None (logits still work without one)."""
    if not (folder / "tokenizer.json").is_file():
        return None
    from genzoo.data.tokenizer import TextTokenizer

    try:
        return TextTokenizer.from_hf_folder(folder)
    except GenzooError:
        return None


def is_hf_t5_folder(path: str | Path) -> bool:
    """Whether ``path`` is a Hugging Face T5 folder (its config.json says ``model_type: t5``)."""
    f = Path(path) / "config.json"
    try:
        return f.is_file() and json.loads(f.read_text()).get("model_type") == "t5"
    except (OSError, ValueError, AttributeError):
        return False


def load_hf_t5(folder: str | Path, *, device: str | torch.device = "cpu") -> T5:
    """A local Hugging Face T5 folder as a genzoo ``T5`` in eval mode, float32, its tokenizer attached when it has one."""
    folder = Path(folder)
    hf = _read_config(folder)
    tokenizer = _tokenizer(folder)
    sentinels = 100
    if tokenizer is not None:
        sentinels = sum(1 for t in tokenizer.tokenizer.get_vocab() if t.startswith("<extra_id_")) or 100
    cfg = hf_t5_config(hf, sentinels)
    state = _map_weights(_read_weights(_weight_files(folder), torch.float32), cfg)
    model = build_with_weights(T5, cfg, state)
    model.tokenizer = tokenizer
    return model.to(device).eval()
