"""The evaluator that listens: it hears unseen voices right, real held-out clips score near the floor,
noise scores badly."""

from __future__ import annotations

import pytest
import torch

from genzoo.data import load_dataset
from genzoo.data.audio import mu_law_encode
from genzoo.eval.audio_classifier import AudioSettings, get_audio_evaluator, mel_filterbank
from genzoo.eval.audio_report import listen_metrics

FAST = AudioSettings(epochs=5)  # a cheaper listener for tests (its own cache entry)


@pytest.fixture(scope="module")
def listener():
    return get_audio_evaluator(FAST)


def test_mel_filterbank_is_triangles_that_cover_the_band():
    fb = mel_filterbank(8000, 256, 40)
    assert fb.shape == (40, 129) and (fb >= 0).all() and fb.max() <= 1
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all()  # ordered by frequency
    assert (fb.sum(0)[3:-1] > 0).all()  # every bin above 50 Hz is covered


def test_the_listener_hears_unseen_voices_far_above_chance(listener):
    assert listener.test_accuracy > 0.8  # chance is 0.1; these voices were never heard in training
    assert listener.record["test_voices"] and not set(listener.record["test_voices"]) & set(load_dataset("spoken-digits", "train").meta["voices"])


def test_real_held_out_clips_score_near_the_floor_and_noise_scores_badly(listener):
    test = load_dataset("spoken-digits", "test")
    real = listen_metrics(listener, test.x[:100], test.y[:100], load_dataset)
    assert real["heard_as_asked"] > 0.8 and real["class_coverage"] == 1.0
    assert real["fd_audio"] < 2 * real["fd_audio_floor"]
    noise = mu_law_encode(torch.randn(100, 1, 8000, generator=torch.Generator().manual_seed(0)) * 0.3)
    bad = listen_metrics(listener, noise, torch.arange(100) % 10, load_dataset)
    assert bad["heard_as_asked"] < 0.3 and bad["fd_audio"] > 10 * real["fd_audio_floor"]
    # asking for the wrong digit of real speech is heard as wrong
    wrong = listen_metrics(listener, test.x[:100], (test.y[:100] + 1) % 10, load_dataset)
    assert wrong["heard_as_asked"] < 0.2


def test_chorale_range_share_on_known_answers():
    from genzoo.data import chorales
    from genzoo.eval.music import in_range_share

    good = chorales.encode([[72, 67, 60, 48], [-1, -1, -1, -1]])
    bad = chorales.encode([[100, 67, 60, 48]])  # a soprano far above her range
    assert in_range_share([good, good]) == 1.0 and in_range_share([good, bad]) == 0.5
