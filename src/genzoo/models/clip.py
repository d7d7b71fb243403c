"""A contrastive image-text model (CLIP-style) for small images and short English captions.

A registered family that cannot sample: it scores image-text agreement (capability ``score``:
``score(images, texts)``, and ``encode_images`` / ``encode_texts`` for search). It trains on
captioned images (``genzoo train clip --data captioned-digits``): a dataset of kind "image" whose
``meta["captions"]`` holds one caption per example (``spec["text"]``), as text-conditioned
diffusion reads it. The Trainer trains it like every other family (resume, ``--minutes``,
2 processes = 1, the weights with the lowest validation loss kept in ``best/``).

Two towers map into one ``embed_dim``-dimensional space, both outputs L2-normalised:

* image: a small CNN on the images (levels scaled to [-1, 1]), conv 32 -> conv 64 -> pool ->
  conv 64 -> pool -> fc 128 -> fc ``embed_dim``;
* text: a *frozen* sentence encoder (all-MiniLM-L6-v2, 384-d, normalised) followed by a
  trainable two-layer MLP. The text encoder is locked and the image side trained: the reverse
  of LiT (Zhai et al., 2022, which locks the image tower). 268 distinct training captions are
  far too few to train a language model from, while MiniLM already knows that "seven" and
  "7" and "a picture showing seven" are close; the MLP only has to bend that space onto images.
  The encoder is not part of the weights; ``prepare_data`` turns each caption into its vector once.

Similarity is ``exp(logit_scale) * cos``, with ``logit_scale`` learned in log space from
log(1/0.07) and clamped at log(100), as in CLIP (Radford et al., 2021, who clamp it to prevent
training instability). Here the clamp never binds: trained models end near temperature 0.078,
softer than the start, as captions shared by many images ask.

Loss: symmetric InfoNCE with *several positives*. A batch of captioned digits holds many pairs
that the plain loss would call negatives although they are not: the same caption written for
two images ("the digit 3" fits every three), and the same image under two captions (the
training split repeats each image with 4 captions). Asking the model to tell identical texts
apart is asking it to fit noise: the gradient pushes identical text vectors towards different
images. So the target of each row is uniform over its positives: the pairs whose captions are
identical (identical frozen vectors) or whose images are the same image (identical pixels), and
the loss is the cross-entropy to that soft target, both directions averaged. With one positive
per row it is exactly CLIP's loss. Measured against the plain loss (benchmarks/README.md section
27, 3 seeds): the same retrieval and zero-shot accuracy within seed variation; the multi-positive
loss is kept because it states the task truthfully. The loss compares every pair of the *global*
batch: on several processes each gathers the others' embeddings (``training_step``).

Regularisers (measured in section 27, all drawn from the batch's random stream and used in
training mode only): a random affine map of each image (rotation, scaling, shift; zero-shot
0.966 -> 0.982 at 600 steps against whole-pixel shifts) and Gaussian noise on the frozen
sentence vectors, renormalised (268 captions let the MLP memorise each one; noise asks it to map
whole neighbourhoods: R@1 0.019 -> 0.028, zero-shot 0.986 -> 0.990 over 3 seeds).

The recipe (``default_train``): 600 steps of 256 pairs, AdamW lr 2e-3, weight decay 0.05,
100 steps of warm-up, cosine to 0, no EMA, no clipping. Longer training overfits the 268 captions
(whole-pixel shifts only: 600 -> 1200 -> 2400 steps took zero-shot 0.966 -> 0.942 -> 0.928).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import SCORE, Batch, GenerativeModel, ModelConfig, Updater
from genzoo.nn.affine import affine_warp
from genzoo.nn.dropout import BatchDropout

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature no lower than 0.01
INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's start
STEPS = 600


@dataclass
class CLIPConfig(ModelConfig):
    embed_dim: int = 64
    image_width: int = 64  # channels of the CNN's last two convolutions
    text_hidden: int = 256
    text_encoder: str = "minilm"  # genzoo.models.sentence_encoder.text_encoder name (or a folder path)
    text_dim: int = 384
    dropout: float = 0.1  # on the image tower's fc layer (a light guard for 1,000 training images; not tuned)
    # training-time augmentation: rotation, scaling by 1 +- scale, shift in pixels (all 0: none)
    rotation_deg: float = 15.0
    scale: float = 0.15
    shift: float = 1.0
    text_noise: float = 0.03  # Gaussian noise (per dimension) on the frozen sentence vectors, renormalised
    multi_positive: bool = True  # False: plain CLIP targets (only the diagonal), the ablation of section 27


def _require_captions(spec: dict) -> None:
    if spec and not spec.get("text"):
        raise GenzooError(f"clip trains on captioned images (one caption per example); {spec.get('name', 'this data')!r} "
                          "has no captions: use --data captioned-digits")


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise GenzooError("give a list of prompts, not one string (wrap it: [prompt])")
    texts = list(texts)
    if not texts:
        raise GenzooError("no prompts given; pass at least one, e.g. 'a handwritten seven'")
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise GenzooError(f"every prompt must be non-empty text, got {t!r}")
    return texts


# The frozen encoder's vector of a text never changes: encode each distinct text once per process
# (the Trainer's train and val splits, every model built in a test session, every prompt scored).
_SENTENCE_CACHE: dict[tuple[str, str], np.ndarray] = {}
_SENTENCE_CACHE_MAX = 200_000


class ImageTower(nn.Module):
    def __init__(self, cfg: CLIPConfig, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w_px = shape
        if h < 4 or w_px < 4:
            raise GenzooError(f"CLIP's image tower pools twice by 2: images must be at least 4x4, got {h}x{w_px}")
        w = cfg.image_width
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        )  # fmt: skip
        self.fc = nn.Sequential(nn.Linear(w * (h // 4) * (w_px // 4), 128), nn.ReLU(), BatchDropout(cfg.dropout),
                                nn.Linear(128, cfg.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.conv(x).flatten(1)), dim=-1)


class TextTower(nn.Module):
    """MLP on the frozen sentence vector; a linear skip keeps the encoder's geometry reachable."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cfg.text_dim, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.embed_dim))
        self.skip = nn.Linear(cfg.text_dim, cfg.embed_dim, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(v) + self.skip(v), dim=-1)


@register(
    "clip",
    description="CLIP-style image-text model (frozen MiniLM text side) on captioned images: scores agreement; cannot sample",
    data_kinds=("image",),
    variants={"clip": {}},
)
class CLIP(GenerativeModel):
    config_class = CLIPConfig
    capabilities = frozenset({SCORE})

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        spec = self._bind_data_spec()
        _require_captions(spec)
        if len(self.shape) != 3:
            raise GenzooError(f"CLIP's image side takes images (C, H, W); this data has shape {self.shape}")
        if min(config.embed_dim, config.image_width, config.text_hidden, config.text_dim) < 1 or not 0 <= config.dropout < 1:
            raise GenzooError("embed_dim, image_width, text_hidden and text_dim must be at least 1 and dropout in [0, 1)")
        self.image = ImageTower(config, self.shape)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    @classmethod
    def defaults_for(cls, data_spec: dict) -> CLIPConfig:
        _require_captions(data_spec)  # refused before anything loads or trains
        return CLIPConfig(data=data_spec)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        return {"steps": STEPS, "batch_size": 256, "lr": 2e-3, "weight_decay": 0.05, "warmup_steps": 100,
                "min_lr_ratio": 0.0, "ema_decay": None, "grad_clip": None}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"embed_dim": 8, "image_width": 8, "text_hidden": 16}

    def prepare_data(self, data):
        """Captioned images: ``y`` becomes each example's frozen sentence vector."""
        captions = data.meta.get("captions")
        if not captions or len(captions) != len(data.x):
            raise GenzooError(f"clip trains on captioned images (meta['captions'], one per example); {data.name!r} has none: "
                              "use --data captioned-digits")
        return replace(data, y=self.sentence_vectors(captions))

    # ---- encoding ------------------------------------------------------
    def sentence_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, text_dim) vectors of the frozen encoder (not part of the weights), each distinct text encoded once."""
        from genzoo.models.sentence_encoder import text_encoder

        texts = check_texts(texts)
        name = self.config.text_encoder
        new = list(dict.fromkeys(t for t in texts if (name, t) not in _SENTENCE_CACHE))
        if new:
            vecs = text_encoder(name).encode(new)
            if vecs.shape[1] != self.config.text_dim:
                raise GenzooError(f"text encoder {name!r} gives {vecs.shape[1]}-d vectors; this CLIP expects {self.config.text_dim}")
            if len(_SENTENCE_CACHE) + len(new) > _SENTENCE_CACHE_MAX:
                _SENTENCE_CACHE.clear()
            _SENTENCE_CACHE.update(((name, t), v) for t, v in zip(new, vecs))
        return torch.from_numpy(np.stack([_SENTENCE_CACHE[(name, t)] for t in texts]))

    def to_input(self, images) -> torch.Tensor:
        """Images as stored (N images of this shape in any leading layout, numpy or torch) -> (N, C, H, W)
        on the model's device, levels scaled to [-1, 1] (clamped: a stray sample reads as the nearest valid image)."""
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).detach().to(self.device, torch.float32)
        c, h, w = self.shape
        if x.ndim < 2 or x.numel() == 0 or x.numel() % self.dims or x[0].numel() != self.dims:
            raise GenzooError(f"CLIP takes {h}x{w} images as (N, {c}, {h}, {w}), (N, {h}, {w}) or (N, {self.dims}); got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise GenzooError("the images hold NaN or infinite values")
        x = x.reshape(-1, c, h, w)
        return x.clamp(0, self.levels - 1) / (self.levels - 1) * 2 - 1 if self.levels else x

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    @torch.no_grad()
    def encode_images(self, images, batch_size: int = 1024) -> torch.Tensor:
        """(N, embed_dim) unit vectors of images given as stored (levels)."""
        x = self.to_input(images)
        with self._eval_mode():
            return torch.cat([self.image(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, embed_dim) unit vectors of prompts."""
        with self._eval_mode():
            return self.text(self.sentence_vectors(texts).to(self.device))

    def score(self, x, texts: Sequence[str], **options) -> torch.Tensor:
        """(N images, n texts) cosine similarities in the shared space."""
        return self.encode_images(x) @ self.encode_texts(texts).T

    # ---- training ------------------------------------------------------
    def _embed_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings of a batch, augmented and noised in training mode (from ``batch.rng``)."""
        cfg = self.config
        x = self.to_input(batch.x)
        v = batch.y.to(self.device, torch.float32)
        if self.training and (cfg.rotation_deg or cfg.scale or cfg.shift):
            x = affine_warp(x, batch.rng.rand(len(x), 4).to(x) * 2 - 1, cfg.rotation_deg, cfg.scale, cfg.shift)
        if self.training and cfg.text_noise > 0:
            v = F.normalize(v + cfg.text_noise * batch.rng.randn(len(v), v.shape[1]).to(v), dim=-1)
        return self.image(x), self.text(v)

    def _pair_ids(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(caption ids, image ids): equal where two rows share a caption (identical vectors) or an image
        (identical pixels); all different for the plain loss."""
        if not self.config.multi_positive:
            ids = torch.arange(len(x), device=x.device)
            return ids, ids
        return torch.unique(v, dim=0, return_inverse=True)[1], torch.unique(x.flatten(1), dim=0, return_inverse=True)[1]

    def loss(self, batch: Batch) -> torch.Tensor:
        """The multi-positive contrastive loss of this batch (one process's: see ``training_step``)."""
        if batch.y is None or batch.y.ndim != 2:
            raise GenzooError("clip trains on captioned images prepared by prepare_data (y: the captions' sentence vectors)")
        img, txt = self._embed_batch(batch)
        captions, images = self._pair_ids(batch.x.to(self.device), batch.y.to(self.device))
        return contrastive_loss(self.scale() * img @ txt.T, captions, images)

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        if opt.micro_count > 1:
            raise GenzooError("clip's contrastive loss compares every pair of the whole batch, which micro-batches would split: "
                              "use --grad-accum 1 (and a smaller --batch-size if memory is short)")
        if opt.world_size == 1:
            loss = self.loss(batch)
            opt.step("main", loss)
            return {"loss": loss.detach().item(), "temperature": 1 / self.scale().item()}
        return self._global_step(batch, opt)

    def _global_step(self, batch: Batch, opt: Updater) -> dict[str, float]:
        """The whole batch's loss on several processes: each gathers every process's embeddings (its own
        rows keep their gradient). Gradients are averaged over the W processes and each process's
        rows reach the weights through its own copy only, so each back-propagates W x the loss; the
        logit scale, used whole by every process, gets 1/W of its gradient from each."""
        world = opt.world_size
        img, txt = self._embed_batch(batch)
        img, txt = _gather_rows(img, world), _gather_rows(txt, world)
        x, v = _gather_rows(batch.x.to(self.device), world), _gather_rows(batch.y.to(self.device), world)
        s = self.logit_scale
        s = s.detach() + (s - s.detach()) / world
        loss = contrastive_loss(s.clamp(max=MAX_LOGIT_SCALE).exp() * img @ txt.T, *self._pair_ids(x, v))
        opt.step("main", world * loss)
        return {"loss": loss.detach().item(), "temperature": 1 / self.scale().item()}


def _gather_rows(t: torch.Tensor, world: int) -> torch.Tensor:
    """Every process's rows of ``t``, in rank order; this process's own rows keep their gradient."""
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[dist.get_rank()] = t
    return torch.cat(parts)


def contrastive_loss(logits: torch.Tensor, caption_ids: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of both softmaxes (over texts per image, over images per text) against the
    uniform distribution over each row's positives: same caption or same image."""
    positive = (caption_ids[:, None] == caption_ids[None, :]) | (image_ids[:, None] == image_ids[None, :])
    target = positive.float()
    target = target / target.sum(1, keepdim=True)  # symmetric mask: rows and columns alike
    image_to_text = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(target * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


__all__ = ["CLIP", "CLIPConfig", "check_texts", "contrastive_loss"]
