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

Span corruption (pretraining, ``span_corruption``): 15% of each window's tokens, in spans of mean
length 3, are cut out; each span is replaced in the input by one sentinel id, and the target is
the sentinels followed by the spans they hide, then eos. Span lengths come from a random
segmentation of the noise and non-noise counts, as in T5's ``random_spans_noise_mask``; every row
of a batch therefore has the same input and target lengths (no padding).

Vocabulary of a model genzoo trains: the tokenizer's ids, then one pad id (also the decoder's
start id), then ``num_sentinels`` sentinels counting *down* from the last id
(``<extra_id_0>`` = vocab_size - 1, as in T5's SentencePiece vocabulary).

This family is not registered with the generic Trainer/bench: its data are (input, target)
pairs, not the one token stream of the "tokens" kind. It is used from Python (``finetune``,
``generate_text``, ``span_corruption_loss``), ``genzoo t5 finetune`` / ``genzoo t5 generate``
(``genzoo.cli.t5``) and ``benchmarks/t5_docsig.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.models.base import GenerativeModel, ModelConfig
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
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0,
                                             dropout_p=self.dropout if self.training else 0.0)
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
        self.drop = nn.Dropout(dropout)

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
        self.drop = nn.Dropout(c.dropout)

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


class T5(GenerativeModel):
    """Encoder-decoder with relative position bias (see the module doc)."""

    family = "t5"
    config_class = T5Config

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
        self.drop = nn.Dropout(c.dropout)
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

    def sentinel(self, i: int) -> int:
        return self.config.vocab_size - 1 - i

    def span_corruption(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of token windows ``x`` (B, L) under T5's span corruption (module doc)."""
        c = self.config
        B, L = x.shape
        n_noise = min(max(1, round(L * c.noise_density)), L - 1)
        n_spans = max(1, min(round(n_noise / c.mean_span_length), n_noise, L - n_noise))
        if n_spans > c.num_sentinels:
            raise GenzooError(f"{n_spans} noise spans per window need as many sentinels; this model has {c.num_sentinels}")

        def segment(total: int) -> torch.Tensor:  # random split of `total` into n_spans positive lengths
            cuts = torch.randperm(total - 1, generator=generator)[: n_spans - 1].sort().values + 1
            edges = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
            return edges.diff()

        inputs, targets = [], []
        for row in x.cpu():
            noise_len, keep_len = segment(n_noise), segment(L - n_noise)
            inp, tgt, pos = [], [], 0
            for s in range(n_spans):  # T5 starts with kept text, then alternates
                k, n = int(keep_len[s]), int(noise_len[s])
                inp += row[pos : pos + k].tolist() + [self.sentinel(s)]
                tgt += [self.sentinel(s)] + row[pos + k : pos + k + n].tolist()
                pos += k + n
            inputs.append(inp + [c.eos_token_id])
            targets.append(tgt + [c.eos_token_id])
        return torch.tensor(inputs, device=x.device), torch.tensor(targets, device=x.device)

    def span_corruption_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = self.span_corruption(x, generator)
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

    def generate_text(self, texts: list[str] | str, *, max_input_tokens: int = 256, max_new_tokens: int = 64,
                      **options) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        ids, mask = self.encode_texts(texts, max_input_tokens)
        return self.decode_ids(self.generate(ids, mask, max_new_tokens=max_new_tokens, **options))

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` into a fresh sibling folder, then renamed over ``directory`` (atomic)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        self.save_pretrained(tmp)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return directory


def pad_rows(rows: list[list[int]], pad: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of variable-length rows, right-padded with ``pad``."""
    T = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


def pad_labels(rows: list[list[int]], device=None) -> torch.Tensor:
    ids, mask = pad_rows(rows, 0, device)
    return ids.masked_fill(~mask, IGNORE)


def read_pairs_jsonl(path: str | Path) -> list[tuple[str, str]]:
    """(input, target) pairs of a JSONL file with string fields ``input`` and ``target`` per line."""
    path = Path(path)
    if not path.is_file():
        raise GenzooError(f"{path} does not exist; pass a .jsonl file with one {{\"input\": ..., \"target\": ...}} per line")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenzooError(f"{path}:{n} is not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("input"), str) or not isinstance(rec.get("target"), str):
            raise GenzooError(f"{path}:{n} needs string fields 'input' and 'target'")
        pairs.append((rec["input"], rec["target"]))
    if not pairs:
        raise GenzooError(f"{path} holds no pairs")
    return pairs


def _lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at ``steps`` (models do not import genzoo.train)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


def finetune(model: T5, pairs: list[tuple[str, str]], *, steps: int, batch_size: int = 32, lr: float = 1e-3,
             max_input_tokens: int = 128, max_target_tokens: int = 64, seed: int = 0, warmup_steps: int = 0,
             schedule: str = "constant", log=None) -> list[float]:
    """Supervised text-to-text fine-tuning on (input, target) pairs: AdamW, clip 1.0, ``lr`` constant or
    (``schedule="cosine"``) decayed to 0 by the last step, after ``warmup_steps`` of linear warm-up.
    Batches are drawn with a generator seeded by ``seed`` (the same seed, the same run). Returns the losses."""
    if schedule not in ("constant", "cosine") or warmup_steps < 0:
        raise GenzooError(f"schedule must be constant or cosine and warmup_steps >= 0; got {schedule!r}, {warmup_steps}")
    tok = model._need_tokenizer()
    eos = model.config.eos_token_id
    src = [r[: max_input_tokens - 1] + [eos] for r in tok.encode_batch([p[0] for p in pairs])]
    tgt = [r[: max_target_tokens - 1] + [eos] for r in tok.encode_batch([p[1] for p in pairs])]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, warmup_steps, schedule)
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        ids, mask = pad_rows([src[i] for i in idx], model.config.pad_token_id, model.device)
        loss = model.seq2seq_loss(ids, pad_labels([tgt[i] for i in idx], model.device), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log is not None:
            log(step, losses[-1])
    model.eval()
    return losses
