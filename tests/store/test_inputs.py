"""Hostile inputs to the store's commands end in one clear line and exit code 2, never a traceback
or a hang: text that is not valid UTF-8 (queries, API keys, filters), paths that are not regular
files (FIFOs, devices, /proc, folders, symbolic links) for `rag index` and `store export`, and
nonsense filter values; plus a seeded fuzz of `store search`, `rag index`, `store export` and
`store graph` that also checks that reading commands change no row."""

import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.api import Store
from genzoo.store.export import export
from genzoo.store.files import read_text, Skip
from genzoo.store.search import Filters

runner = CliRunner()
TABLES = ("generations", "prompts", "models", "feedback", "users", "api_keys", "documents", "chunks", "audit_log")


def cli(*args, code=None, env=None):
    res = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in (res.output or ""), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if code is not None:
        assert res.exit_code == code, (args, res.output)
    return res


def counts(db) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


@pytest.fixture
def store_db(tmp_path):
    db = tmp_path / "s.db"
    with Store.open(db, encoder=None) as s:
        from genzoo.store.records import ModelRecord

        mid = s.register_model(ModelRecord(name="gpt-tiny", family="gpt"))
        s.feedback(s.record(kind="text", text="zebra plans with a model", model_id=mid, family="gpt", synthetic=False), rating=5)
        s.feedback(s.record(kind="text", text="zebra notes without a model", synthetic=False), rating=4, label="keep")
    return db


# ---- 1. text that is not valid UTF-8 ---------------------------------------------------------------

@pytest.mark.parametrize("extra", [["--mode", "keyword"], ["--mode", "hybrid"], ["--mode", "vector"], ["--images"],
                                   ["--mode", "keyword", "--model", "g\udcff"], ["--mode", "keyword", "--since", "\udcff"]])
def test_a_lone_surrogate_in_a_query_or_filter_is_one_clear_error_in_every_mode(store_db, extra):
    query = "x" if "--model" in extra or "--since" in extra else "zebra \udcff"
    res = cli("store", "search", query, "--store", store_db, *extra, code=2)
    assert "not valid UTF-8" in res.output and res.output.count("\n") == 1


def test_the_library_reads_a_lone_surrogate_as_no_word_in_every_mode(store_db):
    from genzoo.store.encoders import HashingEncoder

    with Store.open(store_db, encoder=HashingEncoder()) as s:
        found = {mode: [h.generation.id for h in s.search("zebra\udcff \ud800", mode=mode)] for mode in ("keyword", "vector", "hybrid")}
        assert sorted(found["keyword"]) == sorted(found["vector"]) == sorted(found["hybrid"]) and len(found["keyword"]) == 2, found


def test_an_api_key_that_is_not_utf8_is_one_clear_error(store_db):
    for args in (["store", "search", "zebra", "--mode", "keyword"], ["store", "graph", "generation:1"],
                 ["store", "export", "-o", store_db.parent / "o.jsonl", "--rated-min", "1"]):
        res = cli(*args, "--store", store_db, env={"GENZOO_API_KEY": "gz_\udcff"}, code=2)
        assert "GENZOO_API_KEY is not valid UTF-8" in res.output


def test_invalid_utf8_on_a_real_command_line_is_one_clear_error(store_db):
    """Bytes as a shell passes them ($'\\xff'): Python sees lone surrogates (surrogateescape)."""
    code = "from genzoo.cli.main import app; app()"
    env = {**os.environ, "GENZOO_API_KEY": "gz_ok"}
    p = subprocess.run([sys.executable, "-c", code, "store", "search", b"zebra \xff", "--mode", "vector", "--store", str(store_db)],
                       capture_output=True, timeout=120, env=env)
    assert p.returncode == 2 and b"not valid UTF-8" in p.stderr and b"Traceback" not in p.stderr, p.stderr
    env[b"GENZOO_API_KEY"] = b"gz_\xff"
    del env["GENZOO_API_KEY"]
    p = subprocess.run([sys.executable, "-c", code, "store", "search", "zebra", "--mode", "keyword", "--store", str(store_db)],
                       capture_output=True, timeout=120, env={os.fsencode(k): os.fsencode(v) if isinstance(v, str) else v
                                                                for k, v in env.items()})
    assert p.returncode == 2 and b"GENZOO_API_KEY is not valid UTF-8" in p.stderr and b"Traceback" not in p.stderr, p.stderr


# ---- 2. rag index reads only regular files, size first -----------------------------------------------

def test_rag_index_refuses_a_fifo_at_once(store_db, tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    code = "from genzoo.cli.main import app; app()"
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code, "rag", "index", str(fifo), "--keyword-only", "--store", str(store_db)],
                       capture_output=True, timeout=60)  # a hang would end in TimeoutExpired
    assert p.returncode == 2 and b"FIFO" in p.stderr and b"Traceback" not in p.stderr and time.monotonic() - start < 60
    (tmp_path / "docs").mkdir()
    os.mkfifo(tmp_path / "docs" / "pipe.md")
    (tmp_path / "docs" / "a.md").write_text("# A\n\nzebra text\n")
    res = cli("rag", "index", tmp_path / "docs", "--keyword-only", "--store", store_db, code=0)
    assert "indexed 1 new" in res.output and "pipe.md: a FIFO" in res.output


def test_rag_index_notes_a_file_name_that_is_not_utf8(store_db, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ok.txt").write_text("zebra ok\n")
    try:
        (tmp_path / "docs" / "bad\udcff.txt").write_text("zebra bad\n")
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses such names")
    res = cli("rag", "index", tmp_path / "docs", "--keyword-only", "--store", store_db, code=0)
    assert "indexed 1 new" in res.output and "not valid UTF-8" in res.output
    res = cli("rag", "index", tmp_path / "docs" / "bad\udcff.txt", "--keyword-only", "--store", store_db, code=2)
    assert "not valid UTF-8" in res.output


def test_stats_and_ask_refuse_text_that_is_not_utf8(store_db, tmp_path):
    res = cli("store", "stats", "--model", "m\udcff", "--store", store_db, code=2)
    assert "not valid UTF-8" in res.output
    res = cli("rag", "ask", "why\udcff", "--model", tmp_path, "--store", store_db, code=2)
    assert "not valid UTF-8" in res.output


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/proc/self/status", "/proc/self/environ"])
def test_rag_index_refuses_devices_and_proc_files(store_db, path):
    if not os.path.exists(path):
        pytest.skip(f"no {path} here")
    before = counts(store_db)
    res = cli("rag", "index", path, "--keyword-only", "--store", store_db, code=2)
    assert "not read" in res.output and counts(store_db) == before


def test_a_large_file_is_skipped_by_its_size_without_being_read(store_db, tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(50_000_000)  # sparse: 50 MB by stat
    (tmp_path / "small.txt").write_text("zebra small\n")

    def no_read(*a, **k):
        raise AssertionError("read a file that stat says is too large")

    import genzoo.store.files as files

    real_open = os.open
    monkeypatch.setattr(files.os, "open", lambda p, *a, **k: no_read() if str(p) == str(big) else real_open(p, *a, **k))
    res = cli("rag", "index", big, tmp_path / "small.txt", "--keyword-only", "--store", store_db, code=0)
    assert "big.txt: too large (50,000,000 bytes" in res.output and "indexed 1 new" in res.output
    with pytest.raises(Skip, match="too large"):
        read_text(big, 1000)


# ---- 3. export writes only to a new path or a regular file --------------------------------------------

def test_export_refuses_what_is_not_a_regular_file_and_leaves_no_temporary(store_db, tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "target.jsonl").write_text("keep me\n")
    os.symlink(tmp_path / "target.jsonl", tmp_path / "link.jsonl")
    cases = {tmp_path / "dir.jsonl": "is a folder", tmp_path / "fifo.jsonl": "not a regular file",
             tmp_path / "link.jsonl": "symbolic link", "/dev/null": "kernel file system", "/proc/self/x.jsonl": "kernel file system",
             store_db: "store's own database", tmp_path / "target.jsonl" / "x.jsonl": "Not a directory"}
    for out, message in cases.items():
        res = cli("store", "export", "-o", out, "--format", "jsonl", "--rated-min", "1", "--store", store_db, code=2)
        assert message in res.output, (out, res.output)
    assert os.path.islink(tmp_path / "link.jsonl") and (tmp_path / "target.jsonl").read_text() == "keep me\n"
    assert (tmp_path / "dir.jsonl").is_dir() and not list(tmp_path.rglob("*.tmp*"))
    # a new path, then the same path again: an existing regular file is replaced
    for _ in range(2):
        res = cli("store", "export", "-o", tmp_path / "new.jsonl", "--rated-min", "1", "--store", store_db, code=0)
        assert "wrote 2 record(s)" in res.output and len((tmp_path / "new.jsonl").read_text().splitlines()) == 2
    assert not list(tmp_path.rglob("*.tmp*"))


def test_export_checks_its_values(store_db, tmp_path):
    with Store.open(store_db, encoder=None) as s:
        for kwargs, message in (({"rated_min": float("nan")}, "finite"), ({"rated_min": 10**400}, "finite"),
                                ({"label": ""}, "non-empty"), ({"label": "k\udcff"}, "UTF-8")):
            with pytest.raises(GenzooError, match=message):
                export(s, tmp_path / "x.jsonl", **kwargs)
    assert not (tmp_path / "x.jsonl").exists()


# ---- 4. filter values are checked up front; the modes agree ------------------------------------------

@pytest.mark.parametrize("filters, message", [
    ({"model": -1}, "model id"), ({"model": 0}, "model id"), ({"model": 2**70}, "model id"), ({"model": ""}, "model"),
    ({"model": "  "}, "model"), ({"model": True}, "model"), ({"model": 1.5}, "model"), ({"family": ""}, "family"),
    ({"user": " "}, "user"), ({"min_rating": float("nan")}, "finite"), ({"min_rating": float("inf")}, "finite"),
    ({"min_rating": 10**400}, "finite"), ({"since": "2025-13-45"}, "not a date"), ({"until": float("nan")}, "finite"),
    ({"since": 1e300}, "finite"), ({"since": "2025-02-01", "until": "2025-01-01"}, "swap"), ({"family": "a\x00b"}, "NUL"),
    ({"user": "\ud800"}, "UTF-8"),
])
def test_nonsense_filters_are_refused_in_every_mode(filters, message):
    from genzoo.store.encoders import HashingEncoder

    with pytest.raises(GenzooError, match=message):
        Filters.make(**filters)
    with _mem(HashingEncoder()) as s:
        s.record(kind="text", text="zebra without a model")
        for mode in ("keyword", "vector", "hybrid"):
            with pytest.raises(GenzooError, match=message):
                s.search("zebra", mode=mode, **filters)


def _mem(encoder):
    import tempfile

    d = tempfile.mkdtemp()
    return Store.open(os.path.join(d, "m.db"), encoder=encoder)


def test_a_model_filter_matches_the_same_records_in_every_mode(store_db):
    from genzoo.store.encoders import HashingEncoder

    with Store.open(store_db, encoder=HashingEncoder()) as s:
        mid = s.backend.rows("SELECT id FROM models")[0]["id"]
        for model in (mid, "gpt-tiny", "no-such-model", "-1"):
            found = {mode: {h.generation.id for h in s.search("zebra", mode=mode, model=model)} for mode in ("keyword", "vector", "hybrid")}
            assert found["keyword"] == found["vector"] == found["hybrid"], (model, found)
        assert len({h.generation.id for h in s.search("zebra", mode="hybrid", model=mid)}) == 1


def test_the_cli_refuses_nonsense_filters(store_db):
    for args, message in ((["--model", ""], "model"), (["--user", ""], "user"), (["--min-rating", "nan"], "finite"),
                          (["--since", "2025-99-01"], "not a date"), (["--family", " "], "family")):
        res = cli("store", "search", "zebra", "--mode", "keyword", "--store", store_db, *args, code=2)
        assert message in res.output


def test_nul_in_paths_is_one_clear_error(store_db, tmp_path):
    res = cli("store", "search", "x", "--mode", "keyword", "--store", tmp_path / "a\x00b.db", code=2)
    assert "NUL" in res.output
    with Store.open(store_db, encoder=None) as s:
        with pytest.raises(GenzooError, match="NUL"):
            export(s, tmp_path / "a\x00b.jsonl", rated_min=1)
    from genzoo.store.files import document_files

    with pytest.raises(GenzooError, match="NUL"):
        document_files([tmp_path / "a\x00b.txt"], (".txt",), [])


def test_graph_ids_must_be_plain_whole_numbers(store_db):
    for node in ("generation:²", "generation:99999999999999999999999", "generation:-1", "generation:", "gen\udcff:1"):
        res = cli("store", "graph", node, "--store", store_db, code=2)
        assert res.output.startswith("error: ")


# ---- fuzz --------------------------------------------------------------------------------------------

def _rand_text(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.randbytes(rng.randint(0, 12)).decode("utf-8", "surrogateescape")
    if pick < 0.5:
        return "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF), rng.randint(0xD800, 0xDFFF)]))
                       for _ in range(rng.randint(0, 8)))
    return rng.choice(["zebra", "", " ", '" OR NEAR(', "-1", "0", "nan", "x" * 300, "generation:1", "model:1", "chunk:0",
                       "document:99", "[bold]", "%s", "\x00", "2025-01-01", "1e400"])


def test_fuzz_store_commands_end_in_0_or_2_without_traceback(store_db, tmp_path):
    rng = random.Random(20261205)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Zebra\n\nzebra stripes\n")
    (docs / "b.txt").write_bytes(b"\xff\xfe not utf8")
    os.mkfifo(docs / "p.txt")
    try:
        (docs / "s\udcff.md").write_text("zebra in a badly named file\n")
    except (UnicodeEncodeError, OSError):
        pass
    os.mkfifo(tmp_path / "f.jsonl")
    (tmp_path / "d.jsonl").mkdir()
    os.symlink(docs / "a.md", tmp_path / "l.jsonl")
    paths = [docs, docs / "a.md", docs / "b.txt", docs / "p.txt", tmp_path / "f.jsonl", tmp_path / "d.jsonl", tmp_path / "l.jsonl",
             tmp_path / "nope.txt", tmp_path / "o.jsonl", tmp_path / "o.npz", tmp_path / "o.csv", "/dev/zero", "/dev/null",
             "/proc/self/status", tmp_path / "x\udcff.jsonl", tmp_path / ("n" * 300 + ".jsonl"), store_db]
    out_paths = paths + [".", "/", tmp_path]  # not indexed: a walk of the whole disk is slow, not wrong
    options = {"--mode": ["keyword", "sql", "vector", "hybrid"], "--k": ["0", "1", "-5", "1001", "x"], "--model": None,
               "--family": None, "--user": None, "--kind": ["text", "video", ""], "--since": None, "--until": None,
               "--min-rating": ["nan", "inf", "-1e400", "3", "x"], "--fusion": ["rrf", "weighted", "x"], "--alpha": ["nan", "2", "0.5"]}
    ran = 0
    deadline = time.monotonic() + 45
    for case in range(300):
        if time.monotonic() > deadline:
            break
        cmd = rng.choice(["search", "search", "rag", "export", "graph"])
        before = counts(store_db)
        if cmd == "search":
            args = ["store", "search", _rand_text(rng), "--mode", "keyword"]
            for _ in range(rng.randint(0, 3)):
                name = rng.choice(list(options))
                args += [name, rng.choice(options[name]) if options[name] else _rand_text(rng)]
            modes = [args[i + 1] for i, a in enumerate(args) if a == "--mode"]
            if modes[-1] in ("vector", "hybrid"):
                args[2] = "q\udcff"  # vector work only on queries refused before any model loads
            if rng.random() < 0.05:
                args[2:3] = ["z\udcff", "--images"]  # refused before CLIP loads
        elif cmd == "rag":
            picks = [rng.choice(paths) if rng.random() < 0.8 else tmp_path / ("r" + _rand_text(rng).replace("/", "_"))
                     for _ in range(rng.randint(1, 3))]
            args = ["rag", "index", *map(str, picks), "--keyword-only"]
            if rng.random() < 0.3:
                args += [rng.choice(["--chunk-chars", "--overlap"]), rng.choice(["0", "-1", "49", "100000", "x", "10"])]
        elif cmd == "export":
            args = ["store", "export", "-o", str(rng.choice(out_paths))]
            args += rng.choice([["--rated-min", rng.choice(["1", "nan", "9", "-inf"])], ["--label", _rand_text(rng)], []])
            if rng.random() < 0.5:
                args += ["--format", rng.choice(["jsonl", "npz", "parquet", "csv", ""])]
        else:
            args = ["store", "graph", _rand_text(rng) if rng.random() < 0.5 else rng.choice(["generation", "model", "chunk"]) +
                    ":" + rng.choice(["1", "2", "0", "²", "9" * 25, "-3", "x"]), "--direction", rng.choice(["in", "out", "up"])]
            if rng.random() < 0.3:
                args += ["--types", rng.choice(["generation", "x", "model,prompt", ""])]
        env = {"GENZOO_API_KEY": "gz_\udcff"} if rng.random() < 0.05 else None
        res = runner.invoke(app, [*args, "--store", str(store_db)], env=env)
        assert res.exit_code in (0, 2), (case, args, res.output, repr(res.exception))
        assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit)), (case, args, res.output)
        if cmd != "rag":
            assert counts(store_db) == before, (case, args)
        ran += 1
    assert ran >= 100
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
