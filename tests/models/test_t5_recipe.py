"""The T5 recipe (the docsig fix, benchmarks/README.md section 25) as the family's defaults: warm-up then
cosine decay to 0 through the Trainer's schedule, no EMA, the measured architecture; and `genzoo t5
finetune`, the old spelling, training a BPE tokenizer by default through the same Trainer."""

import json

import pytest
import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.models.t5 import T5

TINY = {"width": 16, "d_kv": 4, "d_ff": 32, "layers": 1, "heads": 2, "num_buckets": 8, "max_distance": 16, "num_sentinels": 4}


def write_pairs(path, n=12):
    rows = [{"input": f"ab{i}", "target": f"AB{i}"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_family_defaults_carry_the_measured_recipe():
    train = T5.default_train({})
    assert train["lr"] == 1e-3 and train["warmup_steps"] == 100 and train["schedule"] == "cosine"
    assert train["min_lr_ratio"] == 0.0 and train["ema_decay"] is None and train["weight_decay"] == 0.0
    c = T5.default_config({"kind": "pairs", "vocab_size": 50, "eos_id": 0})
    assert (c.ffn, c.layers, c.width, c.heads, c.d_kv, c.d_ff, c.num_sentinels) == ("gated-gelu", 3, 128, 4, 32, 512, 32)


def test_trainer_warms_up_then_decays_towards_zero(tmp_path, monkeypatch):
    f = tmp_path / "pairs.jsonl"
    write_pairs(f)
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    api.train("t5", str(f), model_overrides=TINY, steps=6, batch_size=4, lr=1e-2, warmup_steps=2, val_every=0, progress=False)
    assert seen[0] == pytest.approx(5e-3) and seen[1] == pytest.approx(1e-2)  # warm-up: lr * (step + 1) / 2
    assert seen[-1] < 2e-3 and all(a >= b for a, b in zip(seen[1:], seen[2:]))  # then cosine towards 0
    seen.clear()
    api.train("t5", str(f), model_overrides=TINY, steps=3, batch_size=4, lr=1e-2, warmup_steps=0, schedule="constant",
              val_every=0, progress=False)
    assert seen == [pytest.approx(1e-2)] * 3


def test_old_finetune_spelling_runs_the_trainer_with_bpe(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli.main import app
    from genzoo.cli.t5 import load_t5

    f = tmp_path / "pairs.jsonl"
    write_pairs(f)
    r = CliRunner().invoke(app, ["t5", "finetune", str(tmp_path / "m"), "--pairs", str(f), "--steps", "2", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    assert "genzoo train t5 --data pairs.jsonl" in r.output and "2 steps" in r.output
    model = load_t5(tmp_path / "m")
    assert model.tokenizer.kind == "bpe" and (tmp_path / "m" / "run.json").is_file()
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["family"] == "t5" and run["train_config"]["warmup_steps"] == 0  # a tenth of 2 steps
    test = load_dataset(str(f), "test", tokenizer=model.tokenizer)
    assert model.validation_loss(test.x) > 0
    r = CliRunner().invoke(app, ["t5", "finetune", str(tmp_path / "n"), "--pairs", str(f), "--steps", "2", "--tokenizer", "words"])
    assert r.exit_code == 2 and "tokenizer" in r.output
    r = CliRunner().invoke(app, ["t5", "finetune", str(tmp_path / "k"), "--pairs", str(f), "--steps", "2", "--batch-size", "4",
                                 "--from", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert load_t5(tmp_path / "k").tokenizer.kind == "bpe"
