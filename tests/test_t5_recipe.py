"""The T5 fine-tuning recipe: BPE by default for a new model, warm-up then cosine decay (the docsig
fix, benchmarks/README.md section 25)."""

import pytest
import torch

from genzoo.data.tokenizer import TextTokenizer
from genzoo.core.errors import GenzooError
from genzoo.models.t5 import T5, T5Config, finetune

PAIRS = [("ab", "AB"), ("ba", "BA"), ("abc", "ABC")]


def tiny_model():
    tok = TextTokenizer.train([a + "\n" + b for a, b in PAIRS], kind="char")
    m = T5(T5Config(data={"vocab_size": tok.vocab_size}, width=16, d_kv=4, d_ff=32, layers=1, heads=2, num_buckets=8,
                    max_distance=16, num_sentinels=4, eos_token_id=tok.eos_id))
    m.tokenizer = tok
    return m


def test_cosine_schedule_ends_at_zero_and_warmup_starts_small(monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    finetune(tiny_model(), PAIRS, steps=6, batch_size=2, lr=1e-2, warmup_steps=2, schedule="cosine")
    assert seen[0] == pytest.approx(5e-3) and seen[1] == pytest.approx(1e-2)  # warm-up: lr * (step + 1) / 2
    assert seen[-1] < 2e-3 and all(a >= b for a, b in zip(seen[1:], seen[2:]))  # then decays towards 0
    seen.clear()
    finetune(tiny_model(), PAIRS, steps=3, batch_size=2, lr=1e-2)  # the default stays constant
    assert seen == [pytest.approx(1e-2)] * 3
    with pytest.raises(GenzooError, match="schedule"):
        finetune(tiny_model(), PAIRS, steps=1, schedule="linear")


def test_cli_trains_a_bpe_tokenizer_by_default(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli.main import app
    from genzoo.cli.t5 import load_t5

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"input": "ab", "target": "AB"}\n{"input": "ba", "target": "BA"}\n')
    r = CliRunner().invoke(app, ["t5", "finetune", str(tmp_path / "m"), "--pairs", str(f), "--steps", "2", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert load_t5(tmp_path / "m").tokenizer.kind == "bpe"
    r = CliRunner().invoke(app, ["t5", "finetune", str(tmp_path / "n"), "--pairs", str(f), "--steps", "2", "--tokenizer", "words"])
    assert r.exit_code == 2 and "tokenizer" in r.output
