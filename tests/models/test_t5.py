"""T5: Hugging Face logits parity, relative position buckets, causality, KV cache, span corruption,
training that lowers the loss, pairs data (JSONL, docsig), training through the Trainer, run folders,
the CLI and refusals."""

import json

import pytest
import torch

from genzoo import api
from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset
from genzoo.data.docsig import char_f1, pairs_of_source, score
from genzoo.data.pairs import PAD, is_pairs, read_jsonl
from genzoo.data.tokenizer import TextTokenizer
from genzoo.models.base import Batch, BatchRandom
from genzoo.models.t5 import IGNORE, T5, T5Config, relative_position_bucket

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
    ours = load_hf_t5(tmp_path)
    assert isinstance(api.load(tmp_path), T5)  # api.load opens Hugging Face T5 folders too
    return hf, ours


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


def test_span_corruption_pretraining_through_the_trainer_lowers_the_loss():
    """Token data: the Trainer cuts the stream into windows and T5 trains by span corruption."""
    from genzoo.data.base import Dataset
    from genzoo.train import Trainer, TrainConfig

    torch.set_num_threads(1)
    text = "def add(a, b):\n    return a + b\n\nclass Point:\n    x = 0\n    y = 0\n" * 40
    tok = TextTokenizer.train(text, kind="char")
    stream = Dataset("toy", "train", torch.tensor(tok.encode(text)), meta={"vocab_size": tok.vocab_size, "eos_id": tok.eos_id}, kind="tokens")
    m = tiny(vocab=tok.vocab_size + 1 + 8, window=24)
    held = m.prepare_data(stream).eval_examples()[0][:32]
    before = m.validation_loss(held, seed=99)  # the same corruption before and after: drawn from the seed
    Trainer(m, stream, TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=0, schedule="constant", ema_decay=None,
                                   val_every=0, progress=False, device="cpu")).fit()
    after = m.validation_loss(held, seed=99)
    assert after < before - 1.5, (before, after)


def test_gradients_reach_every_parameter():
    m = tiny(ffn="gated-gelu", tie_lm_head=False).train()
    m.span_corruption_loss(torch.randint(0, 40, (2, 30)), torch.Generator().manual_seed(0)).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


WORDS = ["cat", "dog", "sun", "map", "cup", "pen", "box", "hat", "red", "bee", "fox", "owl"]


def write_pairs(path, n=20):
    rows = [{"input": f"{a} {b}", "target": f"{a} {b}".upper()} for a in WORDS for b in WORDS if a != b][:n]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return [(r["input"], r["target"]) for r in rows]


def test_trainer_learns_jsonl_pairs_then_run_folder_loads(tmp_path):
    torch.set_num_threads(1)
    f = tmp_path / "pairs.jsonl"
    write_pairs(f)
    model, summary = api.train("t5", str(f), out=tmp_path / "run", model_overrides={**TINY, "dropout": 0.0}, steps=100,
                               batch_size=8, lr=5e-3, warmup_steps=5, val_every=50, progress=False)
    train = load_dataset(str(f), "train", tokenizer=model.tokenizer).meta["texts"]
    outputs = model.generate_text([a for a, _ in train], max_new_tokens=12)
    assert score(outputs, [b for _, b in train])["exact_match"] >= 0.75, outputs
    loaded = api.load(tmp_path / "run")  # best/ (validation loss), tokenizer.json beside the weights
    assert (tmp_path / "run" / "checkpoint" / "tokenizer.json").is_file() and summary["best_step"] in (50, 100)
    assert loaded.generate_text([a for a, _ in train[:4]], max_new_tokens=12) == \
        api.load(tmp_path / "run" / "best").generate_text([a for a, _ in train[:4]], max_new_tokens=12)


def test_pairs_data_jsonl_split_and_encoding(tmp_path):
    f = tmp_path / "pairs.jsonl"
    pairs = write_pairs(f, n=30)
    assert is_pairs(str(f)) and is_pairs("docsig")
    splits = {s: load_dataset(str(f), s) for s in ("train", "val", "test")}
    train = splits["train"]
    assert train.kind == "pairs" and train.x.dtype == torch.long and train.x.shape[:2] == (24, 2)
    assert [len(splits[s]) for s in ("val", "test")] == [3, 3]
    texts = [p for s in splits.values() for p in s.meta["texts"]]
    assert sorted(texts) == sorted(pairs)  # disjoint, and together every row
    assert load_dataset(str(f), "val").meta["texts"] == splits["val"].meta["texts"]  # a fixed seed
    tok = train.meta["tokenizer"]
    a, b = train.meta["texts"][0]
    row = train.x[0]
    assert tok.decode(row[0][row[0] != PAD].tolist()) == a and tok.decode(row[1][row[1] != PAD].tolist()) == b
    assert train.spec()["vocab_size"] == tok.vocab_size and train.spec()["kind"] == "pairs"
    text = tmp_path / "text.jsonl"  # a .jsonl of {"text"} stays a text corpus (a token stream)
    text.write_text("\n".join(json.dumps({"text": f"document {i} " * 20}) for i in range(60)))
    assert not is_pairs(str(text)) and load_dataset(str(text), "train").kind == "tokens"


@pytest.mark.parametrize("content, message", [
    ("", "holds no pairs"),
    ('{"input": "a", "target": "A"}\n{"input": "b"}\n', 'line 2: no "target" field'),
    ('{"input": "a", "target": "A"}\nnot json\n', "line 2: not valid JSON"),
    ('{"input": "a", "target": 3}\n', 'line 1: the "target" field is int'),
    ('["a", "A"]\n', "line 1: expected an object"),
])
def test_bad_pairs_files_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(GenzooError, match=message) as e:
        read_jsonl(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)
    few = tmp_path / "few.jsonl"
    write_pairs(few, n=5)
    with pytest.raises(GenzooError, match="too few for a val split"):
        load_dataset(str(few), "val")


def test_pair_tensors_cut_end_and_pad():
    m = tiny(max_input_tokens=4, max_target_tokens=3)
    x = torch.tensor([[[5, 6, 7, 8, 9], [5, PAD, PAD, PAD, PAD]], [[5, PAD, PAD, PAD, PAD], [7, 8, 9, 6, PAD]]])
    ids, mask, labels = m.pair_tensors(x)
    eos, pad = m.config.eos_token_id, m.config.pad_token_id
    assert ids.tolist() == [[5, 6, 7, eos], [5, eos, pad, pad]] and mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.tolist() == [[5, eos, IGNORE], [7, 8, eos]]
    with pytest.raises(GenzooError, match="token ids"):
        m.pair_tensors(torch.full((1, 2, 3), 999))


def test_randomness_comes_from_the_batch_stream():
    """Span corruption and dropout draw from batch.rng: a process holding rows 2-3 of a batch of 4
    sees what one process holding all 4 sees for them, and the same rng gives the same loss."""
    m = tiny(dropout=0.2)
    x = torch.randint(0, 40, (4, 40))  # 6 noise tokens in 2 spans (one span would leave nothing random)
    whole = m.span_corruption(x, BatchRandom(0, 7, 4, 0))
    half = m.span_corruption(x[2:], BatchRandom(0, 7, 4, 2))
    assert torch.equal(whole[0][2:], half[0]) and torch.equal(whole[1][2:], half[1])
    assert not torch.equal(whole[0], m.span_corruption(x, BatchRandom(0, 8, 4, 0))[0])
    m.train()
    pairs = torch.randint(0, 40, (4, 2, 9))
    with torch.no_grad():
        loss = [float(m.loss(Batch(pairs, None, BatchRandom(0, s, 4, 0)))) for s in (3, 3, 4)]
    assert loss[0] == loss[1] != loss[2]  # dropout masks: a function of (seed, step)


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
    with pytest.raises(GenzooError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(GenzooError, match="cannot sample unconditionally.*genzoo generate"):
        tiny().sample(2)
    with pytest.raises(GenzooError, match="no tokenizer"):
        tiny().generate_text("hello")
    with pytest.raises(GenzooError, match="sentinels"):
        tiny(num_sentinels=1).span_corruption(torch.zeros(1, 40, dtype=torch.long))


def test_cli_train_generate_and_refusals(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    f = tmp_path / "pairs.jsonl"
    write_pairs(f)
    runner = CliRunner()
    tiny_set = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    r = runner.invoke(app, ["train", "t5", "--data", str(f), "--steps", "3", "--batch-size", "8", "--out", str(tmp_path / "m"),
                            "--no-eval", *tiny_set])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m" / "checkpoint" / "tokenizer.json").is_file()
    r = runner.invoke(app, ["generate", str(tmp_path / "m"), "cat dog", "--max-tokens", "3", "--greedy"])
    assert r.exit_code == 0 and json.loads(r.output.splitlines()[0])["input"] == "cat dog", r.output
    expected = api.load(tmp_path / "m").generate_text(["cat dog"], max_new_tokens=3)[0]
    assert json.loads(r.output.splitlines()[0])["output"] == expected
    old = runner.invoke(app, ["t5", "generate", str(tmp_path / "m"), "cat dog", "--max-new-tokens", "3"])  # greedy by default
    assert old.exit_code == 0 and "`genzoo generate`" in old.output and r.output in old.output, old.output
    r = runner.invoke(app, ["generate", str(tmp_path / "m"), "cat dog", "--top-p", "0.9"])
    assert r.exit_code == 2 and "does not take --top-p" in r.output
    r = runner.invoke(app, ["sample", str(tmp_path / "m"), "--n", "2", "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 2 and "t5 cannot sample" in r.output
    r = runner.invoke(app, ["t5", "finetune", str(tmp_path / "n"), "--pairs", str(f), "--task", "docsig"])
    assert r.exit_code == 2 and "exactly one" in r.output
