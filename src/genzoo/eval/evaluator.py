"""The digits evaluator: a small CNN that genzoo trains itself, with a fixed seed.

Sample-quality metrics on digits (Frechet distance, precision/recall,
density/coverage, class coverage) are measured in the feature space of this
classifier, the way FID uses Inception. It is trained on the digits train
split (small random rotations, scalings and 1-pixel shifts as augmentation),
the epoch with the lowest validation loss is kept, and its accuracy on the
447 test images is reported beside every score, so a reader can judge the
feature space.

Trained weights are cached under ``$GENZOO_CACHE`` (default
``~/.cache/genzoo``) in ``evaluators/<version>.safetensors`` plus a json with
the accuracy. ``version`` is derived from the architecture revision and every
training setting, so changing either retrains instead of reusing stale
weights. Scores are comparable only between runs with the same version (and,
strictly, the same weights sha256, which the json records and ``evaluate``
reports: float rounding can differ across CPUs and torch builds).

The evaluator always runs on the CPU in float32 so that features do not
depend on where a model was sampled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from genzoo.core.atomic import write_atomic_file, write_atomic_with
from genzoo.core.errors import GenzooError
from genzoo.nn.affine import affine_warp

ARCH_REVISION = 2  # bump when the network or its feature layer changes
LEVELS = 17  # digits pixels are integer levels 0..16
NUM_CLASSES = 10


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    epochs: int = 40
    batch_size: int = 50
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    max_shift: float = 1.0  # augmentation: random translation in pixels,
    max_rotation_deg: float = 15.0  # rotation,
    max_scale: float = 0.15  # and scaling by 1 +- this
    feature_dim: int = 128

    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"digits-cnn-r{ARCH_REVISION}-{digest}"


DEFAULT_SETTINGS = TrainSettings()


class DigitsCNN(nn.Module):
    """conv(32) -> conv(64) -> pool -> conv(64) -> pool -> fc(feature_dim) -> fc(10)."""

    def __init__(self, feature_dim: int = 64, dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        )  # fmt: skip
        self.embed = nn.Linear(64 * 2 * 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate layer before its ReLU: the space the metrics are measured in.

        Before the ReLU because about a fifth of the units are dead after it
        (always 0), which makes feature covariances singular for the FD.
        """
        return self.embed(self.conv(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(self.features(x))))


def levels_to_input(x_levels: torch.Tensor) -> torch.Tensor:
    """Digits levels (any of (N,1,8,8), (N,8,8), (N,64)) -> (N,1,8,8) float32 in [-1, 1].

    Values are clamped to the valid range 0..16, so a model that strays out of
    data space is scored on the nearest valid image rather than breaking the
    feature statistics.
    """
    x = torch.as_tensor(x_levels).detach().to("cpu", torch.float32)
    if x.numel() % 64 or x.ndim < 2:
        raise GenzooError(f"digits evaluator expects 8x8 images as (N, 1, 8, 8), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise GenzooError("digits evaluator got NaN or infinite pixel values; check the model's samples")
    x = x.reshape(-1, 1, 8, 8).clamp(0, LEVELS - 1)
    return x / (LEVELS - 1) * 2 - 1


def random_affine(x: torch.Tensor, settings: "TrainSettings", generator: torch.Generator) -> torch.Tensor:
    """Small random rotation, scaling and shift of each image (background -1 fills the border).

    Without it the network fits the train split perfectly but reaches only
    about 0.96 on test (the test digits differ in style); with it, about 0.98.
    """
    n = len(x)

    def uniform(*shape):  # U(-1, 1)
        return torch.rand(*shape, generator=generator) * 2 - 1

    u = torch.cat([uniform(n)[:, None], uniform(n)[:, None], uniform(n, 2)], 1)  # drawn in this order: same images as before
    return affine_warp(x, u, settings.max_rotation_deg, settings.max_scale, settings.max_shift)


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread for the duration.

    Why: the network is tiny, and on a shared 2-core machine two OpenMP
    threads ran its forward pass 15x slower than one. One thread also makes
    training bitwise reproducible whatever the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _accuracy(net: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def train_digits_cnn(settings: TrainSettings = DEFAULT_SETTINGS) -> tuple[DigitsCNN, dict]:
    """Train the evaluator deterministically; returns the network and its record (accuracies, time)."""
    from genzoo.data import load_dataset

    train, val, test = (load_dataset("digits", s) for s in ("train", "val", "test"))
    x_train, x_val, x_test = (levels_to_input(d.x) for d in (train, val, test))
    start = time.perf_counter()
    # fork_rng: the fixed seed drives init and dropout without disturbing the caller's RNG;
    # enable_grad: the first caller is often ``evaluate``, which runs under no_grad.
    with one_thread(), torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(settings.seed)
        data_rng = torch.Generator().manual_seed(settings.seed + 1)
        net = DigitsCNN(settings.feature_dim, settings.dropout)
        opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        steps_per_epoch = -(-len(x_train) // settings.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.epochs * steps_per_epoch)
        best_val_loss, best_state, best_epoch = math.inf, None, -1
        for epoch in range(settings.epochs):
            net.train()
            order = torch.randperm(len(x_train), generator=data_rng)
            for i in range(0, len(order), settings.batch_size):
                idx = order[i : i + settings.batch_size]
                xb = random_affine(x_train[idx], settings, data_rng)
                loss = F.cross_entropy(net(xb), train.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            net.eval()
            # Select on validation cross-entropy: smoother than accuracy on 350 images.
            with torch.no_grad():
                val_loss = F.cross_entropy(net(x_val), val.y).item()
            if val_loss <= best_val_loss:
                best_val_loss, best_epoch = val_loss, epoch
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    record = {
        "version": settings.version(),
        "settings": asdict(settings),
        "best_epoch": best_epoch,
        "train_accuracy": _accuracy(net, x_train, train.y),
        "val_accuracy": _accuracy(net, x_val, val.y),
        "val_loss": best_val_loss,
        "test_accuracy": _accuracy(net, x_test, test.y),
        "train_seconds": round(time.perf_counter() - start, 2),
        "torch_version": torch.__version__,
    }
    return net, record


class DigitsEvaluator:
    """A trained ``DigitsCNN`` with the verbs the metrics need. Always CPU, float32, eval mode."""

    def __init__(self, net: DigitsCNN, record: dict):
        self.net = net.eval()
        self.record = record
        self.version: str = record["version"]
        self.test_accuracy: float = record["test_accuracy"]
        self.weights_sha256: str = record.get("weights_sha256", "")

    @torch.no_grad()
    def features(self, x_levels: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N, feature_dim) penultimate-layer features of digits given as levels 0..16."""
        x = levels_to_input(x_levels)
        with one_thread():
            return torch.cat([self.net.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def predict(self, x_levels: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N,) predicted class of each image."""
        x = levels_to_input(x_levels)
        with one_thread():
            return torch.cat([self.net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


# ---- cache ----------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("GENZOO_CACHE") or Path.home() / ".cache" / "genzoo")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_cached_net(weights: Path, meta: Path, version: str, build) -> tuple[nn.Module, dict] | None:
    """A cached evaluator network (``build()`` makes the empty one) and its record, or None if
    missing, torn or from another version. Shared by every self-trained evaluator (digits, audio)."""
    from safetensors.torch import load_file

    try:
        record = json.loads(meta.read_text())
        if record.get("version") != version or record.get("weights_sha256") != _file_sha256(weights):
            return None
        net = build()
        net.load_state_dict(load_file(str(weights)))
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
    return net, record


def _load_cached(weights: Path, meta: Path, settings: TrainSettings) -> DigitsEvaluator | None:
    found = load_cached_net(weights, meta, settings.version(), lambda: DigitsCNN(settings.feature_dim, settings.dropout))
    return None if found is None else DigitsEvaluator(*found)


def save_net(net: nn.Module, record: dict, weights: Path, meta: Path) -> dict:
    """Weights then the record naming their sha256 (atomic writes), so a json paired with other
    weights is rejected on load; the record as saved."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    write_atomic_with(weights, lambda tmp: save_file(state, str(tmp)))
    record = {**record, "weights_sha256": _file_sha256(weights)}
    write_atomic_file(meta, json.dumps(record, indent=2))
    return record


_LOADED: dict[tuple[str, str], DigitsEvaluator] = {}


def get_digits_evaluator(settings: TrainSettings = DEFAULT_SETTINGS, *, retrain: bool = False) -> DigitsEvaluator:
    """The digits evaluator: from this process's memory, else the disk cache, else trained now (~20 s)."""
    folder = cache_dir() / "evaluators"
    key = (str(folder), settings.version())
    if key in _LOADED and not retrain:
        return _LOADED[key]
    weights = folder / f"{settings.version()}.safetensors"
    meta = folder / f"{settings.version()}.json"
    evaluator = None if retrain else _load_cached(weights, meta, settings)
    if evaluator is None:
        net, record = train_digits_cnn(settings)
        try:
            record = save_net(net, record, weights, meta)
        except OSError as e:  # a read-only cache must not stop evaluation
            warnings.warn(f"could not cache the digits evaluator in {folder}: {e}", stacklevel=2)
        evaluator = DigitsEvaluator(net, record)
    _LOADED[key] = evaluator
    return evaluator
