"""Text models end to end: train on pydocs through the CLI, the tokenizer beside the weights,
generation (streamed, constrained, verified), evaluation in bits per character, resume, and a
local Hugging Face Llama folder driven by `genzoo generate`."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.data import load_dataset

runner = CliRunner()
TINY = ["--set", "layers=2", "--set", "width=32", "--set", "heads=4", "--set", "context=32"]


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt") / "run"
    run("train", "gpt", "--data", "pydocs", "--steps", 60, "--batch-size", 16, "--val-every", 30, "--out", out,
        "--no-eval", *TINY)
    return out


def test_the_tokenizer_travels_with_the_weights(text_run):
    for folder in ("checkpoint", "best"):
        assert (text_run / folder / "tokenizer.json").is_file()
    model = api.load(text_run)
    train = load_dataset("pydocs", "train")
    assert model.tokenizer.encode("def f(x):") == train.meta["tokenizer"].encode("def f(x):")


def test_a_text_model_learns(text_run):
    rows = [json.loads(line) for line in (text_run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in rows if r.get("event") == "val"]
    vocab = api.load(text_run).config.vocab_size
    assert val[-1] < 0.8 * math.log(vocab), f"validation loss {val[-1]:.3f} vs untrained ~{math.log(vocab):.3f}"


def test_generate_streams_text_and_refuses_bad_options(text_run):
    out = run("generate", text_run, "The ", "--max-tokens", 20, "--seed", 0, "--no-store").output  # a record's id differs per run
    assert out.startswith("The ") and len(out) > 10
    again = run("generate", text_run, "The ", "--max-tokens", 20, "--seed", 0, "--no-store").output
    assert again == out  # seeded
    bad = run("generate", text_run, "x", "--temperature", -1, ok=False)
    assert bad.exit_code == 2 and "temperature" in bad.output and "Traceback" not in bad.output
    bad = run("generate", text_run.parent / "nowhere", "x", ok=False)
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_json_schema_constrained_output_is_valid(text_run, tmp_path):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
              "n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["name", "n"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    for seed in range(3):
        out = run("generate", text_run, "Answer: ", "--json-schema", tmp_path / "s.json", "--max-tokens", 200, "--seed", seed).output
        obj = json.loads(out.splitlines()[0].removeprefix("Answer: "))
        assert isinstance(obj["name"], str) and len(obj["name"]) <= 6 and 0 <= obj["n"] <= 99


def test_regex_constraint_and_verifier_report(text_run):
    out = run("generate", text_run, "", "--regex", "[0-9]{3}-[a-z]+", "--max-tokens", 30, "--seed", 2).output
    import re

    assert re.fullmatch(r"[0-9]{3}-[a-z]+", out.splitlines()[0])
    result = run("generate", text_run, "x = ", "--verify", "python", "--attempts", 3, "--max-tokens", 5, ok=False)
    assert "attempt" in result.output


def test_eval_reports_bits_per_character_beside_the_compressors(text_run):
    from genzoo.eval import evaluate

    m = evaluate(api.load(text_run), "pydocs", n_samples=4)
    assert 1.0 < m["bits_per_char"] < math.log2(m["parameters"])  # a bound, not a promise: finite and sane
    assert 1.0 < m["xz_bits_per_char"] < m["bz2_bits_per_char"] < 3.0
    assert m["bits_per_token"] > 0 and m["n_samples"] == 4


def test_resume_a_text_run_keeps_its_tokenizer(text_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    run("train", "gpt", "--data", "pydocs", "--steps", 70, "--out", copy, "--resume", "--no-eval")
    state = torch.load(copy / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 70 and (copy / "checkpoint" / "tokenizer.json").is_file()


def test_generate_drives_a_local_hugging_face_llama_like_transformers(tmp_path):
    pytest.importorskip("transformers")
    from hf_tiny import save_tiny_llama

    fast, hf = save_tiny_llama(tmp_path)
    ids = fast("hello world", return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        ref = hf.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=1)[0, ids.shape[1]:].tolist()
    ref = ref[: ref.index(1)] if 1 in ref else ref
    out = run("generate", tmp_path, "hello world", "--max-tokens", 8, "--greedy").output
    assert fast.decode(ref, skip_special_tokens=True) in out
