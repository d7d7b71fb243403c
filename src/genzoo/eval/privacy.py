"""Membership inference: can an attacker tell the training examples from fresh ones?

A membership-inference attack (MIA) scores candidate examples; members (rows the
model was trained on) should score higher than non-members (held-out rows from the
same distribution, never seen in training). Its power is read off the ROC curve of
that score: AUC (0.5 = chance, the floor beside every number here) and the true-positive
rate at a 1% false-positive rate (Carlini et al., 2022: an attack that is sure about a
few members matters more than a good average).

Two attacks, one per kind of access:

- LOSS / likelihood (Yeom et al., 2018): score = log p(x) under the model. Families
  with a likelihood (exact or a bound) overfit their members' likelihood first.
  ``membership_inference_loss``; with a reference model trained on other data the
  score becomes the likelihood ratio log p(x) - log p_ref(x) (a one-reference LiRA
  without its Gaussian fit), which removes how "easy" an example is by itself.
- distance (sample-only access, e.g. GANs, tables): score = -distance from the
  candidate to its nearest synthetic sample (the DCR attack); a model that copies
  its training rows puts samples on top of members. ``membership_inference_distance``,
  used on image rows and on encoded table rows alike.

Members and non-members are used in equal numbers (the larger side subsampled with a
fixed seed), so AUC 0.5 is the chance level.
"""

from __future__ import annotations

import numpy as np

from genzoo.core.errors import GenzooError

FPR_TARGET = 0.01
BOOTSTRAP = 200  # resamples for the AUC's 95% interval
SEED = 0


def attack_scores(member_scores, nonmember_scores, *, seed: int = SEED, bootstrap: int = BOOTSTRAP) -> dict:
    """ROC summary of an attack's scores (higher = "member"): AUC, TPR at 1% FPR, a bootstrap 95% CI
    of the AUC and the counts. Members and non-members are first cut to equal numbers."""
    from sklearn.metrics import roc_auc_score, roc_curve

    m = np.asarray(member_scores, dtype=np.float64).ravel()
    h = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(m) < 2 or len(h) < 2:
        raise GenzooError(f"a membership attack needs at least 2 members and 2 non-members, got {len(m)} and {len(h)}")
    if not (np.isfinite(m).all() and np.isfinite(h).all()):
        raise GenzooError("membership-attack scores hold NaN or infinite values; check the model's log_prob or the features")
    rng = np.random.default_rng(seed)
    k = min(len(m), len(h))
    m, h = (rng.permutation(m)[:k], rng.permutation(h)[:k])
    y = np.r_[np.ones(k), np.zeros(k)]
    s = np.r_[m, h]
    auc = float(roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(y, s)
    # TPR at the largest threshold whose FPR is still <= 1% (with k non-members, 1% is floor(k/100) false positives)
    tpr_low = float(tpr[fpr <= FPR_TARGET].max()) if (fpr <= FPR_TARGET).any() else 0.0
    aucs = []
    for _ in range(bootstrap):
        i, j = rng.integers(0, k, k), rng.integers(0, k, k)
        aucs.append(_rank_auc(m[i], h[j]))
    lo, hi = (float(v) for v in np.percentile(aucs, [2.5, 97.5])) if aucs else (float("nan"), float("nan"))
    return {"auc": auc, "auc_ci95": [lo, hi], "tpr_at_1pct_fpr": tpr_low, "n_members": k, "n_nonmembers": k,
            "chance_auc": 0.5, "chance_tpr_at_1pct_fpr": FPR_TARGET}


def _rank_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC as the Mann-Whitney statistic: P(score of a member > a non-member's), ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _rows(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2 or len(a) == 0:
        raise GenzooError(f"{what} must be a non-empty array of rows (N, features...), got shape {a.shape}")
    return a.reshape(len(a), -1)


def nearest_distances(x: np.ndarray, ref: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to its nearest row of ``ref`` (chunked; exact)."""
    ref_sq = (ref**2).sum(1)
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        d2 = (xb**2).sum(1)[:, None] - 2 * xb @ ref.T + ref_sq[None, :]  # |a-b|^2 = |a|^2 - 2ab + |b|^2
        out[i : i + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def membership_inference_distance(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray, *,
                                  reference: np.ndarray | None = None, standardize: bool = True,
                                  seed: int = SEED) -> dict:
    """Distance-based membership attack on a sample-only model.

    ``train`` are the rows the model was trained on (members), ``holdout`` rows of the same
    distribution it never saw (non-members), ``synthetic`` the model's samples; all (N, d) arrays
    (or (N, ...) flattened per row) of numbers, e.g. encoded table rows or image pixels.
    Score of a candidate x: -min_s ||x - s|| over the synthetic rows (close to a sample = "member").
    With ``reference`` (real rows that are neither candidates nor training rows, as DOMIAS assumes
    an attacker has) the score is divided by the same distance to the reference set: the nearest-
    neighbour density ratio p_syn(x) / p_ref(x) (in d dimensions, a kNN density ~ 1/r^d, so the
    log ratio is d log(r_ref / r_syn); the monotone rank is all the AUC needs).
    Columns are standardized by the synthetic rows' mean and std (what the attacker holds), so no
    one feature's units dominate the distance.

    Returns a dict with "auc", "tpr_at_1pct_fpr" (the chance floor is 0.5 and 0.01), "auc_ci95",
    "n_members", "n_nonmembers", "attack".
    """
    tr, ho, syn = _rows(train, "train"), _rows(holdout, "holdout"), _rows(synthetic, "synthetic")
    if not (tr.shape[1] == ho.shape[1] == syn.shape[1]):
        raise GenzooError(f"train, holdout and synthetic rows must have as many features; got {tr.shape[1]}, {ho.shape[1]}, {syn.shape[1]}")
    ref = _rows(reference, "reference") if reference is not None else None
    if standardize:
        mu, sd = syn.mean(0), syn.std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)  # a constant column: leave its scale alone
        tr, ho, syn = (tr - mu) / sd, (ho - mu) / sd, (syn - mu) / sd
        ref = (ref - mu) / sd if ref is not None else None
    rng = np.random.default_rng(seed)
    k = min(len(tr), len(ho))  # equal numbers: chance is AUC 0.5
    tr, ho = tr[rng.permutation(len(tr))[:k]], ho[rng.permutation(len(ho))[:k]]
    d_tr, d_ho = nearest_distances(tr, syn), nearest_distances(ho, syn)
    if ref is None:
        result = attack_scores(-d_tr, -d_ho, seed=seed)
        result["attack"] = "distance to closest synthetic record"
    else:
        eps = 1e-9
        score = lambda x, d: np.log(nearest_distances(x, ref) + eps) - np.log(d + eps)  # noqa: E731
        result = attack_scores(score(tr, d_tr), score(ho, d_ho), seed=seed)
        result["attack"] = "nearest-neighbour density ratio (synthetic / reference)"
    result["median_dcr_members"], result["median_dcr_nonmembers"] = float(np.median(d_tr)), float(np.median(d_ho))
    return result


def membership_inference_loss(member_log_probs, nonmember_log_probs, *, reference_member_log_probs=None,
                              reference_nonmember_log_probs=None, seed: int = SEED) -> dict:
    """LOSS attack from per-example log-likelihoods (score = log p(x); members should score higher).
    Given a reference model's log-likelihoods of the same examples, the score is the likelihood ratio
    log p(x) - log p_ref(x) (the reference model never saw either set)."""
    m, h = np.asarray(member_log_probs, dtype=np.float64), np.asarray(nonmember_log_probs, dtype=np.float64)
    attack = "LOSS (log-likelihood)"
    if reference_member_log_probs is not None:
        m = m - np.asarray(reference_member_log_probs, dtype=np.float64)
        h = h - np.asarray(reference_nonmember_log_probs, dtype=np.float64)
        attack = "likelihood ratio against a reference model"
    result = attack_scores(m, h, seed=seed)
    result["attack"] = attack
    return result


def format_attack(result: dict) -> str:
    """One line: what the CLI prints."""
    lo, hi = result["auc_ci95"]
    return (f"membership inference ({result['attack']}): AUC {result['auc']:.3f} [95% CI {lo:.3f}-{hi:.3f}] "
            f"(chance 0.5), TPR@1%FPR {result['tpr_at_1pct_fpr']:.3f} (chance 0.01); "
            f"{result['n_members']} members vs {result['n_nonmembers']} non-members")


# ---- a trained model against its own data ---------------------------------------------------------

MAX_SYNTHETIC = 5000
KINDS = ("image", "points", "table")
# The LOSS attack ranks examples; it needs no tight bound. Cheaper estimator settings than the reported NLL's,
# applied where the family's log_prob takes them and the caller chose none (VAE: IWAE samples; flows on
# images: dequantization draws; diffusion: sampled timesteps of the bound).
ATTACK_NLL_DEFAULTS = {"k": 32, "samples": 4, "timesteps_subset": 50}


def _attack_nll_options(model, given: dict | None) -> dict:
    import inspect

    params = inspect.signature(model.log_prob).parameters
    return {**{k: v for k, v in ATTACK_NLL_DEFAULTS.items() if k in params}, **(given or {})}


def attack_model(model, data_name: str, *, likelihood: bool = True, nll_options: dict | None = None,
                 n_synthetic: int | None = None, seed: int = SEED, say=None, reference=None) -> list[dict]:
    """Every membership attack that ``model``'s access allows, members = its training split, non-members
    = the test split (never trained on, never used for selection): the LOSS attack where the family has a
    likelihood (and ``likelihood``), the distance attack where it can sample. With a ``reference`` model
    that has a likelihood and was trained on other data (e.g. the validation split), also the likelihood-
    ratio attack. Each result names its attack."""
    import torch

    from genzoo.data import load_dataset
    from genzoo.eval.likelihood import per_example_nll
    from genzoo.models.base import LOG_PROB, SAMPLE

    def refuse(kind):
        if kind not in KINDS:
            raise GenzooError(f"membership attacks work on {', '.join(KINDS)}; {data_name} is {kind} data "
                              "(text: windows of a token stream are not examples one can call members)")

    spec = getattr(model, "data_spec", None) or {}
    if spec.get("kind"):
        refuse(spec["kind"])  # before loading: a text corpus costs seconds to load
    tokenizer = getattr(model, "tokenizer", None)
    if spec.get("table"):  # rows in the model's own encoding (a DP run's is its private one: genzoo.train.dp_table_encoding)
        from genzoo.data import table as tables

        train, test = (tables.load(data_name, s, spec["table"]) for s in ("train", "test"))
    else:
        train, test = load_dataset(data_name, "train", tokenizer=tokenizer), load_dataset(data_name, "test", tokenizer=tokenizer)
    refuse(train.kind)
    caps = set(getattr(model, "capabilities", ()))
    say = say or (lambda msg: None)
    results = []
    was = model.training
    model.eval()
    try:
        if likelihood and LOG_PROB in caps:
            k = min(len(train.x), len(test.x))
            say(f"LOSS attack: log-likelihood of {k} training and {k} test examples")
            options = _attack_nll_options(model, nll_options)
            nll_m = per_example_nll(model, train.x[:k], options=options)
            nll_h = per_example_nll(model, test.x[:k], options=options)
            results.append({**membership_inference_loss(-nll_m.numpy(), -nll_h.numpy(), seed=seed), "nll_options": options})
            if reference is not None:
                if LOG_PROB not in set(getattr(reference, "capabilities", ())):
                    raise GenzooError(f"the reference model ({reference.family}) has no likelihood; give one that has")
                say("likelihood-ratio attack: the reference model's log-likelihood of the same examples")
                ref_options = _attack_nll_options(reference, None)
                was_ref = reference.training
                reference.eval()
                try:
                    ref_m = per_example_nll(reference, train.x[:k], options=ref_options)
                    ref_h = per_example_nll(reference, test.x[:k], options=ref_options)
                finally:
                    reference.train(was_ref)
                results.append(membership_inference_loss(-nll_m.numpy(), -nll_h.numpy(), reference_member_log_probs=-ref_m.numpy(),
                                                         reference_nonmember_log_probs=-ref_h.numpy(), seed=seed))
        if SAMPLE in caps:
            n = n_synthetic or min(max(len(train.x), 1000), MAX_SYNTHETIC)
            say(f"distance attack: {n} samples against {min(len(train.x), len(test.x))} training and test examples")
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                chunks = [model.sample(min(1000, n - i), generator=g) for i in range(0, n, 1000)]
            try:
                synthetic = torch.cat([torch.as_tensor(c) for c in chunks]).detach().cpu().double().numpy()
            except (TypeError, ValueError, RuntimeError) as e:
                raise GenzooError(f"{model.family} samples are not numeric rows ({str(e)[:100]}); the distance attack needs them") from None
            results.append(membership_inference_distance(train.x.double().numpy(), test.x.double().numpy(), synthetic,
                                                         standardize=train.kind != "image", seed=seed))
    finally:
        model.train(was)
    if not results:
        raise GenzooError(f"{model.family} can neither sample nor score a likelihood, so no membership attack applies")
    return results
