"""Chorale music statistics on known answers: real held-out chorales score near zero divergence and
few parallels, the same chorales with their pitches shuffled in time or replaced by random pitches
score clearly worse, and hand-built two-voice passages are classified by definition."""

import random

import numpy as np
import pytest

from genzoo.data import chorales
from genzoo.eval import music

C4 = 60


def two_voices(soprano, bass):
    """A chorale of quarter notes (4 grid steps each) with only soprano and bass sounding."""
    grid = []
    for s, b in zip(soprano, bass):
        grid += [[s, -2, -2, b]] + [[-1, -2, -2, -1]] * 3
    return chorales.encode(grid)


def test_a_parallel_fifth_is_found_and_contrary_motion_is_not():
    assert music.parallel_motions(two_voices([C4 + 7, C4 + 9], [C4, C4 + 2])) == (1, 0)  # G/C -> A/D, both up
    assert music.parallel_motions(two_voices([C4 + 12, C4 + 14], [C4, C4 + 2])) == (0, 1)  # octaves, both up
    assert music.parallel_motions(two_voices([C4 + 7, C4 + 5], [C4, C4 - 7])) == (0, 0)  # both down, fifth to octave: not the same interval
    assert music.parallel_motions(two_voices([C4 + 7, C4 + 9], [C4 + 2, C4 - 5])) == (0, 0)  # contrary, a 4th to a 9th
    assert music.parallel_motions(two_voices([C4 + 7, C4 + 14], [C4, C4 - 5])) == (0, 0)  # fifths, contrary: not parallel
    assert music.parallel_motions(two_voices([C4 + 7, C4 + 7], [C4, C4])) == (0, 0)  # repeated: neither moves
    assert music.parallel_motions(two_voices([C4 + 19, C4 + 9], [C4, C4 + 2])) == (0, 0)  # a 12th, then a 5th (mod 12: 7 both), contrary
    # a rest between the two fifths breaks the succession
    grid = [[C4 + 7, -2, -2, C4], [-2, -2, -2, -2], [C4 + 9, -2, -2, C4 + 2]]
    assert music.parallel_motions(chorales.encode(grid)) == (0, 0)
    assert music.no_parallels_share([two_voices([C4 + 7, C4 + 9], [C4, C4 + 2]), two_voices([C4 + 7, C4 + 14], [C4, C4 - 5])]) == 0.5


def test_histograms_and_js_on_known_answers():
    text = two_voices([C4, C4 + 2, C4 + 16], [C4 - 12, C4 - 12, C4 - 24])  # C4 D4 E5 over C3 C3 C2
    h = music.pitch_class_histogram([text], key_aligned=False)
    assert h[0] == 4 and h[2] == 1 and h[4] == 1 and h.sum() == 6
    up = two_voices([C4 + 5, C4 + 7, C4 + 21], [C4 - 7, C4 - 7, C4 - 19])  # the same, a fourth higher (F)
    assert music.pitch_class_histogram([up], key_aligned=False)[5] == 4
    assert np.array_equal(music.pitch_class_histogram([up]), h) and np.array_equal(music.pitch_class_histogram([text]), h)
    iv = music.interval_histogram([text])
    mid = music.MAX_LEAP + 1  # the bin of 0 semitones
    assert iv[mid + 2] == 1 and iv[-1] == 1  # soprano: +2, then +14 (beyond an octave)
    assert iv[mid] == 1 and iv[mid - 12] == 1 and iv.sum() == 4  # bass: 0, then -12
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert music.js_divergence(p, q) == pytest.approx(1.0) and music.js_divergence(p, 3 * p) == pytest.approx(0.0)
    # [.5, .5] vs [1, 0]: m = [.75, .25]; (KL(p||m) + KL(q||m)) / 2 by hand
    by_hand = (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25) + np.log2(1 / 0.75)) / 2
    assert music.js_divergence([1, 1], [1, 0]) == pytest.approx(by_hand)
    assert music.js_divergence([0, 0], [1, 0]) == 1.0


def _shuffled(text: str, rng: random.Random) -> str:
    """The chorale with each voice's pitches permuted over its onsets (rhythm and pitch classes kept)."""
    steps = [list(c) for c in text.split(chorales.STEP)[1:]]
    for v in range(4):
        at = [i for i, s in enumerate(steps) if chorales.char_pitch(s[v]) is not None]
        pitches = [steps[i][v] for i in at]
        rng.shuffle(pitches)
        for i, p in zip(at, pitches):
            steps[i][v] = p
    return "".join(chorales.STEP + "".join(s) for s in steps)


def _random_pitches(text: str, rng: random.Random) -> str:
    """The chorale's rhythm with every pitch drawn uniformly from its voice's range."""
    steps = [list(c) for c in text.split(chorales.STEP)[1:]]
    for s in steps:
        for v, c in enumerate(s):
            if chorales.char_pitch(c) is not None:
                s[v] = chorales.pitch_char(rng.randint(*chorales.RANGES[chorales.VOICES[v]]))
    return "".join(chorales.STEP + "".join(s) for s in steps)


def test_real_chorales_score_well_and_destroyed_ones_clearly_worse():
    val, test = chorales.documents("val"), chorales.documents("test")
    real = music.stats(val, test)
    assert real["in_range_share"] == 1.0  # the ranges hold every held-out chorale
    assert real["pitch_class_js"] < 0.02 and real["interval_js"] < 0.02 and real["no_parallels_share"] >= 0.9
    shuffled = music.stats([_shuffled(t, random.Random(i)) for i, t in enumerate(val)], test)
    assert shuffled["pitch_class_js"] == pytest.approx(real["pitch_class_js"])  # same notes, other order
    assert shuffled["interval_js"] > 5 * real["interval_js"] and shuffled["interval_js"] > 0.1
    assert shuffled["no_parallels_share"] < 0.75
    rand = music.stats([_random_pitches(t, random.Random(i)) for i, t in enumerate(val)], test)
    assert rand["pitch_class_js"] > 3 * real["pitch_class_js"] and rand["interval_js"] > 0.3
    assert rand["no_parallels_share"] < 0.85


def test_music_metrics_give_the_held_out_floor_beside_each_statistic():
    windows = music.heldout_windows("val", 256, 64)
    assert len(windows) == 64 and {len(w) for w in windows} == {255}
    m = music.music_metrics(windows[:8], tokens=256)
    for k in ("in_range_share", "pitch_class_js", "interval_js", "no_parallels_share"):
        assert k in m and k + "_floor" in m
    assert m["in_range_share_floor"] == 1.0 and m["pitch_class_js_floor"] < 0.1


def test_several_chorales_in_one_sample_are_kept_apart():
    # fifths at the end of one chorale and the start of the next are not one succession
    a, b = two_voices([C4 + 7], [C4]), two_voices([C4 + 9], [C4 + 2])
    assert music.parallel_motions(a + b) == (1, 0)
    assert music.parallel_motions(a + chorales.DOC_SEP + b) == (0, 0)


def test_the_chorale_report_shows_each_statistic_beside_its_held_out_floor(monkeypatch):
    import torch

    from genzoo.data.tokenizer import TextTokenizer
    from genzoo.eval import report
    from genzoo.models.gpt import GPT, GPTConfig

    tok = TextTokenizer.train(chorales.documents("val"), kind="char")
    torch.manual_seed(0)
    model = GPT(GPTConfig(data={"kind": "tokens", "vocab_size": tok.vocab_size, "name": "chorales"}, context=64,
                          layers=1, width=32, heads=4, dropout=0.0))
    model.tokenizer = tok
    monkeypatch.setattr(music, "ngram_metrics", lambda tokenizer: {})  # counted on every training token: slow, tested apart
    metrics = report._evaluate_text(model, "chorales", None, {"model": "gpt", "data": "chorales"}, n_samples=0, seed=0,
                                    nll=False, sampler_options=None, say=lambda *a: None)
    for k in ("in_range_share", "pitch_class_js", "interval_js", "no_parallels_share"):
        assert 0 <= metrics[k] <= 1 and 0 <= metrics[k + "_floor"] <= 1
    assert metrics["pitch_class_js"] > metrics["pitch_class_js_floor"]  # an untrained model is no Bach
    text = report.format_report(metrics)
    row = next(line for line in text.splitlines() if line.startswith("interval JS to test"))
    assert row.split()[-3:] == [report._fmt(metrics["interval_js"]), report._fmt(metrics["interval_js_floor"]), "lower"]
    assert "validation-chorale windows" in text
