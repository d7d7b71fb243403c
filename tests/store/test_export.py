"""Export of rated or labeled records as a training set: synthetic records left out unless asked
for, JSONL that `genzoo train` reads, Parquet with the same rows, images as an .npz; on SQLite and on
PostgreSQL (a real server, see pg_server.py)."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.api import Store
from genzoo.store.export import export

from test_store import db  # noqa: F401  (the store's location, per test: a SQLite file or a PostgreSQL database)


def png(level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), level, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def rated(db):
    """30 real texts rated 5, 10 synthetic texts rated 5, one real text rated 1, one labeled
    'keep'; two real images rated 5 and one synthetic image."""
    with Store.open(db, encoder=None) as s:
        for i in range(30):
            s.feedback(s.record(kind="text", text=f"def f{i}(x):\n    return x * {i}  # real code number {i}\n", synthetic=False), rating=5)
        for i in range(10):
            s.feedback(s.record(kind="text", text=f"synthetic sample {i}", prompt="p: ", manifest={"format": "genzoo.textgen/1"}), rating=5)
        s.feedback(s.record(kind="text", text="a bad real one", synthetic=False), rating=1)
        s.feedback(s.record(kind="text", text="labeled real one", synthetic=False), label="keep")
        for level, synthetic in ((10, False), (200, False), (99, True)):
            s.feedback(s.record(kind="image", content=png(level), content_type="image/png", synthetic=synthetic), rating=5)
    return db


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synthetic_records_are_left_out_unless_asked_for(rated, tmp_path):
    with Store.open(rated, encoder=None) as s:
        r = export(s, tmp_path / "real.jsonl", rated_min=4)
        assert (r.written, r.synthetic, r.skipped_synthetic) == (30, 0, 10)
        rows = read_jsonl(tmp_path / "real.jsonl")
        assert all(not row["synthetic"] and row["rating"] == 5 for row in rows) and rows[0]["text"].startswith("def f0(x)")
        r = export(s, tmp_path / "all.jsonl", rated_min=4, include_synthetic=True)
        rows = read_jsonl(tmp_path / "all.jsonl")
        assert (r.written, r.synthetic) == (40, 10) and sum(row["synthetic"] for row in rows) == 10
        continuation = next(row for row in rows if row["synthetic"])
        assert continuation["text"] == "p: synthetic sample 0" and continuation["completion"] == "synthetic sample 0"
        labeled = export(s, tmp_path / "keep.jsonl", label="keep")
        assert labeled.written == 1 and read_jsonl(tmp_path / "keep.jsonl")[0]["labels"] == ["keep"]
        with pytest.raises(GenzooError, match="nothing written"):
            export(s, tmp_path / "none.jsonl", rated_min=5.5)
        with pytest.raises(GenzooError, match="rated-min"):
            export(s, tmp_path / "x.jsonl")
        with pytest.raises(GenzooError, match="--format"):
            export(s, tmp_path / "x.tsv", rated_min=4)
        assert not (tmp_path / "none.jsonl").exists() and not list(tmp_path.glob("*.tmp"))


def test_nothing_real_matches_says_how_to_get_the_synthetic_ones(db, tmp_path):
    with Store.open(db, encoder=None) as s:
        s.feedback(s.record(kind="text", text="model output"), rating=5)
        with pytest.raises(GenzooError, match="1 synthetic ones matched: add --include-synthetic"):
            export(s, tmp_path / "out.jsonl", rated_min=4)


def test_parquet_holds_the_same_rows(rated, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    with Store.open(rated, encoder=None) as s:
        export(s, tmp_path / "a.jsonl", rated_min=4)
        export(s, tmp_path / "a.parquet", rated_min=4)
    table = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [(r["id"], r["text"], r["synthetic"]) for r in table] == [(r["id"], r["text"], r["synthetic"]) for r in read_jsonl(tmp_path / "a.jsonl")]


def test_images_export_as_an_npz_the_data_loader_reads(rated, tmp_path):
    from genzoo.data.files import _read_array

    with Store.open(rated, encoder=None) as s:
        r = export(s, tmp_path / "img.npz", rated_min=4)
    assert (r.written, r.skipped_synthetic) == (2, 1)
    x, y = _read_array(tmp_path / "img.npz")[:2]
    assert x.shape == (2, 1, 8, 8) and sorted(int(v) for v in x[:, 0, 0, 0]) == [10, 200] and y is None


def test_exported_jsonl_trains_a_gpt(rated, tmp_path):
    runner = CliRunner()
    out = tmp_path / "data.jsonl"
    r = runner.invoke(app, ["export", "--rated-min", "4", "--format", "jsonl", "-o", str(out), "--store", str(rated)])
    assert r.exit_code == 0, r.output
    assert "wrote 30 record(s)" in r.output and "10 synthetic record(s) left out" in r.output
    r = runner.invoke(app, ["train", "gpt", "--data", str(out), "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "run"),
                            "--no-eval", "--set", "layers=1", "--set", "width=32", "--set", "context=32", "--val-every", "0"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run").is_dir()


def test_a_user_exports_only_what_they_may_see(rated, tmp_path):
    with Store.open(rated, encoder=None) as s:
        _, key = s.create_user("wes", "writer")
    with Store.open(rated, api_key=key, encoder=None) as wes:
        with pytest.raises(GenzooError, match="no text records match"):
            export(wes, tmp_path / "theirs.jsonl", rated_min=4)  # the admin's records are private
        wes.feedback(wes.record(kind="text", text="wes wrote this", synthetic=False), rating=5)
        assert export(wes, tmp_path / "mine.jsonl", rated_min=4).written == 1
    assert [r["text"] for r in read_jsonl(tmp_path / "mine.jsonl")] == ["wes wrote this"]
