"""Load local Hugging Face Llama, Mistral and Qwen2 checkpoints into genzoo's own GPT (architecture "llama").

A checkpoint folder holds ``config.json`` and its weights in ``model.safetensors`` or in shards
listed by ``model.safetensors.index.json``. Nothing is downloaded and ``transformers`` is not
needed: the config fields and weight names are mapped here.

Config: hidden_size -> width, intermediate_size -> mlp_hidden, num_hidden_layers -> layers,
num_attention_heads -> heads, num_key_value_heads -> kv_heads, head_dim, rms_norm_eps -> norm_eps,
rope_theta (or rope_parameters.rope_theta), max_position_embeddings -> context,
tie_word_embeddings, vocab_size, bos/eos token ids; Llama's attention_bias (q/k/v and o) and
mlp_bias, Qwen2's q/k/v biases.

Weights: model.embed_tokens -> tok_emb; model.layers.N.input_layernorm -> blocks.N.norm1;
self_attn.{q,k,v}_proj stacked into blocks.N.attn.qkv, o_proj -> attn.proj;
post_attention_layernorm -> norm2; mlp.{gate,up}_proj stacked into mlp.gate_up, down_proj ->
mlp.proj; model.norm -> norm_f; lm_head -> lm_head (absent when tied).

What genzoo does not implement is refused rather than computed differently: other model
types, activations other than SiLU, RoPE scalings other than linear and llama3, partial rotary
dimensions. Sliding-window attention (Mistral's ``sliding_window``, Qwen2's
``use_sliding_window``) is the same as full causal attention over sequences no longer than the
window, so the model's ``context`` is capped at the window and longer inputs are refused by the
model: genzoo never attends beyond the window, it just cannot run past it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genzoo.core.errors import GenzooError
from genzoo.models.gpt import GPT, GPTConfig
from genzoo.nn.transformer import RotaryEmbedding

SUPPORTED = ("llama", "mistral", "qwen2")
# transformers' class defaults for fields a config.json may leave out (checked against transformers 5.24);
# a missing num_key_value_heads means one per query head for llama, as there.
_TYPE_DEFAULTS = {
    "llama": {"max_position_embeddings": 2048},
    "mistral": {"max_position_embeddings": 131072, "sliding_window": 4096, "num_key_value_heads": 8},
    "qwen2": {"max_position_embeddings": 32768, "num_key_value_heads": 32},
}
_IMPLEMENTED_ROPE = ("default", "linear", "llama3")


def _read_config(folder: Path) -> dict:
    f = folder / "config.json"
    if not folder.is_dir():
        raise GenzooError(f"{folder} is not a folder; pass a local Hugging Face checkpoint folder (config.json + *.safetensors)")
    if not f.is_file():
        raise GenzooError(f"{folder} has no config.json; pass a Hugging Face checkpoint folder")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise GenzooError(f"{f} is not valid JSON ({e})") from e


def _rope(hf: dict) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) from either config style: transformers 5's ``rope_parameters``
    or the older top-level ``rope_theta`` + ``rope_scaling``; refuses what genzoo does not implement."""
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = dict(hf.get("rope_scaling") or {}) or params
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in _IMPLEMENTED_ROPE:
        raise GenzooError(f"this checkpoint uses RoPE scaling {kind!r}, which genzoo does not implement "
                          f"(implemented: {', '.join(_IMPLEMENTED_ROPE)}); its outputs would differ, so it is refused")
    if float(scaling.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        raise GenzooError("this checkpoint rotates only part of each head (partial_rotary_factor), which genzoo does not implement")
    if kind == "default":
        return theta, None
    scaling = {k: v for k, v in scaling.items() if k not in ("rope_theta", "type")}
    scaling["rope_type"] = kind
    return theta, scaling


def hf_config_to_genzoo(hf: dict, context: int | None = None) -> GPTConfig:
    """The GPTConfig of a Hugging Face Llama / Mistral / Qwen2 ``config.json`` (a dict)."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED:
        raise GenzooError(f"model_type {model_type!r} is not supported; genzoo loads {', '.join(SUPPORTED)} checkpoints")
    hf = {**_TYPE_DEFAULTS[model_type], **hf}
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise GenzooError(f"hidden_act {act!r} is not supported (genzoo's SwiGLU uses silu)")
    theta, scaling = _rope(hf)
    try:
        width, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
        cfg = dict(vocab_size=int(hf["vocab_size"]), width=width, layers=int(hf["num_hidden_layers"]), heads=heads,
                   mlp_hidden=int(hf["intermediate_size"]))
    except KeyError as e:
        raise GenzooError(f"config.json lacks {e.args[0]!r}, which a {model_type} config has") from None
    # Sliding-window attention equals full attention over sequences within the window.
    max_len = int(hf.get("max_position_embeddings") or 2048)
    window = hf.get("sliding_window")
    if model_type == "qwen2" and not hf.get("use_sliding_window", False):
        window = None
    if window:
        max_len = min(max_len, int(window))
    if context is not None and context > max_len:
        raise GenzooError(f"context {context} exceeds this checkpoint's {'sliding window' if window else 'max_position_embeddings'} ({max_len})")
    eos = hf.get("eos_token_id")
    attention_bias = bool(hf.get("attention_bias", False))  # Llama: on q, k, v and o
    return GPTConfig(
        data={"name": f"hf:{model_type}", "kind": "tokens", "vocab_size": cfg["vocab_size"], "shape": []},
        variant="llama", architecture="llama", context=context or max_len, kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or width // heads), dropout=0.0,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), rope_theta=theta, rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        qkv_bias=model_type == "qwen2" or attention_bias, out_bias=attention_bias, mlp_bias=bool(hf.get("mlp_bias", False)),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=[eos] if isinstance(eos, int) else eos, **cfg,
    )


def build_with_weights(model_class, cfg, state: dict[str, torch.Tensor]):
    """``model_class(cfg)`` holding ``state``: built on the meta device (no random initialisation of
    weights about to be replaced), each tensor's shape checked against the config, then assigned."""
    with torch.device("meta"):
        model = model_class(cfg)
    expected = model.state_dict()
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise GenzooError(f"weight {name} has shape {tuple(tensor.shape)} in the checkpoint, but config.json implies "
                              f"{tuple(expected[name].shape)}: the weights do not match config.json")
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as e:
            raise GenzooError(f"{index} is corrupt ({e})") from e
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise GenzooError(f"{folder} lacks weight shards listed in its index: {', '.join(missing)}")
        return [folder / n for n in names]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    hint = " (it has PyTorch .bin weights: re-save them with safetensors)" if any(folder.glob("*.bin")) else ""
    raise GenzooError(f"{folder} has no *.safetensors weights{hint}")


def _read_weights(files: list[Path], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state = {}
    for f in files:
        try:
            state.update({k: v.to(dtype) for k, v in load_file(str(f)).items()})
        except (SafetensorError, OSError) as e:
            raise GenzooError(f"{f} is corrupt or unreadable ({e})") from e
    return state


def _map_weights(hf: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face weight names -> genzoo's (q/k/v and gate/up stacked into the fused projections)."""
    hf = {k: v for k, v in hf.items() if not k.endswith("rotary_emb.inv_freq")}  # old checkpoints store RoPE's buffer

    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise GenzooError(f"the checkpoint lacks weight {name!r}, which its config.json implies")
        return hf.pop(name)

    out = {"tok_emb.weight": take("model.embed_tokens.weight"), "norm_f.weight": take("model.norm.weight")}
    for i in range(cfg.layers):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        out[q + "norm1.weight"] = take(p + "input_layernorm.weight")
        out[q + "norm2.weight"] = take(p + "post_attention_layernorm.weight")
        out[q + "attn.qkv.weight"] = torch.cat([take(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
        if cfg.qkv_bias:
            out[q + "attn.qkv.bias"] = torch.cat([take(p + f"self_attn.{n}_proj.bias") for n in "qkv"])
        out[q + "attn.proj.weight"] = take(p + "self_attn.o_proj.weight")
        if cfg.out_bias:
            out[q + "attn.proj.bias"] = take(p + "self_attn.o_proj.bias")
        out[q + "mlp.gate_up.weight"] = torch.cat([take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")])
        out[q + "mlp.proj.weight"] = take(p + "mlp.down_proj.weight")
        if cfg.mlp_bias:
            out[q + "mlp.gate_up.bias"] = torch.cat([take(p + "mlp.gate_proj.bias"), take(p + "mlp.up_proj.bias")])
            out[q + "mlp.proj.bias"] = take(p + "mlp.down_proj.bias")
    if cfg.tie_embeddings:
        hf.pop("lm_head.weight", None)  # some tied checkpoints store the copy too
    else:
        out["lm_head.weight"] = take("lm_head.weight")
    if hf:
        extra = sorted(hf)
        raise GenzooError(f"the checkpoint has weights genzoo's {cfg.layers}-layer Llama does not use "
                          f"({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}); it is not a plain Llama/Mistral/Qwen2")
    return out


def load_hf_causal_lm(folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                      context: int | None = None) -> GPT:
    """A local Hugging Face Llama / Mistral / Qwen2 folder as a genzoo ``GPT`` (architecture "llama"),
    in eval mode. ``dtype``: the weights' dtype here (default float32, whatever the checkpoint
    stores); ``context``: a shorter context than the checkpoint's (memory of the KV cache)."""
    folder = Path(folder)
    cfg = hf_config_to_genzoo(_read_config(folder), context)
    state = _map_weights(_read_weights(_weight_files(folder), dtype), cfg)
    model = build_with_weights(GPT, cfg, state)
    c = model.config
    model.rope = RotaryEmbedding(c.head_dim, c.rope_theta, c.rope_scaling)  # its buffers were built on the meta device
    return model.to(device).eval()
