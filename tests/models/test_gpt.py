"""GPT family (gpt and llama architectures): causality, KV cache = recomputation, padding, gradients,
checkpoints with tied weights, exact likelihood, learning, dropout from the batch's stream, refusals."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genzoo.core.errors import GenzooError
from genzoo.models.base import LOG_PROB, SAMPLE, Batch, BatchRandom, GenerativeModel, Updater, decay_groups
from genzoo.models.gpt import GPT, GPTConfig, greedy, temperature_sampler

VOCAB = 40
ARCHS = ["gpt", "llama"]


def tokens_spec(vocab=VOCAB, window=17):
    return {"name": "test", "kind": "tokens", "shape": [window], "levels": None, "num_classes": 0, "vocab_size": vocab}


def build(architecture="gpt", vocab=VOCAB, context=32, **overrides) -> GPT:
    torch.manual_seed(0)
    cfg = dict(architecture=architecture, context=context, layers=2, width=32, heads=4, dropout=0.1)
    if architecture == "llama":
        cfg["kv_heads"] = 2
    cfg.update(overrides)
    return GPT(GPTConfig(data=tokens_spec(vocab), **cfg))


def spread(model: GPT, std=0.3) -> GPT:
    """Weights larger than the 0.02 init, so that logits differ clearly between tokens and greedy
    continuations vary (a freshly initialised model predicts a near-uniform distribution)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else std * torch.randn_like(p))
    return model.eval()


def batch(x, step=0, seed=0):
    return Batch(x, None, BatchRandom(seed, step, len(x), 0))


def ids(n, t, seed=0, vocab=VOCAB):
    return torch.randint(vocab, (n, t), generator=torch.Generator().manual_seed(seed))


# ---- structure --------------------------------------------------------------
def test_config_resolution_and_capabilities():
    gpt, llama = build("gpt").config, build("llama").config
    assert (gpt.tie_embeddings, gpt.qkv_bias, gpt.kv_heads, gpt.mlp_hidden, gpt.head_dim) == (True, True, 4, 128, 8)
    assert (llama.tie_embeddings, llama.qkv_bias, llama.kv_heads, llama.mlp_hidden) == (False, False, 2, 96)
    assert gpt.vocab_size == VOCAB  # from the data spec
    assert {SAMPLE, LOG_PROB} <= GPT.capabilities and GPT.likelihood == "exact"
    assert set(GPT.sampler_options()) == {"temperature", "max_tokens", "in_range"}  # in_range: chorale models only
    d = GPT.defaults_for(tokens_spec(window=65))
    assert (d.context, d.vocab_size, d.layers, d.width) == (64, VOCAB, 4, 128)
    assert isinstance(build("llama").norm_f, torch.nn.Module) and build("gpt").pos_emb is not None
    assert build("llama").pos_emb is None and build("gpt").rope is None


@pytest.mark.parametrize("bad, match", [
    ({"architecture": "rnn"}, "architecture"),
    ({"heads": 4, "kv_heads": 3}, "divide"),
    ({"width": 30, "heads": 4}, "divisible"),
    ({"dropout": 1.0}, "dropout"),
])
def test_config_refusals(bad, match):
    with pytest.raises(GenzooError, match=match):
        build(**bad)


def test_vocabulary_size_is_required():
    with pytest.raises(GenzooError, match="vocab"):
        GPT(GPTConfig(data={"kind": "tokens"}))
    assert GPT(GPTConfig(data={"kind": "tokens"}, vocab_size=7, layers=1, width=8, heads=2)).config.vocab_size == 7


# ---- the network ---------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_causality(arch):
    model = spread(build(arch))
    x = ids(2, 20)
    t = 9
    y = x.clone()
    y[:, t + 1:] = ids(2, 20 - t - 1, seed=5)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])  # later positions do see the change


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_logits_equal_full_forward(arch):
    model = spread(build(arch))
    x = ids(2, 20)
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache()
        parts = [model(x[:, :7], cache), model(x[:, 7:12], cache)]  # prefill, then a chunk at start_pos 7
        parts += [model(x[:, t : t + 1], cache) for t in range(12, 20)]  # one token at a time
    assert cache.length == 20
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padding_equals_unpadded(arch):
    model = spread(build(arch))
    x = ids(1, 10)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), x], dim=1)
    with torch.no_grad():
        alone = model(x)
        with_pad = model(padded, left_pad=torch.tensor([4]))
    assert torch.allclose(with_pad[:, 4:], alone, atol=1e-5)


def test_gqa_without_sdpa_support_repeats_kv(monkeypatch):
    """torch < 2.5 has no ``enable_gqa``: k/v heads are repeated instead, with the same result."""
    import genzoo.nn.transformer as transformer

    model = spread(build("llama"))
    x = ids(2, 12)
    with torch.no_grad():
        native = model(x)
        monkeypatch.setattr(transformer, "_SDPA_GQA", False)
        repeated = model(x)
    assert torch.allclose(native, repeated, atol=1e-5)


def test_generation_in_bfloat16_and_under_autocast():
    model = spread(build("llama", tie_embeddings=False))
    prompts = [[1, 2, 3, 4], [5, 6]]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 weights, bf16 activations (cache follows them)
        assert model.generate_tokens(prompts, 6) == model.generate_tokens(prompts, 6, use_cache=False)
    half = model.to(torch.bfloat16)
    assert len(half.generate_tokens(prompts, 6)[1]) == 6 and half(ids(1, 5)).dtype == torch.bfloat16


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("context", [32, 12])  # 12: the sequence outgrows the context and is cropped
def test_kv_cache_generation_equals_recomputation(arch, context):
    # untied: random tied weights make every greedy step repeat the last token (h . E^T peaks at its own row)
    model = spread(build(arch, context=context, tie_embeddings=False))
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10]]
    cached = model.generate_tokens(prompts, 20, use_cache=True)
    recomputed = model.generate_tokens(prompts, 20, use_cache=False)
    assert cached == recomputed
    assert all(len(r) == 20 for r in cached) and cached[0] != cached[1]
    assert len(set(cached[0] + cached[1])) > 2  # not one token repeated throughout


def test_generation_stops_and_streams():
    model = spread(build("llama"))
    prompts = [[1, 2, 3], [4, 5]]
    free = model.generate_tokens(prompts, 12)
    stop = free[0][4]
    seen = []
    stopped = model.generate_tokens(prompts, 12, stop={stop}, on_token=lambda tok, active: seen.append(tok.tolist()))
    assert stopped[0] == free[0][: free[0].index(stop) + 1]
    assert stopped[1] == free[1][: free[1].index(stop) + 1] if stop in free[1] else stopped[1] == free[1]
    assert [s[0] for s in seen[: len(stopped[0])]] == stopped[0]
    predicate = model.generate_tokens(prompts, 12, stop=lambda row: len(row) == 3)
    assert predicate == [r[:3] for r in free]
    with pytest.raises(GenzooError, match="at least one token"):
        model.generate_tokens([[]], 3)
    with pytest.raises(GenzooError, match="0..39"):
        model.generate_tokens([[VOCAB]], 3)


def test_sampling_is_seeded_and_shaped():
    model = spread(build("gpt"), std=0.1)
    a = model.sample(3, generator=torch.Generator().manual_seed(0), max_tokens=9)
    b = model.sample(3, generator=torch.Generator().manual_seed(0), max_tokens=9)
    c = model.sample(3, generator=torch.Generator().manual_seed(1), max_tokens=9)
    assert a.shape == (3, 9) and a.dtype == torch.long and torch.equal(a, b) and not torch.equal(a, c)
    assert model.sample(2).shape == (2, 17)  # the data's window length by default
    assert torch.equal(model.sample(2, temperature=0.0, max_tokens=5), torch.tensor(model.generate_tokens([[0]] * 2, 5)))
    with pytest.raises(GenzooError, match="unconditionally"):
        model.sample(2, condition=[1, 2])
    with pytest.raises(GenzooError, match="temperature"):
        temperature_sampler(-1.0)
    assert greedy(torch.tensor([[0.0, 2.0, 1.0]]), None).tolist() == [1]


# ---- training, likelihood, checkpoints ---------------------------------------------
@pytest.mark.parametrize("arch, tie", [("gpt", True), ("gpt", False), ("llama", False), ("llama", True)])
def test_every_parameter_gets_a_gradient(arch, tie):
    model = build(arch, tie_embeddings=tie, qkv_bias=True)
    model.train()
    model.loss(batch(ids(4, 17))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_decay_groups_leave_embeddings_norms_and_biases_alone():
    model = build("gpt")  # tied: the output layer is the embedding
    decayed = {id(p) for g in decay_groups(model, 0.1) if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names and all(n.endswith("weight") and ("attn" in n or "mlp" in n) for n in names)
    assert "tok_emb.weight" not in names and "pos_emb.weight" not in names


@pytest.mark.parametrize("arch, tie", [("gpt", True), ("gpt", False), ("llama", False), ("llama", True)])
def test_save_load_round_trip(tmp_path, arch, tie):
    model = spread(build(arch, tie_embeddings=tie))
    model.save_pretrained(tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert ("lm_head.weight" in stored) == (not tie)
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    x = ids(2, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert GenerativeModel.read_meta(tmp_path)["family"] == "gpt"


@pytest.mark.parametrize("arch", ARCHS)
def test_log_prob_is_the_summed_cross_entropy(arch):
    model = spread(build(arch), std=0.1)
    x = ids(5, 12)
    lp = model.log_prob(x, batch_size=2)
    with torch.no_grad():
        logits = model(x[:, :-1])
    by_hand = torch.stack([-sum(F.cross_entropy(logits[i, t], x[i, t + 1]) for t in range(11)) for i in range(5)])
    assert lp.shape == (5,) and torch.allclose(lp, by_hand, atol=1e-4)
    model.eval()
    with torch.no_grad():
        assert math.isclose(float(-lp.sum() / (5 * 11)), float(model.loss(batch(x))), rel_tol=1e-5)
    with pytest.raises(GenzooError, match="0..39"):
        model.log_prob(torch.full((1, 4), VOCAB))
    with pytest.raises(GenzooError, match="context"):
        model.log_prob(ids(1, 40))
    with pytest.raises(GenzooError, match="shape"):
        model.log_prob(ids(1, 5)[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_dropout_masks_come_from_the_batch(arch):
    model = build(arch, dropout=0.3)
    model.train()
    x = ids(4, 17)
    torch.manual_seed(1)
    a = model.loss(batch(x, step=3))
    torch.manual_seed(2)
    b = model.loss(batch(x, step=3))
    c = model.loss(batch(x, step=4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    model.eval()
    assert torch.equal(model.loss(batch(x, step=3)), model.loss(batch(x, step=4)))  # no dropout in eval mode


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_a_repetitive_sequence(arch):
    vocab = 16
    pattern = torch.randint(vocab, (7,), generator=torch.Generator().manual_seed(0))
    stream = pattern.repeat(40)
    model = build(arch, vocab=vocab, dropout=0.0)
    opt = Updater(model.configure_optimizers(lr=3e-3, weight_decay=0.0), grad_clip=1.0)
    g = torch.Generator().manual_seed(0)
    val = torch.stack([stream[s : s + 17] for s in range(7)])
    model.eval()
    with torch.no_grad():
        untrained = float(model.loss(batch(val)))
    assert untrained > 0.9 * math.log(vocab)
    model.train()
    for step in range(100):
        starts = torch.randint(len(stream) - 17, (16,), generator=g)
        model.training_step(batch(torch.stack([stream[s : s + 17] for s in starts]), step), step, opt)
    model.eval()
    with torch.no_grad():
        trained = float(model.loss(batch(val)))
    assert trained < 0.5 * math.log(vocab)
    assert model.generate_tokens([pattern.tolist()], 7)[0] == pattern.tolist()  # continues the pattern
    assert math.isclose(model.validation_loss(val), trained, rel_tol=1e-5)  # the Trainer's selection path


def test_compiled_training_matches_eager_and_leaves_copies_eager():
    """The Trainer's --compile: the compiled training forward gives the eager loss and gradients
    (to float tolerance), validation/generation stay eager, and a deep copy (EMA, best weights)
    does not inherit the compiled code."""
    import copy

    from genzoo.models.gpt import _COMPILED_FORWARD

    eager, compiled = build(), build()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_for_training(backend="aot_eager")  # dynamo + AOT autograd, without inductor's C++ build (minutes under load)
    x = ids(4, 17, seed=3)
    losses = []
    for m in (eager, compiled):
        m.train()
        loss = m.loss(batch(x))
        loss.backward()
        losses.append(loss)
    assert compiled in _COMPILED_FORWARD and eager not in _COMPILED_FORWARD
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
    assert copy.deepcopy(compiled) not in _COMPILED_FORWARD


def test_compile_is_refused_by_families_without_it():
    from genzoo.models.vae import VAE

    with pytest.raises(GenzooError, match="--compile"):
        GenerativeModel.compile_for_training(VAE.__new__(VAE))
