"""Schema migrations: a store written at version 1 (or 2) upgrades to the latest without losing
a row, becomes searchable (the full-text index is backfilled, vectors made on first search), and
a copy of the old file is kept beside it."""

import json
import sqlite3

import pytest

from genzoo.store import schema
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.sqlite import connect, migrate

TABLES_V1 = ("users", "api_keys", "models", "prompts", "generations", "feedback", "audit_log")


def write_v1_store(path):
    """Rows as a genzoo of schema version 1 wrote them (plain SQL against the version-1 layout)."""
    conn = connect(path)
    assert migrate(conn, target=1) == 1
    conn.execute("BEGIN")
    conn.execute("INSERT INTO users(name, role, created_at) VALUES ('local', 'admin', 1.0), ('ann', 'writer', 2.0)")
    conn.execute("INSERT INTO api_keys(user_id, key_sha256, prefix, created_at) VALUES (2, 'k' || hex(randomblob(8)), 'gz_abc', 2.0)")
    conn.execute("INSERT INTO models(name, family, config, checkpoint_sha256, metrics, lineage, created_at) "
                 "VALUES ('gpt-pydocs', 'gpt', '{\"layers\": 2}', 'ab12', '{\"bpc\": 2.1}', '{\"data\": \"pydocs\"}', 3.0)")
    conn.execute("INSERT INTO prompts(text, sha256, owner_id, conversation_id, turn, created_at) VALUES ('tell me about lambdas', 'x', 2, 'c9', 1, 4.0)")
    manifest = json.dumps({"format": "genzoo.textgen/1", "seed": 7})
    conn.execute("INSERT INTO generations(kind, model_id, family, prompt_id, owner_id, visibility, conversation_id, text, "
                 "content_sha256, manifest, seed, synthetic, created_at) VALUES ('text', 1, 'gpt', 1, 2, 'shared', 'c9', "
                 "'lambda expressions create anonymous functions', 'h', ?, 7, 1, 5.0)", (manifest,))
    conn.execute("INSERT INTO generations(kind, family, owner_id, content, content_type, content_sha256, synthetic, created_at) "
                 "VALUES ('image', 'vae', 1, x'89504e47', 'image/png', 'h2', 0, 6.0)")
    conn.execute("INSERT INTO feedback(generation_id, user_id, rating, label, comment, created_at) VALUES (1, 1, 4.0, 'good', 'clear', 7.0)")
    conn.execute("INSERT INTO audit_log(at, user_id, action, target, target_id) VALUES (5.0, 2, 'record', 'generations', 1)")
    conn.execute("COMMIT")
    rows = {t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY id")] for t in TABLES_V1}
    conn.close()
    return rows


def test_a_version_1_store_upgrades_without_loss_and_becomes_searchable(tmp_path):
    path = tmp_path / "store.db"
    before = write_v1_store(path)
    with Store.open(path, encoder=HashingEncoder()) as s:
        assert s.backend.schema_version() == schema.LATEST
        conn = s.backend.conn
        for table, rows in before.items():
            width = len(rows[0])
            after = [tuple(r)[:width] for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
            assert after[: len(rows)] == rows, table  # every old row, every old column, unchanged
        g = s.get(1)
        assert (g.text, g.prompt, g.model_name, g.rating, g.conversation_id, g.manifest["seed"]) == (
            "lambda expressions create anonymous functions", "tell me about lambdas", "gpt-pydocs", 4.0, "c9", 7)
        assert g.quality == {}  # the column version 3 added, with its default
        assert s.get(2).content == b"\x89PNG" and s.get(2).synthetic is False
        assert [h.generation.id for h in s.search("lambdas", mode="keyword")] == [1]  # prompt text, backfilled
        assert s.search("anonymous functions lambda", mode="vector")[0].generation.id == 1
        assert [h.generation.id for h in s.search("vae", mode="keyword")] == [2]
        new = s.record(kind="text", text="a record after the upgrade about lambdas")
        assert {h.generation.id for h in s.search("lambdas", mode="keyword")} == {1, new}
        assert s.integrity_check() == "ok"
    backup = tmp_path / "store.db.v1.bak"
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    assert old.execute("SELECT count(*) FROM generations").fetchone()[0] == 2
    old.close()


def test_each_intermediate_version_upgrades_too(tmp_path):
    path = tmp_path / "v2.db"
    conn = connect(path)
    assert migrate(conn, target=2) == 2
    conn.execute("INSERT INTO users(name, role, created_at) VALUES ('local', 'admin', 1.0)")
    conn.execute("INSERT INTO generations(kind, owner_id, text, content_sha256, created_at) VALUES ('text', 1, 'kept words', 'h', 1.0)")
    conn.execute("INSERT INTO generations_fts(rowid, prompt, text, family) VALUES (1, '', 'kept words', '')")
    conn.close()
    with Store.open(path, encoder=HashingEncoder()) as s:
        assert s.backend.schema_version() == schema.LATEST
        assert [h.generation.id for h in s.search("kept", mode="keyword")] == [1]
        assert s.integrity_check() == "ok"
    assert (tmp_path / "v2.db.v2.bak").is_file()


def test_a_failed_migration_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "store.db"
    write_v1_store(path)
    monkeypatch.setitem(schema.MIGRATIONS, 3, schema.V3 + "\nCREATE TABLE users (oops INTEGER);\n")  # fails halfway through 3
    with pytest.raises(sqlite3.OperationalError):
        Store.open(path, encoder=HashingEncoder())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2  # 2 committed; 3 rolled back whole
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'documents'").fetchone()[0] == 0
    conn.close()
    monkeypatch.undo()
    with Store.open(path, encoder=HashingEncoder()) as s:  # the fixed genzoo finishes the upgrade
        assert s.backend.schema_version() == schema.LATEST and s.get(1).rating == 4.0


# sha256 (first 16 hex digits) of each released migration's text, on each backend. Stores in use
# ran exactly these statements: editing one (even while sharing DDL between the backends, as
# schema_common does) would give new stores a layout old ones never get. Add a new version instead.
RELEASED = {
    "sqlite": {1: "421adb3796907ff1", 2: "73349fd7e51bbf34", 3: "752b1f53d7ec397d", 4: "272bedbc38eec86c", 5: "9b082d9eddb96da8",
               6: "f301b240ba6ef5ab"},
    "postgres": {1: "df59e876cb07404a", 2: "f9c069893210af05", 3: "efd1bfe89dc534f3", 4: "cb4feab0e8dd96f7", 5: "f301b240ba6ef5ab"},
}


def test_released_migrations_never_change():
    import hashlib

    from genzoo.store import pg_schema

    for backend, module in (("sqlite", schema), ("postgres", pg_schema)):
        for version, digest in RELEASED[backend].items():
            assert hashlib.sha256(module.MIGRATIONS[version].encode()).hexdigest()[:16] == digest, (backend, version)
