"""T5: Hugging Face logits parity, relative position buckets, causality, KV cache, span corruption,
training that lowers the loss, fine-tuning from JSONL, save/load, the docsig task and refusals."""

import json

import pytest
import torch

from genzoo.data.docsig import char_f1, pairs_of_source, score
from genzoo.data.tokenizer import TextTokenizer
from genzoo.core.errors import GenzooError
from genzoo.models.t5 import IGNORE, T5, T5Config, finetune, read_pairs_jsonl, relative_position_bucket

TINY = dict(width=32, d_kv=8, d_ff=64, layers=2, heads=4, num_buckets=8, max_distance=20, num_sentinels=8)


def tiny(vocab=60, **kw) -> T5:
    torch.manual_seed(0)
    return T5(T5Config(data={"vocab_size": vocab}, **{**TINY, **kw})).eval()


# ---- Hugging Face parity -------------------------------------------------------------------------------
HF_CASES = {"v1.0-relu-tied": ("relu", True, 2), "v1.1-gated-gelu": ("gated-gelu", False, 3)}


@pytest.fixture(params=sorted(HF_CASES))
def hf_pair(request, tmp_path):
    transformers = pytest.importorskip("transformers")
    from genzoo.models.hf.t5 import load_hf_t5

    ffn, tie, dec_layers = HF_CASES[request.param]
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=dec_layers,
                                num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                feed_forward_proj=ffn, tie_word_embeddings=tie, dropout_rate=0.0,
                                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # larger, varied weights so that logits and continuations differ per position
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "layer_norm" in name else 0.3 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    return hf, load_hf_t5(tmp_path)


def test_hf_logits_parity(hf_pair):
    hf, ours = hf_pair
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 120, (2, 30), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 21:] = 0  # a padded row: padding must be invisible in both
    dec = torch.randint(2, 120, (2, 25), generator=g)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        got = ours(ids, dec, mask.bool())
    assert want.std() > 0.1  # not a degenerate (near-constant) model
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_hf_greedy_continuations_equal(hf_pair):
    hf, ours = hf_pair
    ids = torch.randint(2, 120, (3, 17), generator=torch.Generator().manual_seed(2))
    want = hf.generate(ids, max_new_tokens=12, do_sample=False, num_beams=1, use_cache=False)[:, 1:]
    got = ours.generate(ids, max_new_tokens=12)
    assert len(set(got.flatten().tolist())) > 3  # the continuations vary
    assert got.tolist() == want.tolist()


def test_hf_refuses_other_models(tmp_path):
    from genzoo.models.hf.t5 import load_hf_t5

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(GenzooError, match="not a T5"):
        load_hf_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "feed_forward_proj": "gated-silu"}))
    with pytest.raises(GenzooError, match="not supported"):
        load_hf_t5(tmp_path)


# ---- the network -----------------------------------------------------------------------------------------
def test_relative_buckets_match_t5_rule():
    offsets = torch.arange(-300, 301)
    bi = relative_position_bucket(offsets, bidirectional=True, num_buckets=32, max_distance=128)
    causal = relative_position_bucket(offsets, bidirectional=False, num_buckets=32, max_distance=128)
    # exact buckets for small offsets, sign in the upper half (bidirectional), the past only (causal)
    assert bi[300 + 0] == 0 and bi[300 - 5] == 5 and bi[300 + 5] == 16 + 5
    assert causal[300 - 7] == 7 and (causal[300:] == 0).all()
    assert bi.max() == 31 and causal.max() == 31  # far offsets share the last bucket
    assert (bi[:300].diff() <= 0).all() and (causal[:300].diff() <= 0).all()  # monotone in distance
    assert bi[300 - 20] == 10  # log region: 8 + log(20/8)/log(128/8)*8 = 10.6 -> 10


def test_decoder_causal_encoder_padding_invisible():
    m = tiny()
    ids = torch.randint(3, 50, (1, 12))
    dec = torch.randint(3, 50, (1, 9))
    with torch.no_grad():
        a = m(ids, dec)
        dec2 = dec.clone()
        dec2[0, 6:] = 5
        b = m(ids, dec2)
        assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6) and not torch.allclose(a[:, 6:], b[:, 6:])
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[0, 8:] = False
        ids2 = ids.clone()
        ids2[0, 8:] = 7
        assert torch.allclose(m(ids, dec, mask), m(ids2, dec, mask), atol=1e-6)
        assert not torch.allclose(m(ids, dec), m(ids2, dec))


def test_kv_cache_matches_full_decoding():
    m = tiny(ffn="gated-gelu")
    ids = torch.randint(3, 50, (3, 10))
    with_cache = m.generate(ids, max_new_tokens=15, use_cache=True)
    without = m.generate(ids, max_new_tokens=15, use_cache=False)
    assert with_cache.tolist() == without.tolist()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = m.generate(ids, max_new_tokens=8, temperature=1.0, top_k=5, generator=g1)
    s2 = m.generate(ids, max_new_tokens=8, temperature=1.0, top_k=5, generator=g2, use_cache=False)
    assert s1.tolist() == s2.tolist() and s1.tolist() != with_cache[:, :8].tolist()


# ---- span corruption and training ---------------------------------------------------------------------
def test_span_corruption_hides_spans_behind_sentinels():
    m = tiny(vocab=60)
    x = torch.randint(0, 40, (4, 40))
    inp, tgt = m.span_corruption(x, torch.Generator().manual_seed(0))
    sentinels = {m.sentinel(i) for i in range(m.config.num_sentinels)}
    n_noise, n_spans = 6, 2  # round(40 * 0.15), round(6 / 3)
    assert inp.shape == (4, 40 - n_noise + n_spans + 1) and tgt.shape == (4, n_noise + n_spans + 1)
    for row_x, row_i, row_t in zip(x.tolist(), inp.tolist(), tgt.tolist()):
        assert row_i[-1] == row_t[-1] == m.config.eos_token_id
        # put the spans back where their sentinels stand: the original window
        spans, cur = {}, None
        for t in row_t[:-1]:
            if t in sentinels:
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        rebuilt = [t for s in row_i[:-1] for t in (spans[s] if s in sentinels else [s])]
        assert rebuilt == row_x and all(len(v) >= 1 for v in spans.values())
    again = m.span_corruption(x, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inp) and not torch.equal(m.span_corruption(x, torch.Generator().manual_seed(1))[0], inp)


def test_span_corruption_loss_falls_clearly_below_untrained():
    torch.set_num_threads(1)
    text = "def add(a, b):\n    return a + b\n\nclass Point:\n    x = 0\n    y = 0\n" * 40
    tok = TextTokenizer.train(text, kind="char")
    ids = torch.tensor(tok.encode(text))
    windows = ids[: len(ids) // 24 * 24].view(-1, 24)
    m = tiny(vocab=tok.vocab_size + 1 + 8)
    held = torch.Generator().manual_seed(99)
    with torch.no_grad():
        before = float(m.span_corruption_loss(windows[:32], held))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(60):
        loss = m.span_corruption_loss(windows[torch.randint(len(windows), (16,), generator=g)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        after = float(m.span_corruption_loss(windows[:32], torch.Generator().manual_seed(99)))
    assert after < before - 1.5, (before, after)


def test_gradients_reach_every_parameter():
    m = tiny(ffn="gated-gelu", tie_lm_head=False).train()
    m.span_corruption_loss(torch.randint(0, 40, (2, 30)), torch.Generator().manual_seed(0)).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_finetune_from_jsonl_then_save_load(tmp_path):
    torch.set_num_threads(1)
    words = ["cat", "dog", "sun", "map", "cup", "pen", "box", "hat"]
    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join(json.dumps({"input": w, "target": w.upper()}) for w in words) + "\n\n")
    pairs = read_pairs_jsonl(f)
    tok = TextTokenizer.train([a + b for a, b in pairs], kind="char")
    m = tiny(vocab=tok.vocab_size + 1 + 8, eos_token_id=tok.eos_id)
    m.tokenizer = tok
    losses = finetune(m, pairs, steps=120, batch_size=8, lr=5e-3, seed=0)
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
    outputs = m.generate_text(words, max_new_tokens=6)
    assert score(outputs, [w.upper() for w in words])["exact_match"] >= 0.75, outputs
    m.save(tmp_path / "t5")
    m.save(tmp_path / "t5")  # over an existing folder: replaced, not merged
    loaded = T5.from_pretrained(tmp_path / "t5")
    assert loaded.generate_text(words, max_new_tokens=6) == outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "t5"]


def test_seq2seq_loss_ignores_padding():
    m = tiny()
    ids = torch.randint(3, 50, (1, 8))
    labels = torch.randint(3, 50, (1, 5))
    padded = torch.cat([labels, torch.full((1, 3), IGNORE)], 1)
    assert torch.allclose(m.seq2seq_loss(ids, labels), m.seq2seq_loss(ids, padded), atol=1e-6)


# ---- docsig task and refusals ----------------------------------------------------------------------
def test_docsig_pairs_and_scores():
    src = 'def f(a, *args, b: int = 2, **kw) -> str:\n    """Join   things.\n\n    More."""\n\nasync def g(x):\n' \
          '    """Wait."""\n\ndef nodoc(y):\n    pass\n\nclass C:\n    def m(self):\n        "Method."\n'
    pairs = pairs_of_source(src)
    assert sorted(pairs) == sorted([("Join things. More.", "def f(a, *args, b: int=2, **kw) -> str:"),
                                    ("Wait.", "async def g(x):"), ("Method.", "def m(self):")])
    assert pairs_of_source("def (:") == []
    assert char_f1("abc", "abc") == 1.0 and char_f1("abc", "xyz") == 0.0
    assert char_f1("aab", "ab") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert score(["def f(x):", "def g():"], ["def f(x):", "def h():"])["exact_match"] == 0.5


def test_refusals(tmp_path):
    with pytest.raises(GenzooError, match="ffn"):
        T5(T5Config(data={"vocab_size": 10}, ffn="swish"))
    with pytest.raises(GenzooError, match="vocabulary size"):
        T5(T5Config())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a"}\n')
    with pytest.raises(GenzooError, match="'input' and 'target'"):
        read_pairs_jsonl(bad)
    with pytest.raises(GenzooError, match="does not exist"):
        read_pairs_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(GenzooError, match="no tokenizer"):
        tiny().generate_text("hello")
    with pytest.raises(GenzooError, match="sentinels"):
        tiny(num_sentinels=1).span_corruption(torch.zeros(1, 40, dtype=torch.long))


def test_cli_finetune_and_generate(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"input": "ab", "target": "AB"}\n{"input": "ba", "target": "BA"}\n')
    runner = CliRunner()
    r = runner.invoke(app, ["t5", "finetune", str(tmp_path / "m"), "--pairs", str(f), "--steps", "3", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert "3 steps" in r.output and (tmp_path / "m" / "tokenizer.json").is_file()
    r = runner.invoke(app, ["t5", "generate", str(tmp_path / "m"), "ab", "--max-new-tokens", "3"])
    assert r.exit_code == 0 and json.loads(r.output.splitlines()[0])["input"] == "ab"
    r = runner.invoke(app, ["t5", "finetune", str(tmp_path / "n"), "--pairs", str(f), "--task", "docsig"])
    assert r.exit_code == 2 and "exactly one" in r.output
