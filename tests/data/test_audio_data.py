"""Audio data: mu-law, the spoken-digits set (voices of the test split unseen), chorale tokens, user .wav folders."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from genzoo.core.errors import GenzooError
from genzoo.data import chorales, load_dataset, spoken_digits
from genzoo.data.audio import mu_law_decode, mu_law_encode, wav_bytes


def test_mu_law_round_trip_is_exact_on_levels_and_close_on_waveforms():
    levels = torch.arange(256).float()
    assert torch.equal(mu_law_encode(mu_law_decode(levels)), levels)
    x = torch.linspace(-1, 1, 10001)
    back = mu_law_decode(mu_law_encode(x))
    # mu-law's step grows with amplitude: relative error bounded, tiny near silence
    assert (back - x).abs().max() < 0.03
    assert (back - x).abs()[(x.abs() < 0.01)].max() < 3e-4
    assert mu_law_encode(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 128.0, 255.0]


def test_spoken_digits_splits_have_disjoint_voices_and_declare_audio():
    splits = {s: load_dataset("spoken-digits", s) for s in ("train", "val", "test")}
    voices = {s: set(d.meta["voices"]) for s, d in splits.items()}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"] and not voices["val"] & voices["test"]
    for d in splits.values():
        assert d.kind == "audio" and d.levels == 256 and d.num_classes == 10
        assert d.x.shape[1:] == (1, spoken_digits.SAMPLE_RATE) and d.x.min() >= 0 and d.x.max() <= 255
        assert torch.equal(d.y.bincount(), torch.full((10,), len(d) // 10))  # balanced
        assert d.spec()["sample_rate"] == 8000
    train = splits["train"].x
    # clips are speech, not silence: some loud samples in every clip
    loud = (mu_law_decode(train[:50]).abs() > 0.3).flatten(1).any(1)
    assert loud.all()


def test_spoken_digit_rendering_is_deterministic_in_a_fresh_process():
    items = [("seven", "en-us+m3", "k"), ("one", "en+f2", "k"), ("seven", "en-us+m3", "k"), ("seven", "en-us+m3", "other")]
    a, b = spoken_digits.render_fresh(items), spoken_digits.render_fresh(items)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a[0]) == spoken_digits.SAMPLE_RATE
    assert not np.array_equal(a[0], a[3])  # another key: another rendition


def test_chorale_tokens_round_trip():
    grid = [[72, 67, 64, 48], [-1, -1, -1, -1], [74, -1, 65, -2], [-1, 69, -1, 50]]
    notes = chorales.decode(chorales.encode(grid))
    assert notes[0] == [(0, 2, 72), (2, 4, 74)]
    assert notes[1] == [(0, 3, 67), (3, 4, 69)]
    assert notes[3] == [(0, 2, 48), (3, 4, 50)]  # a rest at step 2
    # malformed text (a sample) decodes without error
    assert chorales.decode("|x" + chorales.pitch_char(60)) == [[], [(0, 1, 60)], [], []]


def test_chorales_split_by_chorale_and_train_a_tokenizer():
    names = list(chorales._chorales())
    splits = {chorales.split_of(n) for n in names}
    assert splits == {"train", "val", "test"}
    train = load_dataset("chorales", "train")
    tok = train.meta["tokenizer"]
    test = load_dataset("chorales", "test", tokenizer=tok)
    assert train.kind == test.kind == "tokens" and len(test.x) > 1000
    text = tok.decode(test.x[:200].tolist())
    assert text.startswith(chorales.STEP) and len(chorales.decode(text)[0]) > 0


def _write_wav(path, seconds=0.5, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    path.write_bytes(wav_bytes(0.5 * np.sin(2 * np.pi * freq * t), rate))


def test_user_wav_folder_gives_labels_and_resamples(tmp_path):
    for cls, freq in (("low", 220.0), ("high", 880.0)):
        (tmp_path / cls).mkdir()
        for i in range(6):
            _write_wav(tmp_path / cls / f"{i}.wav", freq=freq + i)
    d = load_dataset(str(tmp_path), "train")
    assert d.kind == "audio" and d.num_classes == 2 and d.meta["class_names"] == ["high", "low"]
    assert d.x.shape[1:] == (1, 8000)
    with wave.open(str(tmp_path / "low" / "0.wav")) as w:
        assert w.getframerate() == 16000


def test_broken_wav_names_the_file(tmp_path):
    (tmp_path / "a").mkdir()
    _write_wav(tmp_path / "a" / "good.wav")
    (tmp_path / "a" / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(GenzooError, match="bad.wav"):
        load_dataset(str(tmp_path), "train")
