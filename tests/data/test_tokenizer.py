"""Tokenizers: exact round trips (property-based), unseen characters, token bytes, save/load, HF folders."""

import functools
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genzoo.data.tokenizer import EOS, TextTokenizer
from genzoo.core.errors import GenzooError

PROPERTY = settings(max_examples=150, deadline=None, database=None)
TRAIN_TEXT = [
    "The if statement is used for conditional execution.\n",
    "def area(r):\n    return 3.14159 * r ** 2  # a circle's area\n",
    "Strings like 'x' and \"y\" <tags> | pipes; {braces} [lists] = 42, 7% off! ~ ^ ` @ $ &\n",
    string.printable,
    "ünïcödé façade — naïve café ✓ λ → ∞\n",
] * 20


@functools.lru_cache(maxsize=None)
def tok(kind):
    return TextTokenizer.train(TRAIN_TEXT, kind=kind, vocab_size=400 if kind == "bpe" else None)


ALPHABET = sorted(set("".join(TRAIN_TEXT)))


@PROPERTY
@given(st.text())
def test_bpe_round_trips_any_unicode(text):
    t = tok("bpe")
    ids = t.encode(text)
    assert t.decode(ids) == text
    assert all(0 <= i < t.vocab_size for i in ids)
    tb = t.token_bytes()
    assert b"".join(tb[i] for i in ids) == text.encode("utf-8")


@PROPERTY
@given(st.text(alphabet=st.sampled_from(ALPHABET)))
def test_char_round_trips_text_from_the_training_alphabet(text):
    t = tok("char")
    ids = t.encode(text)
    assert len(ids) == len(text)
    assert t.decode(ids) == text
    tb = t.token_bytes()
    assert b"".join(tb[i] for i in ids) == text.encode("utf-8")


@PROPERTY
@given(st.text())
def test_char_maps_each_unseen_character_to_unk(text):
    t = tok("char")
    ids = t.encode(text)
    known = set(ALPHABET)
    assert ids == [t.unk_id if c not in known else t.encode(c)[0] for c in text]
    assert t.decode(ids) == "".join(c if c in known else "<unk>" for c in text)


def test_char_vocabulary_is_the_training_alphabet_plus_eos_and_unk():
    t = tok("char")
    assert t.vocab_size == len(ALPHABET) + 2
    assert t.eos_id == 0 and t.unk_id == 1 and t.bos_id == t.eos_id
    assert t.decode([t.eos_id]) == EOS and t.decode([t.eos_id], skip_special_tokens=True) == ""
    capped = TextTokenizer.train(["aaaa bbb cc d"], kind="char", vocab_size=5)
    assert capped.vocab_size == 5
    assert capped.decode(capped.encode("abcd")) == "ab<unk><unk>"  # kept the 3 most frequent: a, b, space


@pytest.mark.parametrize("vocab_size", [257, 300, 400, 5000])
def test_bpe_vocabulary_at_most_the_size_asked_for(vocab_size):
    t = TextTokenizer.train(TRAIN_TEXT, kind="bpe", vocab_size=vocab_size)
    assert 257 <= t.vocab_size <= vocab_size
    assert t.eos_id is not None and t.decode([t.eos_id]) == EOS
    assert t.decode(t.encode("naïve ✓ 🐍")) == "naïve ✓ 🐍"


def test_bpe_learns_merges_that_shorten_the_text():
    t = tok("bpe")
    text = "def area(r):\n    return 3.14159 * r ** 2\n"
    assert len(t.encode(text)) < 0.6 * len(text.encode())


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_literal_special_token_text_stays_text(kind):
    t = tok(kind)
    ids = t.encode("a <|endoftext|> b")
    assert t.eos_id not in ids
    assert t.decode(ids) == "a <|endoftext|> b"


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_token_bytes_match_ascii_and_mark_special_tokens(kind):
    t = tok(kind)
    tb = t.token_bytes()
    assert len(tb) == t.vocab_size
    for s in ["hello world", "def f(x):\n\treturn x  # ok\n", string.printable]:
        assert b"".join(tb[i] for i in t.encode(s)) == s.encode("ascii")
    assert tb[t.eos_id] == EOS.encode()
    marked = t.token_bytes(special_marker=True)
    assert marked[t.eos_id] == b"\xff" + EOS.encode()
    assert t.eos_id in t.special_ids
    assert all(marked[i] == tb[i] for i in range(t.vocab_size) if i not in t.special_ids)
    if kind == "bpe":  # every single byte is a token of its own
        assert {bytes([b]) for b in range(256)} <= set(tb)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_gives_identical_encodings(tmp_path, kind):
    t = tok(kind)
    t.save(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["genzoo"]["kind"] == kind and cfg["eos_token"] == EOS
    u = TextTokenizer.load(tmp_path)
    text = "".join(TRAIN_TEXT[:5]) + " <|endoftext|> unseen: 𝄞"
    assert u.kind == kind and u.vocab_size == t.vocab_size
    assert u.encode(text) == t.encode(text)
    assert u.encode_batch([text, "x"]) == t.encode_batch([text, "x"])
    assert u.decode(t.encode(text)) == t.decode(t.encode(text))
    assert (u.eos_id, u.bos_id, u.unk_id) == (t.eos_id, t.bos_id, t.unk_id)
    assert u.token_bytes() == t.token_bytes()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(GenzooError, match="does not exist"):
        TextTokenizer.load(tmp_path / "nowhere")
    with pytest.raises(GenzooError, match="no tokenizer.json"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(GenzooError, match="corrupt JSON"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    with pytest.raises(GenzooError, match="not a valid tokenizer.json"):
        TextTokenizer.load(tmp_path)
    tok("char").save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(GenzooError, match="tokenizer_config.json: corrupt JSON"):
        TextTokenizer.load(tmp_path)


def test_train_errors_are_clear():
    with pytest.raises(GenzooError, match="unknown tokenizer kind"):
        TextTokenizer.train(["abc"], kind="wordpiece")
    with pytest.raises(GenzooError, match="vocab_size >= 257"):
        TextTokenizer.train(["abc"], kind="bpe", vocab_size=100)
    with pytest.raises(GenzooError, match="empty text"):
        TextTokenizer.train(["", ""], kind="char")
    with pytest.raises(GenzooError, match="outside the vocabulary"):
        tok("char").decode([0, 10_000])


def test_hf_folder_byte_level_with_eos_ids_from_config(tmp_path):
    tok("bpe").save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": {"content": EOS, "special": True}, "bos_token": None, "add_bos_token": False}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "eos_token_id": [0, 7]}))
    t = TextTokenizer.from_hf_folder(tmp_path)
    assert t.kind == "hf" and t.eos_id == 0 and t.bos_id is None and t.stop_ids == [0, 7]
    s = "naïve café, def f(): ✓\n"
    assert t.decode(t.encode(s)) == s
    assert b"".join(t.token_bytes()[i] for i in t.encode(s)) == s.encode()  # ByteLevel detected


def test_hf_folder_sentencepiece_style_token_bytes(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "▁": 5, "H": 6, "i": 7, "▁H": 8, "Hi": 9, "▁Hi": 10}
    hf = Tokenizer(models.BPE(vocab=vocab, merges=[("H", "i"), ("▁", "Hi")], unk_token="<unk>", byte_fallback=True))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.decoder = decoders.Metaspace()
    hf.add_special_tokens(["<unk>", "<s>", "</s>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    t = TextTokenizer.from_hf_folder(tmp_path)
    assert (t.bos_id, t.eos_id, t.unk_id) == (1, 2, None)
    tb = t.token_bytes(special_marker=True)
    assert tb[3] == b"\n" and tb[4] == b"\xc3" and tb[10] == b" Hi" and tb[5] == b" "
    assert tb[1] == b"\xff<s>" and tb[2] == b"\xff</s>"
