"""Probe (not a genzoo family yet): can a Bayesian network fitted to noisy marginals meet the issue's
epsilon = 3 goal on the large built-in table's `cut` (ML efficacy within 10% of the non-private model)?

PrivBayes-style (Zhang et al., 2017), in rho-zCDP: numeric columns cut into BINS quantile bins; a
network of degree K built greedily (each next column with the parent set of up to K placed columns
that has the most mutual information, picked by the exponential mechanism with PrivBayes' bound on
MI's sensitivity, a third of rho), then each column's table with its parents measured with Gaussian
noise (two thirds of rho), negatives clipped; rows drawn ancestrally, a numeric value uniform in its
bin. Scored with genzoo's own ML efficacy and quality (2,000 rows; the test split).
Not private end to end: the bins are the data's quantiles (a family would take them from
genzoo.train.dp_table_encoding's noisy histogram) and the row count is exact.

    SEED=S .venv/bin/python benchmarks/privacy/probe_bayes_net.py EPSILON BINS K private|exact [COARSE]
"""
import itertools
import math
import os
import sys

import numpy as np
import pandas as pd

from genzoo.data import table as tables
from genzoo.eval import tables as ev
eps, BINS, K = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
COARSE = int(sys.argv[5]) if len(sys.argv) > 5 else 1
private = len(sys.argv) > 4 and sys.argv[4] == "private"
delta = 1e-6
SEED = int(os.environ.get("SEED", "0"))
rng = np.random.default_rng(SEED)
name = "diamonds#target=cut"
train, test = tables.split_frame(name, "train"), tables.split_frame(name, "test")
frame, spec, rows = tables.prepared(name)
columns = spec["columns"]; names = [c["name"] for c in columns]
codes, decoders = [], []
for c in columns:
    v = train[c["name"]]
    if c["type"] in ("continuous", "integer"):
        edges = np.unique(np.quantile(v.astype(float), np.linspace(0, 1, BINS + 1)))
        k = np.clip(np.searchsorted(edges, v.astype(float), side="right") - 1, 0, len(edges) - 2)
        codes.append(k); decoders.append(("num", edges, c["type"]))
    else:
        cats = sorted(v.astype(str).unique())
        codes.append(pd.Categorical(v.astype(str), categories=cats).codes); decoders.append(("cat", cats, None))
X = np.stack(codes, 1); n, d = X.shape
sizes = [len(dec[1]) if dec[0] == "cat" else len(dec[1]) - 1 for dec in decoders]
rho = (math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))) ** 2
def psize(j): return -(-sizes[j] // COARSE) if decoders[j][0] == "num" else sizes[j]
def pcode(col, j): return col // COARSE if decoders[j][0] == "num" else col
def counts(cols):
    v, P = cols[0], cols[1:]
    arrs = (X[:, v], *[pcode(X[:, j], j) for j in P]); shp = (sizes[v], *[psize(j) for j in P])
    idx = np.ravel_multi_index(arrs, shp)
    return np.bincount(idx, minlength=int(np.prod(shp))).reshape(shp).astype(float)
def mi(v, P):
    t = counts([v, *P]).reshape(sizes[v], -1) / n
    pv, pp = t.sum(1, keepdims=True), t.sum(0, keepdims=True)
    m = t > 0
    return float((t[m] * np.log(t[m] / (pv @ pp)[m])).sum())
r_sel = rho / 3; eps_step = math.sqrt(8 * r_sel / (d - 1))
order = [int(rng.integers(d))] if private else [names.index("carat")]
parents = {order[0]: ()}
while len(order) < d:
    cand = [(v, P) for v in range(d) if v not in parents for k in range(1, min(K, len(order)) + 1) for P in itertools.combinations(order, k)
            if sizes[v] * np.prod([psize(j) for j in P]) <= 40 * BINS * BINS]
    q = np.array([mi(v, P) for v, P in cand])
    if private:  # MI's sensitivity ~ (2/n) log n ... use PrivBayes bound  (2/n)log((n+1)/2) + ((n-1)/n) log((n+1)/(n-1))
        s = 2 / n * math.log((n + 1) / 2) + (n - 1) / n * math.log((n + 1) / (n - 1))
        w = eps_step * (q - q.max()) / (2 * s); p = np.exp(w); p /= p.sum(); v, P = cand[rng.choice(len(cand), p=p)]
    else:
        v, P = cand[int(q.argmax())]
    order.append(v); parents[v] = P
print(f"seed {SEED} network", [(names[v], [names[p] for p in parents[v]]) for v in order])
sm = math.sqrt(d / (2 * rho * 2 / 3))
tabs = {v: np.clip(counts([v, *parents[v]]) + rng.normal(0, sm, counts([v, *parents[v]]).shape), 0, None) for v in order}
N = 2000; S = np.zeros((N, d), int)
for v in order:
    t = tabs[v].reshape(sizes[v], -1) + 1e-6  # child x parent configurations
    if not parents[v]:
        p = t[:, 0] / t[:, 0].sum(); S[:, v] = rng.choice(sizes[v], N, p=p); continue
    cfg = np.ravel_multi_index(tuple(pcode(S[:, j], j) for j in parents[v]), tuple(psize(j) for j in parents[v]))
    cond = t / t.sum(0, keepdims=True)
    cdf = np.cumsum(cond[:, cfg], 0)
    S[:, v] = np.minimum((rng.random(N)[None] > cdf).sum(0), sizes[v] - 1)
out = {}
for j, (kind, dec, typ) in enumerate(decoders):
    if kind == "cat": out[names[j]] = np.array(dec, dtype=object)[S[:, j]]
    else:
        vals = rng.uniform(dec[S[:, j]], dec[S[:, j] + 1]); out[names[j]] = np.round(vals).astype(int) if typ == "integer" else vals
syn = pd.DataFrame(out)[names]
f1 = ev.ml_efficacy(syn, test, "cut", columns, seed=0)
q = ev.quality(ev._sample(train, ev.MAX_REAL, 0), syn, columns)
print(f"seed {SEED} eps {eps} bins {BINS} coarse {COARSE} k {K} {'private' if private else 'exact'} select: ML efficacy (cut) {f1:.3f} quality {q['quality']:.3f} shapes {q['column_shapes']:.3f} pairs {q['column_pairs']:.3f}")
