"""Access control against a user who tries to learn or disturb what others keep (on SQLite and on
PostgreSQL, a real server: see pg_server.py): entity names from others' private records, document
identity and chunk dedup in RAG indexing, keys revoked while a store is open, and the graph's labels."""

import pytest

from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder

from test_store import db  # noqa: F401  (the store's location, per test: a SQLite file or a PostgreSQL database)

SECRET = "Our plan: the launch of Project Falcon happens in March.\n"


@pytest.fixture
def admin(db):
    with Store.open(db, encoder=HashingEncoder()) as s:
        yield s


@pytest.fixture
def users(admin, db):
    """Stores opened by alice and bob (writers) and carol (a reader)."""
    opened = {}
    for name, role in (("alice", "writer"), ("bob", "writer"), ("carol", "reader")):
        _, key = admin.create_user(name, role)
        opened[name] = Store.open(db, api_key=key, encoder=HashingEncoder())
    yield opened
    for s in opened.values():
        s.close()


def _falcon(store) -> tuple[str, int]:
    rows = store.backend.rows("SELECT id FROM entities WHERE kind = 'term' AND name = 'Project Falcon'")
    return ("entity", rows[0]["id"])


def test_an_entity_only_anothers_private_record_names_does_not_exist_for_the_caller(admin, users):
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    gid = alice.record(kind="text", text=SECRET)  # private
    assert ("term", "Project Falcon") in graph.find_entities(SECRET)
    graph.extract_entities(alice, gid)
    falcon = _falcon(admin)
    assert graph.visible(alice, falcon) and graph.visible(admin, falcon)
    assert graph.label(alice, falcon).endswith("term:Project Falcon")
    for other in (bob, carol):
        assert not graph.visible(other, falcon)
        for read in (lambda s, n: graph.label(s, n), lambda s, n: graph.edges(s, n), lambda s, n: graph.lineage(s, n),
                     lambda s, n: graph.descendants(s, n)):
            with pytest.raises(GenzooError, match="not visible to you"):
                read(other, falcon)
        with pytest.raises(GenzooError, match="not visible to you"):
            graph.path(other, falcon, ("generation", gid))
    with pytest.raises(GenzooError, match="not visible to you"):  # nor can bob link his records to it by its id
        graph.relate(bob, ("generation", bob.record(kind="text", text="mine")), "mentions", falcon)
    # bob naming it himself, in his own record, sees it through his own edge, never alice's private one
    mine = bob.record(kind="text", text="I heard about Project Falcon too.")
    assert falcon in graph.extract_entities(bob, mine)
    assert graph.visible(bob, falcon) and not graph.visible(carol, falcon)
    assert {e.src for e in graph.edges(bob, falcon)} == {("generation", mine)}
    # once a shared record mentions it, every reader may see it
    shared = alice.record(kind="text", text=SECRET + "It is public now.", visibility="shared")
    graph.extract_entities(alice, shared)
    assert graph.visible(carol, falcon)
    assert {e.src for e in graph.edges(carol, falcon)} == {("generation", shared)}  # never bob's or alice's private ones


def test_label_checks_visibility_like_every_other_read(admin, users):
    alice, bob = users["alice"], users["bob"]
    gid = alice.record(kind="text", prompt="alice's private prompt", text="alice's private answer")
    pid = alice.get(gid).prompt_id
    assert "private answer" in graph.label(alice, ("generation", gid))
    assert "private prompt" in graph.label(admin, ("prompt", pid))
    for n in (("generation", gid), ("prompt", pid), ("generation", 999_999)):
        with pytest.raises(GenzooError, match="not visible to you"):
            graph.label(bob, n)


def test_indexing_the_same_path_never_replaces_hides_or_reveals_anothers_document(admin, users, tmp_path):
    alice, bob = users["alice"], users["bob"]
    doc = tmp_path / "plans.md"
    doc.write_text(SECRET)
    assert rag.index_paths(alice, [doc]).documents == 1
    assert [s.text for s in rag.retrieve(alice, "Falcon launch", k=1)] == [SECRET]
    # bob indexes the same path with the same content: a document of his own, not "unchanged"
    report = rag.index_paths(bob, [doc])
    assert (report.documents, report.unchanged) == (1, 0)
    assert rag.retrieve(bob, "Falcon launch", k=1)[0].uri == str(doc.resolve())
    # ... and with changed content: alice's document stays current, her retrieval unchanged
    doc.write_text("Bob's notes on the launch of Project Falcon.\n")
    assert rag.index_paths(bob, [doc]).documents == 1
    assert [s.text for s in rag.retrieve(alice, "Falcon launch", k=1)] == [SECRET]
    current = admin.backend.rows("SELECT owner_id FROM documents WHERE superseded_by IS NULL ORDER BY id")
    assert [r["owner_id"] for r in current] == [alice.user.id, bob.user.id]
    # alice re-indexing her unchanged file finds it unchanged; bob's own history still works per owner
    doc.write_text(SECRET)
    assert rag.index_paths(alice, [doc]).unchanged == 1
    report = rag.index_paths(bob, [doc])  # bob's first version becomes current again
    assert (report.documents, report.unchanged) == (1, 0)
    assert [s.text for s in rag.retrieve(bob, "Falcon launch", k=1)] == [SECRET]
    assert [s.text for s in rag.retrieve(alice, "Falcon launch", k=1)] == [SECRET]


def test_indexing_never_reports_copies_of_chunks_the_caller_may_not_see(users, tmp_path):
    alice, bob = users["alice"], users["bob"]
    (tmp_path / "a.md").write_text(SECRET)
    (tmp_path / "b.md").write_text(SECRET)
    (tmp_path / "c.md").write_text(SECRET)
    rag.index_paths(alice, [tmp_path / "a.md"])  # private
    report = rag.index_paths(bob, [tmp_path / "b.md"])
    assert (report.chunks, report.duplicate_chunks, report.embedded) == (1, 0, 1)  # as if nobody held it
    assert [s.uri for s in rag.retrieve(bob, "Falcon launch", k=1)] == [str((tmp_path / "b.md").resolve())]
    report = rag.index_paths(bob, [tmp_path / "c.md"])  # a copy of bob's own chunk is one he may know of
    assert (report.chunks, report.duplicate_chunks, report.embedded) == (1, 1, 0)
    (tmp_path / "d.md").write_text("A shared chunk of text.\n")
    (tmp_path / "e.md").write_text("A shared chunk of text.\n")
    rag.index_paths(alice, [tmp_path / "d.md"], visibility="shared")
    assert rag.index_paths(bob, [tmp_path / "e.md"]).duplicate_chunks == 1  # a shared copy: visible, so reported


def test_a_revoked_key_or_a_changed_role_ends_stores_already_open(admin, users):
    alice, carol = users["alice"], users["carol"]
    gid = alice.record(kind="text", text="alice's private words")
    assert alice.get(gid).text == "alice's private words"
    admin.revoke_keys("alice")
    for call in (lambda: alice.record(kind="text", text="more"), lambda: alice.get(gid), lambda: alice.search("words"),
                 lambda: graph.label(alice, ("generation", gid)), lambda: rag.retrieve(alice, "words", mode="keyword")):
        with pytest.raises(AccessDenied, match="revoked"):
            call()
    assert admin.backend.rows("SELECT count(*) AS n FROM generations")[0]["n"] == 1
    # a role changed while the store is open: carol (a reader) made a writer may now write, and back
    with pytest.raises(AccessDenied, match="reader"):
        carol.record(kind="text", text="carol's words")
    with admin.backend.write():
        admin.backend.execute("UPDATE users SET role = 'writer' WHERE name = 'carol'")
    assert carol.record(kind="text", text="carol's words") > gid
    with admin.backend.write():
        admin.backend.execute("UPDATE users SET role = 'reader' WHERE name = 'carol'")
    with pytest.raises(AccessDenied, match="reader"):
        carol.record(kind="text", text="carol again")


def test_an_admin_may_revoke_their_own_keys(admin, db):
    _, key = admin.create_user("boss", "admin")
    with Store.open(db, api_key=key, encoder=HashingEncoder()) as boss:
        assert boss.revoke_keys("boss") == 1
        with pytest.raises(AccessDenied, match="revoked"):
            boss.get(1)
    assert any(e.action == "revoke_keys" and e.user == "boss" for e in admin.audit_log())


@pytest.fixture(params=["sqlite", "postgres"])
def older(request, tmp_path):
    """A store at the version before per-owner document identity (SQLite 5, PostgreSQL 4), holding
    alice's private document; (location, the module with its migrations)."""
    if request.param == "sqlite":
        from genzoo.store import schema
        from genzoo.store.sqlite import connect, migrate

        url, module = tmp_path / "store.db", schema
        conn = connect(url)
        try:
            assert migrate(conn, target=5) == 5
            conn.execute("INSERT INTO users(name, role, created_at) VALUES ('local', 'admin', 1.0), ('alice', 'writer', 2.0)")
            conn.execute("INSERT INTO documents(uri, title, sha256, owner_id, created_at) VALUES ('/plans.md', 'plans.md', 'h', 2, 3.0)")
        finally:
            conn.close()
        return url, module
    from genzoo.store import pg_schema
    from genzoo.store.postgres import connect, migrate

    url = request.getfixturevalue("pg_empty_url")
    with connect(url) as conn:
        assert migrate(conn, target=4) == 4
        with conn.transaction():
            conn.execute("INSERT INTO users(name, role, created_at) VALUES ('local', 'admin', 1.0), ('alice', 'writer', 2.0)")
            conn.execute("INSERT INTO documents(uri, title, sha256, owner_id, created_at) VALUES ('/plans.md', 'plans.md', 'h', 2, 3.0)")
    return url, pg_schema


def test_an_older_store_upgrades_to_per_owner_document_identity(older):
    url, module = older
    with Store.open(url, encoder=HashingEncoder()) as admin:
        assert admin.backend.schema_version() == module.LATEST
        assert [r["uri"] for r in admin.backend.rows("SELECT uri FROM documents")] == ["/plans.md"]
        key = admin.new_key("alice")
        _, bob_key = admin.create_user("bob", "writer")
    with Store.open(url, api_key=key, encoder=HashingEncoder()) as alice, Store.open(url, api_key=bob_key, encoder=HashingEncoder()) as bob:
        # the same uri and content, indexed by two owners: two documents, both current
        assert rag.index_text(alice, "/same.md", SECRET) != rag.index_text(bob, "/same.md", SECRET)
        assert [s.uri for s in rag.retrieve(alice, "Falcon launch", k=1)] == ["/same.md"]
        assert [s.uri for s in rag.retrieve(bob, "Falcon launch", k=1)] == ["/same.md"]


def test_an_admin_retrieves_a_text_two_owners_each_stored_once(admin, users):
    rag.index_text(users["alice"], "/a.md", SECRET)
    rag.index_text(users["bob"], "/b.md", SECRET)  # stored anew: bob may not see alice's copy
    assert [s.text for s in rag.retrieve(admin, "Falcon launch", k=4)] == [SECRET]


def test_the_cli_shows_a_reader_no_entity_from_anothers_private_record(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    path = tmp_path / "store.db"
    with Store.open(path, encoder=None) as admin:
        _, alice_key = admin.create_user("alice", "writer")
        _, reader_key = admin.create_user("eve", "reader")
    with Store.open(path, api_key=alice_key, encoder=None) as alice:
        graph.extract_entities(alice, alice.record(kind="text", text=SECRET))
        falcon = _falcon(alice)
    monkeypatch.setenv("GENZOO_API_KEY", reader_key)
    result = CliRunner().invoke(app, ["graph", f"entity:{falcon[1]}", "--store", str(path)])
    assert "Falcon" not in result.output and result.exit_code != 0, result.output
    assert "not visible to you" in result.output
    monkeypatch.setenv("GENZOO_API_KEY", alice_key)
    result = CliRunner().invoke(app, ["graph", f"entity:{falcon[1]}", "--direction", "out", "--store", str(path)])
    assert result.exit_code == 0 and "Project Falcon" in result.output, result.output
