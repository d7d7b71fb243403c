"""Chorale sampling with every voice kept in range by construction (llguidance over the char
tokenizer's non-ASCII pitch characters): an untrained GPT writes out-of-range notes unconstrained
and none constrained; the constrained text is whole grid steps of the range pattern."""

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.data import chorales
from genzoo.data.tokenizer import TextTokenizer
from genzoo.eval.music import in_range_share
from genzoo.models.gpt import GPT, GPTConfig, temperature_sampler
from genzoo.sampling.chorale_ranges import in_range_sampler


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(chorales.documents("val"), kind="char")  # pitches far outside every range too


def untrained(tok) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(data={"kind": "tokens", "vocab_size": tok.vocab_size, "name": "chorales"}, context=64,
                          layers=1, width=32, heads=4, dropout=0.0))
    model.tokenizer = tok
    return model.eval()


def texts(rows, tok):
    return [chorales.row_text(r, tok) for r in rows.tolist()]


def test_the_range_regex_matches_exactly_the_in_range_steps():
    rx = re.compile(chorales.range_regex())
    lo, hi = chorales.RANGES["soprano"]
    ok = chorales.encode([[lo, -1, -2, 40], [hi, 60, 55, -1]])
    assert rx.fullmatch(ok) and not rx.fullmatch("")  # no empty chorale
    assert not rx.fullmatch(chorales.encode([[lo - 1, -1, -2, 40]]))  # soprano one below her range
    assert not rx.fullmatch(chorales.encode([[hi, -1, -2, chorales.RANGES["bass"][1] + 1]]))
    assert not rx.fullmatch(ok[:-1])  # a step cut short: eos only between steps
    with pytest.raises(GenzooError, match="missing bass"):
        chorales.range_regex({"soprano": (60, 70), "alto": (50, 60), "tenor": (45, 60)})
    with pytest.raises(GenzooError, match="within 0..127"):
        chorales.range_regex({**chorales.RANGES, "alto": (70, 60)})


def test_constrained_samples_of_an_untrained_gpt_are_all_in_range(tok):
    model = untrained(tok)
    free = chorales.sample(model, 16, generator=torch.Generator().manual_seed(0), max_tokens=60)
    assert in_range_share(texts(free, tok)) < 0.5  # the untrained model goes out of range
    held = chorales.sample(model, 16, generator=torch.Generator().manual_seed(0), max_tokens=60, in_range=True)
    assert held.shape == (16, 60) and in_range_share(texts(held, tok)) == 1.0
    for row in texts(held, tok):
        for doc in row.split(chorales.DOC_SEP):
            assert well_formed(doc), doc
    # the same seed and options give the same samples
    again = chorales.sample(model, 16, generator=torch.Generator().manual_seed(0), max_tokens=60, in_range=True)
    assert torch.equal(held, again)


def well_formed(doc: str) -> bool:
    """Brute force, not the regex: grid steps of | and one allowed character per voice; only the last step may be cut."""
    if not doc.startswith(chorales.STEP):
        return False
    steps = doc.split(chorales.STEP)[1:]
    for i, step in enumerate(steps):
        if len(step) > 4 or (len(step) < 4 and i < len(steps) - 1):
            return False
        for voice, c in zip(chorales.VOICES, step):
            lo, hi = chorales.RANGES[voice]
            p = chorales.char_pitch(c)
            if c not in (chorales.HOLD, chorales.REST) and (p is None or not lo <= p <= hi):
                return False
    return True


def test_an_eos_is_allowed_only_between_steps_and_starts_the_next_chorale(tok):
    fn = in_range_sampler(tok, temperature_sampler(1.0))
    history = torch.tensor([[tok.eos_id]])
    for _ in range(31):  # logits that want eos above all: it comes at every step end, never inside one
        logits = torch.zeros(1, tok.vocab_size)
        logits[0, tok.eos_id] = 50.0
        token = fn(logits, history, torch.Generator().manual_seed(0))
        history = torch.cat([history, token[:, None]], dim=1)
    row = history[0, 1:].tolist()
    assert [i for i, t in enumerate(row) if t == tok.eos_id] == [5, 11, 17, 23, 29]
    docs = chorales.row_text(row, tok).split(chorales.DOC_SEP)
    assert len(docs) == 6 and all(well_formed(d) for d in docs) and in_range_share(docs) == 1.0


def test_sample_cli_in_range_writes_midi_and_reproduce_replays_it(tok, tmp_path):
    untrained(tok).save_pretrained(tmp_path / "run")
    out = tmp_path / "s.mid"
    r = CliRunner().invoke(app, ["sample", str(tmp_path / "run"), "--n", "2", "--opt", "max_tokens=40", "--in-range",
                                 "--no-store", "-o", str(out)], env={"COLUMNS": "40"})
    assert r.exit_code == 0, r.output
    assert out.exists() and out.with_suffix(".wav").exists()
    ids = torch.from_numpy(__import__("numpy").load(out.with_suffix(".npy")))
    assert in_range_share(texts(ids, tok)) == 1.0
    assert json.loads(out.with_suffix(".json").read_text())["sampler_options"]["in_range"] is True
    r = CliRunner().invoke(app, ["reproduce", str(out.with_suffix(".json"))], env={"COLUMNS": "40"})
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "identical" in r.output.lower() or "match" in r.output.lower(), r.output


def test_in_range_is_refused_on_a_model_of_other_data(tok):
    model = GPT(GPTConfig(data={"kind": "tokens", "vocab_size": tok.vocab_size, "name": "tiny-shakespeare"}, context=64,
                          layers=1, width=32, heads=4, dropout=0.0))
    model.tokenizer = tok
    with pytest.raises(GenzooError, match="chorale"):
        model.sample(1, max_tokens=5, in_range=True)
