"""``genzoo vit train|eval|predict``: the ViT classifier from the command line, saved and loaded."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.vit_classifier import ViTClassifier, ViTClassifierConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("vit") / "run"
    result = runner.invoke(app, ["vit", "train", "-o", str(run), "--epochs", "60", "--width", "32", "--depth", "1"])
    assert result.exit_code == 0, result.output
    return run


def test_train_eval_predict_from_the_cli(trained, tmp_path):
    evaluated = runner.invoke(app, ["vit", "eval", str(trained)])
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = float(evaluated.output.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.4, accuracy  # 60 epochs of a 1-block, 32-wide ViT: measured 0.64 (chance 0.1)

    test = load_dataset("digits", "test")
    images = tmp_path / "digits.npy"
    np.save(images, test.x[:20, 0].numpy())  # (N, 8, 8) is accepted too
    out = tmp_path / "labels.json"
    predicted = runner.invoke(app, ["vit", "predict", str(trained), str(images), "--out", str(out)])
    assert predicted.exit_code == 0, predicted.output
    labels = json.loads(out.read_text())["labels"]
    assert labels == ViTClassifier.load(trained).predict(test.x[:20]).tolist()
    assert len(predicted.output.strip().splitlines()) == 20


def test_save_and_load_give_identical_predictions(tmp_path):
    x = load_dataset("digits", "val").x[:64]
    y = load_dataset("digits", "val").y[:64]
    model = ViTClassifier(ViTClassifierConfig(epochs=2, width=16, depth=1)).fit(x, y)
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # replacing an existing folder works and leaves no temporary folders behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    again = ViTClassifier.load(tmp_path / "m")
    assert torch.equal(model.predict_proba(x), again.predict_proba(x))
    assert again.config.width == 16 and len(again.history) == 2


def test_bad_folders_and_images_are_refused_clearly(trained, tmp_path):
    with pytest.raises(GenzooError, match="no config.json"):
        ViTClassifier.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(GenzooError, match="corrupt"):
        ViTClassifier.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(GenzooError, match="corrupt or does not match"):
        ViTClassifier.load(broken)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4, 4)))
    result = runner.invoke(app, ["vit", "predict", str(trained), str(bad)])
    assert result.exit_code == 2 and "(N, 1, 8, 8)" in result.output and "Traceback" not in result.output
    np.save(bad, np.full((2, 8, 8), 99.0))
    result = runner.invoke(app, ["vit", "predict", str(trained), str(bad)])
    assert result.exit_code == 2 and "levels 0..16" in result.output
