"""Rated or labeled records as a training set: what ``genzoo export`` writes.

Text -> ``.jsonl`` (one ``{"text": ...}`` object a line, the format ``genzoo train --data`` reads)
or ``.parquet`` (the same columns, for other tools; needs ``pyarrow``). Images -> ``.npz`` with
``x`` (N, H, W) uint8 and ``ids``, which ``genzoo train --data`` reads. Tables -> ``.csv``: the
rows of the selected table records (each a CSV dataset) under their shared header, after two
columns ``generation_id`` and ``synthetic`` that say where each row came from. Synthetic records (model
output) stay out unless ``include_synthetic``: a training set of real data must not fill up with
a model's own samples by accident. Every row says whether it is synthetic.

The training text of a continuation (``genzoo generate`` records the prompt and the new text
apart) is prompt + continuation, the text the model saw whole; other records give their text.

The output path is a new file or an existing regular file, replaced atomically (a temporary file
beside it, renamed over it, removed on failure): anything else (a folder, a symbolic link, a device,
a FIFO, a path under /proc, /sys or /dev, the store's own database) is refused (``check_target``).
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genzoo.core.atomic import write_atomic_with
from genzoo.core.errors import GenzooError
from genzoo.store.visibility import seen_by

FORMATS = ("jsonl", "parquet", "npz", "csv")
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")  # kernel file systems: never export targets
CONTINUATION_FORMATS = ("genzoo.textgen/1",)


@dataclass
class ExportReport:
    path: Path
    written: int
    synthetic: int
    skipped_synthetic: int  # matched the rating / label but left out as synthetic
    format: str


def _select(store, rated_min, label, include_synthetic: bool, kind: str) -> tuple[list[int], int]:
    if rated_min is None and label is None:
        raise GenzooError("say which records to export: --rated-min R (mean rating at least R) and/or --label L")
    if rated_min is not None and (isinstance(rated_min, bool) or not isinstance(rated_min, (int, float)) or not _finite(rated_min)):
        raise GenzooError(f"--rated-min must be a finite number, got {rated_min!r}")
    conds, params = [], []
    if rated_min is not None:
        conds.append("g.id IN (SELECT generation_id FROM feedback WHERE rating IS NOT NULL GROUP BY generation_id HAVING avg(rating) >= ?)")
        params.append(float(rated_min))
    labelled = None
    if label is not None:
        # sealed labels (the store's policy) differ per row: matched after decryption, not in SQL
        fb = store.backend.rows("SELECT generation_id, label FROM feedback WHERE label = ? OR label LIKE 'gze1:%'", [label])
        labelled = {r["generation_id"] for r in fb if store._open(r["label"], "label") == label}
    seen, seen_params = seen_by(store.viewer, "g")
    where = " AND ".join(conds) or "1 = 1"
    rows = store.backend.rows(f"SELECT g.id, g.synthetic FROM generations g WHERE g.kind = ? AND {where} "
                              f"AND {seen} ORDER BY g.id", [kind, *params, *seen_params])
    if labelled is not None:
        rows = [r for r in rows if r["id"] in labelled]
    keep = [r["id"] for r in rows if include_synthetic or not r["synthetic"]]
    return keep, len(rows) - len(keep)


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _format_for(out: Path, fmt: str | None) -> str:
    fmt = fmt or {".jsonl": "jsonl", ".parquet": "parquet", ".npz": "npz", ".csv": "csv"}.get(out.suffix.lower())
    if fmt not in FORMATS:
        raise GenzooError(f"give --format jsonl, parquet, npz or csv (or an -o path ending in one of them), got {fmt or out.suffix!r}")
    return fmt


def check_target(out: Path, store=None) -> None:
    """Export writes only to a new path or over an existing regular file (replaced atomically: a
    re-run refreshes its training set). A folder, a symbolic link, a device, a FIFO or a socket is
    refused, as is anything under /proc, /sys or /dev and the store's own database file, so an
    export never replaces something that is not a plain data file."""
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise GenzooError("the -o path is not valid UTF-8; give it as UTF-8") from None
    if "\x00" in str(out):
        raise GenzooError("the -o path must not hold a NUL character")
    if not out.name or out.name in (".", ".."):
        raise GenzooError(f"-o {out} names a folder; give a file path such as {out / 'train.jsonl'}")
    real = os.path.realpath(out)
    if any(real == root or real.startswith(root + "/") for root in PSEUDO_ROOTS):
        raise GenzooError(f"-o {out} is in a kernel file system (/proc, /sys, /dev); give a path to a regular file")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise GenzooError(f"cannot write to -o {out}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise GenzooError(f"-o {out} is a symbolic link; export writes only to a new path or a regular file: give the real path")
        if stat.S_ISDIR(st.st_mode):
            raise GenzooError(f"-o {out} is a folder; give a file path such as {out / 'train.jsonl'}")
        if not stat.S_ISREG(st.st_mode):
            raise GenzooError(f"-o {out} exists and is not a regular file (a device, FIFO or socket); export writes only to a new "
                              "path or a regular file")
        db = getattr(getattr(store, "backend", None), "path", None)
        if db is not None:
            for f in (Path(db), Path(f"{db}-wal"), Path(f"{db}-shm")):
                try:
                    if os.path.samefile(out, f):
                        raise GenzooError(f"-o {out} is the store's own database file; export to another path")
                except OSError:
                    continue
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise GenzooError(f"-o {out}: {parent} is not a folder")


def export(store, out: str | Path, *, rated_min: float | None = None, label: str | None = None, include_synthetic: bool = False,
           fmt: str | None = None) -> ExportReport:
    if not isinstance(out, (str, os.PathLike)):
        raise GenzooError(f"the export path must be a path, got {type(out).__name__}")
    out = Path(out)
    fmt = _format_for(out, fmt)
    check_target(out, store)
    if label is not None and (not isinstance(label, str) or not label.strip() or "\x00" in label):
        raise GenzooError(f"--label must be a non-empty label, got {label!r}")
    if label is not None:
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:
            raise GenzooError("--label is not valid UTF-8 text; give it as UTF-8") from None
    kind = {"npz": "image", "csv": "table"}.get(fmt, "text")
    ids, skipped = _select(store, rated_min, label, include_synthetic, kind)
    gens = [store.get(i) for i in ids]
    if not gens:
        raise GenzooError(f"no {kind} records match (rating/label{'' if include_synthetic else ', real only'}); "
                          f"{skipped} synthetic ones matched: add --include-synthetic to export them" if skipped else
                          f"no {kind} records match those ratings / labels; nothing written")
    labels = _labels(store, ids)
    rows = None if fmt in ("npz", "csv") else [_text_row(g, labels.get(g.id, [])) for g in gens]
    table = _table_rows(gens) if fmt == "csv" else None  # checked before anything is written
    write = {"npz": lambda tmp: _write_npz(tmp, gens), "parquet": lambda tmp: _write_parquet(tmp, rows),
             "jsonl": lambda tmp: _write_jsonl(tmp, rows), "csv": lambda tmp: _write_csv(tmp, *table)}[fmt]
    try:
        write_atomic_with(out, write)  # a temporary file beside it, renamed over it; removed on any failure
    except OSError as e:
        raise GenzooError(f"cannot write the export to {out}: {e.strerror or e}") from None
    return ExportReport(out, len(gens), sum(g.synthetic for g in gens), skipped, fmt)


def _labels(store, ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        for r in store.backend.rows(f"SELECT generation_id, label FROM feedback WHERE label IS NOT NULL AND generation_id IN "
                                    f"({', '.join('?' * len(part))}) ORDER BY id", part):
            out.setdefault(r["generation_id"], []).append(r["label"])
    return out


def _text_row(g, labels: list[str]) -> dict:
    continuation = g.manifest.get("format") in CONTINUATION_FORMATS and g.prompt
    return {"text": (g.prompt + g.text) if continuation else g.text, "prompt": g.prompt, "completion": g.text, "id": g.id,
            "model": g.model_name, "family": g.family, "rating": g.rating, "labels": labels, "synthetic": g.synthetic}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _write_parquet(path: Path, rows: list[dict]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise GenzooError("Parquet export needs pyarrow: pip install 'genzoo[export]', or export --format jsonl") from e
    pq.write_table(pa.Table.from_pylist(rows), path)


def _table_rows(gens) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the table records, each row led by its record's id and synthetic flag; the
    records must share one header (tables of different columns do not make one training set)."""
    import csv

    header, out = None, []
    for g in gens:
        try:
            lines = list(csv.reader(io.StringIO((g.content or b"").decode("utf-8"))))
        except (UnicodeDecodeError, csv.Error) as e:
            raise GenzooError(f"table record {g.id} is not a readable CSV ({e}); nothing written") from None
        if not lines:
            continue
        if header is None:
            header = lines[0]
        elif lines[0] != header:
            raise GenzooError(f"table record {g.id} has other columns than the records before it; export one table at a time "
                              "(label its records and use --label); nothing written")
        out += [[str(g.id), str(int(g.synthetic)), *row] for row in lines[1:]]
    if header is None:
        raise GenzooError("the matching table records hold no rows; nothing written")
    return ["generation_id", "synthetic", *header], out


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_npz(path: Path, gens) -> None:
    """Images as (N, H, W) uint8: a PNG record is one image; a .npy record (N, ...) adds N rows."""
    from PIL import Image

    arrays, ids = [], []
    for g in gens:
        if g.content is None:
            continue
        if (g.content_type or "").endswith("png"):
            a = np.asarray(Image.open(io.BytesIO(g.content)).convert("L"))[None]
        else:
            a = np.load(io.BytesIO(g.content), allow_pickle=False)
            a = a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a
        arrays.append(a)
        ids += [g.id] * len(a)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise GenzooError(f"the selected images have different shapes {sorted(shapes)}; export one model's records at a time")
    with open(path, "wb") as f:  # np.savez on a path would add .npz to the temporary name
        np.savez(f, x=np.concatenate(arrays), ids=np.asarray(ids, np.int64))
