"""A synthetic table in the store: recorded with its lineage (source table and sha256, family, run, epsilon of a
DP run), flagged synthetic, found by `--synthetic` and not by `--real`, and never exported among real records."""

import hashlib
import json

from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.data import table as tables
from genzoo.store.api import Store

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_a_dp_synthetic_table_is_recorded_with_its_lineage_and_kept_out_of_real_exports(tmp_path):
    out, db = tmp_path / "run", tmp_path / "store.db"
    run("train", "tvae", "--data", "diamonds", "--steps", "3", "--set", "latent_dim=4", "--set", "hidden_widths=[16]",
        "--dp-epsilon", "3", "--out", out, "--no-eval")  # diamonds: at epsilon 3, penguins' 275 rows are too few to publish even its ranges
    spent = json.loads((out / "privacy.json").read_text())["epsilon"]
    run("sample", out, "--n", "16", "-o", tmp_path / "syn.csv", "--store", db)

    manifest = json.loads((tmp_path / "syn.json").read_text())
    # the built-in table's sha256, recomputed here from the rows as read
    want = hashlib.sha256(tables.read_frame("diamonds").to_csv(index=False).encode()).hexdigest()
    lineage = manifest["table"]
    assert lineage["source"] == "diamonds" and lineage["source_sha256"] == want and lineage["synthetic"] is True
    assert lineage["family"] == "tvae" and manifest["family"] == "tvae"
    assert manifest["privacy"]["epsilon"] == spent and str(out) in manifest["checkpoint"]

    with Store.open(db, encoder=None) as store:
        (hit,) = store.search("", mode="keyword", synthetic=True)
        g = store.get(hit.generation.id)
        assert g.synthetic and g.content_type == "text/csv" and g.content == (tmp_path / "syn.csv").read_bytes()
        assert g.manifest["table"]["source_sha256"] == want and g.manifest["privacy"]["epsilon"] == spent
        assert store.search("", mode="keyword", synthetic=False) == []  # `genzoo store search --real` leaves it out
        real = store.record(kind="text", text="a real note", prompt="p", synthetic=False)
        for gid in (g.id, real):
            store.feedback(gid, rating=5)

    run("store", "export", "--out", tmp_path / "real.jsonl", "--rated-min", "4", "--store", db)
    rows = [json.loads(line) for line in (tmp_path / "real.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [real] and not any(row["synthetic"] for row in rows)
    assert g.kind == "table"

    # a table export takes real table records only, unless asked; then each row says where it came from
    with Store.open(db, encoder=None) as store:
        real_table = store.record(kind="table", content=b"species,mass\nAdelie,3700\nGentoo,5000\n", content_type="text/csv",
                                  synthetic=False)
        store.feedback(real_table, rating=5)
    run("store", "export", "--out", tmp_path / "real.csv", "--rated-min", "4", "--store", db)
    assert (tmp_path / "real.csv").read_text().splitlines() == [
        "generation_id,synthetic,species,mass", f"{real_table},0,Adelie,3700", f"{real_table},0,Gentoo,5000"]
    r = runner.invoke(app, ["store", "export", "--out", str(tmp_path / "t.csv"), "--rated-min", "4", "--include-synthetic",
                            "--store", str(db)])  # the penguins sample and the two-column table: not one training set
    assert r.exit_code != 0 and "other columns" in r.output and not (tmp_path / "t.csv").exists(), r.output
    with Store.open(db, encoder=None) as store:
        store.feedback(g.id, label="share")
    r = runner.invoke(app, ["store", "export", "--out", str(tmp_path / "t.csv"), "--label", "share", "--store", str(db)])
    assert r.exit_code != 0 and "--include-synthetic" in r.output and not (tmp_path / "t.csv").exists(), r.output
    run("store", "export", "--out", tmp_path / "t.csv", "--label", "share", "--include-synthetic", "--store", db)
    import csv

    exported = list(csv.reader((tmp_path / "t.csv").open()))
    sample = list(csv.reader((tmp_path / "syn.csv").open()))
    assert exported[0] == ["generation_id", "synthetic", *sample[0]]
    assert [row[2:] for row in exported[1:]] == sample[1:] and {tuple(row[:2]) for row in exported[1:]} == {(str(g.id), "1")}
