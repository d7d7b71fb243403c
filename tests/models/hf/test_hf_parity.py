"""Hugging Face checkpoints load into genzoo's GPT: logits and greedy continuations equal transformers'.

Tiny randomly initialised Llama, Mistral and Qwen2 models are saved locally with safetensors,
loaded with ``load_hf_causal_lm`` (no transformers involved), and compared with transformers
itself (a test/bench-only dependency).
"""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from genzoo.core.errors import GenzooError  # noqa: E402
from genzoo.models.hf.loader import load_hf_causal_lm  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=300, max_position_embeddings=128)


def hf_model(kind: str, **overrides):
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}[kind]
    torch.manual_seed(0)
    config = cls[0](**{**TINY, **overrides})
    model = cls[1](config).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so that logits and continuations vary
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0, 0.15)
    return model


CASES = {
    "llama": ("llama", {}),
    "llama-tied": ("llama", {"tie_word_embeddings": True}),
    "llama-biases-theta": ("llama", {"attention_bias": True, "mlp_bias": True, "rope_theta": 500000.0}),
    "llama3-rope": ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    "mistral": ("mistral", {"sliding_window": 64}),
    "qwen2": ("qwen2", {}),
    "qwen2-tied": ("qwen2", {"tie_word_embeddings": True}),
}


@pytest.fixture(params=sorted(CASES))
def pair(request, tmp_path):
    kind, overrides = CASES[request.param]
    hf = hf_model(kind, **overrides)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    return hf, load_hf_causal_lm(tmp_path), tmp_path


def test_logits_equal(pair):
    hf, ours, _ = pair
    ids = torch.randint(300, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    assert expected.abs().max() > 1  # not a degenerate comparison
    assert (got - expected).abs().max().item() < 1e-4


def test_greedy_continuations_equal(pair):
    hf, ours, _ = pair
    prompts = [[5, 17, 42, 99, 7, 250], [3, 1, 4, 1, 5, 9]]
    hf.generation_config.eos_token_id = None  # exactly 10 new tokens, no early stop
    hf.generation_config.pad_token_id = 0
    with torch.no_grad():
        expected = hf.generate(torch.tensor(prompts), do_sample=False, max_new_tokens=10, min_new_tokens=10).tolist()
    expected = [row[len(p):] for row, p in zip(expected, prompts)]
    assert ours.generate_tokens(prompts, 10) == expected
    assert ours.generate_tokens(prompts, 10, use_cache=False) == expected
    assert len({tuple(r) for r in expected}) == 2 and any(len(set(r)) > 2 for r in expected)  # varied continuations


def test_left_padded_batch_equals_each_prompt_alone(pair):
    _, ours, _ = pair
    prompts = [[5, 17, 42, 99, 7, 250, 11, 12], [3, 1, 4]]
    together = ours.generate_tokens(prompts, 8)
    assert together == [ours.generate_tokens([p], 8)[0] for p in prompts]


def test_sharded_checkpoint(tmp_path):
    hf = hf_model("llama")
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = load_hf_causal_lm(tmp_path)
    ids = torch.randint(300, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max().item() < 1e-4


def test_bf16_checkpoint_loads_as_float32(tmp_path):
    hf = hf_model("qwen2").to(torch.bfloat16)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_hf_causal_lm(tmp_path)
    assert ours.tok_emb.weight.dtype == torch.float32
    assert torch.equal(ours.tok_emb.weight, hf.model.embed_tokens.weight.float())


def test_mistral_context_capped_at_sliding_window(tmp_path):
    hf_model("mistral", sliding_window=32).save_pretrained(tmp_path, safe_serialization=True)
    assert load_hf_causal_lm(tmp_path).config.context == 32
    with pytest.raises(GenzooError, match="sliding window"):
        load_hf_causal_lm(tmp_path, context=64)
    with pytest.raises(GenzooError, match="context"):
        load_hf_causal_lm(tmp_path)(torch.zeros(1, 33, dtype=torch.long))


def _edit_config(folder, **changes):
    f = folder / "config.json"
    cfg = json.loads(f.read_text())
    cfg.update(changes)
    f.write_text(json.dumps(cfg))


def test_refusals(tmp_path):
    hf_model("llama").save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(GenzooError, match="not a folder"):
        load_hf_causal_lm(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenzooError, match="no config.json"):
        load_hf_causal_lm(tmp_path / "empty")
    _edit_config(tmp_path, model_type="gpt_neox")
    with pytest.raises(GenzooError, match="llama, mistral, qwen2"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, model_type="llama", rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4})
    with pytest.raises(GenzooError, match="yarn"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, rope_parameters={"rope_type": "default", "rope_theta": 1e4}, hidden_act="gelu")
    with pytest.raises(GenzooError, match="hidden_act"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, hidden_act="silu", intermediate_size=128)
    with pytest.raises(GenzooError, match="shape"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, intermediate_size=160, num_hidden_layers=3)
    with pytest.raises(GenzooError, match="lacks weight"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=1)
    with pytest.raises(GenzooError, match="does not use"):
        load_hf_causal_lm(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=2)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(GenzooError, match="no \\*.safetensors"):
        load_hf_causal_lm(tmp_path)
