"""The waveform <-> log-mel transform and its Griffin-Lim vocoder (genzoo.data.vocoder)."""

from __future__ import annotations

import math

import pytest
import torch

from genzoo.core.errors import GenzooError
from genzoo.data.audio import mu_law_decode, mu_law_encode
from genzoo.data.vocoder import MelSpec, griffin_lim

RATE = 8000


def sine_levels(freq: float, samples: int = 4000, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(samples) / RATE
    return mu_law_encode(amplitude * torch.sin(2 * math.pi * freq * t))[None, None]


def peak_hz(levels: torch.Tensor) -> float:
    wave = mu_law_decode(levels.reshape(-1))
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs()
    return spectrum.argmax().item() * RATE / len(wave)


@pytest.mark.parametrize("freq", [300.0, 440.0, 1800.0])
def test_a_sines_pitch_survives_the_round_trip(freq):
    spec = MelSpec(4000, n_fft=512, hop=128, mels=64)
    out = spec.round_trip(sine_levels(freq))
    assert out.shape == (1, 1, 4000) and torch.equal(out, out.round()) and 0 <= out.min() and out.max() <= 255
    # the mel inversion can only place energy within the band of one filter: the pitch comes back to
    # within the spacing of adjacent mel centres there (or one STFT bin, 15.6 Hz, where that is finer)
    bins = torch.linspace(0, RATE / 2, 257)
    centres = bins[spec.filterbank.argmax(1)]
    spacing = torch.diff(centres)[(centres[:-1] - freq).abs().argmin()].item()
    assert abs(peak_hz(out) - freq) <= max(spacing, RATE / 512)
    # and it is loud again, not a whisper: energy within a factor 2 of the original's
    ratio = mu_law_decode(out).pow(2).mean() / mu_law_decode(sine_levels(freq)).pow(2).mean()
    assert 0.5 < ratio < 2


def test_encode_shape_range_and_silence():
    spec = MelSpec(1000, n_fft=256, hop=128, mels=32, frame_multiple=4)
    # frames: a centred STFT of (frames - 1) * hop >= 1000 samples needs 1 + 8 = 9, rounded up to 12
    assert spec.frames == 12 and spec.padded == 11 * 128 and spec.shape == (1, 32, 12)
    silence = torch.full((2, 1, 1000), 128.0)  # mu-law level 128: +8.5e-5, below the log floor
    loud = sine_levels(1000, 1000, 0.9)
    image = spec.encode(torch.cat([silence, loud]))
    assert image.shape == (3, 1, 32, 12) and image.min() >= -1 and image.max() <= 1
    assert image[:2].mean() < -0.98  # silence sits at the floor (a DC step where the padding starts aside)
    assert image[2].max() > 0.5  # a loud tone near the top


def test_griffin_lim_converges_and_momentum_helps():
    """On an exact STFT magnitude, fast Griffin-Lim (momentum 0.99) gets far closer in 32 iterations
    than plain Griffin-Lim (momentum 0), and both improve on their start."""
    t = torch.arange(2048) / RATE
    wave = (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.3 * torch.sin(2 * math.pi * (300 + 1000 * t) * t))[None]
    window = torch.hann_window(256)
    target = torch.stft(wave, 256, 64, window=window, return_complex=True).abs()

    def error(y):
        return float((torch.stft(y, 256, 64, window=window, return_complex=True).abs() - target).norm() / target.norm())

    start = error(griffin_lim(target, 256, 64, 2048, iterations=0))
    plain = error(griffin_lim(target, 256, 64, 2048, iterations=32, momentum=0.0))
    fast = error(griffin_lim(target, 256, 64, 2048, iterations=32, momentum=0.99))
    assert fast < 0.15 and fast < 0.75 * plain < 0.75 * start  # measured: 0.106, 0.180, ~0.5


def test_nnls_inversion_beats_the_clamped_pseudo_inverse():
    spec = MelSpec(4000, n_fft=512, hop=128, mels=64)
    mel = spec.mel_power(spec.encode(sine_levels(440)))
    clamped = (torch.linalg.pinv(spec.filterbank.double()).float() @ mel).clamp(min=0)
    power = spec.linear_power(mel)
    assert power.min() >= 0

    def residual(p):
        return float((spec.filterbank @ p - mel).norm() / mel.norm())

    assert residual(power) < 0.5 * residual(clamped)  # measured 0.046 vs 0.126


def test_deterministic_and_refuses_bad_shapes():
    spec = MelSpec(1000, n_fft=256, hop=64, mels=16)
    image = torch.rand(2, *spec.shape) * 2 - 1
    assert torch.equal(spec.decode(image), spec.decode(image))
    with pytest.raises(GenzooError, match="mel images"):
        spec.decode(torch.zeros(2, 1, 16, spec.frames + 1))
    with pytest.raises(GenzooError, match="clips"):
        spec.encode(torch.zeros(2, 1, 999))
    with pytest.raises(GenzooError, match="hop"):
        MelSpec(1000, n_fft=256, hop=512)
    with pytest.raises(GenzooError, match="magnitudes"):
        griffin_lim(torch.zeros(1, 10, 5), 256, 64, 1000)


def test_nnls_reaches_scipys_optimum_on_a_mel_no_spectrum_can_make():
    """A sampled mel image is not exactly F P for any P >= 0 (a real clip's is). There the solver must
    still reach the non-negative least-squares optimum, frame by frame as scipy's active-set NNLS finds
    it: 20 projected-gradient steps once stopped far short and left a steady 450-650 Hz band."""
    from scipy.optimize import nnls

    spec = MelSpec(1000, n_fft=256, hop=128, mels=64)
    g = torch.Generator().manual_seed(0)
    image = spec.encode(sine_levels(550, 1000, 0.5)) + 0.1 * torch.randn(1, *spec.shape, generator=g)
    mel = spec.mel_power(image)[0].double()  # (mels, frames)
    fb = spec.filterbank.double()
    best = [nnls(fb.numpy(), mel[:, f].numpy(), maxiter=5000)[1] ** 2 for f in range(mel.shape[1])]

    def excess(solver_spec):
        power = solver_spec.linear_power(mel.float()[None])[0].double()
        assert power.min() >= 0
        got = ((fb @ power - mel) ** 2).sum(0)
        return float((got - torch.tensor(best)).sum() / sum(best))

    assert excess(spec) < 1e-4  # the default: converged (measured 2e-6; 20 steps: 0.027)
    assert excess(MelSpec(1000, n_fft=256, hop=128, mels=64, nnls_steps=20)) > 10 * excess(spec)
