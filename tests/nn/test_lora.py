"""LoRA adapters (genzoo.nn.lora) and `genzoo finetune`: the base weights stay bitwise untouched,
the adapted model starts exactly at the base, merged equals unmerged, only adapter weights are
saved, an adapter reloads onto its base and is refused on another, and fine-tuning on a small
text file lowers the validation loss; the CLI runs end to end and its merged model generates."""

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.data import Dataset
from genzoo.core.errors import GenzooError
from genzoo.nn.lora import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoRALinear, add_lora, base_state_dict, file_sha256,
                         load_adapter, lora_modules, lora_state_dict, merge_lora, save_adapter)
from genzoo.models.gpt import GPT, GPTConfig
from genzoo.train import Trainer, TrainConfig

runner = CliRunner()
TINY = ["--set", "layers=2", "--set", "width=32", "--set", "heads=4", "--set", "context=32"]
VOCAB = 23


def tiny_gpt(architecture="gpt", seed=0, dropout=0.1):
    torch.manual_seed(seed)
    kv = {"kv_heads": 2} if architecture == "llama" else {}
    return GPT(GPTConfig(architecture=architecture, vocab_size=VOCAB, layers=2, width=32, heads=4, context=16,
                         dropout=dropout, **kv))


def tokens(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    pattern = torch.randint(VOCAB, (37,), generator=g)
    return pattern.repeat(n // 37 + 1)[:n]  # a learnable (periodic) stream


def ids(seed=1):
    return torch.randint(VOCAB, (3, 16), generator=torch.Generator().manual_seed(seed))


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def train_adapters(model, steps=8):
    data = Dataset("periodic", "train", tokens(), meta={"vocab_size": VOCAB, "eos_id": 0}, kind="tokens")
    # weight decay on: frozen base matrices must not decay either
    cfg = TrainConfig(steps=steps, batch_size=8, lr=1e-2, weight_decay=0.1, warmup_steps=0, ema_decay=None,
                      val_every=0, device="cpu", progress=False)
    Trainer(model, data, cfg).fit()
    return model.eval()


@pytest.mark.parametrize("architecture", ["gpt", "llama"])
def test_adapters_start_at_the_base_and_training_leaves_the_base_bitwise_untouched(architecture):
    model, x = tiny_gpt(architecture), ids()
    before = logits(model, x)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = add_lora(model, rank=4, alpha=8, targets="attention,mlp", dropout=0.1)
    assert trainable and all(".lora_A" in n or ".lora_B" in n for n in trainable)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(trainable)
    assert len(lora_modules(model)) == 2 * 4  # qkv, attn.proj, fc/gate_up, mlp.proj per block
    assert not isinstance(model.lm_head, LoRALinear) and not isinstance(model.tok_emb, LoRALinear)
    assert torch.equal(logits(model, x), before)  # B = 0: exactly the base

    train_adapters(model)
    after = base_state_dict(model)
    assert after.keys() == base.keys()
    assert all(torch.equal(after[k], base[k]) for k in base), "a base weight changed"
    assert any(m.lora_B.abs().sum() > 0 for m in lora_modules(model).values())
    assert not torch.allclose(logits(model, x), before, atol=1e-4)  # the adapters did learn something


@pytest.mark.parametrize("architecture", ["gpt", "llama"])
def test_merged_equals_unmerged(architecture):
    model, x = tiny_gpt(architecture), ids()
    add_lora(model, rank=4, alpha=16)
    train_adapters(model)
    unmerged = logits(model, x)
    merge_lora(model)
    assert not lora_modules(model)
    assert (logits(model, x) - unmerged).abs().max() < 1e-5
    fresh = tiny_gpt(architecture, seed=5)
    fresh.load_state_dict(model.state_dict())  # a plain GPT state dict again: save_pretrained works unchanged
    assert (logits(fresh, x) - unmerged).abs().max() < 1e-5


def test_adapter_files_hold_only_adapter_weights_and_reload_onto_the_base(tmp_path):
    from safetensors.torch import load_file

    model, x = tiny_gpt(), ids()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "base")
    add_lora(model, rank=2, alpha=4, targets="attention")
    train_adapters(model)
    tuned = logits(model, x)
    save_adapter(model, tmp_path / "adapter", {"path": str(tmp_path / "base")})

    saved = load_file(str(tmp_path / "adapter" / ADAPTER_WEIGHTS))
    assert saved.keys() == lora_state_dict(model).keys()
    assert all(k.endswith((".lora_A", ".lora_B")) for k in saved) and not set(saved) & set(base_state)
    size = (tmp_path / "adapter" / ADAPTER_WEIGHTS).stat().st_size
    assert size < (tmp_path / "base" / "model.safetensors").stat().st_size / 5
    config = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert config["rank"] == 2 and config["alpha"] == 4 and config["targets"] == ["attn.qkv", "attn.proj"]

    fresh = GPT.from_pretrained(tmp_path / "base")
    load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(logits(fresh, x), tuned)


def test_load_adapter_refuses_another_base_a_wrong_shape_and_missing_files(tmp_path):
    model = tiny_gpt()
    add_lora(model, rank=4, alpha=8)
    train_adapters(model, steps=2)
    save_adapter(model, tmp_path / "adapter")

    with pytest.raises(GenzooError, match="wrong base"):
        load_adapter(tiny_gpt(seed=1), tmp_path / "adapter")  # other weights: sha256 mismatch
    other_rank = tiny_gpt()
    add_lora(other_rank, rank=2, alpha=8)
    with pytest.raises(GenzooError, match="shape"):
        load_adapter(other_rank, tmp_path / "adapter")
    with pytest.raises(GenzooError, match="adapter_config.json"):
        load_adapter(tiny_gpt(), tmp_path)  # not an adapter folder
    (tmp_path / "adapter" / ADAPTER_WEIGHTS).unlink()
    with pytest.raises(GenzooError, match=ADAPTER_WEIGHTS):
        load_adapter(tiny_gpt(), tmp_path / "adapter")
    with pytest.raises(GenzooError, match="unknown LoRA target"):
        add_lora(tiny_gpt(), targets="embedding")


# ---- genzoo finetune end to end --------------------------------------------------------------
def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


WORDS = ("the quick brown fox jumps over lazy dog a an and of to in is was he she it that for on with as his her they "
         "at by this had not are but from or have one all were we when your can said there use each which do how their "
         "if will up other about out many then them these so some would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did get come").split()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A base GPT trained briefly on English-like text (random sentences over 100 common words), and the
    user's text: one sentence over and over. (A base trained for only 20 steps keeps its frozen,
    tied embedding near its N(0, 0.02) start, which caps the logits any adapter can reach:
    measured, LoRA then moves the loss 3.33 -> 3.01 only, while full fine-tuning reaches 0.28.)"""
    d = tmp_path_factory.mktemp("lora")
    rng = random.Random(0)
    (d / "base.txt").write_text("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + ". "
                                        for _ in range(600)))
    (d / "mine.txt").write_text("the quick brown fox jumps over the lazy dog. " * 300)
    run("train", "gpt", "--data", d / "base.txt", "--steps", 60, "--lr", 1e-2, "--batch-size", 32, "--no-eval",
        "--out", d / "base", *TINY)
    return d


def test_finetune_cli_end_to_end(corpora, tmp_path):
    base_files = {p.relative_to(corpora / "base"): file_sha256(p) for p in (corpora / "base").rglob("*") if p.is_file()}
    out = tmp_path / "ft"
    result = run("finetune", corpora / "base", "--data", corpora / "mine.txt", "--lora-rank", 8, "--steps", 60,
                 "--batch-size", 16, "--lr", 1e-2, "--out", out, "--merge", "--device", "cpu")
    assert "validation loss" in result.output and "trainable" in result.output
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["steps"] == 60
    assert summary["val_loss_after"] < 0.7 * summary["val_loss_before"], summary  # measured: 2.24 -> 1.14
    assert summary["trainable_parameters"] < 0.5 * summary["total_parameters"]
    assert (out / ADAPTER_WEIGHTS).is_file() and (out / ADAPTER_CONFIG).is_file()
    assert not (out / "model.safetensors").exists()  # only the adapter at the top level
    config = json.loads((out / ADAPTER_CONFIG).read_text())
    assert config["base"]["sha256"]["model.safetensors"] == file_sha256(corpora / "base" / "best" / "model.safetensors") \
        or config["base"]["sha256"]["model.safetensors"] == file_sha256(corpora / "base" / "checkpoint" / "model.safetensors")
    # the base run is untouched, file for file
    after = {p.relative_to(corpora / "base"): file_sha256(p) for p in (corpora / "base").rglob("*") if p.is_file()}
    assert after == base_files

    gen = run("generate", out / "merged", "x", "--max-tokens", 5)
    assert gen.output.startswith("x")

    # the adapter on the base reproduces the merged model
    from genzoo.tasks.finetune import load_finetuned
    from genzoo.tasks.textgen import load_text_model

    adapted, tok = load_finetuned(corpora / "base", out)
    merged, _ = load_text_model(out / "merged")
    x = torch.tensor([tok.encode("the quick brown fox")])
    assert (logits(adapted, x) - logits(merged, x)).abs().max() < 1e-5


def test_finetune_cli_refuses_clearly(corpora, tmp_path):
    bad = run("finetune", corpora / "base", "--data", corpora / "mine.txt", "--out", tmp_path / "a", ok=False)
    assert bad.exit_code == 2 and "--steps" in bad.output
    bad = run("finetune", corpora / "nowhere", "--data", corpora / "mine.txt", "--steps", 2, ok=False)
    assert bad.exit_code == 2 and "does not exist" in bad.output
    bad = run("finetune", corpora / "base", "--data", corpora / "mine.txt", "--steps", 2, "--targets", "nope",
              "--out", tmp_path / "b", ok=False)
    assert bad.exit_code == 2 and "unknown LoRA target" in bad.output
    bad = run("finetune", corpora / "base", "--data", corpora / "mine.txt", "--steps", 2, "--out", corpora / "base" / "x",
              ok=False)
    assert bad.exit_code == 2 and "inside the base" in bad.output


def test_finetune_a_local_hugging_face_llama(tmp_path):
    """A Hugging Face folder as the base: its own tokenizer reads the text, its files stay untouched,
    and the merged model (genzoo format) generates."""
    pytest.importorskip("transformers")
    from hf_tiny import save_tiny_llama

    from genzoo.tasks.finetune import finetune, load_finetuned
    from genzoo.tasks.textgen import load_text_model

    hf_dir = tmp_path / "hf"
    save_tiny_llama(hf_dir)
    before = {p.name: file_sha256(p) for p in hf_dir.iterdir() if p.is_file()}
    (tmp_path / "mine.txt").write_text("hello world, the lazy dog jumps. " * 200)

    result = finetune(hf_dir, str(tmp_path / "mine.txt"), rank=4, alpha=8, steps=30, lr=1e-2, batch_size=8,
                      out=tmp_path / "ft", merge=True, device="cpu", window=32, progress=False)
    assert result.val_loss_after < result.val_loss_before
    assert {p.name: file_sha256(p) for p in hf_dir.iterdir() if p.is_file()} == before
    config = json.loads((tmp_path / "ft" / ADAPTER_CONFIG).read_text())
    assert config["base"]["kind"] == "huggingface" and "model.safetensors" in config["base"]["sha256"]
    assert "blocks.0.mlp.gate_up" in config["modules"]  # SwiGLU's fused gate/up projection

    adapted, tokenizer = load_finetuned(hf_dir, tmp_path / "ft")
    merged, _ = load_text_model(tmp_path / "ft" / "merged")
    x = torch.tensor([tokenizer.encode("hello world")])
    assert (logits(adapted, x) - logits(merged, x)).abs().max() < 1e-5
    assert run("generate", tmp_path / "ft" / "merged", "hello", "--max-tokens", 5).output.startswith("hello")
