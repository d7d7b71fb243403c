"""`genzoo rag ask` that fits the model: without --model an extractive answer (the best retrieved
sentences, quoted with their lines; MiniLM or keyword-only), with a model a prompt budgeted to its
context (sources trimmed, then dropped; --max-tokens lowered with a note, never "no room")."""

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag
from genzoo.store.api import Store
from genzoo.tasks import rag as rag_task
from genzoo.tasks.rag_budget import fit_prompt

runner = CliRunner()
QUESTION = "how do I continue a stopped run?"


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return " ".join(result.output.split())  # the console wraps long paths


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_STORE", str(tmp_path / "s.db"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENZOO_API_KEY", raising=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "resume.md").write_text("# Resuming\n\nTo continue a stopped run, pass --resume with the same --out folder.\n")
    (docs / "sample.md").write_text("# Sampling\n\nUse genzoo sample RUN --n 16 to draw images from a trained model.\n")
    return tmp_path


def test_extractive_answer_quotes_the_right_passage_and_cites_it(env):
    cli("rag", "index", env / "docs")
    out = cli("rag", "ask", QUESTION, "--no-store")
    answer = out.split("sources:")[0]
    assert "--resume" in answer and "draw images" not in answer
    assert "[1] " in out and "resume.md:1-3" in out and "extractive answer" in out
    with Store.open(env / "s.db", encoder=None) as s:
        assert s.backend.count("generations") == 0


def test_keyword_only_fallback_records_an_extractive_answer(env):
    cli("rag", "index", env / "docs", "--keyword-only")
    out = cli("rag", "ask", "how do I draw images from a trained model?", "--mode", "keyword")
    assert "genzoo sample RUN --n 16" in out.split("sources:")[0] and "sample.md:1-3" in out and "recorded as generation 1" in out
    with Store.open(env / "s.db", encoder=None) as s:
        g = s.get(1)
        assert g.manifest["answer"] == "extractive" and s.backend.get_model(g.model_id).family == "extractive"
        grounded = [e for e in graph.edges(s, ("generation", 1), "in") if e.relation == "grounded"]
        assert len(grounded) == 1
        # the task API without any encoder: keyword retrieval, word overlap only
        a = rag_task.ask(s, QUESTION, mode="keyword", record=False)
        assert a.kind == "extractive" and "--resume" in a.text and a.sources[0].uri.endswith("resume.md")
        assert a.quotes[0].start_line == 3 and [d.uri.endswith("sample.md") for d in a.dropped] in ([], [True])


def test_nothing_indexed_is_a_clear_error(env):
    out = cli("rag", "ask", QUESTION, "--mode", "keyword", code=2)
    assert "no documents are indexed" in out and "genzoo rag index" in out


def test_the_budget_trims_then_drops_sources_and_lowers_max_tokens():
    words = lambda t: len(t.split())  # noqa: E731
    filler = "Unrelated words fill this sentence up. " * 12
    sources = [rag.Source(1, "/d/a.md", 1, 9, filler + "To continue a stopped run pass --resume with the same folder. " + filler, 0.03),
               rag.Source(2, "/d/b.md", 1, 9, "Sampling draws images. " * 40, 0.02)]
    b = fit_prompt(QUESTION, sources, words, context=80, max_tokens=40)
    assert words(b.prompt) <= 80 - b.max_tokens and b.prompt.endswith(f"Question: {QUESTION}\nAnswer:")
    assert b.prompt.startswith("Answer from the sources") and "--resume" in b.prompt  # the source cut to its best sentence
    assert [s.chunk_id for s in b.kept] == [1] and b.trimmed == [1] and [s.chunk_id for s in b.dropped] == [2]
    b = fit_prompt(QUESTION, sources, words, context=30, max_tokens=40)  # asks for more than the context holds
    assert 1 <= b.max_tokens < 40 and any("--max-tokens lowered" in n for n in b.notes)
    with pytest.raises(GenzooError, match="extractive"):
        fit_prompt(QUESTION, sources, len, context=4, max_tokens=4)


def test_a_tiny_gpt_answers_with_a_budgeted_prompt(env):
    run = env / "gpt"
    cli("train", "gpt", "--data", "pydocs", "--steps", 2, "--batch-size", 4, "--val-every", 0, "--out", run, "--no-eval",
        "--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32")
    cli("rag", "index", env / "docs", "--keyword-only")
    out = cli("rag", "ask", QUESTION, "--model", run, "--mode", "keyword", "--max-tokens", 60)
    assert "no room" not in out and "--max-tokens lowered from 60" in out
    assert "left out for room" in out and "resume.md:1-3" in out and "recorded as generation 1" in out
    with Store.open(env / "s.db", encoder=None) as s:
        budget = s.get(1).manifest["budget"]
        assert budget["context"] == 32 and budget["requested_max_tokens"] == 60 and budget["dropped"]
