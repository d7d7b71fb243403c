"""Model selection on the validation split: val losses logged, best weights kept, patience, resume."""

import json

import pytest
import torch

from genzoo import api
from genzoo.runs.checkpoint import load_model, resolve_checkpoint
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.train import Trainer, TrainConfig
from twoopt import TwoOptConfig, TwoOptimizerGAN

DATA = "toy2d:moons"


def cfg(**kw):
    base = dict(steps=30, batch_size=64, lr=2e-3, warmup_steps=2, progress=False, checkpoint_every=10, log_every=5, val_every=5)
    base.update(kw)
    return TrainConfig(**base)


def flow(seed=0):
    data = load_dataset(DATA, "train")
    return api.build_model("realnvp", data, None, {"hidden": 16, "coupling_layers": 2}, seed), data


def scripted_losses(model, values):
    """Make the model report ``values`` as its successive validation losses."""
    it = iter(values)
    model.validation_loss = lambda *a, **k: next(it)


def val_rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["event"] == "val"]


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_validation_loss_is_the_objective_with_fixed_noise():
    model, _ = flow()
    val = load_dataset(DATA, "val")
    a = model.validation_loss(val.x, seed=3)
    assert a == model.validation_loss(val.x, seed=3)  # fixed noise: values from different steps compare
    assert a == pytest.approx(float(-model.log_prob(val.x).mean()), rel=1e-4)  # continuous data: the NLL itself


def test_best_weights_are_kept_and_loaded(tmp_path):
    model, data = flow()
    trainer = Trainer(model, data, cfg(), out_dir=tmp_path / "run", val_data=load_dataset(DATA, "val"))
    losses = [5.0, 3.0, 4.0, 4.5, 4.2, 4.1]  # best at the 2nd validation (step 10)
    snapshots = []

    def record(*a, **k):
        snapshots.append({k2: v.clone() for k2, v in trainer.sampling_model.state_dict().items()})
        return losses[len(snapshots) - 1]

    model.validation_loss = record
    if trainer.ema:
        trainer.ema.model.validation_loss = record
    summary = trainer.fit()
    assert summary["best_step"] == 10 and summary["best_val_loss"] == 3.0
    assert [r["step"] for r in val_rows(tmp_path / "run")] == [5, 10, 15, 20, 25, 30]
    assert json.loads((tmp_path / "run" / "best" / "selection.json").read_text())["step"] == 10
    assert (tmp_path / "run" / "samples" / "best_step_000010.png").is_file()  # a grid of what eval will use
    assert state_equal(trainer.selected_model.state_dict(), snapshots[1])
    assert resolve_checkpoint(tmp_path / "run").name == "best"  # eval and sample use the selected weights
    assert state_equal(load_model(tmp_path / "run").state_dict(), snapshots[1])
    assert resolve_checkpoint(tmp_path / "run", prefer_best=False).name == "checkpoint"  # resume uses the last state


def test_patience_stops_training_early(tmp_path):
    model, data = flow()
    trainer = Trainer(model, data, cfg(patience=2, ema_decay=None), out_dir=tmp_path / "run", val_data=load_dataset(DATA, "val"))
    scripted_losses(model, [5.0, 4.0, 4.5, 4.6, 1.0, 1.0])
    summary = trainer.fit()
    assert summary["steps"] == 20 and summary["best_step"] == 10  # two validations without improvement after step 10


def test_resume_remembers_the_best(tmp_path):
    model, data = flow()
    val = load_dataset(DATA, "val")
    first = Trainer(model, data, cfg(steps=20, ema_decay=None), out_dir=tmp_path / "run", val_data=val)
    scripted_losses(model, [5.0, 2.0, 3.0, 3.5])
    first.fit()
    model2, _ = flow()
    resumed = Trainer(model2, data, cfg(steps=30, ema_decay=None), out_dir=tmp_path / "run", val_data=val)
    scripted_losses(model2, [2.5, 2.6])  # worse than the 2.0 before the interruption
    summary = resumed.fit(resume=True)
    assert summary["steps"] == 30 and summary["best_step"] == 10 and summary["best_val_loss"] == 2.0
    best_on_disk = load_model(tmp_path / "run").state_dict()
    assert state_equal(resumed.selected_model.state_dict(), best_on_disk)


def test_validation_can_be_logged_without_selecting(tmp_path):
    model, data = flow()
    trainer = Trainer(model, data, cfg(select_best=False, patience=1, ema_decay=None), out_dir=tmp_path / "run", val_data=load_dataset(DATA, "val"))
    scripted_losses(model, [5.0, 1.0, 3.0, 4.0, 5.0, 6.0])
    summary = trainer.fit()
    assert len(val_rows(tmp_path / "run")) == 6 and summary["steps"] == 30 and "best_step" not in summary
    assert resolve_checkpoint(tmp_path / "run").name == "checkpoint"


def test_families_without_a_single_loss_train_without_validation(tmp_path):
    data = load_dataset("toy2d:8gaussians", "train")
    model = TwoOptimizerGAN(TwoOptConfig(data=data.spec()))
    summary = Trainer(model, data, cfg(steps=10), out_dir=tmp_path / "run", val_data=load_dataset("toy2d:8gaussians", "val")).fit()
    assert "best_step" not in summary and val_rows(tmp_path / "run") == []
    assert resolve_checkpoint(tmp_path / "run").name == "checkpoint"


def test_bad_selection_settings_are_refused():
    with pytest.raises(GenzooError, match="patience"):
        TrainConfig(steps=10, patience=-1)
