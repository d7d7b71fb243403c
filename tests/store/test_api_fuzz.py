"""Fuzzing the store's Python API (the CLI's own fuzz is in test_inputs.py): random text (lone
surrogates, NULs), bytes, huge and negative ints, NaN and infinities and wrong types for search
queries and filters, ``get`` ids, ``record`` fields, feedback, graph nodes and relations, RAG
retrieval, stats, duplicates, ``similar``, and hostile RAG index paths and export targets (FIFOs,
folders, /dev/null, missing paths, symbolic-link loops). Every call either succeeds or raises
``GenzooError``, never another exception and never a hang (each call under ``signal.alarm``), and a
read leaves the store as it was (row counts of every table, integrity check), as does a refused write.
SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os
import signal
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag, stats
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.export import export

ENCODER = HashingEncoder(64)
SECONDS = 10  # a call that takes longer than this hangs
SCALE = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1  # tests/conftest.py


class Hang(BaseException):  # not an Exception: nothing in the store may swallow it
    pass


@contextmanager
def deadline(seconds: int = SECONDS):
    def boom(*_):
        raise Hang(f"call still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def outcome(fn, *args, **kwargs):
    """fn's result, or the GenzooError it raised; any other exception fails the test."""
    with deadline():
        try:
            return fn(*args, **kwargs)
        except GenzooError as e:
            return e


def snapshot(store) -> tuple:
    b = store.backend
    if str(b.url).startswith("postgres"):
        tables = [r["tablename"] for r in b.rows("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
    else:
        tables = [r["name"] for r in b.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                             "AND name NOT LIKE '%fts_%' ORDER BY 1")]
    return tuple((t, b.rows(f'SELECT count(*) AS n FROM "{t}"')[0]["n"]) for t in tables), store.integrity_check()


anytext = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates and NULs included
weird = st.one_of(
    anytext, st.binary(max_size=20), st.integers(-(2**70), 2**70), st.integers(-3, 1005),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.sampled_from(["\ud800", "a\x00b", "", " ", "generation:1", "entity:-1", "prompt:99999999999999999999", "shared",
                     "private", "text", "image", "keyword", "vector", "hybrid", "rrf", "weighted", "day", "week", "alice",
                     "2025-01-31", "9999-99-99", "1e400", "NaN", "launch", 'plan" OR *', "NEAR(a b)", "\u0000"]),
    st.lists(st.integers(-5, 5), max_size=3), st.tuples(st.sampled_from(graph.NODE_TYPES), st.integers(-(2**70), 2**70)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(object()), st.just(float("nan")),
)
FILTERS = ("model", "family", "user", "kind", "since", "until", "min_rating", "synthetic", "bogus")


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        where = tmp_path_factory.mktemp("fuzz") / "store.db"
        drop = None
    else:
        cluster = request.getfixturevalue("pg_cluster")
        where = cluster.new_database()
        drop = lambda: cluster.drop(where)  # noqa: E731
    s = Store.open(where, encoder=ENCODER, redact=False)
    _, key = s.create_user("alice", "writer")
    alice = Store.open(where, api_key=key, encoder=ENCODER, redact=False)
    gid = s.record(kind="text", text="Notes on Project Falcon for the launch plan.", prompt="ask", family="fam", visibility="shared")
    alice.record(kind="text", text="alice's own launch plan", prompt="hers")
    s.feedback(gid, rating=4, label="good", comment="fine")
    graph.extract_entities(s, gid)
    rag.index_text(s, "/docs/plan.md", "The launch plan of Project Falcon.\n", visibility="shared")
    yield s
    alice.close()
    s.close()
    if drop is not None:
        drop()


SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


@settings(max_examples=60 * SCALE, **SETTINGS)
@given(query=weird, mode=weird, k=weird, fusion=weird, alpha=weird, filters=st.dictionaries(st.sampled_from(FILTERS), weird, max_size=3))
def test_search_and_reads_accept_any_input_and_change_nothing(store, query, mode, k, fusion, alpha, filters):
    before = snapshot(store)
    outcome(store.search, query, mode=mode, k=k, fusion=fusion, alpha=alpha, **filters)
    outcome(store.search, query, mode="hybrid", **filters)
    outcome(store.get, k)
    outcome(store.feedback_for, query)
    outcome(store.similar, [1.0, 2.0], space=mode, k=k, **filters)
    outcome(store.similar, [k] * 64, space=ENCODER.space)
    outcome(store.similar, k, space=ENCODER.space)
    outcome(store.duplicates, mode, threshold=alpha, **{f: v for f, v in filters.items() if f != "kind"})
    outcome(stats.usage, store, by=mode, model=query)
    outcome(rag.retrieve, store, query, k=k, mode=mode)
    outcome(rag.retrieve, store, query if isinstance(query, str) else "launch", mode="hybrid")
    assert snapshot(store) == before


@settings(max_examples=40 * SCALE, **SETTINGS)
@given(a=weird, b=weird, relation=weird, width=weird, direction=weird)
def test_graph_reads_accept_any_node(store, a, b, relation, width, direction):
    before = snapshot(store)
    for n in (a, b):
        outcome(graph.label, store, n)
        outcome(graph.label, store, n, width=width if isinstance(width, int) and not isinstance(width, bool) else 60)
        outcome(graph.edges, store, n, direction)
        outcome(graph.lineage, store, n)
        outcome(graph.descendants, store, n, types=relation if isinstance(relation, (list, tuple, type(None))) else None)
    outcome(graph.path, store, a, b)
    assert snapshot(store) == before
    # writes: a refused one changes nothing
    r = outcome(graph.relate, store, a, relation, b)
    if isinstance(r, GenzooError):
        assert snapshot(store) == before
    outcome(graph.entity, store, relation, a)


@settings(max_examples=60 * SCALE, **SETTINGS)
@given(fields=st.dictionaries(st.sampled_from(["kind", "text", "prompt", "visibility", "synthetic", "manifest", "quality", "content",
                                               "parent_id", "seed", "turn", "model_id", "family", "session_id", "conversation_id",
                                               "content_type", "embedding", "space"]),
                              weird, max_size=5),
       gid=weird, rating=weird, label=weird, comment=weird)
def test_writes_take_any_input_or_refuse_it_cleanly(store, fields, gid, rating, label, comment):
    before = snapshot(store)
    r = outcome(store.record, **{"kind": "text", "text": "fuzzed record", **fields})
    if isinstance(r, GenzooError):
        assert snapshot(store) == before
    before = snapshot(store)
    r = outcome(store.feedback, gid, rating=rating, label=label, comment=comment)
    if isinstance(r, GenzooError):
        assert snapshot(store) == before
    before = snapshot(store)
    r = outcome(graph.extract_entities, store, gid)
    if isinstance(r, GenzooError):
        assert snapshot(store) == before


@pytest.fixture
def hostile_paths(tmp_path):
    """Paths no indexer or exporter should read, write or hang on."""
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    (tmp_path / "folder.md").mkdir()
    (tmp_path / "loop_a.md").symlink_to(tmp_path / "loop_b.md")
    (tmp_path / "loop_b.md").symlink_to(tmp_path / "loop_a.md")
    (tmp_path / "dirloop").mkdir()
    (tmp_path / "dirloop" / "again").symlink_to(tmp_path / "dirloop")
    (tmp_path / "dirloop" / "pipe.md").symlink_to(fifo)
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.jsonl")
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe not utf-8 \x80")
    (tmp_path / "ok.md").write_text("An ordinary document about the launch plan.\n")
    return [fifo, tmp_path / "folder.md", tmp_path / "loop_a.md", tmp_path / "dirloop", tmp_path / "bad.md", tmp_path / "missing.md",
            tmp_path / "link.jsonl", "/dev/null", "/dev/zero", "/proc/self/status", "/proc", "", "a\x00b.md", "\udcff.md", b"bytes.md",
            tmp_path / "ok.md", tmp_path, 12, None, float("nan")]


def test_rag_indexing_and_export_refuse_hostile_paths_without_hanging(store, hostile_paths, tmp_path):
    for p in hostile_paths:
        r = outcome(rag.index_paths, store, [p])
        if isinstance(r, rag.IndexReport) and p not in (tmp_path / "ok.md", tmp_path, tmp_path / "dirloop", tmp_path / "folder.md"):
            assert r.documents == 0, (p, r)
        outcome(rag.index_paths, store, p)  # not a list
        before = snapshot(store)
        for target in (p, f"{p}.jsonl" if isinstance(p, (str, os.PathLike)) else p):
            r = outcome(export, store, target, rated_min=0, include_synthetic=True)
            if not isinstance(r, GenzooError):
                assert str(target).endswith(".jsonl") and os.path.isfile(target) and not os.path.islink(target), target
        for bad in (math.nan, -1e400, 10**400, "4", True, object()):
            outcome(export, store, tmp_path / "out.jsonl", rated_min=bad)
        outcome(export, store, tmp_path / "out.jsonl", label="\ud800")
        outcome(export, store, tmp_path / "out.jsonl", label=b"good")
        outcome(export, store, tmp_path / "out.jsonl", label="good", fmt=p)
        assert snapshot(store) == before
    db = getattr(store.backend, "path", None)
    if db is not None:
        assert isinstance(outcome(export, store, db, rated_min=0, fmt="jsonl"), GenzooError)
