"""The relationship graph: lineage (what led to an output), descendants (what a model or document led
to), paths, user-given and extracted relations, visibility (on SQLite and on PostgreSQL, a real server: see
pg_server.py), and the SQLite schema migration from version 1."""

import pytest

from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag, schema
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.records import ModelRecord

from test_store import db  # noqa: F401  (the store's location, per test: a SQLite file or a PostgreSQL database)


@pytest.fixture
def store(db):
    with Store.open(db, encoder=HashingEncoder()) as s:
        yield s


@pytest.fixture
def world(store, tmp_path):
    """A base model and its fine-tune, a prompt, a generation and its follow-up, and an answer
    grounded in a chunk of an indexed document."""
    base = store.register_model(ModelRecord(name="base", family="gpt"))
    tuned = store.register_model(ModelRecord(name="tuned", family="gpt", parent_id=base))
    first = store.record(kind="text", prompt="write a parser", text="def parse(s): ...", model_id=tuned, family="gpt")
    second = store.record(kind="text", text="def parse(s):\n    return s.split()", model_id=tuned, parent_id=first)
    doc = tmp_path / "manual.md"
    doc.write_text("# Parsing\n\nThe Tokenizer Module splits text.\n")
    rag.index_paths(store, [doc])
    chunk = rag.retrieve(store, "tokenizer splits", k=1)[0].chunk_id
    graph.relate(store, ("chunk", chunk), "grounded", ("generation", second), origin="rag", weight=1.0)
    return {"base": base, "tuned": tuned, "first": first, "second": second, "chunk": chunk,
            "doc": store.backend.rows("SELECT id FROM documents")[0]["id"], "prompt": store.get(first).prompt_id}


def test_lineage_names_every_prompt_model_document_and_parent_behind_an_output(store, world):
    led = dict(graph.lineage(store, ("generation", world["second"])))
    assert led[("generation", world["first"])] == 1 and led[("model", world["tuned"])] == 1 and led[("chunk", world["chunk"])] == 1
    assert led[("prompt", world["prompt"])] == 2  # through the parent generation
    assert led[("model", world["base"])] == 2  # the fine-tune's parent model
    assert led[("document", world["doc"])] == 2
    only_docs = graph.lineage(store, "generation:%d" % world["second"], types={"document"})
    assert only_docs == [(("document", world["doc"]), 2)]
    assert graph.lineage(store, ("generation", world["first"]), types={"document"}) == []  # not grounded


def test_descendants_say_what_a_model_or_document_led_to(store, world):
    from_base = {n for n, _ in graph.descendants(store, ("model", world["base"]), types={"generation"})}
    assert from_base == {("generation", world["first"]), ("generation", world["second"])}
    from_doc = [n for n, _ in graph.descendants(store, ("document", world["doc"]), types={"generation"})]
    assert from_doc == [("generation", world["second"])]


def test_a_path_links_a_document_to_an_output_through_its_chunk(store, world):
    chain = graph.path(store, ("document", world["doc"]), ("generation", world["second"]))
    assert [e.relation for e in chain] == ["contains", "grounded"]
    assert chain[0].src == ("document", world["doc"]) and chain[-1].dst == ("generation", world["second"])
    lonely = store.record(kind="text", text="unrelated")
    assert graph.path(store, ("document", world["doc"]), ("generation", lonely)) is None


def test_user_relations_and_extracted_entities(store, world):
    rid = graph.relate(store, ("generation", world["second"]), "fixes", ("generation", world["first"]))
    assert graph.relate(store, ("generation", world["second"]), "fixes", ("generation", world["first"])) == rid  # kept once
    out = graph.edges(store, ("generation", world["second"]), "out")
    assert any(e.relation == "fixes" and e.origin == "user" and e.dst == ("generation", world["first"]) for e in out)
    gid = store.record(kind="text", text="The Tokenizer Module calls `split_words` first.\n\ndef join_words(xs):\n    return xs\n")
    names = {graph.label(store, n).split(" ", 1)[1] for n in graph.extract_entities(store, gid)}
    assert {"python:split_words", "python:join_words", "term:Tokenizer Module"} <= names
    assert "term:The" not in names and "term:The Tokenizer Module" not in names  # a sentence start is not a term
    mentioned = graph.descendants(store, ("generation", gid), types={"entity"})
    back = graph.descendants(store, mentioned[0][0]) + graph.lineage(store, mentioned[0][0])
    assert ("generation", gid) in {n for n, _ in back}


def test_bad_nodes_and_relations_get_clear_errors(store, world):
    for bad in ("generation", "planet:3", ("generation", "1"), ("generation", True)):
        with pytest.raises(GenzooError, match="TYPE:ID"):
            graph.node(bad)
    with pytest.raises(GenzooError, match="no generation 999"):
        graph.lineage(store, ("generation", 999))
    with pytest.raises(GenzooError, match="relation name"):
        graph.relate(store, ("generation", world["first"]), "DROP TABLE x;", ("generation", world["second"]))


def test_private_records_of_others_stay_out_of_the_graph(store, world, db):
    _, key = store.create_user("wes", "writer")
    with Store.open(db, api_key=key, encoder=HashingEncoder()) as wes:
        mine = wes.record(kind="text", text="wes's own", model_id=world["tuned"], visibility="private")
        seen = {n for n, _ in graph.descendants(wes, ("model", world["tuned"]))}
        assert ("generation", mine) in seen and ("generation", world["first"]) not in seen
        with pytest.raises(GenzooError, match="not visible"):
            graph.lineage(wes, ("generation", world["second"]))
        with pytest.raises(GenzooError, match="not visible"):
            graph.relate(wes, ("generation", mine), "cites", ("generation", world["first"]))
    seen = {n for n, _ in graph.descendants(store, ("model", world["tuned"]))}
    assert ("generation", mine) in seen  # the admin sees everything
    _, rkey = store.create_user("rob", "reader")
    with Store.open(db, api_key=rkey, encoder=HashingEncoder()) as rob, pytest.raises(AccessDenied):
        graph.relate(rob, ("model", world["base"]), "likes", ("model", world["tuned"]))


def test_a_version_1_store_upgrades_to_the_graph_schema(tmp_path):
    from test_store_schema import write_v1_store

    path = tmp_path / "old.db"
    write_v1_store(path)
    with Store.open(path, encoder=HashingEncoder()) as s:
        assert s.backend.schema_version() == schema.LATEST >= 4
        led = dict(graph.lineage(s, ("generation", 1)))
        assert led == {("prompt", 1): 1, ("model", 1): 1}
        e = graph.entity(s, "python", "lambda")
        graph.relate(s, ("generation", 1), "mentions", e, origin="extracted")
        assert [n for n, _ in graph.descendants(s, ("generation", 1))] == [e]
        assert s.integrity_check() == "ok"


def test_cli_walks_the_graph(store, world, db):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    db = str(db)
    r = CliRunner().invoke(app, ["graph", f"generation:{world['second']}", "--types", "document,model", "--store", db])
    assert r.exit_code == 0, r.output
    assert "model:%d tuned" % world["tuned"] in r.output and "model:%d base" % world["base"] in r.output and "manual.md" in r.output
    r = CliRunner().invoke(app, ["graph", f"document:{world['doc']}", "--direction", "out", "--types", "generation", "--store", db])
    assert r.exit_code == 0 and f"generation:{world['second']}" in r.output and f"generation:{world['first']} " not in r.output
    r = CliRunner().invoke(app, ["graph", "planet:1", "--store", db])
    assert r.exit_code == 2 and "TYPE:ID" in r.output
