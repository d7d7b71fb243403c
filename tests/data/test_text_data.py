"""Text corpora: built-in pydocs / pycode, user files, deterministic splits, the token stream."""

import ast
import json
import warnings

import pytest
import torch

from genzoo.data.text import Corpus, load_corpus, position_bounds, split_of, stream
from genzoo.data.tokenizer import TextTokenizer
from genzoo.core.errors import GenzooError

SPLITS = ("train", "val", "test")


def _all_splits(name):
    return {s: load_corpus(name, s) for s in SPLITS}


@pytest.mark.parametrize("name", ["pydocs", "pycode"])
def test_builtin_splits_disjoint_complete_and_about_90_5_5(name):
    parts = _all_splits(name)
    names = {s: set(c.names) for s, c in parts.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    total = sum(len(c) for c in parts.values())
    assert total == parts["train"].meta["documents_total"]
    for s, c in parts.items():
        assert len(c.names) == len(c.documents) == len(names[s])  # names unique
        assert c.names == sorted(c.names)  # deterministic, sorted order
        assert all(split_of(n) == s for n in c.names)
    frac = {s: len(c) / total for s, c in parts.items()}
    assert 0.85 < frac["train"] < 0.95, frac
    assert 0.025 < frac["val"] < 0.08 and 0.025 < frac["test"] < 0.08, frac


def test_split_hash_is_stable_across_processes():
    # sha1 of the name, not Python's per-process salted hash(): these values must never change.
    assert split_of("doc23.txt") == "val" and split_of("doc78.txt") == "val"
    assert split_of("doc28.txt") == "test" and split_of("doc50.txt") == "test"
    assert split_of("doc0.txt") == "train" and split_of("topic:if") == "train"
    assert split_of("json/__init__.py") == "val"
    assert [split_of(f"doc{i}.txt") for i in range(100)].count("train") == 93


def test_pydocs_holds_megabytes_of_topics_and_docstrings():
    from pydoc_data.topics import topics

    parts = _all_splits("pydocs")
    chars = sum(c.n_chars for c in parts.values())
    assert chars > 1_500_000 + sum(len(v) for v in topics.values())  # docstrings add well over a MB
    docs = {n: d for c in parts.values() for n, d in zip(c.names, c.documents)}
    assert docs["topic:if"] == topics["if"]
    assert "conditional execution" in docs["topic:if"]
    assert docs["json/__init__.py"].startswith("JSON (JavaScript Object Notation)")
    assert "Serialize ``obj``" in docs["json/__init__.py"]  # a function's docstring, not only the module's
    assert not any(n.startswith(("test/", "idlelib/")) or "/tests/" in n or "site-packages" in n for n in docs)
    # A module's docstrings and its code land in the same split.
    code = {n: s for s, c in _all_splits("pycode").items() for n in c.names}
    assert all(code[n] == s for s, c in parts.items() for n in c.names if n in code)


def test_pycode_documents_parse_and_respect_the_size_cap():
    parts = _all_splits("pycode")
    assert sum(c.n_chars for c in parts.values()) > 5_000_000
    docs = parts["val"].documents + parts["test"].documents + parts["train"].documents[::10]
    assert all(len(d.encode()) <= 200_000 for c in parts.values() for d in c.documents)
    ok = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in docs:
            try:
                ast.parse(d)
                ok += 1
            except SyntaxError:
                pass
    assert ok / len(docs) > 0.95
    assert "pydoc_data/topics.py" not in {n for c in parts.values() for n in c.names}  # 750 kB: skipped


def test_builtin_load_is_cached_and_returns_fresh_lists():
    a, b = load_corpus("pydocs", "val"), load_corpus("pydocs", "val")
    assert a.documents == b.documents and a.documents is not b.documents
    a.documents.clear()
    assert load_corpus("pydocs", "val").documents == b.documents


@pytest.mark.parametrize("n", [1000, 1003, 20])
def test_single_txt_file_is_split_by_position(tmp_path, n):
    text = "".join(chr(0x61 + i % 26) if i % 7 else "é" for i in range(n))
    p = tmp_path / "book.txt"
    p.write_text(text, encoding="utf-8")
    parts = _all_splits(p)
    a, b = n * 9 // 10, n * 19 // 20
    assert parts["train"].documents == [text[:a]]
    assert parts["val"].documents == [text[a:b]]
    assert parts["test"].documents == [text[b:]]
    assert "".join(c.documents[0] for c in parts.values()) == text
    assert position_bounds(1000, "val") == (900, 950) and position_bounds(1000, "test") == (950, 1000)
    assert parts["val"].meta["start"] == a and parts["val"].meta["end"] == b


def test_too_short_or_empty_txt_file(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("short", encoding="utf-8")
    assert load_corpus(p, "train").documents == ["shor"]
    with pytest.raises(GenzooError, match="too few"):
        load_corpus(p, "val")
    e = tmp_path / "empty.txt"
    e.write_text("  \n", encoding="utf-8")
    with pytest.raises(GenzooError, match="empty"):
        load_corpus(e, "train")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(GenzooError, match="UTF-8"):
        load_corpus(bad, "train")


def test_folder_split_by_name_is_stable_when_files_are_added(tmp_path):
    for i in range(120):
        (tmp_path / f"doc{i:03d}.{'md' if i % 3 else 'txt'}").write_text(f"document number {i}\n", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("a,b\n", encoding="utf-8")  # ignored
    (tmp_path / ".hidden.txt").write_text("secret\n", encoding="utf-8")  # ignored
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("in a sub-folder\n", encoding="utf-8")
    before = {s: load_corpus(tmp_path, s) for s in SPLITS}
    names = [n for c in before.values() for n in c.names]
    assert len(names) == len(set(names)) == 121 and "sub/deep.txt" in names
    assert all(not n.startswith(".") and not n.endswith(".csv") for n in names)
    assert all(d == f"document number {int(n[3:6])}\n" for c in before.values()
               for n, d in zip(c.names, c.documents) if n.startswith("doc"))
    for i in range(120, 160):
        (tmp_path / f"doc{i:03d}.txt").write_text(f"document number {i}\n", encoding="utf-8")
    after = {s: set(load_corpus(tmp_path, s).names) for s in SPLITS}
    for s, c in before.items():
        assert set(c.names) <= after[s]  # no old document moved


def test_jsonl_documents_and_clear_errors(tmp_path):
    p = tmp_path / "data.jsonl"
    lines = [json.dumps({"text": f"record {i} says hello", "id": i}) for i in range(60)]
    p.write_text("\n".join(lines[:30] + [""] + lines[30:]) + "\n", encoding="utf-8")
    parts = _all_splits(p)
    got = sorted(d for c in parts.values() for d in c.documents)
    assert got == sorted(f"record {i} says hello" for i in range(60))
    assert parts["train"].meta["split_rule"] == "sha1(text)"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "ok"}\n{"text": broken\n', encoding="utf-8")
    with pytest.raises(GenzooError, match=r"line 3: not valid JSON"):
        load_corpus(bad, "train")
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(GenzooError, match=r"line 2: no \"text\" field"):
        load_corpus(missing, "train")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"text": 42}\n', encoding="utf-8")
    with pytest.raises(GenzooError, match=r"line 1: the \"text\" field is int"):
        load_corpus(wrong, "train")


def test_clear_errors_for_bad_names_paths_and_splits(tmp_path):
    with pytest.raises(GenzooError, match="pydocs, pycode"):
        load_corpus("shakespeare", "train")
    with pytest.raises(GenzooError, match="does not exist"):
        load_corpus(tmp_path / "nope.txt", "train")
    with pytest.raises(GenzooError, match="unknown split"):
        load_corpus("pydocs", "validation")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenzooError, match="no .txt or .md files"):
        load_corpus(tmp_path / "empty", "train")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("only one document\n", encoding="utf-8")
    held_out = "val" if split_of("a.txt") != "val" else "test"
    with pytest.raises(GenzooError, match=f"the {held_out} split holds no documents"):
        load_corpus(tmp_path / "one", held_out)
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(GenzooError, match="unsupported"):
        load_corpus(tmp_path / "data.csv", "train")


def test_stream_joins_documents_with_eos_between_them():
    corpus = Corpus("toy", "train", ["abc", "de", "", "fgh"])
    tok = TextTokenizer.train(corpus.documents, kind="char")
    ids = stream(corpus, tok)
    assert ids.dtype == torch.long and ids.ndim == 1
    assert len(ids) == corpus.n_chars + len(corpus) - 1
    eos = tok.eos_id
    assert [i for i, t in enumerate(ids.tolist()) if t == eos] == [3, 6, 7]
    assert tok.decode(ids.tolist()) == "abc<|endoftext|>de<|endoftext|><|endoftext|>fgh"
    assert stream(Corpus("one", "train", ["abc"]), tok).tolist() == tok.encode("abc")
