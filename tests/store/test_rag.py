"""RAG: chunking that round-trips, indexing with chunk dedup and document versions, hybrid retrieval
that finds a planted chunk, prompts that fit the model's context, and answers recorded with links
to their sources (a tiny Hugging Face Llama as the model; the numpy HashingEncoder as embedder).
Indexing, retrieval and recording are the store's (``genzoo.store.rag``); the prompt and the model
call are ``genzoo.tasks.rag``'s.
Every test that touches a store runs on SQLite and on PostgreSQL (a real server, see pg_server.py)."""

import ast
import re

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag
from genzoo.store.api import Store
from genzoo.store.chunking import chunk_document
from genzoo.store.encoders import HashingEncoder
from genzoo.tasks import rag as rag_task

from test_store import db  # noqa: F401  (the store's location, per test: a SQLite file or a PostgreSQL database)

PLANTED = "The zorblax valve on the reactor opens only at thirty seven degrees, never sooner."

PY_DOC = '''"""A module."""
import os

# the helper above
@staticmethod
def first(x):
    return x + 1


class Second:
    def method(self):
        return {"a": 1}

VALUE = 3


def third():
    """Does a third thing."""
''' + "\n".join(f"    step_{i} = {i}" for i in range(60)) + "\n"

MD_DOC = "# Title\n\nIntro paragraph about things.\n\n## Install\n\nRun pip install.\n\n```\n# not a heading\ncode\n\nmore code\n```\n\n## Use\n\n" + \
         "\n\n".join(f"Paragraph {i} says something about usage number {i}." for i in range(30)) + "\n"

TEXT_DOC = "\n\n".join(" ".join(f"word{i}_{j}" for j in range(20 + i % 7)) for i in range(40))


def covered(text, chunks):
    mask = [False] * len(text)
    for c in chunks:
        for i in range(c.start, c.end):
            mask[i] = True
    return all(m or text[i].isspace() for i, m in enumerate(mask))


@pytest.mark.parametrize("kind,text", [("python", PY_DOC), ("markdown", MD_DOC), ("text", TEXT_DOC)])
def test_chunks_are_exact_spans_that_cover_the_document(kind, text):
    chunks = chunk_document(text, kind, chunk_chars=300, overlap=40)
    assert len(chunks) > 2
    for c in chunks:
        assert c.text == text[c.start:c.end] and c.text.strip()
        assert len(c.text) <= 300 + 40
        assert c.start_line == text.count("\n", 0, c.start) + 1
        assert c.end_line == text.count("\n", 0, c.end - 1) + 1
    assert covered(text, chunks)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_python_chunks_follow_top_level_definitions_and_markdown_chunks_follow_headings():
    chunks = chunk_document(PY_DOC, "python", chunk_chars=300, overlap=0)
    starts = [c.text.lstrip("\n") for c in chunks]
    assert any(s.startswith("# the helper above\n@staticmethod\ndef first") for s in starts)  # comment + decorator stay with it
    assert any(s.startswith("class Second:") for s in starts)
    assert any(s.startswith("def third():") for s in starts)
    for c in chunks:  # no chunk holds the ends of two top-level definitions
        names = [n.name for n in ast.parse(PY_DOC).body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) if f"def {n.name}" in c.text
                 or f"class {n.name}" in c.text]
        assert len(names) <= 1, names
    md = chunk_document(MD_DOC, "markdown", chunk_chars=300, overlap=0)
    assert [c.text.split("\n")[0] for c in md[:3]] == ["# Title", "## Install", "## Use"]
    assert "# not a heading" in md[1].text  # a '#' inside a code fence is code, not a heading


def test_bad_chunk_settings_are_refused():
    with pytest.raises(GenzooError, match="overlap"):
        chunk_document("text", "text", chunk_chars=100, overlap=80)
    with pytest.raises(GenzooError, match="chunk-chars"):
        chunk_document("text", "text", chunk_chars=5)


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "guide.md").write_text(MD_DOC)
    (d / "sub" / "code.py").write_text(PY_DOC)
    (d / "notes.txt").write_text(TEXT_DOC + "\n\n" + PLANTED + "\n\nClosing remarks about nothing in particular.\n")
    (d / "blob.bin").write_bytes(b"\x00\xff")  # not an indexed suffix: ignored
    (d / ".hidden.md").write_text("secret")
    return d


@pytest.fixture
def store(db):
    with Store.open(db, encoder=HashingEncoder()) as s:
        yield s


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "vector"])
def test_retrieval_finds_the_planted_chunk(store, docs, mode):
    report = rag.index_paths(store, [docs], chunk_chars=300, overlap=40)
    assert report.documents == 3 and report.embedded == report.chunks - report.duplicate_chunks
    hits = rag.retrieve(store, "at what temperature does the zorblax valve open?", k=3, mode=mode)
    assert "zorblax" in hits[0].text and hits[0].uri.endswith("notes.txt")
    assert hits[0].where == f"{hits[0].uri}:{hits[0].start_line}-{hits[0].end_line}"
    lines = (docs / "notes.txt").read_text().split("\n")[hits[0].start_line - 1:hits[0].end_line]
    assert PLANTED in lines


def test_identical_chunks_are_stored_once_for_search_and_documents_are_versioned(store, docs, tmp_path):
    rag.index_paths(store, [docs], chunk_chars=300, overlap=0)
    again = rag.index_paths(store, [docs], chunk_chars=300, overlap=0)
    assert again.unchanged == 3 and again.chunks == 0
    copy = tmp_path / "copy.txt"
    copy.write_text((docs / "notes.txt").read_text())
    r = rag.index_paths(store, [copy], chunk_chars=300, overlap=0)
    assert r.chunks > 0 and r.duplicate_chunks == r.chunks and r.embedded == 0  # nothing new to index or embed
    hits = rag.retrieve(store, "zorblax valve", k=5, mode="keyword")
    assert sum("zorblax" in h.text for h in hits) == 1  # one chunk, not one per copy
    # the original changes: the new version supersedes it; the planted fact is gone from it
    (docs / "notes.txt").write_text(TEXT_DOC + "\n\nThe zorblax valve was removed.\n")
    r = rag.index_paths(store, [docs / "notes.txt"], chunk_chars=300, overlap=0)
    assert r.documents == 1 and r.duplicate_chunks > 0 and r.embedded < r.chunks  # unchanged paragraphs are reused
    found = {h.uri: h.text for h in rag.retrieve(store, "zorblax valve", k=5, mode="keyword")}
    new = found[str((docs / "notes.txt").resolve())]
    assert "The zorblax valve was removed." in new and PLANTED not in new
    assert PLANTED in found[str(copy.resolve())]  # still live through the copy
    original = copy.read_text()
    copy.write_text("different now")
    rag.index_paths(store, [copy])
    assert not any(PLANTED in h.text for h in rag.retrieve(store, "zorblax valve thirty seven", k=5))
    copy.write_text(original)  # changed back: the stored earlier version is current again
    assert rag.index_paths(store, [copy]).documents == 1
    assert any(PLANTED in h.text for h in rag.retrieve(store, "zorblax valve thirty seven", k=5))


def test_another_users_private_documents_are_not_retrieved(store, db, docs, tmp_path):
    _, key = store.create_user("wes", "writer")
    rag.index_paths(store, [docs / "notes.txt"])  # the admin's, private
    with Store.open(db, api_key=key, encoder=HashingEncoder()) as wes:
        assert rag.retrieve(wes, "zorblax valve", mode="hybrid") == []
        _, rkey = store.create_user("rob", "reader")
    with Store.open(db, api_key=rkey, encoder=HashingEncoder()) as rob:
        with pytest.raises(GenzooError, match="role"):
            rag.index_paths(rob, [docs])
        with pytest.raises(GenzooError, match="--no-store"):
            rag_task.ask(rob, "zorblax?", tmp_path / "no-model-needed-to-refuse")


def test_the_prompt_fits_the_budget_and_keeps_the_question():
    sources = [rag.Source(i, f"/d{i}.md", 1, 2, "alpha beta gamma " * 40) for i in range(1, 5)]
    count = lambda t: len(t.split())  # noqa: E731
    prompt, used = rag_task.build_prompt("what is alpha?", sources, count, budget=150)
    assert count(prompt) <= 150 and prompt.endswith("Question: what is alpha?\nAnswer:")
    assert 1 <= len(used) < 4 and "[1] d1.md:1-2\nalpha beta" in prompt
    with pytest.raises(GenzooError, match="shorter question"):
        rag_task.build_prompt("why " * 200, sources, count, budget=150)


def test_the_store_records_an_answer_from_plain_data(store, db, docs):
    """The store's half of ``ask`` with no model: a manifest dict and a ModelRecord in, the question,
    the answer and its grounded links out, in one write (a reader is refused and nothing is written)."""
    from genzoo.store.records import ModelRecord

    rag.index_paths(store, [docs], chunk_chars=300, overlap=40)
    used = rag.retrieve(store, "zorblax valve", k=2, mode="keyword")
    model = ModelRecord(name="tiny", family="hf", checkpoint_uri="/m", checkpoint_sha256="0" * 64)
    gid = rag.record_answer(store, "zorblax?", "at 37", used, manifest={"format": "test/1", "seed": 3}, model=model, seed=3)
    g = store.get(gid)
    assert (g.prompt, g.text, g.seed, g.synthetic, g.manifest["format"]) == ("zorblax?", "at 37", 3, True, "test/1")
    grounded = [e for e in graph.edges(store, ("generation", gid), "in") if e.relation == "grounded"]
    assert sorted((e.weight, e.src) for e in grounded) == [(float(i), ("chunk", s.chunk_id)) for i, s in enumerate(used, 1)]
    _, rkey = store.create_user("rob", "reader")
    n = store.backend.count("generations")
    with Store.open(db, api_key=rkey, encoder=None) as rob, pytest.raises(GenzooError, match="--no-store"):
        rag.record_answer(rob, "q", "a", used, manifest={}, model=model)
    assert store.backend.count("generations") == n


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers")
    from hf_tiny import save_tiny_llama

    folder = tmp_path_factory.mktemp("llama")
    save_tiny_llama(folder)
    return folder


def test_an_answer_is_recorded_with_links_to_its_sources(store, docs, tiny_llama):
    rag.index_paths(store, [docs], chunk_chars=300, overlap=40)
    a = rag_task.ask(store, "when does the zorblax valve open?", tiny_llama, k=3, max_tokens=8)
    assert len(a.prompt) > 0 and a.sources and "zorblax" in a.sources[0].text
    from genzoo.tasks.textgen import load_text_model

    _, tok = load_text_model(tiny_llama)
    assert len(tok.encode(a.prompt)) <= 128 - 8  # the tiny model's context is 128 tokens
    g = store.get(a.generation_id)
    assert g.prompt == "when does the zorblax valve open?" and g.text == a.text and g.synthetic
    assert g.manifest["format"] == rag_task.RAG_FORMAT and g.manifest["input"] == a.prompt
    assert [s["chunk_id"] for s in g.manifest["sources"]] == [s.chunk_id for s in a.sources]
    led_to = dict(graph.lineage(store, ("generation", g.id)))
    assert {("chunk", s.chunk_id) for s in a.sources} <= set(led_to)
    assert ("prompt", g.prompt_id) in led_to and ("model", g.model_id) in led_to
    docs_behind = {graph.label(store, n, width=500) for n in led_to if n[0] == "document"}
    assert any(lbl.endswith("notes.txt") for lbl in docs_behind)
    grounded = [e for e in graph.edges(store, ("generation", g.id), "in") if e.relation == "grounded"]
    assert sorted(e.weight for e in grounded) == [float(i) for i in range(1, len(a.sources) + 1)]


def test_cli_index_and_ask(tmp_path, db, docs, tiny_llama):
    runner = CliRunner()
    r = runner.invoke(app, ["rag", "index", str(docs), "--store", str(db), "--keyword-only", "--chunk-chars", "300", "--overlap", "40"])
    assert r.exit_code == 0, r.output
    assert re.search(r"indexed 3 new or changed document\(s\)", r.output)
    r = runner.invoke(app, ["rag", "ask", "zorblax valve temperature", "--model", str(tiny_llama), "--store", str(db), "--mode", "keyword",
                            "--max-tokens", "8", "--k", "2"])
    assert r.exit_code == 0, r.output
    out = r.output.replace("\n", "")  # the console wraps long paths
    assert re.search(r"\[1\] \S+notes\.txt:\d+-\d+", out) and "recorded as generation 1" in out
    r = runner.invoke(app, ["rag", "index", str(tmp_path / "nope"), "--store", str(db), "--keyword-only"])
    assert r.exit_code == 2 and "does not exist" in " ".join(r.output.split())


def test_chunks_indexed_without_vectors_are_embedded_on_first_vector_search(db, docs):
    with Store.open(db, encoder=None) as s:
        assert rag.index_paths(s, [docs], chunk_chars=300, overlap=40).embedded == 0
    with Store.open(db, encoder=HashingEncoder()) as s:
        assert "zorblax" in rag.retrieve(s, "zorblax valve temperature", k=1, mode="vector")[0].text
        stored = s.backend.rows("SELECT count(*) AS n FROM chunk_embeddings")[0]["n"]
        assert stored == s.backend.rows("SELECT count(*) AS n FROM chunks WHERE duplicate_of IS NULL")[0]["n"] > 0
