"""Adapter folders are models (genzoo.runs.adapters): `genzoo generate ADAPTER` finds the base its
adapter_config.json names, checks its sha256 and applies the adapter, with the merged model's
outputs; a moved or changed base is refused with a message that says how to fix it; the adapters
over a base are listed (`genzoo adapters BASE`) and chosen by name (`generate BASE --adapter NAME`)."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError

runner = CliRunner()
TINY = ["--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32"]


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    else:
        assert result.exit_code == 2, result.output + repr(result.exception)
    return result


def finetune(base, data, out, *extra):
    return run("finetune", base, "--data", data, "--lora-rank", 4, "--steps", 4, "--batch-size", 8, "--lr", 1e-2,
               "--device", "cpu", "--out", out, *extra)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny char GPT in d/gpt and an adapter of it (with its merged model) in d/lora."""
    d = tmp_path_factory.mktemp("adapters")
    (d / "plays.txt").write_text("KING:\nthou art the king of night.\n\nQUEEN:\nmy lord good sir.\n\n" * 80)
    (d / "mine.txt").write_text("KING:\nthe night is good my lord.\n\n" * 60)
    run("train", "gpt", "--data", d / "plays.txt", "--tokenizer", "char", "--steps", 6, "--batch-size", 8,
        "--no-eval", "--out", d / "gpt", *TINY)
    finetune(d / "gpt", d / "mine.txt", d / "lora", "--merge")
    return d


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_generate_from_the_adapter_folder(made):
    result = run("generate", made / "lora", "KING:", "--max-tokens", 10, "--no-store", "--seed", 1)
    assert result.output.startswith("KING:")
    by_name = run("generate", made / "gpt", "KING:", "--adapter", "lora", "--max-tokens", 10, "--no-store", "--seed", 1)
    assert by_name.output == result.output  # the same model either way


def test_adapter_loads_with_the_merged_models_outputs(made):
    from genzoo import api
    from genzoo.nn.lora import lora_modules, merge_lora
    from genzoo.runs.load import load
    from genzoo.tasks.finetune import load_finetuned

    adapted = load(made / "lora")
    assert not lora_modules(adapted) and adapted.adapter["path"] == str((made / "lora").resolve())
    wrapped, tokenizer = load_finetuned(made / "gpt", made / "lora")
    x = torch.tensor([tokenizer.encode("KING:\nthe night")])
    merged = merge_lora(wrapped)
    assert (logits(adapted, x) - logits(merged, x)).abs().max() < 1e-5
    assert (logits(api.load(made / "lora"), x) - logits(load(made / "lora" / "merged"), x)).abs().max() < 1e-5
    base = load(made / "gpt")
    assert (logits(adapted, x) - logits(base, x)).abs().max() > 1e-4  # the adapter does change the model


def test_a_moved_base_is_refused_clearly_and_can_be_given(made, tmp_path):
    shutil.copytree(made / "gpt", tmp_path / "gpt")
    finetune(tmp_path / "gpt", made / "mine.txt", tmp_path / "lora")
    (tmp_path / "gpt").rename(tmp_path / "gpt-moved")
    bad = run("generate", tmp_path / "lora", "KING:", "--max-tokens", 3, "--no-store", ok=False)
    message = " ".join(bad.output.split())
    assert f"expected at {(tmp_path / 'gpt').resolve()}" in message and "--adapter" in message and "base.path" in message
    with pytest.raises(GenzooError, match="is missing"):
        from genzoo.runs.load import load

        load(tmp_path / "lora")
    good = run("generate", tmp_path / "gpt-moved", "KING:", "--adapter", tmp_path / "lora", "--max-tokens", 3, "--no-store")
    assert good.output.startswith("KING:")


def test_a_base_and_adapter_moved_together_still_load(made, tmp_path):
    shutil.copytree(made / "gpt", tmp_path / "a" / "gpt")
    finetune(tmp_path / "a" / "gpt", made / "mine.txt", tmp_path / "a" / "lora")
    (tmp_path / "a").rename(tmp_path / "b")  # the absolute path is gone; the path relative to the adapter holds
    assert run("generate", tmp_path / "b" / "lora", "KING:", "--max-tokens", 3, "--no-store").output.startswith("KING:")


def test_a_changed_base_is_refused_clearly(made, tmp_path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(made / "gpt", tmp_path / "gpt")
    finetune(tmp_path / "gpt", made / "mine.txt", tmp_path / "lora")
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    weights = tmp_path / "gpt" / "best" / "model.safetensors"
    assert config["base"]["checkpoint"] == str(weights.parent)
    state = load_file(str(weights))
    name = next(iter(state))
    state[name] = state[name] + 0.01
    save_file(state, str(weights))
    bad = run("generate", tmp_path / "lora", "KING:", "--max-tokens", 3, "--no-store", ok=False)
    message = " ".join(bad.output.split())
    assert "changed since adapter" in message and "sha256" in message and config["base"]["sha256"]["model.safetensors"][:16] in message
    listed = json.loads(run("adapters", tmp_path / "gpt", "--json").output)
    assert [a["ok"] for a in listed] == [False]


def test_adapters_over_a_base_are_listed_and_chosen_by_name(made, tmp_path):
    shutil.copytree(made / "gpt", tmp_path / "gpt")
    shutil.copytree(made / "gpt", tmp_path / "other")  # the same weights, another base folder
    finetune(tmp_path / "gpt", made / "mine.txt", tmp_path / "shakespeare")
    finetune(tmp_path / "gpt", made / "plays.txt", tmp_path / "adapters" / "plays")
    finetune(tmp_path / "other", made / "mine.txt", tmp_path / "not-mine")
    listed = json.loads(run("adapters", tmp_path / "gpt", "--json").output)
    assert [(a["name"], a["rank"], a["steps"], a["ok"]) for a in listed] == [("adapters/plays", 4, 4, True), ("shakespeare", 4, 4, True)]
    assert "shakespeare" in run("adapters", tmp_path / "gpt").output
    chosen = run("generate", tmp_path / "gpt", "KING:", "--adapter", "plays", "--max-tokens", 5, "--no-store", "--seed", 2)
    direct = run("generate", tmp_path / "adapters" / "plays", "KING:", "--max-tokens", 5, "--no-store", "--seed", 2)
    assert chosen.output == direct.output
    bad = run("generate", tmp_path / "gpt", "KING:", "--adapter", "nope", "--no-store", ok=False)
    assert "adapters/plays, shakespeare" in " ".join(bad.output.split())


def test_info_describes_an_adapter_and_finetune_refuses_an_adapter_as_base(made, tmp_path):
    info = json.loads(run("info", made / "lora").output)
    assert info["family"] == "gpt" and info["adapter"]["base"]["path"] == str((made / "gpt").resolve())
    bad = run("finetune", made / "lora", "--data", made / "mine.txt", "--steps", 2, "--out", tmp_path / "x", ok=False)
    assert "is an adapter" in bad.output


def test_an_adapter_over_a_hugging_face_folder_is_a_model_too(tmp_path):
    pytest.importorskip("transformers")
    from hf_tiny import save_tiny_llama

    from genzoo.nn.lora import merge_lora
    from genzoo.runs.load import load
    from genzoo.tasks.finetune import load_finetuned

    save_tiny_llama(tmp_path / "hf")
    (tmp_path / "mine.txt").write_text("hello world, the lazy dog jumps. " * 100)
    run("finetune", tmp_path / "hf", "--data", tmp_path / "mine.txt", "--lora-rank", 4, "--steps", 3, "--batch-size", 4,
        "--window", 16, "--device", "cpu", "--out", tmp_path / "ft")
    adapted = load(tmp_path / "ft")
    wrapped, tokenizer = load_finetuned(tmp_path / "hf", tmp_path / "ft")
    x = torch.tensor([tokenizer.encode("hello world")])
    assert (logits(adapted, x) - logits(merge_lora(wrapped), x)).abs().max() < 1e-5
    assert run("generate", tmp_path / "ft", "hello", "--max-tokens", 4, "--no-store").output.startswith("hello")
    assert [a["name"] for a in json.loads(run("adapters", tmp_path / "hf", "--json").output)] == ["ft"]


def test_sample_and_eval_take_an_adapter_folder(made):
    from genzoo import api
    from genzoo.nn.lora import file_sha256

    gen = api.generate(made / "lora", 2, seed=0)  # what `genzoo sample` runs: its manifest names the adapter
    assert gen.outputs.shape[0] == 2 and gen.manifest["checkpoint"] == str((made / "lora").resolve())
    assert gen.manifest["checkpoint_sha256"] == file_sha256(made / "lora" / "adapter_model.safetensors")
    result = run("eval", made / "lora", "--n", 4)
    assert "bits" in result.output and json.loads((made / "lora" / "eval.json").read_text())["family"] == "gpt"
