"""The right to be forgotten (genzoo.store.forget): an admin removes one user's records from every
read path and, on SQLite, from the raw bytes of the database files; the other users' records stay
whole; the audit log says who forgot whom, never the forgotten text."""

import json
import sqlite3
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genzoo.core.errors import GenzooError
from genzoo.store import rag
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.graph import entity, relate

from test_store import db, is_pg  # noqa: F401  (the store's location per test: a SQLite file or a PostgreSQL database)

SECRET = "xylophonequagmire"  # one word, lower case: as it is stored in the text and in the full-text index
OTHER = "otherusernotebook"
BOILERPLATE = "Shared boilerplate about composting gardens and watering schedules.\n"


def open_store(db, key=None):
    return Store.open(db, api_key=key, encoder=HashingEncoder())


def raw_bytes(path: Path) -> bytes:
    """store.db, store.db-wal and store.db-shm as they are on disk."""
    data = b""
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            with open(p, "rb") as f:
                data += f.read()
    return data


def fill(db):
    """alice (the one to forget) and bob each record, index, relate and give feedback."""
    with open_store(db) as admin:
        _, akey = admin.create_user("alice", "writer")
        _, bkey = admin.create_user("bob", "writer")
    ids = {"akey": akey, "bkey": bkey}
    with open_store(db, akey) as alice, open_store(db, bkey) as bob:
        ids["a1"] = alice.record(kind="text", prompt=f"tell me about {SECRET}", text=f"the {SECRET} lives here", visibility="shared")
        ids["a2"] = alice.record(kind="image", content=f"bytes of {SECRET}".encode(), content_type="application/octet-stream")
        ids["b1"] = bob.record(kind="text", prompt="bob asks", text=f"bob's {OTHER} entry", visibility="shared")
        ids["b_child"] = bob.record(kind="text", text=f"{OTHER} follow-up", parent_id=ids["a1"])
        alice.feedback(ids["b1"], rating=1.0, label=f"label {SECRET}")  # feedback she gave, on bob's record
        bob.feedback(ids["a1"], rating=5.0, label="bob liked it")  # feedback on her record
        ids["bob_fb"] = bob.feedback(ids["b1"], rating=4.0, label="bob on his own")
        rag.index_text(alice, f"/notes/{SECRET}.md", f"# Notes\n\n{SECRET} appears in this private document.\n")
        rag.index_text(alice, "/shared/boiler.md", BOILERPLATE, visibility="shared")
        rag.index_text(bob, "/bob/boiler.md", BOILERPLATE)  # a copy of alice's chunk (duplicate_of)
        rag.index_text(bob, "/bob/own.md", f"{OTHER} is bob's own document.\n")
        relate(alice, ("generation", ids["a1"]), "mentions", entity(alice, "topic", SECRET))
        relate(bob, ("generation", ids["b1"]), "mentions", entity(bob, "topic", "bobtopic"))
    return ids


def test_forget_removes_a_user_from_every_read_path_and_keeps_the_others(db):
    ids = fill(db)
    if not is_pg(db):
        assert SECRET.encode() in raw_bytes(db)  # so the check below would fail without secure_delete + VACUUM
    with open_store(db, ids["bkey"]) as bob:
        with pytest.raises(AccessDenied):  # (d) a writer may not forget anyone
            bob.forget(user="alice")
    with open_store(db) as admin:
        plan = admin.forget(user="alice", dry_run=True)
        assert plan.generations == 2 and plan.documents == 2
        assert admin.get(ids["a1"]).text  # a dry run changes nothing
        report = admin.forget(user="alice")
        assert (report.generations, report.prompts, report.documents, report.entities) == (2, 1, 2, 1)
        assert report.feedback == 2 and report.chunks_promoted == 1 and report.relations == 1
        # (a) nothing of hers on any read path
        assert admin.search(SECRET, mode="keyword") == []
        assert all(h.generation.owner != "alice" for h in admin.search(SECRET, mode="vector"))
        for gid in (ids["a1"], ids["a2"]):
            with pytest.raises(GenzooError):
                admin.get(gid)
        assert rag.retrieve(admin, SECRET, mode="keyword") == []
        assert admin.backend.rows("SELECT count(*) AS n FROM documents d JOIN users u ON u.id = d.owner_id WHERE u.name = 'alice'")[0]["n"] == 0
        assert admin.backend.rows("SELECT count(*) AS n FROM entities WHERE name = ?", (SECRET,))[0]["n"] == 0
        assert all(SECRET not in (f.label or "") for f in admin.feedback_for(ids["b1"]))
        # (e) the audit log says who forgot whom, never the text
        entries = admin.audit_log(1000)
        forgot = [e for e in entries if e.action == "forget"]
        assert forgot and forgot[0].user == "local" and forgot[0].detail["user"] == "alice" and forgot[0].detail["generations"] == 2
        assert all(SECRET not in json.dumps(e.detail) for e in entries)
        assert admin.integrity_check() == "ok"
    # (b) bob's records are whole
    with open_store(db, ids["bkey"]) as bob:
        assert bob.get(ids["b1"]).text == f"bob's {OTHER} entry"
        assert bob.get(ids["b_child"]).parent_id is None  # its parent was hers
        assert [f.label for f in bob.feedback_for(ids["b1"])] == ["bob on his own"]
        assert {h.generation.id for h in bob.search(OTHER, mode="keyword")} == {ids["b1"], ids["b_child"]}
        assert [s.uri for s in rag.retrieve(bob, "composting gardens", mode="keyword")] == ["/bob/boiler.md"]
        assert rag.retrieve(bob, "composting gardens", mode="vector")[0].uri == "/bob/boiler.md"  # its vector moved to bob's copy
        assert [s.uri for s in rag.retrieve(bob, OTHER, mode="keyword")] == ["/bob/own.md"]
    # (c) no trace in the raw bytes of the files
    if not is_pg(db):
        assert SECRET.encode() not in raw_bytes(db)
        assert b"alice" in raw_bytes(db)  # the account stays (and the read above is of real data)


def test_forget_older_than_removes_only_old_records(tmp_path):
    db = tmp_path / "store.db"
    with open_store(db) as admin:
        old = admin.record(kind="text", text=f"old {SECRET}")
        admin.backend.execute("UPDATE generations SET created_at = created_at - 10 * 86400 WHERE id = ?", (old,))
        admin.backend.execute("UPDATE prompts SET created_at = created_at - 10 * 86400")
        new = admin.record(kind="text", text=f"new {OTHER}")
        report = admin.forget(older_than=time.time() - 86400)
        assert report.generations == 1 and report.files_clean
        assert [h.generation.id for h in admin.search(OTHER, mode="keyword")] == [new]
        assert admin.search(SECRET, mode="keyword") == []
    assert SECRET.encode() not in raw_bytes(db)


def test_forget_needs_something_to_forget_and_a_known_user(tmp_path):
    with open_store(tmp_path / "store.db") as admin:
        with pytest.raises(GenzooError, match="say what to forget"):
            admin.forget()
        with pytest.raises(GenzooError, match="no user"):
            admin.forget(user="nobody")


def test_cli_forget_asks_for_yes(tmp_path, monkeypatch):
    from genzoo.cli.forget import app as forget_app

    db = tmp_path / "store.db"
    ids = fill(db)
    top = typer.Typer()
    top.add_typer(forget_app, name="x")
    runner = CliRunner()
    monkeypatch.delenv("GENZOO_API_KEY", raising=False)
    r = runner.invoke(top, ["x", "forget", "--user", "alice", "--store", str(db)])
    assert r.exit_code == 1 and "would remove" in r.output and "--yes" in r.output
    with open_store(db) as admin:
        assert admin.get(ids["a1"])  # nothing removed
    monkeypatch.setenv("GENZOO_API_KEY", ids["bkey"])  # a writer's key: refused
    r = runner.invoke(top, ["x", "forget", "--user", "alice", "--store", str(db), "--yes"])
    assert r.exit_code == 2 and "cannot forget" in r.output
    monkeypatch.delenv("GENZOO_API_KEY")
    r = runner.invoke(top, ["x", "forget", "--user", "alice", "--store", str(db), "--yes"])
    assert r.exit_code == 0, r.output
    assert "removed" in r.output and SECRET not in r.output
    assert SECRET.encode() not in raw_bytes(db)
    r = runner.invoke(top, ["x", "forget", "--store", str(db), "--yes"])
    assert r.exit_code == 2


def test_without_the_file_cleaning_the_secret_stays_in_the_raw_bytes(tmp_path, monkeypatch):
    """The control for (c): the same forgetting with the WAL checkpoint and VACUUM left out leaves
    the forgotten text readable in the files (the WAL keeps the pages as they were)."""
    from genzoo.store import forget as F

    db = tmp_path / "store.db"
    fill(db)
    monkeypatch.setattr(F, "_compact_sqlite", lambda b, report: True)
    with open_store(db) as admin:
        admin.forget(user="alice")
        assert admin.search(SECRET, mode="keyword") == []  # gone from every read path...
        assert SECRET.encode() in raw_bytes(db)  # ...but not from the files


def test_a_reader_holding_a_snapshot_is_reported_and_a_second_run_finishes_the_cleaning(tmp_path):
    db = tmp_path / "store.db"
    fill(db)
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM generations").fetchone()  # an open read transaction pins the WAL
    with open_store(db) as admin:
        report = admin.forget(user="alice")
        assert report.generations == 2 and report.files_clean is False and report.notes
        assert admin.search(SECRET, mode="keyword") == []
        reader.rollback()
        reader.close()
        again = admin.forget(user="alice")
        assert again.generations == 0 and again.files_clean is True
    assert SECRET.encode() not in raw_bytes(db)
