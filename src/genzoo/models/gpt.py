"""GPT: decoder-only transformer language models (GPT-2 style and Llama style) with an exact likelihood.

A sequence of tokens is factorised left to right,

    p(x_1..x_T | x_0) = prod_t p(x_t | x_<t),

each factor a softmax over the vocabulary, predicted for every position at once by a stack
of causal pre-norm transformer blocks (``genzoo.nn.transformer``). Training minimises the mean
next-token cross-entropy (nats/token) on windows of T+1 tokens: inputs x[:, :-1], targets
x[:, 1:]. ``log_prob`` is the exact log-likelihood of a window's tokens after its first, given
what precedes them (the first token is the window's context, as in training).

Two architectures share the code (``architecture`` in the config):

* ``gpt`` (GPT-2, Radford et al. 2019; nanoGPT): learned absolute positions, LayerNorm,
  GELU MLP of 4x the width, biases, the output layer tied to the token embedding.
* ``llama`` (Touvron et al. 2023): rotary positions, RMSNorm, SwiGLU MLP, grouped-query
  attention (``kv_heads`` < ``heads``), no biases (``qkv_bias`` for Qwen2). Local Hugging Face
  Llama / Mistral / Qwen2 checkpoints load into it: ``genzoo.models.hf.loader``.

Fields left at None take the architecture's default (``ARCHITECTURES``) when the model is
built, so ``--set architecture=llama`` alone gives a consistent Llama; the built model's
config (and hence config.json) holds the resolved values.

Tied embeddings: with ``tie_embeddings`` there is no separate output layer at all; the
logits are ``h @ tok_emb.weight^T``. The state dict therefore holds the matrix once, which
``safetensors`` requires (an ``nn.Linear`` sharing the embedding's Parameter makes two state
dict entries on one storage, and ``safetensors.torch.save_file`` refuses shared tensors), and
the base class's ``save_pretrained`` / ``from_pretrained`` work unchanged. The matrix is an
``nn.Embedding`` weight, so it does not decay (``decay_groups``).

Generation (``generate_tokens``): a batch of prompts of different lengths is left-padded; each
row's positions count from its first real token and pad slots are masked out of attention, so
each row continues as it would alone. With ``use_cache`` the keys and values of past tokens are
kept in a preallocated ``KVCache`` and each step runs the model on the new token only;
without, every step reruns the whole sequence. Both give the same tokens (tested). A
sequence longer than ``context`` keeps its last ``context`` tokens (nanoGPT's crop); from then
on the cached path recomputes the cropped window each step like the other path, because
cached keys were computed with tokens now cropped away (and learned positions shift).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError, unknown
from genzoo.family import register
from genzoo.models.base import LOG_PROB, SAMPLE, Batch, GenerativeModel, ModelConfig, generator_device
from genzoo.nn.dropout import BatchDropout
from genzoo.nn.transformer import Block, KVCache, RotaryEmbedding, attention_mask, make_norm

# model -> its compiled training forward. Kept off the module, so that copies of the model (the EMA
# weights, the best weights) never carry compiled code, and a copy trains eagerly unless compiled itself.
_COMPILED_FORWARD: "weakref.WeakKeyDictionary[nn.Module, Callable]" = weakref.WeakKeyDictionary()

# What each architecture fills in for the config fields left at None.
ARCHITECTURES = {
    "gpt": {"norm": "layernorm", "mlp": "gelu", "positions": "learned", "tie_embeddings": True,
            "qkv_bias": True, "out_bias": True, "mlp_bias": True, "norm_eps": 1e-5},
    "llama": {"norm": "rmsnorm", "mlp": "swiglu", "positions": "rope", "tie_embeddings": False,
              "qkv_bias": False, "out_bias": False, "mlp_bias": False, "norm_eps": 1e-5},
}



@dataclass
class GPTConfig(ModelConfig):
    architecture: str = "gpt"  # "gpt" | "llama": the defaults of the fields left at None (ARCHITECTURES)
    vocab_size: int = 0  # 0: the data spec's vocab_size
    context: int = 256  # block size: the most tokens the model attends over
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None  # key/value heads (grouped-query attention); None: = heads
    head_dim: int | None = None  # None: width // heads (some HF checkpoints use another)
    width: int = 128
    mlp_hidden: int | None = None  # None: gpt 4 * width; llama 8/3 * width rounded up to a multiple of 32
    dropout: float = 0.1
    tie_embeddings: bool | None = None  # output layer = token embedding (None: gpt yes, llama no)
    rope_theta: float = 10000.0  # rotary base (llama)
    rope_scaling: dict | None = None  # a Hugging Face rope_scaling dict (rope_type linear or llama3), or None
    norm_eps: float | None = None
    qkv_bias: bool | None = None  # biases on q/k/v (gpt: yes; llama: no; Qwen2: yes)
    out_bias: bool | None = None  # bias of the attention output projection
    mlp_bias: bool | None = None
    bos_token_id: int | None = None  # the start token of unconditional samples (None: 0)
    eos_token_id: list[int] | None = None  # end-of-text ids (checkpoints from Hugging Face); informational

    def resolved(self) -> "GPTConfig":
        """This config with every None filled from the architecture and the data, validated."""
        if self.architecture not in ARCHITECTURES:
            raise unknown("architecture", self.architecture, ARCHITECTURES)
        arch = ARCHITECTURES[self.architecture]
        c = dataclasses.replace(self)
        c.vocab_size = c.vocab_size or int(c.data.get("vocab_size") or 0)
        if c.vocab_size < 1:
            raise GenzooError("GPT needs a vocabulary size: train on token data (its spec has vocab_size) or --set vocab_size=N")
        if c.heads < 1 or c.width < 1 or c.layers < 1 or c.context < 1:
            raise GenzooError(f"heads, width, layers and context must be positive; got {c.heads}, {c.width}, {c.layers}, {c.context}")
        if c.head_dim is None:
            if c.width % c.heads:
                raise GenzooError(f"width {c.width} is not divisible by heads {c.heads}; change one (or set head_dim)")
            c.head_dim = c.width // c.heads
        c.kv_heads = c.kv_heads or c.heads
        if c.heads % c.kv_heads:
            raise GenzooError(f"kv_heads ({c.kv_heads}) must divide heads ({c.heads})")
        if c.mlp_hidden is None:
            c.mlp_hidden = 4 * c.width if arch["mlp"] == "gelu" else 32 * math.ceil(8 * c.width / 3 / 32)
        for name in ("tie_embeddings", "qkv_bias", "out_bias", "mlp_bias", "norm_eps"):
            if getattr(c, name) is None:
                setattr(c, name, arch[name])
        if isinstance(c.eos_token_id, int):
            c.eos_token_id = [c.eos_token_id]
        if not 0 <= c.dropout < 1:
            raise GenzooError(f"dropout must lie in [0, 1), got {c.dropout}")
        return c


def greedy(logits: torch.Tensor, history: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The most likely next token of each row (ties: the lowest id)."""
    return logits.argmax(-1)


def temperature_sampler(temperature: float = 1.0):
    """A ``sample_fn`` drawing from softmax(logits / temperature) (0: greedy)."""
    if temperature < 0:
        raise GenzooError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return greedy

    def sample_fn(logits, history, generator=None):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        probs = probs.to(generator_device(generator, probs.device))
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)

    return sample_fn



@register(
    "gpt",
    description="GPT and Llama-style decoder-only language models (KV cache, local Hugging Face Llama/Mistral/Qwen2); exact likelihood",
    data_kinds=("tokens",),
    variants={"gpt": {"architecture": "gpt"}, "llama": {"architecture": "llama", "kv_heads": 2}},
)
class GPT(GenerativeModel):
    """Decoder-only transformer language model over token ids (see the module doc)."""

    config_class = GPTConfig
    capabilities = frozenset({SAMPLE, LOG_PROB})
    likelihood = "exact"

    def __init__(self, config: GPTConfig):
        config = config.resolved()
        super().__init__(config)
        c, arch = config, ARCHITECTURES[config.architecture]
        self.tok_emb = nn.Embedding(c.vocab_size, c.width)
        if arch["positions"] == "learned":
            self.pos_emb, self.rope = nn.Embedding(c.context, c.width), None
        else:
            self.pos_emb, self.rope = None, RotaryEmbedding(c.head_dim, c.rope_theta, c.rope_scaling)
        self.drop = BatchDropout(c.dropout)  # masks from the batch's random stream
        self.blocks = nn.ModuleList([
            Block(c.width, c.heads, c.kv_heads, c.head_dim, c.mlp_hidden, norm=arch["norm"], mlp=arch["mlp"],
                  norm_eps=c.norm_eps, dropout=c.dropout, qkv_bias=c.qkv_bias, out_bias=c.out_bias, mlp_bias=c.mlp_bias)
            for _ in range(c.layers)
        ])
        self.norm_f = make_norm(arch["norm"], c.width, c.norm_eps)
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.width, c.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the projections that write
        into the residual stream scaled by 1/sqrt(2 * layers) so that its variance stays O(1)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * self.config.layers))

    # ---- family hooks --------------------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> GPTConfig:
        """A CPU-sized model (4 layers x 128, nanoGPT's CPU configuration); context from the data's
        windows (shape [T+1] -> T) when it has them."""
        shape = data_spec.get("shape") or []
        context = int(shape[0]) - 1 if len(shape) == 1 and shape[0] > 1 else 256
        return GPTConfig(data=data_spec, vocab_size=int(data_spec.get("vocab_size") or 0), context=context,
                         bos_token_id=data_spec.get("eos_id"))  # samples start as a new document does

    def prepare_data(self, data):
        """A token stream is cut into windows of context + 1 tokens (inputs and next-token targets)."""
        return data.with_window(self.config.context + 1) if data.is_stream else data

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        return {"batch_size": 32, "lr": 1e-3, "weight_decay": 0.1, "betas": (0.9, 0.95), "grad_clip": 1.0}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"layers": 2, "width": 32, "heads": 4, "dropout": 0.1, "context": 32}

    # ---- the network ---------------------------------------------------------------
    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, start_pos: int | None = None, *,
                left_pad: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab) of the next token after each of ``ids`` (B, T).

        ``start_pos``: the slot of ids[:, 0] in the sequence (default: the cache's length, 0 without
        one). ``cache``: keys/values of the earlier slots, extended with these. ``left_pad`` (B,):
        pad slots at the start of each row (masked out; positions count from the first real token).
        ``last_only``: logits of the last position only (B, 1, vocab), as generation needs."""
        B, T = ids.shape
        start = (cache.length if cache is not None else 0) if start_pos is None else int(start_pos)
        if cache is not None and start != cache.length:
            raise GenzooError(f"start_pos {start} does not follow the cache, which holds {cache.length} tokens")
        if start + T > self.config.context:
            raise GenzooError(f"{start + T} tokens exceed this model's context of {self.config.context}")
        positions = torch.arange(start, start + T, device=ids.device)
        if left_pad is not None:
            positions = (positions[None, :] - left_pad.to(ids.device)[:, None]).clamp_min(0)  # (B, T)
        h = self.tok_emb(ids)
        if self.pos_emb is not None:
            h = h + self.pos_emb(positions)
        h = self.drop(h)
        rope = self.rope(positions, h.dtype) if self.rope is not None else None
        mask = attention_mask(T, start, left_pad, ids.device)
        for i, block in enumerate(self.blocks):
            h = block(h, rope, mask, cache, i)
        if cache is not None:
            cache.advance(T)
        if last_only:
            h = h[:, -1:]
        h = self.norm_f(h)
        return F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h)

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """An empty KV cache for up to ``max_len`` tokens per row (default: the context)."""
        return KVCache(self.config.layers, min(max_len or self.config.context, self.config.context))

    def _check_tokens(self, x, min_len: int = 2, within_context: bool = True) -> torch.Tensor:
        """``x`` as (N, T) int64 ids on the model's device, or a clear error."""
        x = torch.as_tensor(x, device=self.device)
        if x.ndim != 2 or x.shape[1] < min_len:
            raise GenzooError(f"expected token windows of shape (N, T) with T >= {min_len}, got {tuple(x.shape)}")
        if x.is_floating_point() and (x != x.round()).any():
            raise GenzooError("token ids must be integers")
        x = x.long()
        if (x < 0).any() or (x >= self.config.vocab_size).any():
            raise GenzooError(f"token ids must lie in 0..{self.config.vocab_size - 1}")
        if within_context and x.shape[1] - 1 > self.config.context:
            raise GenzooError(f"windows of {x.shape[1]} tokens predict {x.shape[1] - 1}, more than the context {self.config.context}")
        return x

    # ---- training and likelihood -----------------------------------------------------
    def compile_for_training(self, backend: str = "inductor") -> None:
        """The training forward (no cache, full windows) through ``torch.compile``; generation,
        validation and scoring keep the eager forward (their shapes and caches vary)."""
        _COMPILED_FORWARD[self] = torch.compile(self.forward, dynamic=False, backend=backend)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean next-token cross-entropy in nats/token of (B, T+1) windows."""
        x = self._check_tokens(batch.x)
        forward = _COMPILED_FORWARD.get(self, self.forward) if self.training else self.forward
        logits = forward(x[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    def log_prob(self, x: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
        """Exact sum over t >= 1 of log p(x_t | x_<t) in nats, per (N, T) window (the first token
        is context). Nats per token: divide by T - 1."""
        x = self._check_tokens(x)
        out = []
        with self._eval_mode(), torch.no_grad():
            for s in range(0, len(x), batch_size):
                xb = x[s : s + batch_size]
                logp = torch.log_softmax(self(xb[:, :-1]).float(), dim=-1)
                out.append(logp.gather(-1, xb[:, 1:, None]).squeeze(-1).sum(-1))
        return torch.cat(out)

    # ---- generation -------------------------------------------------------------------
    @torch.no_grad()
    def generate_tokens(self, prompt_ids: list[list[int]], max_new_tokens: int, *,
                        sample_fn: Callable = greedy, generator: torch.Generator | None = None,
                        use_cache: bool = True, stop: Collection[int] | Callable[[list[int]], bool] | None = None,
                        on_token: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> list[list[int]]:
        """Continue each prompt by up to ``max_new_tokens`` tokens; returns the new tokens per row.

        ``sample_fn(logits (B, vocab) float32, history (B, L) long, generator) -> (B,) ids`` picks
        each next token (``history``: each row's tokens so far, its left padding set to -1);
        ``greedy`` (default) and ``temperature_sampler(t)`` are here, richer strategies in
        ``genzoo.sampling``. ``stop``: token ids that end a row (kept as its last token), or a
        predicate on a row's new tokens (e.g. a stop string); generation ends when every row has
        stopped. ``on_token(tokens (B,), active (B,) bool)`` is called after each step (streaming).
        Prompts of different lengths are left-padded (see the module doc); with ``use_cache``
        False every step recomputes the whole sequence, with the same result."""
        if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
            raise GenzooError("every prompt needs at least one token (start an empty one with a bos token)")
        if max_new_tokens < 0:
            raise GenzooError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        device, context = self.device, self.config.context
        B, L = len(prompt_ids), max(len(p) for p in prompt_ids)
        seq = torch.full((B, L), -1, dtype=torch.long, device=device)
        for i, p in enumerate(prompt_ids):
            seq[i, L - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        self._check_tokens(seq.clamp_min(0), min_len=1, within_context=False)  # ids in range (long prompts are cropped)
        pad = torch.tensor([L - len(p) for p in prompt_ids], device=device)
        stopper = stop if callable(stop) else (lambda row, ids=frozenset(stop or ()): bool(row) and row[-1] in ids)
        out: list[list[int]] = [[] for _ in range(B)]
        active = torch.ones(B, dtype=torch.bool, device=device)
        cache = self.new_cache(L + max_new_tokens) if use_cache and L <= context else None
        fresh = seq  # tokens the cache has not seen yet
        with self._eval_mode():
            for _ in range(max_new_tokens):
                if cache is not None and seq.shape[1] <= context:
                    logits = self(fresh.clamp_min(0), cache, left_pad=self._pad_or_none(pad), last_only=True)
                else:  # full recomputation over the last `context` tokens
                    cache = None
                    drop = max(seq.shape[1] - context, 0)
                    window_pad = (pad - drop).clamp_min(0)
                    logits = self(seq[:, drop:].clamp_min(0), left_pad=self._pad_or_none(window_pad), last_only=True)
                token = sample_fn(logits[:, -1].float(), seq, generator).to(device=device, dtype=torch.long)
                seq = torch.cat([seq, token[:, None]], dim=1)
                fresh = token[:, None]
                for i in active.nonzero().flatten().tolist():
                    out[i].append(int(token[i]))
                    if stopper(out[i]):
                        active[i] = False
                if on_token is not None:
                    on_token(token, active.clone())
                if not active.any():
                    break
        return out

    @staticmethod
    def _pad_or_none(pad: torch.Tensor) -> torch.Tensor | None:
        return pad if bool(pad.any()) else None

    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None,
               temperature: float = 1.0, max_tokens: int | None = None, in_range: bool = False) -> torch.Tensor:
        """(n, max_tokens) token ids drawn from softmax(logits / temperature) after the start token
        (``bos_token_id``, else 0), which is not returned. ``max_tokens`` defaults to the data's
        window length (else the context, at most 256). ``in_range`` (chorale models): every voice stays
        in its range by constrained decoding (``genzoo.sampling.chorale_ranges``); being a sampler
        option, it is in the manifest and ``genzoo reproduce`` replays it."""
        if in_range and self.data_spec.get("name") != "chorales":
            raise GenzooError(f"in_range keeps the voices of a chorale model in range; this model was trained on "
                              f"{self.data_spec.get('name') or 'other data'}: drop --in-range")
        if condition is not None:
            raise GenzooError("gpt samples unconditionally here; to continue a prompt use generate_tokens (genzoo generate)")
        if max_tokens is None:
            shape = self.data_spec.get("shape") or []
            max_tokens = int(shape[0]) if len(shape) == 1 else min(self.config.context, 256)
        if max_tokens < 1 or n < 1:
            raise GenzooError(f"n and max_tokens must be at least 1, got {n} and {max_tokens}")
        start = self.config.bos_token_id or 0
        if in_range:
            from genzoo.sampling.chorale_ranges import in_range_sampler

            sample_fn = in_range_sampler(self.tokenizer, temperature_sampler(temperature))
        else:
            sample_fn = temperature_sampler(temperature)
        rows = self.generate_tokens([[start]] * n, max_tokens, sample_fn=sample_fn, generator=generator)
        return torch.tensor(rows, dtype=torch.long)
