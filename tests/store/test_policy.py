"""Encryption as a property of the store: the policy is recorded when an admin first asks for it and
every later opening (Python or CLI) follows it; a write that cannot seal is refused; a missing or
wrong key is one clear error on every read that returns records; labels, comments, session ids and
quality can be sealed; `rotate-key` re-encrypts in place and survives a SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.api import AccessDenied, Store
from genzoo.store.crypto import StoreKeyError, keyring_from_file, new_key
from genzoo.store.encoders import HashingEncoder
from genzoo.store.records import NewGeneration
from test_store import db, is_pg, raw_storage  # noqa: F401  (db: the SQLite / PostgreSQL fixture)

runner = CliRunner()
ALL = ("prompt", "text", "session_id", "label", "comment", "quality")


def open_store(path, **kw):
    kw.setdefault("encoder", HashingEncoder())
    kw.setdefault("redact", False)
    return Store.open(path, **kw)


@pytest.fixture
def key(monkeypatch):
    k = new_key()
    monkeypatch.setenv("GENZOO_STORE_KEY", k)
    monkeypatch.delenv("GENZOO_STORE_KEY_FILE", raising=False)
    monkeypatch.delenv("GENZOO_API_KEY", raising=False)
    return k


def test_the_policy_is_kept_in_the_store_and_every_later_opening_follows_it(db, key):
    with open_store(db, sensitive=ALL) as s:
        s.record(kind="text", text="first walrus", prompt="prompt walrus", session_id="sess-walrus", quality={"q": "walrus"})
    with open_store(db) as s:  # no sensitive=: the store's policy decides
        assert s.sensitive == frozenset(ALL)
        gid = s.record(kind="text", text="second narwhal", prompt="prompt narwhal", session_id="sess-narwhal",
                       quality={"bleu": 0.5}, manifest={"prompt": "prompt narwhal"})
        s.feedback(gid, rating=5, label="label-narwhal", comment="comment narwhal")
        g = s.get(gid)
        assert (g.text, g.prompt, g.session_id, g.quality, g.manifest["prompt"]) == \
            ("second narwhal", "prompt narwhal", "sess-narwhal", {"bleu": 0.5}, "prompt narwhal")
        f = s.feedback_for(gid)[0]
        assert (f.label, f.comment) == ("label-narwhal", "comment narwhal")
        p = s.policy()
        assert p["sensitive"] == sorted(ALL) and p["key_problem"] is None
        assert all(p["encrypted"][k] >= 1 for k in ("generations.text", "prompts.text", "generations.session_id",
                                                    "feedback.label", "feedback.comment", "generations.quality"))
    raw = raw_storage(db)
    for word in (b"walrus", b"narwhal"):
        assert word not in raw


def test_a_different_policy_is_refused_and_only_an_admin_sets_one(db, key):
    admin = open_store(db)
    _, wkey = admin.create_user("wanda", "writer")
    with pytest.raises(AccessDenied, match="admins only"):
        open_store(db, api_key=wkey, sensitive=("text",))
    open_store(db, sensitive=("text",)).close()
    with pytest.raises(GenzooError, match="policy seals text"):
        open_store(db, sensitive=("prompt",))
    w = open_store(db, api_key=wkey)  # a writer follows the policy the admin set
    gid = w.record(kind="text", text="writer's okapi")
    assert "okapi" not in str(raw_storage(db)) and w.get(gid).text == "writer's okapi"
    with pytest.raises(GenzooError, match="cannot be sealed"):
        admin.set_policy(["text", "password"])
    admin.close()
    w.close()


def test_without_the_key_writes_are_refused_and_reads_give_one_clear_error(db, key, monkeypatch):
    with open_store(db) as s:  # plain records first, then the policy
        plain = s.record(kind="text", text="plain lemur before the policy")
        s.set_policy(["text", "prompt"])
        sealed = s.record(kind="text", text="sealed lemur")
    monkeypatch.delenv("GENZOO_STORE_KEY")
    with open_store(db) as s:
        before = s.backend.count("generations")
        for call in (lambda: s.record(kind="text", text="would be clear"), lambda: s.search("lemur", mode="keyword"),
                     lambda: s.search("lemur", mode="vector"), lambda: s.search(""), lambda: s.get(plain),
                     lambda: s.similar([1.0] * s.encoder.dim, space=s.encoder.space), lambda: s.feedback_for(sealed)):
            with pytest.raises(StoreKeyError, match="no key is given: set GENZOO_STORE_KEY"):
                call()
        assert s.backend.count("generations") == before  # nothing written in clear
        assert "no key is given" in s.policy()["key_problem"]  # what needs no key still works: policy, check, forget
        assert s.check()["consistent"]
    monkeypatch.setenv("GENZOO_STORE_KEY", new_key())
    with open_store(db) as s:
        with pytest.raises(StoreKeyError, match="wrong store key"):
            s.search("lemur", mode="keyword")
    monkeypatch.setenv("GENZOO_STORE_KEY", key)
    with open_store(db) as s:  # the right key: plain and sealed records both read
        assert s.get(plain).text == "plain lemur before the policy" and s.get(sealed).text == "sealed lemur"
        assert [h.generation.id for h in s.search("plain lemur", mode="keyword")] == [plain]


def test_sealed_labels_still_filter_exports_and_count_in_stats(tmp_path, key):
    from genzoo.store import stats
    from genzoo.store.export import export

    db = tmp_path / "s.db"
    with open_store(db, sensitive=("text", "label")) as s:
        a = s.record(kind="text", text="def good(): pass", synthetic=False)
        b = s.record(kind="text", text="def bad(): pass", synthetic=False)
        s.feedback(a, label="keep")
        s.feedback(b, label="drop")
        r = export(s, tmp_path / "out.jsonl", label="keep")
        assert r.written == 1 and "good" in (tmp_path / "out.jsonl").read_text()
        rows = stats.usage(s)
        assert sum(r.labels["keep"] for r in rows) == 1 and sum(r.labels["drop"] for r in rows) == 1
    assert b"keep" not in raw_storage(db)


def _cli(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_cli_writes_follow_the_policy_and_refuse_without_the_key(tmp_path, key):
    """`genzoo generate --store` seals the prompt in a sealed store, and without the key is refused."""
    run = tmp_path / "gpt"
    res = _cli("train", "gpt", "--data", "pydocs", "--steps", 1, "--batch-size", 4, "--val-every", 0, "--out", run, "--no-eval",
               "--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32")
    assert res.exit_code == 0, res.output
    db = tmp_path / "s.db"
    open_store(db, sensitive=("prompt", "text")).close()
    res = _cli("generate", run, "QUOKKAPROMPT", "--max-tokens", 3, "--store", db)
    assert res.exit_code == 0, res.output
    assert b"QUOKKAPROMPT" not in raw_storage(db)
    with open_store(db) as s:
        assert s.get(1).prompt == "QUOKKAPROMPT"
    env = {"GENZOO_STORE_KEY": ""}
    res = _cli("generate", run, "SECONDPROMPT", "--max-tokens", 3, "--store", db, env=env)
    assert res.exit_code == 2 and "no key is given" in res.output and "Traceback" not in res.output
    assert b"SECONDPROMPT" not in raw_storage(db)
    res = _cli("store", "policy", "--store", db)
    assert res.exit_code == 0 and "seal prompt, text under key" in res.output


def test_rotate_key_reencrypts_in_place_and_retires_the_old_key(db, key, tmp_path, monkeypatch):
    with open_store(db, sensitive=ALL) as s:
        ids = [s.record(kind="text", text=f"tapir {i}", prompt=f"p{i}", session_id=f"s{i}", quality={"i": i}) for i in range(5)]
        s.feedback(ids[0], label="L", comment="C")
        old = s.policy()["key_id"]
        r = s.rotate_key(tmp_path / "keys.txt", batch=2)
    assert r.old_key_id == old != r.new_key_id and not r.resumed
    assert r.reencrypted["generations.text"] == 5 and r.reencrypted["feedback.label"] == 1
    ring = keyring_from_file(tmp_path / "keys.txt")
    assert ring.primary.hex() == r.new_key_id and len(ring.keys) == 2  # the old key kept below the new one
    assert oct((tmp_path / "keys.txt").stat().st_mode & 0o777) == "0o600"
    monkeypatch.delenv("GENZOO_STORE_KEY")
    monkeypatch.setenv("GENZOO_STORE_KEY_FILE", str(tmp_path / "keys.txt"))
    with open_store(db) as s:
        assert [s.get(i).text for i in ids] == [f"tapir {i}" for i in range(5)]
        assert s.get(ids[3]).session_id == "s3" and s.get(ids[3]).quality == {"i": 3} and s.feedback_for(ids[0])[0].comment == "C"
        assert s.policy()["key_id"] == r.new_key_id and s.audit_log()[0].action == "rotate_key"
    monkeypatch.delenv("GENZOO_STORE_KEY_FILE")
    monkeypatch.setenv("GENZOO_STORE_KEY", key)  # the old key alone no longer opens it
    with open_store(db) as s, pytest.raises(StoreKeyError, match="wrong store key"):
        s.get(ids[0])
    # only the new key (the first line): every value moved
    monkeypatch.setenv("GENZOO_STORE_KEY", (tmp_path / "keys.txt").read_text().splitlines()[1])
    with open_store(db) as s:
        assert s.get(ids[4]).prompt == "p4" and s.feedback_for(ids[0])[0].label == "L"


CHILD = textwrap.dedent("""
    import sys, time
    from genzoo.store.api import Store
    s = Store.open(sys.argv[1], encoder=None, redact=False)
    def progress(field, n):
        print(field, n, flush=True)
        time.sleep(0.02)  # slow enough that the parent's SIGKILL lands mid-rotation
    s.rotate_key(sys.argv[2], batch=1, progress=progress)
    print("done", flush=True)
""")


def test_rotate_key_survives_sigkill_and_resumes(tmp_path, key, monkeypatch):
    db = tmp_path / "s.db"
    n = 120
    with open_store(db, sensitive=("prompt", "text")) as s:
        s.record_many([NewGeneration(kind="text", text=f"okapi {i}", prompt=f"q{i}") for i in range(n)])
    keys = tmp_path / "keys.txt"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(keys)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    seen = 0
    deadline = time.time() + 120
    while seen < 40 and time.time() < deadline:
        line = child.stdout.readline()
        assert line and "done" not in line, "the rotation ended before it could be killed"
        seen += 1
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    monkeypatch.delenv("GENZOO_STORE_KEY")
    monkeypatch.setenv("GENZOO_STORE_KEY_FILE", str(keys))
    with open_store(db) as s:  # mid-rotation: a mix of old and new, all readable with the key file
        assert s.policy()["rotating_to"] == keyring_from_file(keys).primary.hex()
        assert [s.get(i + 1).text for i in range(n)] == [f"okapi {i}" for i in range(n)]
        r = s.rotate_key(keys)
        assert r.resumed and 0 < r.reencrypted["generations.text"] < n
    with open_store(db) as s:
        assert s.policy()["rotating_to"] is None and s.policy()["key_id"] == r.new_key_id
    monkeypatch.delenv("GENZOO_STORE_KEY_FILE")
    monkeypatch.setenv("GENZOO_STORE_KEY", keys.read_text().splitlines()[1])  # the new key alone reads everything
    with open_store(db) as s:
        assert [s.get(i + 1).prompt for i in range(n)] == [f"q{i}" for i in range(n)]
        assert s.check()["consistent"]


def test_rotate_key_from_the_cli(tmp_path, key):
    db = tmp_path / "s.db"
    with open_store(db, sensitive=("text",)) as s:
        s.record(kind="text", text="capybara")
    res = _cli("store", "rotate-key", "--store", db, "--key-file", tmp_path / "k.txt")
    assert res.exit_code == 0 and "rotated: 2 values re-encrypted" in res.output, res.output
    res = _cli("store", "rotate-key", "--store", db, "--key-file", tmp_path / "k.txt")  # the env key is now the old one
    assert res.exit_code == 2 and "wrong store key" in res.output
    res = _cli("store", "policy", "--store", db, "--seal", "nonsense")
    assert res.exit_code == 2 and "cannot be sealed" in res.output
