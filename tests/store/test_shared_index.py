"""The vector index of a SQLite store is built once per process and shared by every opening of the
file (a server opens the store per request): later openings append only what was committed since,
and a file deleted and made again at the same path starts a fresh index."""

from genzoo.store.api import Store
from genzoo.store.encoders import HashingEncoder


def open_store(path):
    return Store.open(path, encoder=HashingEncoder(), redact=False)


def test_openings_share_one_index_and_see_each_others_records(tmp_path):
    db = tmp_path / "s.db"
    with open_store(db) as a:
        first = a.record(kind="text", text="the walrus sings at dawn")
        assert [h.generation.id for h in a.search("walrus dawn", mode="vector", k=1)] == [first]
        index = a.backend._indexes[a.encoder.space]
    with open_store(db) as b:
        assert b.backend._indexes[b.encoder.space] is index  # not rebuilt
        second = b.record(kind="text", text="a narwhal reads by moonlight")
        assert b.search("narwhal moonlight", mode="vector", k=1)[0].generation.id == second
        assert index.n == 2  # appended, once
    with open_store(db) as c:
        assert {h.generation.id for h in c.search("walrus narwhal", mode="vector", k=5)} == {first, second}


def test_a_store_made_again_at_the_same_path_gets_a_fresh_index(tmp_path):
    db = tmp_path / "s.db"
    with open_store(db) as a:
        a.record(kind="text", text="only in the first file: okapi")
        a.search("okapi", mode="vector", k=1)
    for f in tmp_path.glob("s.db*"):
        f.unlink()
    with open_store(db) as b:
        gid = b.record(kind="text", text="the second file holds a tapir", prompt="a much longer prompt to change the timing")
        hits = b.search("okapi", mode="vector", k=5)
        assert [h.generation.id for h in hits] == [gid] and "okapi" not in hits[0].generation.text
