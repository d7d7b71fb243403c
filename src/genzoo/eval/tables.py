"""Synthetic tables, measured the same way for every family and for other libraries' samples.

``table_scores(synthetic, train, test, floor_rows, target)`` takes DataFrames only, so a competitor's
samples (the ctgan / sdv packages) are scored by the very same code as genzoo's. Every score has a
floor: the same metric with real rows the model never saw (the validation split) in place of the
synthetic ones.

- quality: SDMetrics' quality score, the mean of column shapes (its QualityReport: KS complement /
  total-variation complement) and column-pair trends (its correlation / contingency similarity,
  computed here with the real rows' bins: see ``column_pair_trends``); against a sample of the
  training rows. Higher is better, 1 = identical distributions. The report's own pair score is kept
  beside it as ``column_pairs_report``.
- ML efficacy: a HistGradientBoosting model (scikit-learn, seed 0) trained on the synthetic rows,
  tested on the real test split; beside it the same model trained on as many real training rows
  ("real"). Macro F1 for a categorical target, R^2 for a numeric one.
- detection AUC: a HistGradientBoosting classifier telling synthetic from real training rows,
  3-fold cross-validated ROC AUC. 0.5 = indistinguishable, 1 = trivially told apart.
- DCR (distance to closest record), in a standardized one-hot space fitted on the training rows:
  the median distance of each synthetic row to its nearest training row, the share of synthetic
  rows nearer a training row than 95% of the real test rows are (5% = no copying), and the share
  of exact copies of a training row.
- membership inference: ``genzoo.eval.privacy.membership_inference_distance`` on the same
  features (members: training rows; non-members: test rows), where that module is present.
"""

from __future__ import annotations

import warnings

import numpy as np

MAX_REAL = 5000  # real rows the quality report and the detection classifier see (diamonds has 43,152)
MAX_DCR_TRAIN = 20000
HOLDOUT_DRAWS = 10  # training subsets (as many rows as the test split) that closer_to_train averages over


def _sdtype(col: dict) -> str:
    return {"continuous": "numerical", "integer": "numerical", "boolean": "boolean"}.get(col["type"], "categorical")


def metadata(columns: list[dict]) -> dict:
    return {"columns": {c["name"]: {"sdtype": _sdtype(c)} for c in columns}}


class Features:
    """A standardized numeric + one-hot encoding fitted on the training rows (distances, classifiers)."""

    def __init__(self, train, columns: list[dict]):
        self.columns = columns
        self.stats = {}
        for c in columns:
            s = train[c["name"]]
            if _sdtype(c) == "numerical":
                v = s.astype(float)
                self.stats[c["name"]] = (float(v.mean()), float(v.std()) or 1.0, float(v.median()), bool(s.isna().any()))
            else:
                self.stats[c["name"]] = [_key(v) for v in s.drop_duplicates()]

    def __call__(self, frame) -> np.ndarray:
        parts = []
        for c in self.columns:
            s = frame[c["name"]]
            st = self.stats[c["name"]]
            if isinstance(st, tuple):
                mean, std, median, has_missing = st
                v = s.astype(float).to_numpy()
                miss = np.isnan(v)
                parts.append(((np.where(miss, median, v) - mean) / std)[:, None])
                if has_missing:
                    parts.append(miss[:, None].astype(float))
            else:
                keys = s.map(_key).to_numpy()
                parts.append((keys[:, None] == np.asarray(st, dtype=object)[None, :]).astype(float))
        return np.concatenate(parts, 1)


def _key(v) -> str:
    import json

    from genzoo.data.table import _plain

    return json.dumps(_plain(v))


def _sample(frame, n: int, seed: int):
    return frame if len(frame) <= n else frame.sample(n, random_state=seed).reset_index(drop=True)


def quality(real, synthetic, columns: list[dict]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the single-table report's deprecation notice; its scores are what we want
        from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        report.generate(real, synthetic, metadata(columns), verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    shapes = float(props.get("Column Shapes", np.nan))
    pairs = column_pair_trends(real, synthetic, columns)
    return {"quality": float(np.nanmean([shapes, pairs])) if not np.isnan([shapes, pairs]).all() else np.nan,
            "column_shapes": shapes, "column_pairs": pairs,
            "column_pairs_report": float(props.get("Column Pair Trends", np.nan))}


def column_pair_trends(real, synthetic, columns: list[dict]) -> float:
    """SDMetrics' column-pair trends as its documentation defines them, numeric columns binned on the
    real rows' edges.

    Pairs of numeric columns: CorrelationSimilarity, 1 - |r_real - r_synthetic| / 2 (Pearson). Other
    pairs: ContingencySimilarity, 1 - total variation distance between the two joint frequency tables,
    a numeric column cut into 10 equal-width bins over the real rows' range with open outer bins, the
    same bins for both sides. A pair counts as the report counts it: where the real rows' |r| > 0.5
    or Cramer's V > 0.3 (sdmetrics' defaults); the score is the mean over those pairs.

    Why not the report's own number: sdmetrics 0.32's QualityReport bins the real and the synthetic
    rows each on its own min..max, so a generator that leaves out one real outlier moves every
    synthetic bin and is scored as if the pair were unrelated (diamonds, cut x depth, one tvae sample:
    0.18 from the report, 0.91 with shared bins; the real depth runs 44-71.6, the synthetic 57-67.9).
    That rewards copying the extremes. The shared bins are what its documentation and its maintainers
    describe (sdv-dev/SDMetrics#368) and what its ContingencySimilarity(continuous_column_names=...) does."""
    import itertools

    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.reports.utils import DEFAULT_REAL_ASSOCIATION_THRESHOLD, DEFAULT_REAL_CORRELATION_THRESHOLD

    numeric = {c["name"] for c in columns if _sdtype(c) == "numerical"}
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-column correlation warnings: such a pair scores NaN and is left out
        for a, b in itertools.combinations([c["name"] for c in columns], 2):
            r, s = real[[a, b]], synthetic[[a, b]]
            if a in numeric and b in numeric:
                r, s = r.astype(float), s.astype(float)
                if (r.nunique() < 2).any():
                    continue  # a constant real column has no trend to keep (the report leaves it out too)
                if (s.nunique() < 2).any():  # sdmetrics raises here; a constant column correlates with nothing
                    rho = r.dropna().corr().iloc[0, 1]
                    out = {"score": 1 - abs(rho) / 2 if abs(rho) > DEFAULT_REAL_CORRELATION_THRESHOLD else np.nan}
                else:
                    out = CorrelationSimilarity.compute_breakdown(r, s, coefficient="Pearson",
                                                                  real_correlation_threshold=DEFAULT_REAL_CORRELATION_THRESHOLD)
            else:
                cont = [c for c in (a, b) if c in numeric]
                r, s = r.astype({c: float for c in cont}), s.astype({c: float for c in cont})
                out = ContingencySimilarity.compute_breakdown(r, s, continuous_column_names=cont or None,
                                                              real_association_threshold=DEFAULT_REAL_ASSOCIATION_THRESHOLD)
            if out["score"] is not None and not np.isnan(out["score"]):
                scores.append(float(out["score"]))
    return float(np.mean(scores)) if scores else float("nan")


def ml_efficacy(train_rows, test, target: str, columns: list[dict], seed: int = 0) -> float:
    """Macro F1 (categorical target) or R^2 (numeric) on ``test`` of a model trained on ``train_rows``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score

    features = [c for c in columns if c["name"] != target]
    enc = Features(train_rows, features)
    x_train, x_test = enc(train_rows), enc(test)
    col = next(c for c in columns if c["name"] == target)
    if _sdtype(col) == "numerical":
        y_train, y_test = train_rows[target].astype(float).to_numpy(), test[target].astype(float).to_numpy()
        keep = ~np.isnan(y_train)
        model = HistGradientBoostingRegressor(random_state=seed).fit(x_train[keep], y_train[keep])
        ok = ~np.isnan(y_test)
        return float(r2_score(y_test[ok], model.predict(x_test[ok])))
    y_train, y_test = train_rows[target].map(_key).to_numpy(), test[target].map(_key).to_numpy()
    if len(set(y_train)) < 2:  # a synthetic table with one class of the target: nothing learned
        return float(f1_score(y_test, np.full(len(y_test), y_train[0]), average="macro", zero_division=0))
    model = HistGradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    return float(f1_score(y_test, model.predict(x_test), average="macro", zero_division=0))


def detection_auc(real, synthetic, columns: list[dict], seed: int = 0) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    n = min(len(real), len(synthetic))
    real, synthetic = _sample(real, n, seed), _sample(synthetic, n, seed)
    enc = Features(real, columns)
    x = np.concatenate([enc(real), enc(synthetic)])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = 3 if n >= 30 else 2
    clf = HistGradientBoostingClassifier(random_state=seed, max_iter=100)
    return float(np.mean(cross_val_score(clf, x, y, cv=folds, scoring="roc_auc")))


def dcr(train_x: np.ndarray, test_x: np.ndarray, synthetic_x: np.ndarray, seed: int = 0) -> dict:
    """Distances to the closest training record of synthetic rows, against the real test rows', and
    ``closer_to_train``: the share of synthetic rows nearer a training row than a test row, with as
    many training rows as test rows (the mean over HOLDOUT_DRAWS random subsets; a tie counts half).

    Why both: ``dcr_below_test_p5`` also rises for rows that sit where the data is dense (they are
    near *some* real row), copies or not; ``closer_to_train`` asks whether they are nearer the rows
    the model saw than equally many it did not (Platzer & Reutterer 2021's holdout test): 0.5 for a
    model that learned only the distribution, 1 for copies. On diamonds tvae's rows score 1.1% below
    the test p5 against the ctgan package TVAE's 0.3%, yet 0.518 against its 0.523 here (real unseen
    rows: 0.525; benchmarks/tabular/results.md, session 8)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(train_x)
    d_syn = nn.kneighbors(synthetic_x)[0][:, 0]
    d_test = nn.kneighbors(test_x)[0][:, 0]
    p5 = float(np.quantile(d_test, 0.05))
    to_test = NearestNeighbors(n_neighbors=1).fit(test_x).kneighbors(synthetic_x)[0][:, 0]
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(HOLDOUT_DRAWS):
        subset = train_x[rng.choice(len(train_x), min(len(test_x), len(train_x)), replace=False)]
        to_train = NearestNeighbors(n_neighbors=1).fit(subset).kneighbors(synthetic_x)[0][:, 0]
        shares.append(np.mean(to_train < to_test) + 0.5 * np.mean(to_train == to_test))
    return {"dcr_median": float(np.median(d_syn)), "dcr_median_test": float(np.median(d_test)),
            "dcr_below_test_p5": float(np.mean(d_syn < p5)), "exact_copies": float(np.mean(d_syn < 1e-9)),
            "closer_to_train": float(np.mean(shares))}


def table_scores(synthetic, train, test, floor_rows, target: str, columns: list[dict], *, seed: int = 0,
                 membership: bool = True) -> dict:
    """Every table score of ``synthetic`` with its ``_floor`` (``floor_rows``: real rows unseen in training).
    scikit-learn's OpenMP runs on one thread here: on 2 shared, busy cores more threads only spin-wait."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _table_scores(synthetic, train, test, floor_rows, target, columns, seed=seed, membership=membership)


def _table_scores(synthetic, train, test, floor_rows, target: str, columns: list[dict], *, seed: int, membership: bool) -> dict:
    out: dict = {"table_rows": int(len(synthetic)), "table_target": target}
    train_q = _sample(train, MAX_REAL, seed)
    for name, rows in (("", synthetic), ("_floor", floor_rows)):
        q = quality(train_q, rows, columns)
        out.update({k + name: v for k, v in q.items()})
        out["detection_auc" + name] = detection_auc(train_q, rows, columns, seed)
        out["ml_efficacy" + name] = ml_efficacy(rows, test, target, columns, seed)
    out["ml_efficacy_real"] = ml_efficacy(_sample(train, len(synthetic), seed), test, target, columns, seed)
    out["ml_metric"] = "R^2" if _sdtype(next(c for c in columns if c["name"] == target)) == "numerical" else "macro F1"
    dcr_train = _sample(train, MAX_DCR_TRAIN, seed)
    enc = Features(dcr_train, columns)
    train_x, test_x = enc(dcr_train), enc(test)
    for name, rows in (("", synthetic), ("_floor", floor_rows)):
        out.update({k + name: v for k, v in dcr(train_x, test_x, enc(rows), seed).items()})
    if membership:
        try:
            from genzoo.eval.privacy import membership_inference_distance
        except ImportError:  # the privacy module is optional here
            membership_inference_distance = None
        if membership_inference_distance is not None:
            members = enc(_sample(train, len(test), seed))
            mia = membership_inference_distance(members, test_x, enc(synthetic))
            out["mia_auc"], out["mia_tpr_at_1pct_fpr"] = float(mia["auc"]), float(mia["tpr_at_1pct_fpr"])
    return out


_ROWS = [
    ("quality", "quality (SDMetrics)", "higher; 1 = same distributions"),
    ("column_shapes", "  column shapes", "higher"),
    ("column_pairs", "  column-pair trends", "higher"),
    ("ml_efficacy", "ML efficacy", "higher; train on real: {ml_efficacy_real}"),
    ("detection_auc", "detection AUC", "0.5 = indistinguishable"),
    ("dcr_median", "DCR median", "test rows: {dcr_median_test}"),
    ("dcr_below_test_p5", "DCR < test p5", "5% = no copying"),
    ("exact_copies", "exact training copies", "0 = no copying"),
    ("closer_to_train", "nearer train than test", "0.5 = like unseen rows; 1 = copies"),
]


def table_lines(m: dict) -> list[str]:
    """The table section of ``format_report``: scores beside floors (real validation rows in place of samples)."""
    lines = [f"table: {m['table_rows']} synthetic rows; ML efficacy predicts {m['table_target']!r} ({m['ml_metric']}, "
             "HistGradientBoosting, tested on the real test split)"]
    for key, label, reading in _ROWS:
        if key not in m:
            continue
        floor = m.get(key + "_floor")
        lines.append(f"{label:<24}{_fmt(m[key]):>12}{_fmt(floor) if floor is not None else '-':>12}  "
                     + reading.format(**{k: _fmt(v) for k, v in m.items() if isinstance(v, float)}))
    if "mia_auc" in m:
        lines.append(f"membership inference (distance attack, MIA): AUC {_fmt(m['mia_auc'])}, TPR at 1% FPR "
                     f"{_fmt(m['mia_tpr_at_1pct_fpr'])} (0.5 / 0.01 = no leak)")
    lines.append("floor: real validation rows in place of the synthetic ones")
    return lines


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
