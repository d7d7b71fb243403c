"""``genzoo dedup DATA``: report exact and near duplicates in a dataset, optionally write a cleaned copy.

Text data (``pydocs``, ``pycode``, a folder of .txt / .md files, a .jsonl
file): the items are its documents, all splits together in the order train,
val, test, so a copy is dropped in favour of the training-split original and a
document shared by two splits shows up as a ``cross_split`` duplicate (a leak
from training data into held-out data). A single .txt / .md file is one
document, so its items are its paragraphs (blank-line separated).

Image and point data (``digits``, a folder of images, a .npy / .npz file,
``toy2d:*``): rows loaded with ``genzoo.data.load_dataset``, all splits
together (train, val, test), compared by their raw values (exact) and by
cosine similarity of the flattened values (near).

``--out`` writes the kept items, atomically (a temporary file, then a
rename), in a form ``genzoo train --data`` reads: ``.jsonl`` (one
``{"text": ..., "name": ...}`` per document) or ``.txt`` (paragraphs joined by
blank lines) for text; ``.npz`` (``x`` and, with labels, ``y``) for images
and points. The cleaned file is split again by its own rule (text: SHA-1 of
each document's text; arrays: a seeded 80/10/10 permutation), not by the
source dataset's fixed split: use it for training, and report test numbers on
the source dataset's test split.

This module imports ``genzoo.data`` (and so torch) only inside its functions,
so ``genzoo.store`` stays importable without torch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store.dedup import DEFAULT_TEXT_THRESHOLD, dedup_texts, dedup_vectors
from genzoo.core.atomic import write_atomic_file

DEFAULT_IMAGE_THRESHOLD = 0.99  # cosine of raw pixels; on digits 0.98 already merges 131 distinct same-class images
SPLITS = ("train", "val", "test")
TEXT_OUT = (".jsonl", ".txt")
ARRAY_OUT = (".npz",)


def run_dedup(data: str, *, threshold: float | None = None, out: str | os.PathLike | None = None,
              unit: str = "word", k: int = 5, num_perm: int = 128, examples: int = 5) -> dict:
    """Find duplicates in dataset ``data``; write the kept items to ``out`` if given. Returns a JSON-able report."""
    from genzoo.data import is_text

    out = Path(out) if out is not None else None
    text = is_text(data)
    if out is not None:
        allowed = TEXT_OUT if text else ARRAY_OUT
        if out.suffix.lower() not in allowed:
            raise GenzooError(f"--out for {'text' if text else 'image / point'} data must end in "
                              f"{' or '.join(allowed)}, got {out.name!r}")
        if out.resolve() == Path(data).resolve():
            raise GenzooError("--out would overwrite the input data; choose another path")
    start = time.perf_counter()
    if text:
        report = _dedup_text(data, threshold if threshold is not None else DEFAULT_TEXT_THRESHOLD,
                             unit, k, num_perm, out, examples)
    else:
        report = _dedup_arrays(data, threshold if threshold is not None else DEFAULT_IMAGE_THRESHOLD, out, examples)
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


# --- text ------------------------------------------------------------------------------------------------------

def _text_items(data: str) -> tuple[list[str], list[str], list[str]]:
    """(texts, names, splits) of every document in every split."""
    from genzoo.data import text as textdata

    path = Path(data)
    if path.is_file() and path.suffix.lower() in textdata.TEXT_SUFFIXES:
        whole = textdata._read_text(path)
        paragraphs = [p.strip() for p in whole.replace("\r\n", "\n").split("\n\n") if p.strip()]
        if not paragraphs:
            raise GenzooError(f"{path}: the file holds no text")
        return paragraphs, [f"{path.name}#{i}" for i in range(len(paragraphs))], ["all"] * len(paragraphs)
    texts, names, splits = [], [], []
    for split in SPLITS:
        try:
            corpus = textdata.load_corpus(data, split)
        except GenzooError as e:
            if "holds no documents" in str(e):  # a small collection may have no val or test document
                continue
            raise
        texts += corpus.documents
        names += corpus.names
        splits += [split] * len(corpus.documents)
    return texts, names, splits


def _dedup_text(data, threshold, unit, k, num_perm, out, examples) -> dict:
    loading = time.perf_counter()
    texts, names, splits = _text_items(data)
    loading = time.perf_counter() - loading
    result = dedup_texts(texts, threshold=threshold, unit=unit, k=k, num_perm=num_perm)
    report = _summary(data, "text", result, splits, threshold, f"Jaccard of {k}-{unit} shingles")
    report["load_seconds"] = round(loading, 3)
    report["examples"] = [
        {"dropped": names[i], "kept": names[d.of], "how": d.how, "similarity": round(d.similarity, 4)}
        for i, d in list(result.duplicate_of.items())[:examples]]
    if out is not None:
        if out.suffix.lower() == ".jsonl":
            body = "".join(json.dumps({"text": texts[i], "name": names[i]}, ensure_ascii=False) + "\n"
                           for i in result.keep)
        else:
            body = "\n\n".join(texts[i].strip() for i in result.keep) + "\n"
        write_atomic_file(out, body.encode("utf-8"))
        report["out"] = str(out)
    return report


# --- images and points -----------------------------------------------------------------------------------------

def _array_items(data: str):
    from genzoo.data import load_dataset

    xs, ys, splits, levels, kind = [], [], [], None, None
    for split in SPLITS:
        d = load_dataset(data, split)
        xs.append(d.x.numpy())
        ys.append(d.y.numpy() if d.y is not None else None)
        splits += [split] * len(d.x)
        levels, kind = d.levels, d.kind
    y = None if any(v is None for v in ys) else np.concatenate(ys)
    return np.concatenate(xs), y, splits, levels, kind


def _dedup_arrays(data, threshold, out, examples) -> dict:
    loading = time.perf_counter()
    x, y, splits, levels, kind = _array_items(data)
    loading = time.perf_counter() - loading
    result = dedup_vectors(x.reshape(len(x), -1), threshold=threshold)
    report = _summary(data, kind, result, splits, threshold, "cosine of the flattened values")
    report["load_seconds"] = round(loading, 3)
    report["examples"] = [{"dropped": i, "kept": d.of, "how": d.how, "similarity": round(d.similarity, 4)}
                          for i, d in list(result.duplicate_of.items())[:examples]]
    if out is not None:
        keep = np.array(result.keep, dtype=np.int64)
        arrays = {"x": _stored_values(x[keep], levels, kind)}
        if y is not None:
            arrays["y"] = y[keep]
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_atomic_file(out, buf.getvalue())
        report["out"] = str(out)
    return report


def _stored_values(x: np.ndarray, levels, kind: str) -> np.ndarray:
    """Values the array loader reads back as the same data: integer levels stay integers (0..levels-1)."""
    if kind != "image" or levels is None:
        return x.astype(np.float32)
    if levels == 256:
        return x.astype(np.uint8)  # the loader reads uint8 as 256 levels
    return x.astype(np.int16)  # other integer arrays: levels = max + 1 (digits: 0..16 -> 17)


# --- shared ----------------------------------------------------------------------------------------------------

def _summary(data, kind, result, splits, threshold, measure) -> dict:
    cross = sum(splits[i] != splits[d.of] for i, d in result.duplicate_of.items())
    return {"data": data, "kind": kind, "items": result.n, "kept": len(result.keep),
            "exact_duplicates": result.exact_duplicates, "near_duplicates": result.near_duplicates,
            "clusters": len(result.clusters), "cross_split": cross, "threshold": threshold, "similarity": measure}


def print_report(report: dict, console, as_json: bool = False) -> None:
    """The report as a short table (or JSON) on a rich ``console``."""
    if as_json:
        console.print_json(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"duplicates in {report['data']} ({report['kind']})")
    for col in ("items", "kept", "exact", "near", "clusters", "cross-split", "threshold", "seconds (load)"):
        table.add_column(col, justify="right")
    table.add_row(str(report["items"]), str(report["kept"]), str(report["exact_duplicates"]),
                  str(report["near_duplicates"]), str(report["clusters"]), str(report["cross_split"]),
                  f"{report['threshold']:g}", f"{report['seconds']:.2f} ({report['load_seconds']:.2f})")
    console.print(table)
    for ex in report["examples"]:
        console.print(f"  {ex['how']:5s} {ex['similarity']:.3f}  {ex['dropped']}  duplicates  {ex['kept']}",
                      markup=False, highlight=False)
    if "out" in report:
        console.print(f"wrote {report['kept']} items to {report['out']}", markup=False, highlight=False)


# ---- genzoo dedup --store: duplicates among stored generations ----------------------------
def print_store_report(report: dict, console, as_json: bool = False, examples: int = 10) -> None:
    if as_json:
        import json

        console.print_json(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"duplicate {report['kind']} generations in {report.get('store', 'the store')}")
    for col in ("generations", "kept", "exact", "near", "clusters", "threshold", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(report["generations"]), str(report["kept"]), str(report["exact_duplicates"]),
                  str(report["near_duplicates"]), str(len(report["clusters"])), f"{report['threshold']:g}",
                  f"{report['seconds']:.2f}")
    console.print(table)
    for c in report["clusters"][:examples]:
        dups = ", ".join(f"{d['id']} ({d['how']} {d['similarity']:.3f})" for d in c["duplicates"])
        console.print(f"  kept {c['kept']}: {dups}", markup=False, highlight=False)


def store_dedup(url_or_path, *, kind: str = "text", threshold: float | None = None, out=None) -> dict:
    """``genzoo dedup --store``: open the store as the CLI's user ($GENZOO_API_KEY, else the local
    admin), report, close. It only reads: there is no cleaned copy of a store to write."""
    from genzoo.store.api import Store

    if out is not None:
        raise GenzooError("--out writes a cleaned copy of a dataset; with --store dedup only reports (it deletes nothing)")
    with Store.open(url_or_path, encoder=None, redact=False) as store:
        from genzoo.store.generation_dedup import find_duplicates

        report = find_duplicates(store, kind, threshold=threshold)
        report["store"] = store.backend.url
    return report
