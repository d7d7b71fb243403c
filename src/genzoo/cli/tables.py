"""What the train / sample / eval commands do differently for a table (kept here so those commands
change by a line each)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from genzoo.cli.app import note
from genzoo.core.errors import GenzooError


def train_data(data: str, target: str | None) -> str:
    """The data name to train on: a table's with ``--target`` in it (``NAME#target=COL``, so eval
    finds it in run.json); the schema is printed before training. Other data passes through."""
    from genzoo.data import table as tables

    if not tables.is_table(data):
        if target:
            raise GenzooError(f"--target names a column of a table (.csv, .tsv, .parquet, {', '.join(tables.BUILTIN_TARGETS)}); {data!r} is not one")
        return data
    name = tables.with_target(data, target)
    _, spec, _ = tables.prepared(name)  # reads, checks and fits now: bad tables fail before any model is built
    note(tables.describe(spec))
    return name


def is_table_model(model) -> bool:
    return (model.data_spec or {}).get("kind") == "table"


def class_label(condition: str):
    """``--condition`` for a model that is not a table's: a class label (an integer)."""
    try:
        return int(condition)
    except ValueError:
        raise GenzooError(f"--condition takes a class label (an integer) for this model, got {condition!r}; "
                          "COLUMN=VALUE conditions are for table models") from None


def csv_output(output: Path) -> Path:
    """A table's samples are a CSV: ``-o syn.csv`` (another suffix is replaced by .csv)."""
    return output if output.suffix.lower() == ".csv" else output.with_suffix(".csv")


def lineage(model) -> dict:
    """What a synthetic table came from: the source table and its sha256, the family, the target and columns.
    (The sample manifest around it names the run's checkpoint and, for a DP run, the epsilon spent.)"""
    from genzoo.data import table as tables
    from genzoo.runs.manifest import sha256_file

    spec = model.data_spec["table"]
    base = tables.split_name(spec["name"])[0]
    out = {"source": str(Path(base).resolve()) if Path(base).is_file() else base, "target": spec.get("target"),
           "columns": [c["name"] for c in spec["columns"]], "family": model.family, "synthetic": True}
    if Path(base).is_file():
        out["source_sha256"] = sha256_file(base)
    else:
        out["source_builtin"] = True
        out["source_sha256"] = builtin_sha256(base)
        out["source_sha256_of"] = "the built-in table as read, written as CSV (pandas, no index)"
    return out


@lru_cache(maxsize=4)
def builtin_sha256(base: str) -> str:
    """sha256 of a built-in table's rows as genzoo reads them, serialised as CSV: a built-in has no file of
    its own here, so this is what pins it (a package update that changes the rows changes it)."""
    import hashlib

    from genzoo.data import table as tables

    return hashlib.sha256(tables.read_frame(base).to_csv(index=False).encode("utf-8")).hexdigest()
