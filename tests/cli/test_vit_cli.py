"""The ViT family from the command line: `genzoo train vit`, then `genzoo vit eval|predict` and `genzoo eval`
on its run folder; `genzoo vit train`, the old spelling."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.data import load_dataset
from genzoo.models.vit import ViT

runner = CliRunner()
SMALL = ["--set", "patch=4", "--set", "width=32", "--set", "depth=1", "--set", "heads=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("vit") / "run"
    result = runner.invoke(app, ["train", "vit", "--data", "digits", "--steps", "200", "--val-every", "100", "--out", str(run),
                                 "--no-eval", *SMALL])
    assert result.exit_code == 0, result.output
    return run


def test_train_eval_predict_from_the_cli(trained, tmp_path):
    assert (trained / "best" / "selection.json").is_file()  # the weights best on validation
    evaluated = runner.invoke(app, ["vit", "eval", str(trained)])
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = float(evaluated.output.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.4, accuracy  # 200 steps of a 1-block, 32-wide ViT, patch 4 (chance 0.1)

    report = runner.invoke(app, ["eval", str(trained)])  # the generic report
    assert report.exit_code == 0, report.output
    line = next(ln for ln in report.output.splitlines() if ln.startswith("test accuracy"))
    assert float(line.split()[2]) == pytest.approx(accuracy, abs=1e-4)
    assert json.loads((trained / "eval.json").read_text())["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)

    test = load_dataset("digits", "test")
    images = tmp_path / "digits.npy"
    np.save(images, test.x[:20, 0].numpy())  # (N, 8, 8) is accepted too
    out = tmp_path / "labels.json"
    predicted = runner.invoke(app, ["classify", str(trained), str(images), "--out", str(out)])
    assert predicted.exit_code == 0, predicted.output
    labels = json.loads(out.read_text())["labels"]
    assert labels == api.load(trained).predict(test.x[:20]).tolist()
    assert len(predicted.output.strip().splitlines()) == 20
    old = runner.invoke(app, ["vit", "predict", str(trained), str(images)])  # the old spelling
    assert old.exit_code == 0 and "`genzoo classify`" in old.output and predicted.output in old.output, old.output


def test_bad_runs_and_images_are_refused_clearly(trained, tmp_path):
    r = runner.invoke(app, ["vit", "eval", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["sample", str(trained), "--no-store", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "vit cannot sample" in r.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4, 4)))
    result = runner.invoke(app, ["classify", str(trained), str(bad)])
    assert result.exit_code == 2 and "(N, 1, 8, 8)" in result.output and "Traceback" not in result.output
    np.save(bad, np.full((2, 8, 8), 99.0))
    result = runner.invoke(app, ["classify", str(trained), str(bad)])
    assert result.exit_code == 2 and "levels 0..16" in result.output


def test_the_old_train_spelling_still_works_and_says_the_new_one(tmp_path):
    result = runner.invoke(app, ["vit", "train", "-o", str(tmp_path / "v"), "--epochs", "1", "--width", "16", "--depth", "1"])
    assert result.exit_code == 0, result.output
    assert "genzoo train vit" in result.output and "validation accuracy" in result.output
    model = api.load(tmp_path / "v")
    assert isinstance(model, ViT) and model.config.width == 16
    assert json.loads((tmp_path / "v" / "run.json").read_text())["train_config"]["steps"] == 16  # one epoch
