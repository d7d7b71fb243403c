"""What is particular to the PostgreSQL backend (test_store.py runs the common suite on it too, and
test_store_crash.py a SIGKILLed bulk ingest): versioned migrations, hostile tsquery input, and a streaming-replication
hot standby serving searches while writes go to the primary."""

import time

import pytest

from genzoo.core.errors import GenzooError
from genzoo.store import pg_schema
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.search import Filters

psycopg = pytest.importorskip("psycopg")


def open_store(url, **kw):
    kw.setdefault("encoder", HashingEncoder())
    return Store.open(url, **kw)


def write_v1_store(url):
    """Rows as a genzoo of PostgreSQL schema version 1 wrote them (plain SQL on the version-1 layout)."""
    from genzoo.store.postgres import connect, migrate

    with connect(url) as conn:
        assert migrate(conn, target=1) == 1
        with conn.transaction():
            conn.execute("INSERT INTO users(name, role, created_at) VALUES ('local', 'admin', 1.0), ('ann', 'writer', 2.0)")
            conn.execute("INSERT INTO prompts(text, sha256, owner_id, conversation_id, turn, created_at) "
                         "VALUES ('tell me about lambdas', 'x', 2, 'c9', 1, 4.0)")
            conn.execute("INSERT INTO generations(kind, family, prompt_id, owner_id, visibility, conversation_id, text, "
                         "content_sha256, manifest, seed, synthetic, created_at) VALUES ('text', 'gpt', 1, 2, 'shared', 'c9', "
                         "'lambda expressions create anonymous functions', 'h', '{\"seed\": 7}', 7, 1, 5.0)")
            conn.execute("INSERT INTO generations(kind, family, owner_id, content, content_type, content_sha256, synthetic, created_at) "
                         "VALUES ('image', 'vae', 1, '\\x89504e47'::bytea, 'image/png', 'h2', 0, 6.0)")
            conn.execute("INSERT INTO feedback(generation_id, user_id, rating, created_at) VALUES (1, 1, 4.0, 7.0)")
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("users", "prompts", "generations", "feedback")}


def test_a_version_1_database_upgrades_without_loss_and_becomes_searchable(pg_empty_url):
    before = write_v1_store(pg_empty_url)
    with open_store(pg_empty_url) as s:
        assert s.backend.schema_version() == pg_schema.LATEST
        for table, rows in before.items():
            after = [r[: len(rows[0])] for r in s.backend.w.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()]
            assert after[: len(rows)] == rows, table
        g = s.get(1)
        assert (g.text, g.prompt, g.rating, g.manifest["seed"], g.quality) == (
            "lambda expressions create anonymous functions", "tell me about lambdas", 4.0, 7, {})
        assert s.get(2).content == b"\x89PNG" and s.get(2).synthetic is False
        assert [h.generation.id for h in s.search("lambdas", mode="keyword")] == [1]  # backfilled full-text rows
        assert s.search("anonymous functions lambda", mode="vector")[0].generation.id == 1  # queued, embedded on search
        new = s.record(kind="text", text="a record after the upgrade about lambdas")
        assert {h.generation.id for h in s.search("lambdas", mode="keyword")} == {1, new}
        assert s.integrity_check() == "ok"


def test_a_failed_migration_changes_nothing_and_newer_stores_are_refused(pg_empty_url, monkeypatch):
    from genzoo.store.postgres import connect

    write_v1_store(pg_empty_url)
    monkeypatch.setitem(pg_schema.MIGRATIONS, 3, pg_schema.V3 + "\nCREATE TABLE users (oops INTEGER);\n")
    with pytest.raises(psycopg.errors.DuplicateTable):
        open_store(pg_empty_url)
    with connect(pg_empty_url) as conn:
        assert conn.execute("SELECT version FROM genzoo_schema").fetchone()[0] == 2  # 2 committed, 3 rolled back whole
        assert conn.execute("SELECT to_regclass('documents')").fetchone()[0] is None
    monkeypatch.undo()
    with open_store(pg_empty_url) as s:
        assert s.backend.schema_version() == pg_schema.LATEST and s.get(1).rating == 4.0
    with connect(pg_empty_url) as conn:
        conn.execute("UPDATE genzoo_schema SET version = 99")
    with pytest.raises(GenzooError, match="newer"):
        open_store(pg_empty_url)


def test_a_database_holding_other_tables_is_not_taken_over(pg_empty_url):
    from genzoo.store.postgres import connect

    with connect(pg_empty_url) as conn:
        conn.execute("CREATE TABLE generations (x INTEGER)")
    with pytest.raises(GenzooError, match="not a genzoo store"):
        open_store(pg_empty_url)


def test_hostile_terms_never_reach_tsquery_syntax(pg_url):
    with open_store(pg_url) as s:
        gid = s.record(kind="text", text="zebra plans & notes", visibility="shared")
        nasty = ["a & b", "!", ":*", "'", "zebra:*", "(", "<->", "|", "zebra' | 'x", "\\", "%s", "$1", "\x00", "\ud800", "e" * 3000]
        for term in nasty:
            assert [i for i, _ in s.backend.keyword([term, "zebra"], Filters(), None, 5)] == [gid], term
            assert [i for i, _ in s.backend.keyword([term], Filters(), None, 5)] in ([], [gid]), term
        with pytest.raises(GenzooError, match="NUL"):
            s.record(kind="text", text="nul \x00 inside")
        assert s.backend.count("generations") == 1


@pytest.fixture
def replicated(pg_cluster, pg_url):
    """(primary URL, the same database's URL on the hot standby)."""
    from genzoo.store.pg_local import wait_for_replay
    from genzoo.store.postgres import connect

    standby = pg_cluster.standby()
    standby_url = standby.url(pg_url.split("?")[0].rsplit("/", 1)[1])
    with connect(pg_cluster.base) as p, connect(standby.url()) as r:
        wait_for_replay(p, r)  # the new database has reached the standby
    return pg_url, standby_url


def test_searches_run_on_the_standby_while_writes_go_to_the_primary(replicated):
    from genzoo.store.postgres import connect

    primary_url, standby_url = replicated
    with open_store(primary_url, read_url=standby_url) as s:
        assert s.backend.r.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert s.backend.w.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        gid = s.record(kind="text", text="replicated quokka sighting", visibility="shared")
        start = time.perf_counter()
        while not s.search("quokka", mode="keyword"):  # a write on the primary becomes visible on the standby
            assert time.perf_counter() - start < 10, "not replicated within 10 s"
            time.sleep(0.005)
        hits = s.search("quokka sighting", mode="hybrid")
        assert hits[0].generation.id == gid and hits[0].keyword_rank == 1 and hits[0].vector_rank == 1
        with connect(standby_url) as standby:
            standby.execute("SELECT pg_wal_replay_pause()")  # freeze the standby: searches must not see new writes
            try:
                later = s.record(kind="text", text="unreplicated quokka", visibility="shared")
                assert [h.generation.id for h in s.search("quokka", mode="keyword")] == [gid]  # served by the standby
                with pytest.raises(GenzooError, match="no generation"):  # the standby lags: no read-your-writes
                    s.get(later)
                with open_store(primary_url) as direct:
                    assert {h.generation.id for h in direct.search("quokka", mode="keyword")} == {gid, later}
            finally:
                standby.execute("SELECT pg_wal_replay_resume()")
        deadline = time.time() + 10
        while len(s.search("quokka", mode="keyword")) < 2:
            assert time.time() < deadline
            time.sleep(0.005)


def test_a_write_through_the_standby_is_refused_and_keys_are_checked_on_the_primary(replicated):
    primary_url, standby_url = replicated
    with open_store(primary_url) as admin:
        _, key = admin.create_user("wanda", "writer")
    with open_store(primary_url, read_url=standby_url, api_key=key) as s:  # a fresh key works at once (checked on the primary)
        s.record(kind="text", text="by wanda")
        admin_store = open_store(primary_url)
        admin_store.revoke_keys("wanda")
        admin_store.close()
    from genzoo.store.api import AccessDenied

    with pytest.raises(AccessDenied, match="revoked"):  # even before the standby has replayed the revocation
        open_store(primary_url, read_url=standby_url, api_key=key)
    deadline = time.time() + 10
    while True:
        try:
            standby_only = open_store(standby_url)
            break
        except GenzooError:  # the standby may still lack the first records
            assert time.time() < deadline
            time.sleep(0.01)
    with standby_only:
        with pytest.raises(GenzooError, match="read-only standby"):
            standby_only.record(kind="text", text="written to a standby")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the server itself refuses, not only genzoo
            standby_only.backend.w.execute("INSERT INTO users(name, role, created_at) VALUES ('x', 'admin', 0)")
    with pytest.raises(GenzooError, match="read replica"):
        Store.open("sqlite:///tmp/never.db", read_url=standby_url, encoder=None)


def test_the_cli_searches_a_postgresql_store_by_url(pg_url):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    with open_store(pg_url) as s:
        s.record(kind="text", text="pelican migration notes", family="gpt")
    runner = CliRunner()
    for args, expected in ((["pelican", "--mode", "keyword"], "1 result(s)"), (["pelican", "--mode", "keyword", "--family", "vae"], "0 result(s)"),
                           (['" OR NEAR( * :* & !', "--mode", "keyword"], "0 result(s)")):
        res = runner.invoke(app, ["search", *args, "--store", pg_url])
        assert res.exit_code == 0 and expected in res.output, res.output
    assert "secret" not in runner.invoke(app, ["search", "x", "--mode", "keyword", "--store", pg_url.replace("postgres:@", "postgres:secret@")]).output


def test_sqlite_placeholders_become_psycopg_ones_outside_quotes():
    from genzoo.store.postgres import portable, safe_url

    assert portable("SELECT * FROM t WHERE a = ? AND b LIKE '%?%' AND c = \"?\" AND d = ?") == \
        "SELECT * FROM t WHERE a = %s AND b LIKE '%%?%%' AND c = \"?\" AND d = %s"
    assert safe_url("postgresql://ann:hunter2@db.example/genzoo") == "postgresql://ann:***@db.example/genzoo"


def test_filtered_vector_search_agrees_between_the_hnsw_walk_and_the_exact_scan(pg_url, monkeypatch):
    from genzoo.store import postgres

    with open_store(pg_url) as s:
        ids = [s.record(kind="text", text=f"sample about {'herons' if i % 2 else 'otters'} number {i}", family="gpt" if i % 3 else "vae",
                        synthetic=i % 4 != 0) for i in range(40)]
        answers = {}
        for below in (-1, 10**9):  # never exact (HNSW + iterative scan), always exact
            monkeypatch.setattr(postgres, "EXACT_BELOW", below)
            answers[below] = [{h.generation.id for h in s.search("herons number", mode="vector", k=100, **f)}
                              for f in ({"family": "vae"}, {"synthetic": False}, {"family": "gpt", "synthetic": True})]
        assert answers[-1] == answers[10**9]
        assert answers[-1][0] == {ids[i] for i in range(40) if i % 3 == 0}
