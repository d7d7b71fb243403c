"""BERT: a bidirectional transformer encoder trained by masked-language modelling (Devlin et al., 2019).

Every token sees every other token, so there is no left-to-right factorisation and no
likelihood: the model learns p(x_i | x with some tokens hidden) for the hidden positions.

Architecture (the original's, so that Hugging Face BERT folders load unchanged,
``genzoo.models.hf.bert``):

* embeddings: word + learned absolute position + token type (segment), then LayerNorm and dropout;
* post-norm blocks: x = LN(x + Drop(Attn(x))), x = LN(x + Drop(MLP(x))), bidirectional attention
  with biases, an MLP of 4x the width with the exact (erf) GELU (``genzoo.nn.transformer.Block``
  with ``post_norm`` and ``causal=False``);
* masked-LM head: dense -> GELU -> LayerNorm, then logits h @ word_embeddings^T + bias (the output
  layer tied to the token embedding, as in BERT; the matrix is stored once).

Masked-LM loss. Each token is selected with probability ``mask_rate`` (15%); a selected token
becomes [MASK] with probability 0.8, a random token with 0.1, and stays itself with 0.1 (so that
the model cannot learn that only [MASK] positions matter). The loss is the cross-entropy at the
selected positions. All three draws come from ``batch.rng``, so a resumed run and a run split over
2 processes see the same masks. The mean is taken per row (mean over its selected tokens), then over
rows: rows have different counts, and a mean of per-row means is what 2 processes averaging their
gradients compute too (a global per-token mean is not: it weights processes by their counts).
A row with no token selected (probability 0.85^T, 0.6% at T=32) gets its lowest draw selected, so
every row contributes.

Vocabulary. Trained on genzoo's own token data, the model appends one id to the data's vocabulary
for [MASK] (``mask_token_id = vocab_size - 1``); genzoo's char and BPE tokenizers know nothing of
it, so ``fill`` cuts the text at the literal ``[MASK]`` and inserts the id itself. Loaded
Hugging Face folders bring their own [MASK], [CLS], [SEP] and [PAD] ids.

Training dynamics, measured (benchmarks/README.md, section 23): the masked-LM loss first sits on
the *unigram plateau* (every [MASK] predicted as the most frequent token, the context unused) until
attention learns relative positions, then drops. The plateau is longer for longer contexts: on
pydocs characters (2 x 64, lr 2e-3, one thread) context 16 left it after ~1000 steps while context
64 was still on it at 1750; 4 x 128 at context 128 (BPE) was on it for all of a 10-minute CPU run.
Short CPU runs should therefore use a short context (``--set context=32``).

Sentence embeddings (``embed``): the last hidden states averaged over the real (non-pad) tokens,
optionally L2-normalised: what sentence-transformers' Pooling (mean) + Normalize modules compute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import EMBED, INFILL, Batch, GenerativeModel, ModelConfig
from genzoo.nn.dropout import BatchDropout
from genzoo.nn.transformer import Block

MASK_TEXT = "[MASK]"


@dataclass
class BERTConfig(ModelConfig):
    vocab_size: int = 0  # 0: the data's vocabulary + 1 (the [MASK] id appended)
    context: int = 128  # the most tokens the model reads at once (learned positions)
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_hidden: int | None = None  # None: 4 * width
    dropout: float = 0.1
    norm_eps: float = 1e-12  # BERT's LayerNorm epsilon
    type_vocab_size: int = 2  # segment ids (sentence A / B)
    mlm_head: bool = True  # False: an encoder without its masked-LM head (a sentence-embedding checkpoint)
    mask_rate: float = 0.15
    mask_token_id: int | None = None  # None: vocab_size - 1 (the appended id)
    pad_token_id: int | None = None  # None: 0 (padding is masked out of attention, the id only fills slots)
    cls_token_id: int | None = None  # put before every text when set (Hugging Face BERT folders)
    sep_token_id: int | None = None  # put after every text when set

    def resolved(self) -> "BERTConfig":
        c = dataclasses.replace(self)
        if not c.vocab_size:
            data_vocab = int(c.data.get("vocab_size") or 0)
            if data_vocab < 1:
                raise GenzooError("BERT needs a vocabulary size: train on token data (its spec has vocab_size) or --set vocab_size=N")
            c.vocab_size = data_vocab + 1
        if c.mask_token_id is None:
            c.mask_token_id = c.vocab_size - 1
        if c.pad_token_id is None:
            c.pad_token_id = 0
        c.mlp_hidden = c.mlp_hidden or 4 * c.width
        if min(c.heads, c.width, c.layers, c.context, c.type_vocab_size) < 1:
            raise GenzooError(f"heads, width, layers, context and type_vocab_size must be positive; got "
                              f"{c.heads}, {c.width}, {c.layers}, {c.context}, {c.type_vocab_size}")
        if c.width % c.heads:
            raise GenzooError(f"width {c.width} is not divisible by heads {c.heads}; change one")
        if not 0 < c.mask_rate < 1:
            raise GenzooError(f"mask_rate must lie in (0, 1), got {c.mask_rate}")
        if not 0 <= c.dropout < 1:
            raise GenzooError(f"dropout must lie in [0, 1), got {c.dropout}")
        for name in ("mask_token_id", "pad_token_id", "cls_token_id", "sep_token_id"):
            v = getattr(c, name)
            if v is not None and not 0 <= v < c.vocab_size:
                raise GenzooError(f"{name} {v} lies outside the vocabulary 0..{c.vocab_size - 1}")
        return c


@register(
    "bert",
    description="BERT encoder: masked-LM pretraining, [MASK] infilling (genzoo fill), mean-pooled sentence embeddings; loads local HF BERT folders",
    data_kinds=("tokens",),
    variants={"bert": {}},
)
class BERT(GenerativeModel):
    """Bidirectional transformer encoder with a masked-LM head (see the module doc)."""

    config_class = BERTConfig
    capabilities = frozenset({INFILL, EMBED})  # no sampling and no likelihood (a masked LM has none)
    likelihood = None

    def __init__(self, config: BERTConfig):
        config = config.resolved()
        super().__init__(config)
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.width)
        self.pos_emb = nn.Embedding(c.context, c.width)
        self.type_emb = nn.Embedding(c.type_vocab_size, c.width)
        self.emb_norm = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.drop = BatchDropout(c.dropout)
        self.blocks = nn.ModuleList([
            Block(c.width, c.heads, c.heads, c.width // c.heads, c.mlp_hidden, norm="layernorm", mlp="gelu_erf",
                  norm_eps=c.norm_eps, dropout=c.dropout, qkv_bias=True, out_bias=True, mlp_bias=True,
                  causal=False, post_norm=True)
            for _ in range(c.layers)
        ])
        if c.mlm_head:
            self.head_dense = nn.Linear(c.width, c.width)
            self.head_norm = nn.LayerNorm(c.width, eps=c.norm_eps)
            self.head_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self._init_weights()

    def _init_weights(self) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm gains (torch's default)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- family hooks --------------------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> BERTConfig:
        shape = data_spec.get("shape") or []
        context = int(shape[0]) if len(shape) == 1 and shape[0] > 1 else 128
        return BERTConfig(data=data_spec, context=context)

    def prepare_data(self, data):
        """A token stream is cut into windows of ``context`` tokens (masks are drawn per step)."""
        return data.with_window(self.config.context) if data.is_stream else data

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # decay 0.01 as in BERT, betas (0.9, 0.98) as in RoBERTa; lr 1e-3 because CPU budgets give a few
        # hundred steps (0.66 step/s for 4 x 128 at context 128 on one busy thread, benchmarks section 23). Not tuned beyond that.
        return {"batch_size": 32, "lr": 1e-3, "weight_decay": 0.01, "betas": (0.9, 0.98), "grad_clip": 1.0}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"layers": 2, "width": 32, "heads": 4, "dropout": 0.1, "context": 32}

    # ---- the network ---------------------------------------------------------------
    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states (B, T, width) of ``ids`` (B, T). ``attention_mask`` (B, T): 1/True for
        real tokens, 0/False for padding (masked out as keys); None: every slot is real."""
        B, T = ids.shape
        if T > self.config.context:
            raise GenzooError(f"{T} tokens exceed this model's context of {self.config.context}")
        positions = torch.arange(T, device=ids.device)
        types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids
        h = self.tok_emb(ids) + self.pos_emb(positions) + self.type_emb(types)
        h = self.drop(self.emb_norm(h))
        mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): keys each query may see
        for block in self.blocks:
            h = block(h, None, mask)
        return h

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states ``h`` (..., width) through the masked-LM head."""
        if not self.config.mlm_head:
            raise GenzooError("this BERT has no masked-LM head (a sentence-embedding checkpoint such as all-MiniLM-L6-v2): "
                              "it can embed, not fill; use a checkpoint saved with its head (BertForMaskedLM)")
        h = self.head_norm(F.gelu(self.head_dense(h)))
        return F.linear(h, self.tok_emb.weight, self.head_bias)

    def _check_tokens(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, device=self.device)
        if x.ndim != 2 or x.shape[1] < 1:
            raise GenzooError(f"expected token windows of shape (N, T), got {tuple(x.shape)}")
        if x.is_floating_point() and (x != x.round()).any():
            raise GenzooError("token ids must be integers")
        x = x.long()
        if (x < 0).any() or (x >= self.config.vocab_size).any():
            raise GenzooError(f"token ids must lie in 0..{self.config.vocab_size - 1}")
        return x

    # ---- masked-LM training ------------------------------------------------------------
    def corrupt(self, x: torch.Tensor, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, selected): BERT's 15% selection with 80/10/10 replacement, drawn from ``rng``
        (a ``BatchRandom``). Random replacements are drawn from every id but [MASK]."""
        B, T = x.shape
        c = self.config
        u = rng.rand(B, T).to(x.device)
        selected = u < c.mask_rate
        selected[torch.arange(B, device=x.device), u.argmin(dim=1)] = True  # at least one per row
        how = rng.rand(B, T).to(x.device)
        random_ids = rng.randint(c.vocab_size - 1, B, T).to(x.device)
        random_ids = random_ids + (random_ids >= c.mask_token_id).long()  # skip the [MASK] id
        inputs = torch.where(selected & (how < 0.8), torch.full_like(x, c.mask_token_id), x)
        inputs = torch.where(selected & (how >= 0.8) & (how < 0.9), random_ids, inputs)
        return inputs, selected

    def loss(self, batch: Batch) -> torch.Tensor:
        """Masked-LM cross-entropy (nats/token) at the selected positions, mean per row then over rows."""
        x = self._check_tokens(batch.x)
        inputs, selected = self.corrupt(x, batch.rng)
        h = self(inputs)
        logits = self.mlm_logits(h[selected])  # the head and the vocabulary matmul at the 15% only
        ce = F.cross_entropy(logits.float(), x[selected], reduction="none")
        rows = selected.nonzero()[:, 0]
        per_row = torch.zeros(len(x), device=x.device).index_add(0, rows, ce) / selected.sum(1)
        return per_row.mean()

    # ---- text in, text / vectors out -----------------------------------------------------
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise GenzooError("this BERT has no tokenizer beside its weights (tokenizer.json); load it from a run or a "
                              "Hugging Face folder that has one")
        return self.tokenizer

    def encode_texts(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text as the model reads it: [CLS] text [SEP] where the checkpoint has
        them, the text truncated to fit ``max_length`` (default: the context)."""
        tok = self._need_tokenizer()
        limit = min(max_length or self.config.context, self.config.context)
        specials = [i for i in (self.config.cls_token_id, self.config.sep_token_id) if i is not None]
        if limit <= len(specials):
            raise GenzooError(f"max_length {limit} leaves no room for text")
        out = []
        for ids in tok.encode_batch([str(t) for t in texts]):
            ids = ids[: limit - len(specials)]
            out.append(self._wrap(ids))
        return out

    def _wrap(self, ids: list[int]) -> list[int]:
        c = self.config
        return ([c.cls_token_id] if c.cls_token_id is not None else []) + list(ids) + \
            ([c.sep_token_id] if c.sep_token_id is not None else [])

    def _padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), T), self.config.pad_token_id, dtype=torch.long)
        real = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            real[i, : len(r)] = True
        return ids.to(self.device), real.to(self.device)

    @torch.no_grad()
    def embed_ids(self, rows: list[list[int]], *, normalize: bool = True, pooling: str = "mean",
                  batch_size: int = 32) -> torch.Tensor:
        """(N, width) sentence vectors of token-id rows: hidden states pooled over the real tokens
        (``mean``, ``cls`` or ``max``), L2-normalised when ``normalize``. Rows are batched by length
        so that little compute goes to padding; the order of the output is the input's."""
        if pooling not in ("mean", "cls", "max"):
            raise GenzooError(f"unknown pooling {pooling!r}; choose mean, cls or max")
        if any(len(r) == 0 for r in rows):
            raise GenzooError("cannot embed an empty token sequence")
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out = torch.zeros(len(rows), self.config.width)
        with self._eval_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                ids, real = self._padded([rows[i] for i in idx])
                h = self(ids, real).float()
                if pooling == "mean":
                    m = real[..., None].float()
                    v = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
                elif pooling == "cls":
                    v = h[:, 0]
                else:
                    v = h.masked_fill(~real[..., None], float("-inf")).max(1).values
                if normalize:
                    v = F.normalize(v, dim=-1, eps=1e-12)
                out[torch.tensor(idx)] = v.cpu()
        return out

    def embed(self, texts: list[str], *, normalize: bool = True, pooling: str = "mean", max_length: int | None = None,
              batch_size: int = 32) -> torch.Tensor:
        """(N, width) sentence embeddings of ``texts`` (see ``embed_ids``)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return torch.zeros(0, self.config.width)
        return self.embed_ids(self.encode_texts(texts, max_length), normalize=normalize, pooling=pooling, batch_size=batch_size)

    @torch.no_grad()
    def fill(self, texts: list[str] | str, *, top_k: int = 5) -> list[dict]:
        """Replace each ``[MASK]`` in each text by the model's most likely token.

        Returns, per text, ``{"text": filled text, "masks": [[(token, probability), ...] per mask]}``
        with the ``top_k`` candidates of every mask (special tokens are never proposed). Masks are
        predicted together, each from the same input (as in BERT's training), not one after another."""
        tok = self._need_tokenizer()
        if isinstance(texts, str):
            texts = [texts]
        if top_k < 1:
            raise GenzooError(f"top_k must be at least 1, got {top_k}")
        c = self.config
        # byte-level BPE keeps a word's leading space in the word's token (" break"): the space before a
        # [MASK] goes into the masked slot, as in training, and comes back if the prediction lacks one
        space_in_token = tok.kind == "bpe"
        rows, pieces_of = [], []
        for text in texts:
            pieces = str(text).split(MASK_TEXT)
            if len(pieces) < 2:
                raise GenzooError(f"no {MASK_TEXT} in {text!r:.80}: mark the tokens to fill with {MASK_TEXT}")
            if space_in_token:
                pieces = [p[:-1] if i < len(pieces) - 1 and p.endswith(" ") else p for i, p in enumerate(pieces)]
            spaced = [space_in_token and str(text).split(MASK_TEXT)[i].endswith(" ") for i in range(len(pieces) - 1)]
            ids: list[int] = []
            for i, part in enumerate(pieces):
                if i:
                    ids.append(c.mask_token_id)
                ids += tok.encode(part) if part else []
            ids = self._wrap(ids)
            if len(ids) > c.context:
                raise GenzooError(f"{len(ids)} tokens exceed this model's context of {c.context}; shorten the text")
            rows.append(ids)
            pieces_of.append((pieces, spaced))
        banned = {i for i in (c.mask_token_id, c.pad_token_id, c.cls_token_id, c.sep_token_id) if i is not None}
        banned |= set(getattr(tok, "special_ids", []) or [])
        banned = sorted(i for i in banned if i < c.vocab_size)
        results = []
        with self._eval_mode():
            for ids, (pieces, spaced) in zip(rows, pieces_of):
                x = torch.tensor([ids], device=self.device)
                logits = self.mlm_logits(self(x)[0, x[0] == c.mask_token_id]).float()
                logits[:, banned] = float("-inf")
                probs = logits.softmax(-1)
                top = probs.topk(min(top_k, c.vocab_size - len(banned)), dim=-1)
                masks = [[(self._token_text(int(i)), float(p)) for p, i in zip(ps, ii)]
                         for ps, ii in zip(top.values.cpu(), top.indices.cpu())]
                text = pieces[0]
                for k, part in enumerate(pieces[1:]):
                    token = self._join(masks[k][0][0])
                    text += (" " if spaced[k] and not token[:1].isspace() else "") + token + part
                results.append({"text": text, "masks": masks})
        return results

    def _token_text(self, i: int) -> str:
        tok = self.tokenizer
        if tok.kind == "hf":  # WordPiece: keep "##ing" visible as a continuation
            text = tok.tokenizer.id_to_token(i)
            return f"[{i}]" if text is None else text  # an id the tokenizer lacks (a vocabulary padded for speed)
        return tok.decode([i])

    @staticmethod
    def _join(token: str) -> str:
        """A WordPiece continuation ("##ing") glues onto the text before it."""
        return token[2:] if token.startswith("##") and len(token) > 2 else token

    # ---- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def masked_token_accuracy(self, windows: torch.Tensor, *, seed: int = 0, batch_size: int = 64) -> dict:
        """Accuracy and cross-entropy (nats/token) of predicting held-out tokens hidden behind [MASK].

        ``mask_rate`` of the positions of each window (at least one) are chosen with a generator
        seeded by ``seed`` and all of them are replaced by [MASK] (no 10/10 here: this is the
        fill task). Returns the counts, the accuracy, the mean cross-entropy and the targets' ids
        (for baselines on the very same positions)."""
        x = self._check_tokens(windows)
        g = torch.Generator().manual_seed(seed)
        correct, total, nll = 0, 0, 0.0
        targets = []
        with self._eval_mode():
            for s in range(0, len(x), batch_size):
                xb = x[s : s + batch_size]
                u = torch.rand(xb.shape, generator=g).to(xb.device)
                sel = u < self.config.mask_rate
                sel[torch.arange(len(xb), device=xb.device), u.argmin(1)] = True
                inputs = xb.masked_fill(sel, self.config.mask_token_id)
                logits = self.mlm_logits(self(inputs)[sel]).float()
                y = xb[sel]
                correct += int((logits.argmax(-1) == y).sum())
                nll += float(F.cross_entropy(logits, y, reduction="sum"))
                total += int(sel.sum())
                targets.append(y.cpu())
        return {"masked": total, "accuracy": correct / total, "nats_per_token": nll / total, "targets": torch.cat(targets)}
