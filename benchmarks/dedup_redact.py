"""Dedup and redaction, measured (benchmarks/README.md section 20).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dedup_redact.py --out benchmarks/results/dedup_redact.json

1. `genzoo dedup` on pydocs, pycode (documents, 5-word shingles, Jaccard 0.8) and digits (cosine 0.99):
   exact / near duplicates, time to load and to dedup.
2. MinHash LSH against exact Jaccard: pydocs documents with at least 300 words (231), their first 300 words,
   plus one copy of each with a fraction p ~ U(0, 0.08) of its words replaced by words drawn from the
   corpus. Ground truth: every pair whose exact Jaccard of 5-word shingles is >= T (brute force over all
   pairs). Reported per T: pair recall of the LSH candidates, and precision / recall when the candidates
   are checked with the MinHash estimate (verify="minhash") or with exact Jaccard (verify="exact").
3. Redaction: recall on 600 generated sentences holding one planted email / phone / card / IP / name each
   (a finding must cover exactly the planted value); throughput in characters per second on 1 MB of
   pydocs prose and on the generated PII text; what it finds in pydocs and pycode (no PII planted there).
Writes the JSON, a digits near-duplicate grid and the LSH S-curve as PNG beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np


def dedup_datasets() -> dict:
    from genzoo.cli.dedup import run_dedup

    out = {}
    for name in ("pydocs", "pycode", "digits"):
        r = run_dedup(name, examples=8)
        out[name] = {k: r[k] for k in ("items", "kept", "exact_duplicates", "near_duplicates", "clusters",
                                       "cross_split", "threshold", "load_seconds", "seconds", "examples")}
        out[name]["dedup_seconds"] = round(r["seconds"] - r["load_seconds"], 3)
        print(name, {k: v for k, v in out[name].items() if k != "examples"}, flush=True)
    return out


def planted_corpus(rng: random.Random, n: int = 300, length: int = 300):
    from genzoo.data import text

    docs = [d.split() for s in ("train", "val", "test") for d in text.load_corpus("pydocs", s).documents]
    docs = [d[:length] for d in docs if len(d) >= length][:n]
    vocab = [w for d in docs for w in d]
    texts, rates = [" ".join(d) for d in docs], []
    for d in docs:
        p = rng.uniform(0, 0.08)
        copy = [rng.choice(vocab) if rng.random() < p else w for w in d]
        texts.append(" ".join(copy))
        rates.append(p)
    return texts


def minhash_quality(thresholds=(0.5, 0.7, 0.8, 0.9), num_perm: int = 128) -> dict:
    from datasketch import MinHashLSH

    from genzoo.store.dedup import LSH_WEIGHTS, _Signer, jaccard, shingles

    texts = planted_corpus(random.Random(0))
    sets = [shingles(t) for t in texts]
    start = time.perf_counter()
    sims = {(i, j): jaccard(sets[i], sets[j]) for i, j in itertools.combinations(range(len(texts)), 2)}
    brute = time.perf_counter() - start
    signer = _Signer(num_perm, 1)
    start = time.perf_counter()
    sigs = [signer.sign(s) for s in sets]
    sign_s = time.perf_counter() - start
    out = {"documents": len(texts), "pairs": len(sims), "num_perm": num_perm, "brute_force_seconds": round(brute, 2),
           "signing_seconds": round(sign_s, 3), "per_threshold": {}, "curve": []}
    for t in thresholds:
        lsh = MinHashLSH(threshold=t, num_perm=num_perm, weights=LSH_WEIGHTS)
        start = time.perf_counter()
        for i, m in enumerate(sigs):
            lsh.insert(i, m)
        cand = {(min(i, j), max(i, j)) for i, m in enumerate(sigs) for j in lsh.query(m) if i != j}
        lsh_s = time.perf_counter() - start
        truth = {p for p, s in sims.items() if s >= t}
        est = {p for p in cand if sigs[p[0]].jaccard(sigs[p[1]]) >= t}
        exact = {p for p in cand if sims[p] >= t}
        out["per_threshold"][str(t)] = {
            "true_pairs": len(truth), "candidates": len(cand), "candidate_recall": _ratio(len(cand & truth), len(truth)),
            "minhash_precision": _ratio(len(est & truth), len(est)), "minhash_recall": _ratio(len(est & truth), len(truth)),
            "exact_precision": _ratio(len(exact & truth), len(exact)), "exact_recall": _ratio(len(exact & truth), len(truth)),
            "lsh_seconds": round(lsh_s, 3)}
        print("minhash", t, out["per_threshold"][str(t)], flush=True)
        if t == 0.8:  # P(candidate) against true Jaccard, in bins, for the S-curve plot
            for lo in np.arange(0.0, 1.0, 0.05):
                pairs = [p for p, s in sims.items() if lo <= s < lo + 0.05]
                if pairs:
                    out["curve"].append([round(float(lo) + 0.025, 3), len(pairs), sum(p in cand for p in pairs) / len(pairs)])
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# --- redaction -------------------------------------------------------------------------------------------------

FIRST = ["Alice", "Bob", "Chen", "Dmitri", "Fatima", "Jean-Luc", "Olga", "Priya", "Sean", "Yuki"]
LAST = ["Smith", "O'Brien", "Nakamura", "Garcia", "Kowalski", "McCoy", "Okafor", "Larsen"]


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16), ("3530", 16)])
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    from genzoo.store.redact import luhn_ok

    digits = next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))
    sep = rng.choice(["", " ", "-"])
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)] if length == 16 else [digits[:4], digits[4:10], digits[10:]]
    return sep.join(groups)


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    while str(a)[1:] == "11" or a == 555:  # N11 service codes and 555 are never area codes
        a = rng.randint(201, 989)
    return rng.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
                       "+44 20 7946 " + f"{rng.randint(0, 9999):04d}", "+49 30 " + str(rng.randint(100000, 999999)),
                       "+33 1 42 68 " + f"{rng.randint(10, 99)} {rng.randint(10, 99)}"])


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return "2001:db8:" + ":".join(f"{rng.randrange(65536):x}" for _ in range(6)) \
        if rng.random() < 0.5 else f"2001:db8::{rng.randrange(65536):x}:{rng.randrange(65536):x}"


def pii_sentences(n: int = 600, seed: int = 0):
    rng = random.Random(seed)
    items = []
    for i in range(n):
        kind = ["email", "phone", "card", "ip", "name"][i % 5]
        if kind == "email":
            value = f"{rng.choice(FIRST).lower().replace('-', '')}.{rng.choice(LAST).lower().replace(chr(39), '')}" \
                    f"{rng.randint(1, 99)}@{rng.choice(['example.com', 'mail.example.org', 'uni.example.ac.uk'])}"
            text = rng.choice(["Please write to {} about the invoice.", "cc: {}", "Contact {} for access."]).format(value)
        elif kind == "phone":
            value = _phone(rng)
            text = rng.choice(["Call me on {} after six.", "Phone: {}", "You can reach the office at {}."]).format(value)
        elif kind == "card":
            value = _card(rng)
            text = rng.choice(["Charge it to {} please.", "card number {} exp 04/29", "My card is {}."]).format(value)
        elif kind == "ip":
            value = _ip(rng)
            text = rng.choice(["The request came from {}.", "ssh into {} and restart it", "blocked {} at the firewall"]).format(value)
        else:
            value = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            text = rng.choice(["Dr. {} will see you now.", "Hello, my name is {} and I need help.",
                               "Name: {}\nAge: 42", "Please ask Ms {} to sign."]).format(value)
        start = text.index(value)
        items.append((text, kind, start, start + len(value)))
    return items


def redaction_quality() -> dict:
    from genzoo.data import text
    from genzoo.store.redact import redact

    items = pii_sentences()
    per_kind: dict[str, list[int]] = {}
    for sentence, kind, start, end in items:
        found = redact(sentence).findings
        per_kind.setdefault(kind, [0, 0])
        per_kind[kind][1] += 1
        per_kind[kind][0] += any(f.kind == kind and f.start == start and f.end == end for f in found)
    out = {"recall": {k: round(a / b, 4) for k, (a, b) in per_kind.items()}, "sentences": len(items)}
    missed = [(s, k) for s, k, a, b in items if not any(f.kind == k and (f.start, f.end) == (a, b) for f in redact(s).findings)]
    out["missed_examples"] = missed[:8]
    pii_text = "\n".join(s for s, *_ in items)
    prose = text.load_corpus("pydocs", "train").text()[:1_000_000]
    for label, body in (("pydocs_1MB", prose), ("generated_pii", pii_text)):
        start = time.perf_counter()
        r = redact(body)
        secs = time.perf_counter() - start
        out[f"throughput_{label}"] = {"chars": len(body), "seconds": round(secs, 3), "chars_per_s": round(len(body) / secs)}
    for name in ("pydocs", "pycode"):
        corpus = "\n\n".join(d for s in ("train", "val", "test") for d in text.load_corpus(name, s).documents)
        r = redact(corpus)
        kinds: dict[str, int] = {}
        for f in r.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        samples = {}
        for f in r.findings:
            samples.setdefault(f.kind, [])
            if len(samples[f.kind]) < 6:
                samples[f.kind].append(corpus[max(0, f.start - 25):f.end + 10].replace("\n", " "))
        out[f"found_in_{name}"] = {"chars": len(corpus), "findings": kinds, "context": samples}
    print("redaction", {k: v for k, v in out.items() if not k.startswith(("found_in", "missed"))}, flush=True)
    return out


# --- pictures --------------------------------------------------------------------------------------------------

def plots(out_dir: Path, quality: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genzoo.data import load_dataset
    from genzoo.store.dedup import dedup_vectors

    x = np.concatenate([load_dataset("digits", s).x.numpy() for s in ("train", "val", "test")])
    r = dedup_vectors(x.reshape(len(x), -1), threshold=0.99)
    pairs = list(r.duplicate_of.items())
    fig, axes = plt.subplots(2, len(pairs), figsize=(1.4 * len(pairs), 3.2), squeeze=False)
    for col, (i, d) in enumerate(pairs):
        for row, idx in enumerate((d.of, i)):
            axes[row][col].imshow(x[idx, 0], cmap="gray_r", vmin=0, vmax=16)
            axes[row][col].set_xticks([]), axes[row][col].set_yticks([])
        axes[0][col].set_title(f"#{d.of}", fontsize=8)
        axes[1][col].set_title(f"#{i} cos {d.similarity:.3f}", fontsize=7)
    fig.suptitle("digits near-duplicates at cosine >= 0.99 (top: kept, bottom: dropped)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "dedup_digits_pairs.png", dpi=110)
    plt.close(fig)

    curve = np.array(quality["curve"])
    from datasketch.lsh import _optimal_param

    from genzoo.store.dedup import LSH_WEIGHTS

    b, rows = _optimal_param(0.8, quality["num_perm"], *LSH_WEIGHTS)
    j = np.linspace(0, 1, 200)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(j, 1 - (1 - j ** rows) ** b, label=f"theory: {b} bands x {rows} rows")
    ax.scatter(curve[:, 0], curve[:, 2], s=10 + 3 * np.log1p(curve[:, 1]), color="C1", label="measured (pydocs pairs)")
    ax.axvline(0.8, color="grey", ls=":", lw=1)
    ax.set_xlabel("exact Jaccard of 5-word shingles"), ax.set_ylabel("P(LSH candidate)")
    ax.set_title("MinHash LSH at threshold 0.8, 128 permutations", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "dedup_lsh_curve.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dedup_redact.json"))
    args = parser.parse_args()
    result = {"datasets": dedup_datasets(), "minhash": minhash_quality(), "redaction": redaction_quality()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    plots(args.out.parent, result["minhash"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
