"""Generation past the context window (nanoGPT's crop): every text family goes on for as many
tokens as asked, the cached step of `genzoo generate` gives the tokens of full recomputation,
and the CLI reports the count."""

import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.data.tokenizer import TextTokenizer
from genzoo.models.gpt import GPT, GPTConfig
from genzoo.tasks.textgen import generate_text

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nKING:\nIt is the east, and Juliet is the sun.\n"


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(TEXT, kind="char")


def tiny(tok, arch="gpt", context=64, layers=1) -> GPT:
    """A tiny model with weights larger than the init (greedy text varies) that never ends a text:
    eos (and every control token) gets logit 0 while some other token is almost surely positive."""
    torch.manual_seed(0)
    cfg = dict(architecture=arch, context=context, layers=layers, width=32, heads=4, dropout=0.0, tie_embeddings=False)
    model = GPT(GPTConfig(data={"kind": "tokens", "vocab_size": tok.vocab_size}, **cfg, **({"kv_heads": 2} if arch == "llama" else {})))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
        model.lm_head.weight[tok.special_ids] = 0  # eos and <unk> (which generation never samples anyway)
    model.tokenizer = tok
    return model.eval()


def crop_reference(model, prompt: list[int], n: int) -> list[int]:
    """nanoGPT's sample.py, greedy: the whole last-`context` window through the model every step."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq[-model.config.context:]]))[0, -1]
            seq.append(int(logits.argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_500_tokens_from_a_64_token_model(tok, arch):
    model = tiny(tok, arch, context=64)
    out = generate_text(model, tok, ["ROMEO:"], max_tokens=500, temperature=0)[0]
    assert len(out.ids) == 500 and out.stop_reason == "length"
    sampled = generate_text(model, tok, ["ROMEO:"], max_tokens=500, seed=3)[0]
    assert len(sampled.ids) == 500 or sampled.stop_reason == "eos"


@pytest.mark.parametrize("arch", ["gpt", "llama"])
@pytest.mark.parametrize("layers", [1, 2])
def test_cached_and_uncached_paths_agree_past_the_window(tok, arch, layers):
    model, seen = tiny(tok, arch, context=16, layers=layers), set()
    for prompt in ("KING:", TEXT[:24]):  # the second is longer than the context: cropped like the sequence
        ids = tok.encode(prompt)
        cached = generate_text(model, tok, [prompt], max_tokens=60, temperature=0)[0].ids
        assert cached == crop_reference(model, ids, 60)
        assert cached == model.generate_tokens([ids], 60, use_cache=False)[0] == model.generate_tokens([ids], 60)[0]
        seen.update(cached)
    assert len(seen) > 2  # not one token repeated throughout


def test_cli_generate_reports_every_token_past_the_context(tok, tmp_path):
    tiny(tok, "gpt", context=32).save_pretrained(tmp_path / "run")
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "KING:", "--max-tokens", "200", "--seed", "1",
                                      "--greedy", "--no-store"])
    assert result.exit_code == 0, result.output
    assert "200 tokens" in result.output and "context" not in result.output
