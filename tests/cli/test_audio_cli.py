"""Audio from the command line: train wavenet on spoken digits, sample a WAV (+ spectrogram, manifest),
replay it bit for bit, find it in the store; a broken .wav in a user folder is one clear line."""

from __future__ import annotations

import json
import wave

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app

runner = CliRunner()


def cli(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def wavenet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("audio-cli") / "wn"
    cli("train", "wavenet", "--data", "spoken-digits", "--steps", "2", "--batch-size", "4", "--no-eval", "--out", out,
        "--set", "channels=4", "--set", "skip_channels=4", "--set", "stacks=1", "--set", "layers_per_stack=2",
        "--set", "crop=64")
    return out


def test_list_names_wavenet_and_the_audio_data():
    out = cli("list").output
    assert "wavenet" in out and "spoken-digits" in out and "chorales" in out
    listed = json.loads(cli("list", "--json").output)["families"]["diffusion"]
    assert listed["default_variant"] == {"image": "eps", "points": "eps", "audio": "mel"}  # what a bare `train` builds


def test_sample_writes_a_wav_a_spectrogram_and_a_manifest_that_replays(wavenet_run, tmp_path):
    db = tmp_path / "store.db"
    target = tmp_path / "seven.wav"
    cli("sample", wavenet_run, "--n", 2, "--condition", 7, "-o", target, "--store", db)
    with wave.open(str(target)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        assert 2.0 <= w.getnframes() / 8000 <= 2.5  # two 1 s clips and the gap between
    assert (tmp_path / "seven.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "seven.json").is_file()
    res = cli("reproduce", tmp_path / "seven.json")
    assert "bit-identical: yes" in res.output
    res = cli("search", "", "--family", "wavenet", "--kind", "audio", "--mode", "keyword", "--store", db)
    assert "1 result(s)" in res.output  # recorded as audio, found by model and kind
    assert "bit-identical: yes" in cli("reproduce", "1", "--store", db).output


def test_image_families_refuse_audio_clearly():
    res = cli("train", "pixelcnn", "--data", "spoken-digits", "--steps", "1", ok=False)
    assert res.exit_code != 0 and "audio" in res.output and "Traceback" not in res.output


def test_a_broken_wav_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "bad.wav").write_bytes(b"not audio")
    res = cli("train", "wavenet", "--data", tmp_path / "data", "--steps", "1", "--out", tmp_path / "run", ok=False)
    assert res.exit_code != 0 and "bad.wav" in res.output and "Traceback" not in res.output
