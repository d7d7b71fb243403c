"""The table verbs end to end: train on a user CSV (schema shown), sample a CSV, conditions, clear errors."""

import csv
import random

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    folder = tmp_path_factory.mktemp("people")
    r = random.Random(7)
    path = folder / "people.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "hours", "job", "city", "owns_car", "income"])
        for _ in range(400):
            job = r.choice(["nurse", "clerk", "engineer"])
            age = r.randint(18, 80)
            w.writerow([age, round(r.gauss(40, 6), 1), job, r.choice(["north", "south", ""]), r.random() < 0.5,
                        ">50K" if job == "engineer" and age > 30 else "<=50K"])
    return folder, path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_shows_the_schema_then_samples_a_csv(people):
    folder, path = people
    out = run("train", "copula", "--data", path, "--target", "income", "--steps", 3, "--out", folder / "run", "--no-eval")
    assert out.exit_code == 0, out.output
    assert "categorical" in out.output and "target: income" in out.output
    out = run("sample", folder / "run", "--n", 50, "-o", folder / "syn.csv", "--no-store")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(open(folder / "syn.csv")))
    assert len(rows) == 50 and list(rows[0]) == ["age", "hours", "job", "city", "owns_car", "income"]
    assert {r["job"] for r in rows} <= {"nurse", "clerk", "engineer"}
    out = run("sample", folder / "run", "--n", 20, "--condition", "income=>50K", "-o", folder / "cond.csv", "--no-store")
    assert out.exit_code == 0, out.output
    assert {r["income"] for r in csv.DictReader(open(folder / "cond.csv"))} == {">50K"}
    out = run("sample", folder / "run", "--n", 5, "--condition", "3", "-o", folder / "bad.csv", "--no-store")
    assert out.exit_code != 0 and "COLUMN=VALUE" in out.output


@pytest.mark.parametrize("case, message", [
    ("target", "no_such_column"),
    ("noise", "not a table"),
])
def test_bad_tables_get_one_line(people, case, message):
    folder, path = people
    if case == "noise":
        path = folder / "noise.csv"
        path.write_bytes(random.Random(0).randbytes(3000))
    out = run("train", "tvae", "--data", path, "--target", "no_such_column" if case == "target" else None, "--steps", 1,
              "--out", folder / f"x-{case}") if case == "target" else run("train", "tvae", "--data", path, "--steps", 1, "--out", folder / "x")
    assert out.exit_code != 0 and message in out.output
    assert "Traceback" not in out.output
