"""Decoder-only transformer blocks: norms, rotary positions, causal attention with a KV cache, MLPs.

One pre-norm residual block is

    x = x + Dropout(Attention(Norm(x)))
    x = x + Dropout(MLP(Norm(x)))

with two flavours of each piece, chosen by the model (``genzoo.models.gpt``):

* GPT-2 style: ``LayerNorm``, learned absolute positions (added to the token
  embeddings outside the blocks), a GELU MLP of 4x the width, biases.
* Llama style: ``RMSNorm``, rotary positions (RoPE) applied to queries and
  keys, a SwiGLU MLP, grouped-query attention (fewer key/value heads than
  query heads), no biases (Qwen2: biases on q/k/v only).

The rotary convention and the RMSNorm arithmetic follow Hugging Face's Llama
(``rotate_half`` on the two halves of each head, the norm computed in float32)
so that Llama, Mistral and Qwen2 weights load unchanged
(``genzoo.models.hf.loader``).

Padding: a batch of prompts of different lengths is left-padded. ``left_pad``
(B,) gives each row's number of pad slots at the start of the sequence; pad
keys are masked out, and each real token's position counts from its row's
first real token, so a padded row computes what it would compute alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.nn.dropout import BatchDropout


# ---- norms -------------------------------------------------------------------
class RMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps) (Zhang & Sennrich, 2019): LayerNorm without centring or bias.

    Computed in float32 and cast back before the gain, as Hugging Face's Llama does, so
    bf16/fp16 weights give the same numbers as there."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, width: int, eps: float) -> nn.Module:
    """``"layernorm"`` (torch's, with a bias) or ``"rmsnorm"``."""
    if kind == "layernorm":
        return nn.LayerNorm(width, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(width, eps)
    raise GenzooError(f"unknown norm {kind!r}; choose layernorm or rmsnorm")


# ---- rotary position embedding --------------------------------------------------
def rope_inverse_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """Frequencies w_i = theta^(-2i/d), i < d/2, of RoPE (Su et al., 2021), with optional scaling.

    Scalings implemented (the ``rope_type`` of a Hugging Face config):
    * ``linear``: positions divided by ``factor``, i.e. w_i / factor;
    * ``llama3``: Llama 3.1's rule: wavelengths longer than
      original_max_position_embeddings / low_freq_factor are slowed by ``factor``, those
      shorter than .../high_freq_factor are kept, and the band between is interpolated.
    Anything else is refused rather than silently computed differently."""
    w = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        return w
    if kind == "linear":
        return w / float(scaling["factor"])
    if kind == "llama3":
        factor, low, high = float(scaling["factor"]), float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_context = float(scaling["original_max_position_embeddings"])
        wavelength = 2 * math.pi / w
        slowed = torch.where(wavelength > old_context / low, w / factor, w)
        smooth = (old_context / wavelength - low) / (high - low)  # 0 at the long end of the band, 1 at the short end
        blended = (1 - smooth) * slowed / factor + smooth * slowed
        in_band = (wavelength >= old_context / high) & (wavelength <= old_context / low)
        return torch.where(in_band, blended, slowed)
    raise GenzooError(f"RoPE scaling {kind!r} is not implemented in genzoo (implemented: default, linear, llama3)")


class RotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE, grown on demand and looked up by position.

    A query or key vector of one head, split into halves (x1, x2), is rotated by
    angle p * w_i in each plane (x1_i, x2_i) at position p:

        rope(x, p) = x * cos(p w) + rotate_half(x) * sin(p w),   rotate_half(x) = (-x2, x1)

    so that q(p) . k(p') depends on p - p' only. The "two halves" pairing is Hugging
    Face's (Meta's original pairs neighbours (x_2i, x_2i+1); HF's converted weights are
    permuted to the halves convention, and so are the checkpoints genzoo loads)."""

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        if head_dim % 2:
            raise GenzooError(f"rotary positions need an even head dimension, got {head_dim}")
        self.register_buffer("inv_freq", rope_inverse_frequencies(head_dim, theta, scaling), persistent=False)
        self.register_buffer("cos_table", torch.empty(0, head_dim), persistent=False)
        self.register_buffer("sin_table", torch.empty(0, head_dim), persistent=False)

    def _grow(self, length: int) -> None:
        # float32 angles, as in HF (position * w in float32, then cos/sin), whatever the model's dtype
        length = max(length, 2 * len(self.cos_table), 256)
        p = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(p, self.inv_freq.float())
        angles = torch.cat([angles, angles], dim=-1)  # the same angle for x1_i and x2_i
        self.cos_table, self.sin_table = angles.cos(), angles.sin()

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for ``positions`` ((T,) or (B, T) ints), shaped to broadcast over (B, heads, T, head_dim)."""
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if needed > len(self.cos_table):
            self._grow(needed)
        cos, sin = self.cos_table[positions].to(dtype), self.sin_table[positions].to(dtype)
        if positions.ndim == 2:  # per-row positions (left padding): (B, 1, T, D)
            cos, sin = cos[:, None], sin[:, None]
        return cos, sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


# ---- KV cache ---------------------------------------------------------------
class KVCache:
    """Keys and values of every layer for the tokens seen so far, for incremental decoding.

    Preallocated: one (B, kv_heads, max_len, head_dim) tensor per layer for keys and one for
    values, written in place, and attention reads the first ``length`` slots (a view, no copy).
    The other common layout grows the tensors with ``torch.cat`` at every token, which copies
    the whole cache per token (O(T^2) bytes over a generation). Measured on this CPU (1 thread,
    one decode step, 4 heads x 32 dims): writing a token costs 3 us whatever the length, ``cat``
    5-14 us and growing with length and batch; SDPA reads the strided view as fast as a
    contiguous tensor (8.6 vs 8.5 us). End to end, a 4 x 128 model generating 256 tokens ran
    at the same speed either way (within 5%, noise), so the layout with the flat cost stays.

    The buffers are allocated at the first ``update`` in the dtype of the keys they receive
    (so a cache works under autocast too). The model calls ``update(layer, k, v)`` in each layer
    and ``advance(T)`` once per forward."""

    def __init__(self, layers: int, max_len: int):
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers
        self.max_len = max_len
        self.length = 0  # tokens already stored

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this forward's (B, kv_heads, T, D) keys/values after the cached ones; return all of them."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise GenzooError(f"KV cache holds {self.max_len} tokens; {end} needed (make a larger cache)")
        if self.k[layer] is None:
            B, H, _, D = k.shape
            self.k[layer] = k.new_zeros(B, H, self.max_len, D)
            self.v[layer] = v.new_zeros(B, H, self.max_len, D)
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, tokens: int) -> None:
        self.length += tokens


# ---- attention ----------------------------------------------------------------
def _probe_gqa() -> bool:
    """Whether this torch's SDPA takes ``enable_gqa`` (torch >= 2.5); otherwise k/v are repeated."""
    try:
        q, kv = torch.zeros(1, 2, 1, 2), torch.zeros(1, 1, 1, 2)
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


_SDPA_GQA = _probe_gqa()


def attention_mask(q_len: int, start: int, left_pad: torch.Tensor | None, device) -> torch.Tensor | None:
    """Boolean mask (True = may attend) of ``q_len`` queries at slots start.. over keys at slots
    0..start+q_len-1, or None when SDPA's own ``is_causal`` (no cache) or no mask at all (one new
    token, nothing padded) is exact.

    Slot j is visible from slot i when j <= i (causality) and j is not padding. A pad slot
    attends to itself only, so that no softmax row is empty (an all-masked row gives NaN);
    its output is never read by a real token."""
    if left_pad is None and (start == 0 or q_len == 1):
        return None
    keys = torch.arange(start + q_len, device=device)
    queries = torch.arange(start, start + q_len, device=device)
    allowed = keys[None, :] <= queries[:, None]  # (T, S)
    if left_pad is None:
        return allowed[None, None]
    real = keys[None, :] >= left_pad.to(device)[:, None]  # (B, S)
    allowed = (allowed[None] & real[:, None, :]) | (keys[None, None, :] == queries[None, :, None])
    return allowed[:, None]  # (B, 1, T, S), broadcast over heads


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with grouped-query attention and an optional KV cache.

    ``heads`` query heads share ``kv_heads`` key/value heads (kv_heads divides heads; equal:
    ordinary multi-head attention, 1: multi-query). Query head h reads kv head h // (heads / kv_heads),
    the grouping of Hugging Face's ``repeat_kv`` and of SDPA's ``enable_gqa``.

    q, k and v come from one fused projection (one matmul instead of three; the Hugging Face
    import concatenates q_proj, k_proj and v_proj). Attention itself is
    softmax(q k^T / sqrt(head_dim) + mask) v through ``scaled_dot_product_attention``.

    Dropout: SDPA's ``dropout_p`` draws its mask from torch's global generator, which cannot
    be fed from the batch's random stream (genzoo.nn.dropout), so it stays 0 and the
    block applies ``BatchDropout`` to the attention branch's output instead (as to the MLP's).

    ``causal=False`` makes it bidirectional (an encoder such as BERT): every token sees every key
    that ``mask`` allows (None: all of them)."""

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int, qkv_bias: bool = False, out_bias: bool = False,
                 causal: bool = True):
        super().__init__()
        self.causal = causal
        if heads % kv_heads:
            raise GenzooError(f"kv_heads ({kv_heads}) must divide heads ({heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.qkv = nn.Linear(width, (heads + 2 * kv_heads) * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, width, bias=out_bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([H * D, Hkv * D, Hkv * D], dim=-1)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, Hkv, D).transpose(1, 2)
        v = v.view(B, T, Hkv, D).transpose(1, 2)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if Hkv != H and not _SDPA_GQA:
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        gqa = {"enable_gqa": True} if Hkv != H and _SDPA_GQA else {}
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal and mask is None and T > 1, **gqa)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * D))


# ---- feed-forward ---------------------------------------------------------------
class GeluMLP(nn.Module):
    """GPT-2's feed-forward: proj(GELU(fc(x))), GELU in its tanh approximation as in GPT-2
    (``approximate="none"``: the exact erf GELU, as in BERT)."""

    def __init__(self, width: int, hidden: int, bias: bool = True, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate
        self.fc = nn.Linear(width, hidden, bias=bias)
        self.proj = nn.Linear(hidden, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class SwiGLU(nn.Module):
    """Llama's feed-forward (Shazeer, 2020): proj(SiLU(gate(x)) * up(x)).

    gate and up are one fused projection ``gate_up`` (the Hugging Face import stacks gate_proj
    over up_proj)."""

    def __init__(self, width: int, hidden: int, bias: bool = False):
        super().__init__()
        self.hidden = hidden
        self.gate_up = nn.Linear(width, 2 * hidden, bias=bias)
        self.proj = nn.Linear(hidden, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.proj(F.silu(gate) * up)


# ---- the block ------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm residual block: x + Drop(Attn(Norm1(x))), then + Drop(MLP(Norm2(x))).

    ``post_norm``: the original transformer's (and BERT's) order instead,
    x = Norm1(x + Drop(Attn(x))), then Norm2(x + Drop(MLP(x))). ``causal=False``: bidirectional
    attention (an encoder). ``mlp="gelu_erf"``: the GELU MLP with the exact erf GELU (BERT)."""

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int, mlp_hidden: int, *,
                 norm: str = "layernorm", mlp: str = "gelu", norm_eps: float = 1e-5, dropout: float = 0.0,
                 qkv_bias: bool = False, out_bias: bool = False, mlp_bias: bool = False,
                 causal: bool = True, post_norm: bool = False):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = make_norm(norm, width, norm_eps)
        self.attn = CausalSelfAttention(width, heads, kv_heads, head_dim, qkv_bias, out_bias, causal=causal)
        self.norm2 = make_norm(norm, width, norm_eps)
        if mlp == "gelu":
            self.mlp = GeluMLP(width, mlp_hidden, mlp_bias)
        elif mlp == "gelu_erf":
            self.mlp = GeluMLP(width, mlp_hidden, mlp_bias, approximate="none")
        elif mlp == "swiglu":
            self.mlp = SwiGLU(width, mlp_hidden, mlp_bias)
        else:
            raise GenzooError(f"unknown MLP {mlp!r}; choose gelu, gelu_erf or swiglu")
        self.dropout = BatchDropout(dropout)  # masks from the batch's random stream (applied to both branches)

    def forward(self, x: torch.Tensor, rope=None, mask=None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if self.post_norm:
            x = self.norm1(x + self.dropout(self.attn(x, rope, mask, cache, layer)))
            return self.norm2(x + self.dropout(self.mlp(x)))
        x = x + self.dropout(self.attn(self.norm1(x), rope, mask, cache, layer))
        return x + self.dropout(self.mlp(self.norm2(x)))
