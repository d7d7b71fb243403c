"""Duplicates among stored generations (``Store.duplicates``, ``genzoo dedup --store``) on SQLite and
PostgreSQL, and the per-image digits features that ``genzoo sample`` records for ``Store.similar``."""

import io
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder
from genzoo.tasks.encoders import DigitsImageEncoder

runner = CliRunner()
BASE = ("the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat "
        "and the bird sings a song about the river that runs down to the sea every morning")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """Where the store lives: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    return tmp_path / "store.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def open_store(path, **kw):
    kw.setdefault("encoder", HashingEncoder())
    return Store.open(path, **kw)


class FakeEvaluator:
    """Stands in for the digits CNN (trained once, ~20 s): features = the 64 pixel levels."""

    def features(self, x):
        return torch.as_tensor(x, dtype=torch.float32).flatten(1)[:, :64] + 0.5


def clusters(report):
    return {c["kept"]: {d["id"]: d["how"] for d in c["duplicates"]} for c in report["clusters"]}


def test_planted_text_duplicates_are_reported_and_distinct_texts_are_not(db):
    with open_store(db) as s:
        original = s.record(kind="text", text=BASE, visibility="shared")
        exact = s.record(kind="text", text="  " + BASE.upper().replace(" ", "\n  "), visibility="shared")  # case/space only
        near = s.record(kind="text", text=BASE.replace("morning", "evening"), visibility="shared")  # one word of 33 changed
        distinct = [s.record(kind="text", text=f"completely different text number {i} about topic {i * 7} here", visibility="shared")
                    for i in range(3)]
        s.record(kind="image", content=b"\x00" * 8)  # another kind: not compared
        report = s.duplicates("text")
    assert clusters(report) == {original: {exact: "exact", near: "near"}}
    assert report["generations"] == 3 + len(distinct) and report["kept"] == 1 + len(distinct)
    assert report["exact_duplicates"] == 1 and report["near_duplicates"] == 1
    near_sim = next(d["similarity"] for d in report["clusters"][0]["duplicates"] if d["id"] == near)
    assert 0.8 <= near_sim < 1.0
    with open_store(db) as s:  # a stricter threshold keeps the near copy; exact stays exact
        assert clusters(s.duplicates("text", threshold=0.95)) == {original: {exact: "exact"}}
        with pytest.raises(GenzooError, match="threshold"):
            s.duplicates("text", threshold=1.5)
        with pytest.raises(GenzooError, match="text or image"):
            s.duplicates("audio")
        with pytest.raises(GenzooError, match="unknown search filter"):
            s.duplicates("text", colour="red")


def test_another_users_private_generations_are_never_reported(db):
    with open_store(db) as admin:
        _, alice_key = admin.create_user("alice", "writer")
        _, bob_key = admin.create_user("bob", "writer")
    with open_store(db, api_key=alice_key) as alice:
        secret = alice.record(kind="text", text=BASE)  # private
        alice_copy = alice.record(kind="text", text=BASE)
    with open_store(db, api_key=bob_key) as bob:
        bob_own = bob.record(kind="text", text=BASE)  # private, a copy of alice's secret
        bob_shared = bob.record(kind="text", text=BASE, visibility="shared")
        report = bob.duplicates("text")
    assert clusters(report) == {bob_own: {bob_shared: "exact"}}  # alice's records neither appear nor take "kept"
    assert report["generations"] == 2
    seen = {c["kept"] for c in report["clusters"]} | {d["id"] for c in report["clusters"] for d in c["duplicates"]}
    assert not seen & {secret, alice_copy}
    with open_store(db, api_key=alice_key) as alice:
        assert clusters(alice.duplicates("text")) == {secret: {alice_copy: "exact", bob_shared: "exact"}}
    with open_store(db) as admin:  # an admin sees all four
        assert clusters(admin.duplicates("text")) == {secret: {alice_copy: "exact", bob_own: "exact", bob_shared: "exact"}}
        assert clusters(admin.duplicates("text", user="bob")) == {bob_own: {bob_shared: "exact"}}


def test_image_duplicates_by_content_and_by_stored_vectors(db):
    enc = DigitsImageEncoder(FakeEvaluator())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, size=(4, 1, 8, 8))
    nudged = images[0].copy()
    nudged[0, 0, 0] = (nudged[0, 0, 0] + 1) % 17  # one pixel one level off
    vecs = enc.encode(np.concatenate([images, nudged[None]]))
    with open_store(db) as s:
        ids = [s.record(kind="image", content=images[i].tobytes(), embedding=vecs[i], space=enc.space) for i in range(4)]
        copy = s.record(kind="image", content=images[2].tobytes(), embedding=vecs[2], space=enc.space)
        near = s.record(kind="image", content=nudged.tobytes(), embedding=vecs[4], space=enc.space)
        no_vector = s.record(kind="image", content=b"png bytes without a vector")
        report = s.duplicates("image")
        assert clusters(report) == {ids[0]: {near: "near"}, ids[2]: {copy: "exact"}}
        assert report["generations"] == 7
        assert clusters(s.duplicates("image", threshold=0.99999)) == {ids[2]: {copy: "exact"}}
        assert clusters(s.duplicates("image", space="another-space")) == {ids[2]: {copy: "exact"}}
    assert no_vector not in clusters(report)


def test_dedup_cli_store_mode_reports_and_data_mode_still_works(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    with open_store(db) as s:
        a = s.record(kind="text", text=BASE)
        b = s.record(kind="text", text=BASE + " ")
    res = runner.invoke(app, ["dedup", "--store", str(db), "--json"])  # the old spelling: a note on stderr, the JSON on stdout
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert clusters(report) == {a: {b: "exact"}} and report["store"].endswith("s.db") and "genzoo store dedup" in res.stderr
    res = runner.invoke(app, ["store", "dedup", "--store", str(db), "--json"])
    assert res.exit_code == 0 and clusters(json.loads(res.stdout)) == {a: {b: "exact"}}
    res = runner.invoke(app, ["dedup", "--store", str(db), "--kind", "image"])
    assert res.exit_code == 0 and "duplicate image generations" in res.output
    res = runner.invoke(app, ["dedup", "--store", str(db), "--kind", "audio"])
    assert res.exit_code != 0 and "text or image" in res.output
    res = runner.invoke(app, ["dedup", "--store", str(db), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "only reports" in res.output
    monkeypatch.setenv("GENZOO_STORE", str(db))
    res = runner.invoke(app, ["dedup", "--store", "--json"])  # the default store
    assert res.exit_code == 0 and clusters(json.loads(res.stdout)) == {a: {b: "exact"}}
    docs = tmp_path / "docs.txt"
    docs.write_text(f"{BASE}\n\n{BASE}\n\nsomething else entirely")
    res = runner.invoke(app, ["dedup", str(docs), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["exact_duplicates"] == 1
    res = runner.invoke(app, ["dedup"])
    assert res.exit_code != 0 and "genzoo store dedup" in res.output
    res = runner.invoke(app, ["dedup", str(docs), "--kind", "image"])
    assert res.exit_code != 0 and "genzoo store dedup --kind image" in res.output


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("store-dedup") / "vae"
    api.train("vae", "digits", steps=2, out=out, progress=False, val_every=0, batch_size=16)
    return out


def test_sampled_digits_are_found_by_their_own_features(vae_run, tmp_path, monkeypatch):
    from genzoo.eval import evaluator

    monkeypatch.setattr(evaluator, "get_digits_evaluator", lambda: FakeEvaluator())
    db = tmp_path / "s.db"
    res = runner.invoke(app, ["sample", str(vae_run), "--n", "6", "--seed", "3", "-o", str(tmp_path / "a.png"), "--store", str(db)])
    assert res.exit_code == 0, res.output
    samples = np.load(tmp_path / "a.npy")
    enc = DigitsImageEncoder(FakeEvaluator())
    with open_store(db) as s:
        grid = s.get(1)
        assert grid.content_type == "image/png"
        for i in range(6):
            hit = s.similar(enc.encode(np.clip(np.rint(samples[i:i + 1]), 0, 16))[0], space=enc.space, k=1)[0]
            g = hit.generation
            assert g.parent_id == grid.id and g.manifest["sample_index"] == i and g.kind == "image"
            assert hit.score > 0.9999
            assert np.array_equal(np.load(io.BytesIO(g.content)), np.clip(np.rint(samples[i]), 0, 16))


def test_only_digits_shaped_models_record_per_image_vectors():
    from genzoo.tasks.record import is_digits_shaped

    assert is_digits_shaped({"kind": "image", "shape": [1, 8, 8], "levels": 17})
    assert not is_digits_shaped({"kind": "image", "shape": [1, 28, 28], "levels": 256})
    assert not is_digits_shaped({"kind": "points", "shape": [2]})
    assert not is_digits_shaped(None)


def test_dedup_and_recording_modules_import_no_torch():
    import subprocess
    import sys

    code = "import sys, genzoo.store.generation_dedup, genzoo.tasks.record; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
