"""T5: a transformer encoder-decoder for text-to-text tasks (Raffel et al., 2020).

The encoder reads the whole input bidirectionally; the decoder writes the output left to right,
attending to its own past (causal) and to every encoder state (cross-attention).

Architecture (the original's, so that Hugging Face T5 folders load unchanged, ``genzoo.models.hf.t5``):

* one token embedding shared by encoder input, decoder input and (when tied) the output layer;
* no absolute positions: a learned *relative position bias* is added to the attention scores.
  The key-minus-query offset is put in one of ``num_buckets`` buckets: half the buckets hold
  exact small offsets, the rest log-spaced offsets up to ``max_distance`` (further ones share the
  last bucket). The encoder's buckets are bidirectional (sign kept, half the buckets per side),
  the decoder's causal (only the past). One table per stack, computed in the first layer and
  reused by every layer, as in T5; cross-attention has no position bias;
* scores are q.k without the 1/sqrt(d) scaling (T5 folds it into the initialisation);
* pre-norm residual blocks with T5's LayerNorm: RMS scaling with a gain, no mean, no bias
  (computed in float32); a final norm after each stack;
* feed-forward: ReLU (T5 v1.0) or gated GELU (v1.1: gelu_tanh(x W0) * (x W1)), no biases;
* logits: the decoder output scaled by width^-0.5 and multiplied by the embedding (v1.0), or
  unscaled through a separate ``lm_head`` (v1.1; transformers 5 saves v1.1 tied but unscaled,
  ``scale_decoder_outputs`` false, which ``tie_lm_head`` / ``scale_logits`` express too).

Training (a registered family: the one Trainer drives it, ``genzoo train t5``). The loss depends on the data:

* "pairs" data (``genzoo.data.pairs``: a JSONL of input/target lines, or docsig): supervised
  text-to-text. Each side is cut to ``max_input_tokens`` / ``max_target_tokens`` (eos included)
  and padded to that width or the data's, whichever is shorter: a width fixed by the data, never
  by the batch, so dropout masks (drawn per element) are the same whichever process holds a row.
* "tokens" data (a token stream, e.g. pycode): span-corruption pretraining on windows of ``window``
  tokens. 15% of each window's tokens, in spans of mean length 3, are cut out; each span is
  replaced in the input by one sentinel id, and the target is the sentinels followed by the spans
  they hide, then eos. Span lengths come from a random segmentation of the noise and non-noise
  counts, as in T5's ``random_spans_noise_mask``, drawn from ``batch.rng``; every row of a batch
  therefore has the same input and target lengths (no padding).

Both losses are a mean over each row's target tokens, then over rows, so that 2 processes averaging
their gradients compute what one does. Dropout (``BatchDropout``; attention weights too, computed
outside SDPA while training with dropout) draws its masks from the batch's random stream.

Vocabulary of a model genzoo trains: the tokenizer's ids, then one pad id (also the decoder's
start id), then ``num_sentinels`` sentinels counting *down* from the last id
(``<extra_id_0>`` = vocab_size - 1, as in T5's SentencePiece vocabulary).

T5 cannot sample unconditionally (no ``sample`` capability); it maps text to text (``seq2seq``):
``generate_text`` in Python, ``genzoo generate RUN "input"`` on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import SEQ2SEQ, Batch, BatchRandom, GenerativeModel, ModelConfig
from genzoo.nn.dropout import BatchDropout, batch_dropout
from genzoo.nn.transformer import RMSNorm

FFN_KINDS = ("relu", "gated-gelu")
IGNORE = -100  # label id left out of the loss (padding of targets)


@dataclass
class T5Config(ModelConfig):
    vocab_size: int = 0  # 0: tokenizer vocabulary + 1 (pad) + num_sentinels
    width: int = 128  # d_model
    d_kv: int = 32  # per-head width
    d_ff: int = 512
    layers: int = 2  # encoder blocks
    decoder_layers: int | None = None  # None: same as layers
    heads: int = 4
    num_buckets: int = 32
    max_distance: int = 128
    ffn: str = "relu"  # "relu" (T5 v1.0) or "gated-gelu" (v1.1)
    norm_eps: float = 1e-6
    dropout: float = 0.0
    tie_lm_head: bool = True  # True: the output layer is the embedding matrix; False: a separate lm_head
    scale_logits: bool | None = None  # h * width^-0.5 before the output layer (T5 v1.0); None: same as tie_lm_head
    num_sentinels: int = 100
    pad_token_id: int | None = None  # None: vocab_size - 1 - num_sentinels (right after the tokenizer's ids)
    eos_token_id: int = 0  # genzoo tokenizers: <|endoftext|> is id 0; HF T5: 1
    decoder_start_token_id: int | None = None  # None: the pad id (as in T5)
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    window: int = 64  # tokens data: span corruption on windows of this many tokens
    max_input_tokens: int = 128  # pairs data: each side cut to this many tokens, eos included
    max_target_tokens: int = 64

    def resolved(self) -> "T5Config":
        c = dataclasses.replace(self)
        if not c.vocab_size:
            data_vocab = int(c.data.get("vocab_size") or 0)
            if data_vocab < 1:
                raise GenzooError("T5 needs a vocabulary size: give data with vocab_size or --set vocab_size=N")
            c.vocab_size = data_vocab + 1 + c.num_sentinels
        c.decoder_layers = c.decoder_layers or c.layers
        if c.scale_logits is None:
            c.scale_logits = c.tie_lm_head
        if c.pad_token_id is None:
            c.pad_token_id = c.vocab_size - 1 - c.num_sentinels
        if c.decoder_start_token_id is None:
            c.decoder_start_token_id = c.pad_token_id
        if c.ffn not in FFN_KINDS:
            raise GenzooError(f"unknown ffn {c.ffn!r}; choose one of: {', '.join(FFN_KINDS)}")
        if min(c.width, c.d_kv, c.d_ff, c.layers, c.decoder_layers, c.heads, c.num_buckets, c.max_distance) < 1:
            raise GenzooError("width, d_kv, d_ff, layers, decoder_layers, heads, num_buckets and max_distance must be positive")
        if c.num_buckets < 4:
            raise GenzooError(f"num_buckets must be at least 4 (exact and log-spaced halves per direction), got {c.num_buckets}")
        if c.window < 2 or c.max_input_tokens < 1 or c.max_target_tokens < 1:
            raise GenzooError(f"window must be >= 2 and max_input_tokens, max_target_tokens >= 1; got "
                              f"{c.window}, {c.max_input_tokens}, {c.max_target_tokens}")
        if not 0 < c.noise_density < 1 or c.mean_span_length < 1:
            raise GenzooError(f"noise_density must lie in (0, 1) and mean_span_length be >= 1; got {c.noise_density}, {c.mean_span_length}")
        if not 0 <= c.dropout < 1:
            raise GenzooError(f"dropout must lie in [0, 1), got {c.dropout}")
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            v = getattr(c, name)
            if not 0 <= v < c.vocab_size:
                raise GenzooError(f"{name} {v} lies outside the vocabulary 0..{c.vocab_size - 1}")
        if c.num_sentinels < 0 or c.num_sentinels >= c.vocab_size:
            raise GenzooError(f"num_sentinels {c.num_sentinels} does not fit a vocabulary of {c.vocab_size}")
        return c


def relative_position_bucket(offset: torch.Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bucket of each key-minus-query ``offset`` (see the module doc). Bidirectional: buckets
    [0, n/2) for offsets <= 0 and [n/2, n) for offsets > 0; causal: only -offset >= 0 counts."""
    bucket = torch.zeros_like(offset)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (offset > 0).long() * num_buckets
        distance = offset.abs()
    else:
        distance = (-offset).clamp_min(0)
    exact = num_buckets // 2
    # log-spaced buckets from `exact` up to max_distance; the clamp keeps log() finite for small distances
    log_ratio = torch.log(distance.float().clamp_min(1) / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, large)


class RelativePositionBias(nn.Module):
    """(1, heads, q, k) additive scores from a learned table over offset buckets."""

    def __init__(self, heads: int, num_buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.table = nn.Embedding(num_buckets, heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, q_len: int, k_len: int, q_start: int = 0) -> torch.Tensor:
        device = self.table.weight.device
        q = torch.arange(q_start, q_start + q_len, device=device)[:, None]
        k = torch.arange(k_len, device=device)[None, :]
        buckets = relative_position_bucket(k - q, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                                           max_distance=self.max_distance)
        return self.table(buckets).permute(2, 0, 1)[None]


class T5Attention(nn.Module):
    """Multi-head attention without biases and without score scaling; ``bias`` carries positions and masks."""

    def __init__(self, width: int, heads: int, d_kv: int, dropout: float):
        super().__init__()
        inner = heads * d_kv
        self.heads, self.d_kv, self.dropout = heads, d_kv, dropout
        self.q = nn.Linear(width, inner, bias=False)
        self.k = nn.Linear(width, inner, bias=False)
        self.v = nn.Linear(width, inner, bias=False)
        self.o = nn.Linear(inner, width, bias=False)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_kv).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k(source)), self.split(self.v(source))

    def forward(self, x: torch.Tensor, bias: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        k, v = kv if kv is not None else self.keys_values(x)
        q = self.split(self.q(x))
        if self.training and self.dropout:  # SDPA's dropout draws from the global RNG, not the batch's stream
            w = torch.softmax((q @ k.transpose(-2, -1)).float() + bias, dim=-1).to(v.dtype)
            out = batch_dropout(w, self.dropout, True) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return self.o(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class T5FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int, kind: str, dropout: float):
        super().__init__()
        self.gated = kind == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(width, hidden, bias=False)
            self.wi_1 = nn.Linear(width, hidden, bias=False)
        else:
            self.wi = nn.Linear(width, hidden, bias=False)
        self.wo = nn.Linear(hidden, width, bias=False)
        self.drop = BatchDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x) if self.gated else F.relu(self.wi(x))
        return self.wo(self.drop(h))


class T5Block(nn.Module):
    """Pre-norm: self-attention, (decoder only) cross-attention, feed-forward, each x = x + Drop(f(LN(x)))."""

    def __init__(self, c: T5Config, cross: bool):
        super().__init__()
        self.self_norm = RMSNorm(c.width, c.norm_eps)
        self.self_attn = T5Attention(c.width, c.heads, c.d_kv, c.dropout)
        if cross:
            self.cross_norm = RMSNorm(c.width, c.norm_eps)
            self.cross_attn = T5Attention(c.width, c.heads, c.d_kv, c.dropout)
        self.ff_norm = RMSNorm(c.width, c.norm_eps)
        self.ff = T5FeedForward(c.width, c.d_ff, c.ffn, c.dropout)
        self.drop = BatchDropout(c.dropout)

    def forward(self, x, self_bias, cross_bias=None, memory_kv=None, cache: dict | None = None):
        h = self.self_norm(x)
        kv = self.self_attn.keys_values(h)
        if cache is not None:  # decoder KV cache: this block's past keys/values, then the new ones
            if "k" in cache:
                kv = (torch.cat([cache["k"], kv[0]], 2), torch.cat([cache["v"], kv[1]], 2))
            cache["k"], cache["v"] = kv
        x = x + self.drop(self.self_attn(h, self_bias, kv))
        if memory_kv is not None:
            x = x + self.drop(self.cross_attn(self.cross_norm(x), cross_bias, memory_kv))
        return x + self.drop(self.ff(self.ff_norm(x)))


def _key_mask_bias(mask: torch.Tensor | None, dtype=torch.float32) -> torch.Tensor | float:
    """(B, 1, 1, S) additive bias: 0 for real keys, the most negative float for padding."""
    if mask is None:
        return 0.0
    return (~mask.bool())[:, None, None, :].to(dtype) * torch.finfo(dtype).min


@register(
    "t5",
    description="T5 encoder-decoder: text-to-text on input/target pairs (genzoo generate), span-corruption "
                "pretraining on text; loads local HF T5 folders",
    data_kinds=("pairs", "tokens"),
    variants={"t5": {}},
)
class T5(GenerativeModel):
    """Encoder-decoder with relative position bias (see the module doc)."""

    config_class = T5Config
    capabilities = frozenset({SEQ2SEQ})  # no unconditional sampling, no likelihood
    likelihood = None

    def __init__(self, config: T5Config):
        config = config.resolved()
        super().__init__(config)
        c = config
        self.shared = nn.Embedding(c.vocab_size, c.width)
        self.enc_bias = RelativePositionBias(c.heads, c.num_buckets, c.max_distance, bidirectional=True)
        self.enc_blocks = nn.ModuleList([T5Block(c, cross=False) for _ in range(c.layers)])
        self.enc_norm = RMSNorm(c.width, c.norm_eps)
        self.dec_bias = RelativePositionBias(c.heads, c.num_buckets, c.max_distance, bidirectional=False)
        self.dec_blocks = nn.ModuleList([T5Block(c, cross=True) for _ in range(c.decoder_layers)])
        self.dec_norm = RMSNorm(c.width, c.norm_eps)
        self.drop = BatchDropout(c.dropout)
        self.lm_head = None if c.tie_lm_head else nn.Linear(c.width, c.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """T5's initialisation (Mesh TensorFlow): each matrix N(0, fan_in^-1/2), the query's also
        divided by sqrt(d_kv) (the scaling the scores leave out), embeddings N(0, 1)."""
        c = self.config
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                std = m.in_features ** -0.5
                if name.endswith(".q"):
                    std = (m.in_features * c.d_kv) ** -0.5
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, RelativePositionBias):
                nn.init.normal_(m.table.weight, std=c.width ** -0.5)
        nn.init.normal_(self.shared.weight, std=1.0)

    # ---- family hooks --------------------------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> T5Config:
        """The measured docsig recipe (benchmarks/README.md, section 25): 3 + 3 layers of width 128,
        4 heads of 32, gated GELU d_ff 512, 32 sentinels; eos is the data tokenizer's."""
        eos = data_spec.get("eos_id")
        return T5Config(data=data_spec, width=128, d_kv=32, d_ff=512, layers=3, heads=4, ffn="gated-gelu",
                        num_sentinels=32, eos_token_id=0 if eos is None else int(eos))

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # section 25: lr 1e-3, 100 warm-up steps, cosine to 0, no weight decay, clip 1.0, no EMA (measured without);
        # a constant lr 2e-3 without warm-up collapsed to one output for every input
        return {"batch_size": 32, "lr": 1e-3, "warmup_steps": 100, "schedule": "cosine", "min_lr_ratio": 0.0,
                "weight_decay": 0.0, "grad_clip": 1.0, "ema_decay": None}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"width": 32, "d_kv": 8, "d_ff": 64, "layers": 2, "heads": 4, "num_buckets": 8, "max_distance": 20,
                "num_sentinels": 8, "dropout": 0.1, "window": 24, "max_input_tokens": 48, "max_target_tokens": 32}

    def prepare_data(self, data):
        """A token stream is cut into windows of ``window`` tokens (span corruption); pairs stay as they are."""
        return data.with_window(self.config.window) if data.is_stream else data

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy (nats/token) of the targets: of the pairs' targets for (B, 2, L) pairs, of the
        hidden spans for (B, window) token windows (span corruption from ``batch.rng``)."""
        x = torch.as_tensor(batch.x, device=self.device)
        if x.ndim == 3:
            ids, mask, labels = self.pair_tensors(x)
            return self.seq2seq_loss(ids, labels, mask)
        if x.ndim != 2:
            raise GenzooError(f"T5 trains on (N, 2, L) input/target pairs or (N, T) token windows, got shape {tuple(x.shape)}")
        return self.span_corruption_loss(x, batch.rng)

    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, **options) -> torch.Tensor:
        raise GenzooError("t5 maps an input text to an output text and cannot sample unconditionally; "
                          'use `genzoo generate RUN "input"` (Python: model.generate_text)')

    # ---- the network ---------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, S, width) of ``ids`` (B, S); ``mask`` (B, S) True for real tokens."""
        S = ids.shape[1]
        bias = self.enc_bias(S, S) + _key_mask_bias(mask)
        h = self.drop(self.shared(ids))
        for block in self.enc_blocks:
            h = block(h, bias)
        return self.drop(self.enc_norm(h))

    def memory(self, enc: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys/values of the encoder states, per decoder block (computed once per input)."""
        return [b.cross_attn.keys_values(enc) for b in self.dec_blocks]

    def decode(self, dec_ids: torch.Tensor, memory, enc_mask: torch.Tensor | None = None,
               cache: list[dict] | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) of the next token after each of ``dec_ids``. With ``cache`` (one dict
        per block, empty at first), ``dec_ids`` are the tokens after those already cached."""
        T = dec_ids.shape[1]
        past = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        self_bias = self.dec_bias(T, past + T, q_start=past)
        causal = torch.ones(T, past + T, dtype=torch.bool, device=dec_ids.device).tril(past)
        self_bias = self_bias.masked_fill(~causal, torch.finfo(self_bias.dtype).min)
        cross_bias = _key_mask_bias(enc_mask)
        if not torch.is_tensor(cross_bias):
            cross_bias = torch.zeros(1, 1, 1, 1, device=dec_ids.device)
        h = self.drop(self.shared(dec_ids))
        for i, block in enumerate(self.dec_blocks):
            h = block(h, self_bias, cross_bias, memory[i], None if cache is None else cache[i])
        h = self.drop(self.dec_norm(h))
        if self.config.scale_logits:
            h = h * self.config.width ** -0.5
        return self.lm_head(h) if self.lm_head is not None else F.linear(h, self.shared.weight)

    def forward(self, ids: torch.Tensor, dec_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) of the decoder inputs ``dec_ids`` given the encoder input ``ids``."""
        return self.decode(dec_ids, self.memory(self.encode(ids, mask)), mask)

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs of ``labels``: the start id, then the labels but the last (padding -> pad id)."""
        start = torch.full_like(labels[:, :1], self.config.decoder_start_token_id)
        dec = torch.cat([start, labels[:, :-1]], 1)
        return dec.masked_fill(dec == IGNORE, self.config.pad_token_id)

    # ---- losses ------------------------------------------------------------------------------
    def seq2seq_loss(self, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy (nats/token) of ``labels`` (B, T; ``IGNORE`` = padding) given ``ids``;
        mean over each row's tokens, then over rows (so rows weigh the same whatever their length)."""
        logits = self(ids, self.shift_right(labels), mask).float()
        ce = F.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none")
        real = labels != IGNORE
        return ((ce * real).sum(1) / real.sum(1).clamp_min(1)).mean()

    def pair_tensors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, mask, labels) of (B, 2, L) pairs padded with -1 (``genzoo.data.pairs``): each side cut to
        its limit less one, eos appended; inputs padded with the pad id, labels with ``IGNORE``. The
        widths depend on L and the config only (see the module doc)."""
        c = self.config
        x = self._check_ids(x, allow_pad=True)
        ids, mask = _ended(x[:, 0], min(c.max_input_tokens, x.shape[-1] + 1), c.eos_token_id, c.pad_token_id)
        labels, _ = _ended(x[:, 1], min(c.max_target_tokens, x.shape[-1] + 1), c.eos_token_id, IGNORE)
        return ids, mask, labels

    def _check_ids(self, x: torch.Tensor, allow_pad: bool = False) -> torch.Tensor:
        if x.is_floating_point() and (x != x.round()).any():
            raise GenzooError("token ids must be integers")
        x = x.long()
        low = -1 if allow_pad else 0
        if x.numel() and (int(x.min()) < low or int(x.max()) >= self.config.vocab_size):
            raise GenzooError(f"token ids must lie in 0..{self.config.vocab_size - 1}" + (" (-1: padding)" if allow_pad else ""))
        return x

    def sentinel(self, i: int) -> int:
        return self.config.vocab_size - 1 - i

    def span_corruption(self, x: torch.Tensor, rng: BatchRandom | torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of token windows ``x`` (B, L) under T5's span corruption (module doc).
        ``rng``: the batch's ``BatchRandom`` (training), a ``torch.Generator``, or None (the global RNG)."""
        c = self.config
        x = self._check_ids(x)
        B, L = x.shape
        if L < 2:
            raise GenzooError(f"span corruption needs windows of at least 2 tokens, got {L}")
        n_noise = min(max(1, round(L * c.noise_density)), L - 1)
        n_spans = max(1, min(round(n_noise / c.mean_span_length), n_noise, L - n_noise))
        if n_spans > c.num_sentinels:
            raise GenzooError(f"{n_spans} noise spans per window need as many sentinels; this model has {c.num_sentinels}")

        def segment(total: int) -> torch.Tensor:  # per row, a random split of `total` into n_spans positive lengths
            u = _uniform(rng, B, total - 1)  # a random subset of the total - 1 cut points: the lowest draws
            cuts = u.argsort(1)[:, : n_spans - 1].sort(1).values + 1
            edges = torch.cat([torch.zeros(B, 1, dtype=torch.long), cuts, torch.full((B, 1), total)], 1)
            return edges.diff(dim=1)

        noise_lens, keep_lens = segment(n_noise), segment(L - n_noise)
        inputs, targets = [], []
        for row, noise_len, keep_len in zip(x.cpu(), noise_lens.tolist(), keep_lens.tolist()):
            inp, tgt, pos = [], [], 0
            for s in range(n_spans):  # T5 starts with kept text, then alternates
                k, n = keep_len[s], noise_len[s]
                inp += row[pos : pos + k].tolist() + [self.sentinel(s)]
                tgt += [self.sentinel(s)] + row[pos + k : pos + k + n].tolist()
                pos += k + n
            inputs.append(inp + [c.eos_token_id])
            targets.append(tgt + [c.eos_token_id])
        return torch.tensor(inputs, device=x.device), torch.tensor(targets, device=x.device)

    def span_corruption_loss(self, x: torch.Tensor, rng: BatchRandom | torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = self.span_corruption(x, rng)
        return self.seq2seq_loss(inputs, targets)

    # ---- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Output ids (B, <= max_new_tokens), eos included where reached, pad after it. Greedy when
        ``temperature`` is 0, else sampled (optionally from the ``top_k`` most likely tokens)."""
        if max_new_tokens < 1 or temperature < 0:
            raise GenzooError(f"max_new_tokens must be >= 1 and temperature >= 0; got {max_new_tokens}, {temperature}")
        c = self.config
        with self._eval_mode():
            memory = self.memory(self.encode(ids, mask))
            B = ids.shape[0]
            out = torch.full((B, 1), c.decoder_start_token_id, dtype=torch.long, device=ids.device)
            done = torch.zeros(B, dtype=torch.bool, device=ids.device)
            cache = [{} for _ in self.dec_blocks] if use_cache else None
            for _ in range(max_new_tokens):
                step_in = out[:, -1:] if use_cache else out
                logits = self.decode(step_in, memory, mask, cache)[:, -1].float()
                if temperature == 0:
                    nxt = logits.argmax(-1)
                else:
                    logits = logits / temperature
                    if top_k:
                        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
                nxt = nxt.masked_fill(done, c.pad_token_id)
                out = torch.cat([out, nxt[:, None]], 1)
                done |= nxt == c.eos_token_id
                if bool(done.all()):
                    break
        return out[:, 1:]

    # ---- text in, text out -------------------------------------------------------------------
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise GenzooError("this T5 has no tokenizer beside its weights (tokenizer.json); attach one or load a folder that has one")
        return self.tokenizer

    def encode_texts(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (ids, mask) of ``texts``, each cut to ``max_length`` - 1 tokens and ended by eos."""
        tok = self._need_tokenizer()
        rows = [r[: max_length - 1] + [self.config.eos_token_id] for r in tok.encode_batch([str(t) for t in texts])]
        return pad_rows(rows, self.config.pad_token_id, self.device)

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        """Text of generated rows: cut at eos; pad and sentinel ids dropped."""
        c = self.config
        drop = {c.pad_token_id} | {self.sentinel(i) for i in range(c.num_sentinels)}
        texts = []
        for row in ids.tolist():
            row = row[: row.index(c.eos_token_id)] if c.eos_token_id in row else row
            texts.append(self._need_tokenizer().decode([i for i in row if i not in drop]))
        return texts

    def generate_text(self, texts: list[str] | str, *, max_input_tokens: int | None = None, max_new_tokens: int = 64,
                      **options) -> list[str]:
        """An output text for each input text; inputs cut to ``max_input_tokens`` (default: the config's,
        what training saw), options as ``generate`` (greedy by default)."""
        if isinstance(texts, str):
            texts = [texts]
        ids, mask = self.encode_texts(texts, max_input_tokens or self.config.max_input_tokens)
        return self.decode_ids(self.generate(ids, mask, max_new_tokens=max_new_tokens, **options))


def pad_rows(rows: list[list[int]], pad: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of variable-length rows, right-padded with ``pad``."""
    T = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


def _ended(rows: torch.Tensor, width: int, eos: int, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, real) of right-padded rows (B, L; -1 = no token) at ``width``: each row's first width - 1
    tokens, eos, then ``fill``; ``real`` marks the tokens and the eos."""
    B = rows.shape[0]
    body = rows[:, : width - 1]
    if body.shape[1] < width:
        body = F.pad(body, (0, width - body.shape[1]), value=-1)
    n = (rows >= 0).sum(1).clamp(max=width - 1)[:, None]
    pos = torch.arange(width, device=rows.device).expand(B, width)
    out = torch.where(pos < n, body, torch.full_like(body, fill))
    return out.masked_fill(pos == n, eos), pos <= n


def _uniform(rng, rows: int, k: int) -> torch.Tensor:
    """(rows, k) uniform draws on the CPU from a BatchRandom (the global batch's, this process's rows), a Generator or the global RNG."""
    if isinstance(rng, BatchRandom):
        return rng.rand(rows, k).cpu()
    if rng is not None:
        return torch.rand(rows, k, generator=rng, device=rng.device).cpu()
    return torch.rand(rows, k)
