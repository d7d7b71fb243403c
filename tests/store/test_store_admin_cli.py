"""Users, keys, policy and integrity from the command line: `genzoo store user|key|policy|check`
(SQLite, through the CLI) and the Store methods under them on SQLite and PostgreSQL. Changes are
admin-only (a refusal is one line, exit 2) and audited; `check` exits 0 when the store is
consistent, 1 when it is not."""

import re
import sqlite3

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.records import sha256_hex

runner = CliRunner()
KEY = re.compile(r"gz_[A-Za-z0-9_-]{20,}")


def cli(db, *args, key=None, code=0):
    """Run `genzoo store ARGS --store DB` as the holder of ``key`` (None: the local admin)."""
    result = runner.invoke(app, ["store", *map(str, args), "--store", str(db)], env={"GENZOO_API_KEY": key})
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def refused(output: str) -> None:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output


def add_user(db, name, role, key=None) -> str:
    out = cli(db, "user", "add", name, "--role", role, key=key)
    assert "shown only once" in out
    (found,) = set(KEY.findall(out))
    return found


def actions(db) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "store.db"


@pytest.fixture
def admin_key(db):
    """An admin user made by the local admin (the file's owner, no key)."""
    return add_user(db, "root", "admin")


def test_an_admin_adds_a_writer_whose_printed_key_records(db, admin_key):
    bob = add_user(db, "bob", "writer", key=admin_key)
    with Store.open(db, api_key=bob, encoder=None) as s:
        assert s.user.name == "bob" and s.user.role == "writer"
        gid = s.record(kind="text", text="hello from bob")
        assert s.get(gid).owner == "bob"
    listing = cli(db, "user", "list", key=admin_key)
    assert re.search(r"^bob\s+writer\s", listing, re.M) and re.search(r"^root\s+admin\s", listing, re.M)
    assert "create_user" in actions(db)


def test_a_writer_or_reader_cannot_manage_users_or_keys(db, admin_key):
    bob = add_user(db, "bob", "writer", key=admin_key)
    ann = add_user(db, "ann", "reader", key=admin_key)
    for key in (bob, ann):
        refused(cli(db, "user", "add", "mallory", "--role", "admin", key=key, code=2))
        refused(cli(db, "key", "new", "bob", key=key, code=2))
        refused(cli(db, "key", "revoke", "root", key=key, code=2))
        refused(cli(db, "key", "list", key=key, code=2))
        refused(cli(db, "check", key=key, code=2))
    listing = cli(db, "user", "list", key=admin_key)
    assert "mallory" not in listing
    assert actions(db).count("denied") == 10  # every refusal is audited too
    with Store.open(db, encoder=None) as s:
        assert s.user.role == "admin"  # root's keys still work: nothing was revoked
    cli(db, "key", "list", key=admin_key)


def test_revoking_ends_the_users_keys_and_a_new_key_works(db, admin_key):
    bob = add_user(db, "bob", "writer", key=admin_key)
    out = cli(db, "key", "revoke", "bob", key=admin_key)
    assert "revoked 1 key(s)" in out
    refused(cli(db, "policy", key=bob, code=2))
    with pytest.raises(AccessDenied):
        Store.open(db, api_key=bob, encoder=None)
    out = cli(db, "key", "new", "bob", key=admin_key)
    (fresh,) = set(KEY.findall(out))
    assert fresh != bob and "shown only once" in out
    with Store.open(db, api_key=fresh, encoder=None) as s:
        s.record(kind="text", text="bob again")
    refused(cli(db, "key", "new", "nobody", key=admin_key, code=2))
    refused(cli(db, "user", "add", "bob", "--role", "reader", key=admin_key, code=2))  # exists already
    refused(cli(db, "user", "add", "eve", "--role", "root", key=admin_key, code=2))  # no such role
    assert {"create_user", "revoke_keys", "new_key"} <= set(actions(db))


def test_key_list_shows_counts_and_never_a_key(db, admin_key):
    bob = add_user(db, "bob", "writer", key=admin_key)
    second = KEY.findall(cli(db, "key", "new", "bob", key=admin_key))[0]
    cli(db, "key", "revoke", "root", key=admin_key)  # an admin may revoke their own keys
    out = cli(db, "key", "list")  # the local admin
    assert re.search(r"^bob\s+writer\s+2\s+0\s", out, re.M)
    assert re.search(r"^root\s+admin\s+0\s+1\s", out, re.M)
    for key in (admin_key, bob, second):
        assert key not in out and key[:10] not in out and sha256_hex(key) not in out
    assert "gz_" not in out


def test_policy_shows_backend_schema_redaction_and_encrypted_fields(db):
    out = cli(db, "policy")
    assert "backend: sqlite" in out and "schema version: " in out and "redaction of PII on write: on" in out
    assert "encryption policy (kept in the store, followed by every writer): seal none" in out
    assert "generations.text: 0 of 0" in out
    from genzoo.store.crypto import Keyring

    ring = Keyring.from_keys([bytes(range(32))])
    with Store.open(db, encoder=None, keyring=ring, sensitive=("text",)) as s:
        s.record(kind="text", text="a secret")
        s.record(kind="text", text="another", prompt="a prompt")
        p = s.policy()
    assert p["sensitive"] == ["text"] and p["key_id"] == ring.primary.hex()
    assert {k: v for k, v in p["encrypted"].items() if v} == {"generations.text": 2, "generations.manifest": 2}
    out = cli(db, "policy")  # read without the key: the policy and counts show, and what is missing is said
    assert "generations.text: 2 of 2" in out and "prompts.text: 0 of 1" in out
    assert f"seal text under key {ring.primary.hex()}" in out and "key problem: this store seals text" in out


def test_check_is_consistent_then_finds_a_missing_full_text_row_and_an_orphan_vector(db, admin_key):
    with Store.open(db, api_key=admin_key, encoder=HashingEncoder()) as s:
        gids = [s.record(kind="text", text=f"record number {i}", prompt="p") for i in range(3)]
    out = cli(db, "check", "--space", HashingEncoder().space, key=admin_key)
    assert "database integrity: ok" in out and out.strip().endswith("consistent") and "NOT" not in out
    assert f"vectors in {HashingEncoder().space}: 3" in out
    out = cli(db, "check")  # the default encoder's space: nothing embedded there yet, which is no error
    assert "text records without a vector in minilm-l6-v2: 3" in out and out.strip().endswith("consistent")

    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM generations_fts WHERE rowid = ?", (gids[1],))
    conn.commit()
    out = cli(db, "check", key=admin_key, code=1)
    assert "NOT consistent: 1 generations without a full-text row" in out

    conn.execute("INSERT INTO generations_fts(rowid, prompt, text, family) VALUES (?, 'p', ?, '')", (gids[1], "record number 1"))
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO embeddings(generation_id, space, vector) VALUES (999, ?, ?)", (HashingEncoder().space, b"\0" * 4))
    conn.commit()
    conn.close()
    out = cli(db, "check", key=admin_key, code=1)
    assert "1 vectors without a generation" in out and "1 vectors of the wrong size" in out
    assert "generations without a full-text row: 0" in out


# ---- the Store methods under the commands, on SQLite and PostgreSQL --------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "store.db"
    return request.getfixturevalue("pg_url")


def test_store_admin_methods_on_both_backends(any_db):
    pg = str(any_db).startswith("postgresql://")
    with Store.open(any_db, encoder=HashingEncoder()) as admin:
        _, bob = admin.create_user("bob", "writer")
        second = admin.new_key("bob")
        users = {u["name"]: u for u in admin.users()}
        assert users["bob"]["role"] == "writer" and users["bob"]["active_keys"] == 2 and users["bob"]["keys"] == 2
        assert not any(k in repr(users) for k in (bob, second, sha256_hex(bob)))
        with Store.open(any_db, api_key=bob, encoder=HashingEncoder()) as w:
            gid = w.record(kind="text", text="written by bob")
            for attempt in (lambda: w.create_user("x", "admin"), lambda: w.new_key("bob"), lambda: w.revoke_keys("bob"),
                            w.users, w.check):
                with pytest.raises(AccessDenied):
                    attempt()
            assert w.policy()["backend"] == ("postgresql" if pg else "sqlite")
            assert admin.revoke_keys("bob") == 2
            with pytest.raises(AccessDenied):
                w.record(kind="text", text="after revocation")
        with pytest.raises(GenzooError):
            admin.new_key("nobody")
        r = admin.check(HashingEncoder().space)
        assert r["consistent"] and r["integrity"] == "ok" and r["counts"]["unembedded"] == 0, r
        assert r["counts"][f"vectors:{HashingEncoder().space}"] == 1
        assert {"create_user", "new_key", "revoke_keys", "denied"} <= {e.action for e in admin.audit_log(50)}
        if pg:
            from genzoo.store.postgres import connect

            conn = connect(any_db)
            conn.execute("DELETE FROM generation_text WHERE generation_id = %s", (gid,))
            conn.commit()
            conn.close()
        else:
            conn = sqlite3.connect(any_db)
            conn.execute("DELETE FROM generations_fts WHERE rowid = ?", (gid,))
            conn.commit()
            conn.close()
        r = admin.check()
        assert not r["consistent"] and r["counts"]["generations without a full-text row"] == 1
        assert "1 generations without a full-text row" in r["problems"]
