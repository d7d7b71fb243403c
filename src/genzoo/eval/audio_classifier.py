"""The spoken-digit evaluator: a small CNN on log-mel features that genzoo trains itself, with a fixed seed.

It plays the part the Inception net plays for FID, and SC09's digit classifier for WaveNet /
WaveGAN / DiffWave: samples are judged by what it hears. It is trained on the training voices of
``spoken-digits`` (random time shifts and gains as augmentation), the epoch with the lowest
loss on the validation voices is kept, and its accuracy on the test voices, which it never heard,
is reported beside every score it gives. Features: 40 log-mel bands (filterbank:
``genzoo.data.vocoder.mel_filterbank``, no torchaudio) of 32 ms frames every 10 ms; the penultimate layer (before its ReLU) is the space of
the Frechet distance. Weights are cached under ``$GENZOO_CACHE/evaluators`` like the digits
evaluator's, named by a version derived from every setting.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from genzoo.core.errors import GenzooError
from genzoo.data.audio import mu_law_decode
from genzoo.data.vocoder import mel_filterbank  # shared with the mel diffusion's vocoder (the data layer owns it)
from genzoo.eval.evaluator import cache_dir, load_cached_net, one_thread, save_net

ARCH_REVISION = 1
NUM_CLASSES = 10
DATA = "spoken-digits"


@dataclass(frozen=True)
class AudioSettings:
    seed: int = 0
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    dropout: float = 0.3
    max_shift_seconds: float = 0.15
    feature_dim: int = 128
    sample_rate: int = 8000
    n_fft: int = 256
    hop: int = 80
    mels: int = 40

    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"spoken-digits-cnn-r{ARCH_REVISION}-{digest}"


DEFAULT = AudioSettings()


def log_mel(levels: torch.Tensor, s: AudioSettings = DEFAULT) -> torch.Tensor:
    """(N, 1, T) or (N, T) mu-law levels -> (N, mels, frames) log-mel energies."""
    x = torch.as_tensor(levels).detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise GenzooError("the audio evaluator got NaN or infinite samples; check the model's samples")
    wave = mu_law_decode(x.reshape(len(x), -1).clamp(0, 255))
    spec = torch.stft(wave, s.n_fft, s.hop, window=torch.hann_window(s.n_fft), return_complex=True).abs().pow(2)
    return torch.log(mel_filterbank(s.sample_rate, s.n_fft, s.mels) @ spec + 1e-6)


class DigitNet(nn.Module):
    """Three conv1d blocks over time (mels as channels), average + max pooled, fc(feature_dim), fc(10)."""

    def __init__(self, mels: int = 40, feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        self.norm = nn.BatchNorm1d(mels)
        self.conv = nn.Sequential(
            nn.Conv1d(mels, 64, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(64, 96, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(96, 128, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.embed = nn.Linear(256, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.norm(mel))
        return self.embed(torch.cat([h.mean(-1), h.amax(-1)], 1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(self.features(mel))))


def _augment(levels: torch.Tensor, s: AudioSettings, g: torch.Generator) -> torch.Tensor:
    """Random circular shifts in time and gains of 0.5-1.2 (applied to the linear waveform)."""
    from genzoo.data.audio import mu_law_encode

    n, T = len(levels), levels.shape[-1]
    wave = mu_law_decode(levels.reshape(n, T))
    shift = ((torch.rand(n, generator=g) * 2 - 1) * s.max_shift_seconds * s.sample_rate).long()
    idx = (torch.arange(T)[None] - shift[:, None]) % T
    wave = wave.gather(1, idx) * (0.5 + 0.7 * torch.rand(n, 1, generator=g))
    return mu_law_encode(wave)


def train_classifier(s: AudioSettings = DEFAULT) -> tuple[DigitNet, dict]:
    from genzoo.data import load_dataset

    train, val, test = (load_dataset(DATA, split) for split in ("train", "val", "test"))
    mel_val, mel_test = log_mel(val.x, s), log_mel(test.x, s)
    start = time.perf_counter()
    with one_thread(), torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(s.seed)
        g = torch.Generator().manual_seed(s.seed + 1)
        net = DigitNet(s.mels, s.feature_dim, s.dropout)
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        per_epoch = len(train.x) // s.batch_size
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, s.lr, total_steps=s.epochs * per_epoch)
        best = (math.inf, None, -1)
        for epoch in range(s.epochs):
            net.train()
            order = torch.randperm(len(train.x), generator=g)
            for i in range(per_epoch):
                idx = order[i * s.batch_size : (i + 1) * s.batch_size]
                loss = F.cross_entropy(net(log_mel(_augment(train.x[idx], s, g), s)), train.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            net.eval()
            with torch.no_grad():
                val_loss = F.cross_entropy(net(mel_val), val.y).item()
            if val_loss <= best[0]:
                best = (val_loss, {k: v.clone() for k, v in net.state_dict().items()}, epoch)
    net.load_state_dict(best[1])
    net.eval()
    with torch.no_grad():
        acc = {name: (net(m).argmax(1) == y).float().mean().item() for name, m, y in
               (("val_accuracy", mel_val, val.y), ("test_accuracy", mel_test, test.y))}
    record = {"version": s.version(), "settings": asdict(s), "best_epoch": best[2], "val_loss": best[0], **acc,
              "test_voices": sorted(set(test.meta["voices"])), "train_seconds": round(time.perf_counter() - start, 2),
              "torch_version": torch.__version__}
    return net, record


class AudioDigitEvaluator:
    def __init__(self, net: DigitNet, record: dict, settings: AudioSettings = DEFAULT):
        self.net, self.record, self.settings = net.eval(), record, settings
        self.version = record["version"]
        self.test_accuracy = record["test_accuracy"]
        self.weights_sha256 = record.get("weights_sha256", "")

    @torch.no_grad()
    def features(self, levels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        with one_thread():
            return torch.cat([self.net.features(log_mel(levels[i : i + batch_size], self.settings))
                              for i in range(0, len(levels), batch_size)])

    @torch.no_grad()
    def predict(self, levels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        with one_thread():
            return torch.cat([self.net(log_mel(levels[i : i + batch_size], self.settings)).argmax(1)
                              for i in range(0, len(levels), batch_size)])


_LOADED: dict[str, AudioDigitEvaluator] = {}


def get_audio_evaluator(s: AudioSettings = DEFAULT, *, retrain: bool = False) -> AudioDigitEvaluator:
    """From memory, else the disk cache, else trained now (about a minute on 2 busy cores)."""
    folder = cache_dir() / "evaluators"
    key = f"{folder}/{s.version()}"
    if key in _LOADED and not retrain:
        return _LOADED[key]
    weights, meta = folder / f"{s.version()}.safetensors", folder / f"{s.version()}.json"
    found = None if retrain else load_cached_net(weights, meta, s.version(), lambda: DigitNet(s.mels, s.feature_dim, s.dropout))
    if found is not None:
        evaluator = AudioDigitEvaluator(*found, s)
    else:
        net, record = train_classifier(s)
        try:
            record = save_net(net, record, weights, meta)
        except OSError as e:  # a read-only cache must not stop evaluation
            warnings.warn(f"could not cache the audio evaluator in {folder}: {e}", stacklevel=2)
        evaluator = AudioDigitEvaluator(net, record, s)
    _LOADED[key] = evaluator
    return evaluator
