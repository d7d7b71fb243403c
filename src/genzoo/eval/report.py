"""``evaluate``: every metric genzoo reports for one model on one dataset.

This is the one function the CLI and the bench call. It returns a flat dict
of plain floats, ints and strings (JSON-ready); ``format_report`` renders it.

Every sample-quality score comes with its *floor*: the same metric computed
with real training data in place of the samples, at the same sample size
(``floor_n``). The floor is what a perfect model, one that reproduces the
training distribution, would score; no model should be read as better than
its floor, and the distance to it is what matters.

- digits: FD in the evaluator's feature space (``fd_digits``), precision,
  recall, density, coverage (k=5), class coverage and class-histogram KL,
  all against the 447 test images; the evaluator's test accuracy beside
  them; test NLL in nats/image and bits/dim where the model has a likelihood.
- toy2d: MMD^2 against the test points; test NLL in nats/point.
- any other dataset: test NLL (if the model has one) and sampling speed.
- every dataset with a training split (digits, toy2d, user data):
  memorization (``eval.memorization``) in data space: exact copies of
  training examples, the share of samples nearer a training example than the
  test split's 5th percentile, and the C_T test, against the test split (at
  most 2000 examples) as held-out data. Its floor is the validation split in
  place of the samples (a model that copies nothing reads like it), at most
  as many as there are samples.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from functools import lru_cache

import torch

from genzoo.core.errors import GenzooError
from genzoo.eval import toy2d
from genzoo.eval.classes import class_coverage, class_kl
from genzoo.eval.collapse import alarm_from_metrics
from genzoo.eval.evaluator import one_thread
from genzoo.eval.frechet import frechet_distance
from genzoo.eval.likelihood import model_device, per_example_nll, summarize_nll
from genzoo.eval.memorization import MemorizationReference
from genzoo.eval.prdc import DEFAULT_K, prdc

SAMPLE = "sample"  # the capability names of genzoo.models.base (kept literal: eval never imports models)
LOG_PROB = "log_prob"
CLASSIFY = "classify"
SCORE = "score"
SEQ2SEQ = "seq2seq"
FLOOR_SEED = 0  # which training images form the floor: fixed, so floors never move with ``seed``
DIGIT_IMAGES = ("digits", "captioned-digits")  # datasets of sklearn's digits images: digits metrics apply
MEMORIZATION_HELDOUT_MAX = 2000  # test examples held out (toy2d has 10,000); p5 from 2000 is good to ~0.5%


def evaluate(
    model,
    data_name: str,
    *,
    n_samples: int = 1000,
    sampler_options: dict | None = None,
    nll: bool = True,
    nll_options: dict | None = None,
    seed: int = 0,
    progress: bool = False,
    batch_size: int = 250,
) -> dict:
    """Measure ``model`` on ``data_name``'s test split; see the module doc for what is measured.

    Samples come from ``model.sample(batch, generator=g, **sampler_options)``
    in chunks of ``batch_size`` with one ``torch.Generator`` seeded by
    ``seed``; the NLL from ``model.log_prob(test.x, **nll_options)`` in
    chunks. Runs under ``torch.no_grad()`` in eval mode (the model's mode is
    restored afterwards) and leaves the global RNG as it found it.
    """
    from genzoo.data import load_dataset

    test = load_dataset(data_name, "test", tokenizer=getattr(model, "tokenizer", None))  # text: the model's own tokenizer
    capabilities = set(getattr(model, "capabilities", ()))
    metrics: dict = {
        "data": data_name,
        "model": getattr(model, "family", "") or type(model).__name__,
        "seed": int(seed),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    notes = []
    say = _printer(progress)
    if test.kind == "table":  # synthetic tables: quality, ML efficacy, detection, DCR (genzoo.eval.tables)
        return _evaluate_table(model, data_name, metrics, n_samples=n_samples, seed=seed, sampler_options=sampler_options,
                               batch_size=batch_size, say=say)
    if test.kind == "audio":  # heard by the spoken-digit evaluator (genzoo.eval.audio_report)
        from genzoo.eval.audio_report import audio_sample_metrics

        with _evaluating(model):
            metrics.update(data_kind="audio", **audio_sample_metrics(model, data_name, n_samples=n_samples, seed=seed,
                                                                     options=sampler_options, batch_size=batch_size, nll=nll, say=say))
        return metrics
    if test.kind == "tokens":
        return _evaluate_text(model, data_name, test, metrics, n_samples=n_samples, seed=seed, nll=nll,
                              sampler_options=sampler_options, say=say)
    with _evaluating(model):
        if SAMPLE in capabilities:
            samples, seconds = draw_samples(model, n_samples, test.shape, seed=seed, batch_size=batch_size,
                                            options=sampler_options, say=say)
            metrics.update(n_samples=int(n_samples), sample_seconds=seconds,
                           samples_per_second=n_samples / max(seconds, 1e-9))
            try:
                with one_thread():  # small matrices: threads only add spin-waiting on shared cores
                    if data_name in DIGIT_IMAGES:
                        say("digits sample metrics")
                        metrics.update(digits_sample_metrics(samples))
                    elif data_name.startswith("toy2d"):
                        say("toy2d sample metrics")
                        metrics.update(toy2d_sample_metrics(samples, data_name))
                    say("memorization")
                    metrics.update(memorization_sample_metrics(samples, data_name))
            except GenzooError as e:  # bad samples must not hide the likelihood: report both
                metrics["sample_error"] = str(e)
                notes.append(f"sampling failed: {e}")
        else:
            notes.append("model cannot sample: no sample-quality metrics")
        if SAMPLE in capabilities and data_name in DIGIT_IMAGES and getattr(getattr(model, "config", None), "text_encoder", ""):
            from genzoo.eval.prompts import prompt_metrics

            with one_thread():
                metrics.update(prompt_metrics(model, seed=seed, options=sampler_options, say=say))
        if nll and LOG_PROB in capabilities:
            metrics.update(likelihood_metrics(model, test, seed=seed, batch_size=batch_size,
                                              options=nll_options, say=say))
        elif nll:
            notes.append("model has no log_prob: no NLL")
        if CLASSIFY in capabilities and test.y is not None:
            say("test accuracy")
            metrics.update(classify_metrics(model, test))
        if SEQ2SEQ in capabilities and test.kind == "pairs":
            say("test outputs (greedy)")
            metrics.update(seq2seq_metrics(model, data_name, test))
        if SCORE in capabilities and data_name == "captioned-digits":
            say("held-out text -> image retrieval")
            metrics.update(retrieval_summary(model))
    if notes:
        metrics["notes"] = "; ".join(notes)
    return metrics


def seq2seq_metrics(model, data_name: str, test, limit: int = 500, max_new_tokens: int = 128) -> dict:
    """Exact match and character F1 of greedy outputs on (up to ``limit``) test pairs, each beside
    the better of two floors that need no model: copying the input, and answering every input with
    the training split's most frequent target."""
    from collections import Counter

    from genzoo.data.docsig import score
    from genzoo.data.pairs import load_texts

    pairs = test.meta["texts"][:limit]
    inputs, targets = [a for a, _ in pairs], [b for _, b in pairs]
    outputs = model.generate_text(inputs, max_new_tokens=max_new_tokens)
    common = Counter(b for _, b in load_texts(data_name, "train")).most_common(1)[0][0]
    got, copy, mode = score(outputs, targets), score(inputs, targets), score([common] * len(targets), targets)
    return {"seq2seq_n": got["n"], "exact_match": got["exact_match"], "char_f1": got["char_f1"],
            "exact_match_floor": max(copy["exact_match"], mode["exact_match"]),
            "char_f1_floor": max(copy["char_f1"], mode["char_f1"]), "seq2seq_example": f"{inputs[0]!r} -> {outputs[0]!r}"}


def classify_metrics(model, test, batch_size: int = 512) -> dict:
    """A classifier's accuracy and cross-entropy (nats) on the test split."""
    probs = model.predict_proba(test.x, batch_size=batch_size).cpu()
    y = test.y.long()
    return {"test_accuracy": float((probs.argmax(1) == y).float().mean()),
            "test_cross_entropy": float(-probs[torch.arange(len(y)), y].clamp_min(1e-12).log().mean())}


def retrieval_summary(model) -> dict:
    """An image-text model's held-out retrieval on captioned-digits/test (``eval.clip_retrieval``), flattened."""
    from genzoo.eval.clip_retrieval import retrieval_metrics

    m = retrieval_metrics(model, "test")
    return {"zero_shot_accuracy": m["zero_shot_accuracy"], "retrieval_R@1": m["paired"]["R@1"], "retrieval_R@5": m["paired"]["R@5"],
            "retrieval_class_match@1": m["paired"]["class_match@1"],
            "retrieval_unseen_class_match@1": m["prompts_unseen"]["class_match@1"], "retrieval_chance_R@1": m["chance_R@1"]}


def _evaluate_text(model, data_name, test, metrics, *, n_samples, seed, nll, sampler_options, say) -> dict:
    from genzoo.eval import text_report

    with _evaluating(model):
        if nll and LOG_PROB in model.capabilities:
            metrics.update(text_report.text_likelihood_metrics(model, test, say=say))
        if data_name in ("pydocs", "pycode"):  # the compressors' reference line on the same documents
            metrics.update(text_report.compressor_metrics(data_name, say=say))
        if SAMPLE in model.capabilities and n_samples:
            metrics.update(text_report.text_sample_metrics(model, data_name, n=n_samples, seed=seed,
                                                           options=sampler_options, say=say))
    if data_name == "chorales" and getattr(model, "tokenizer", None) is not None:  # n-gram baselines, voice ranges
        from genzoo.eval import music

        say("chorale n-gram baselines")
        metrics.update(music.ngram_metrics(model.tokenizer))
        if SAMPLE in model.capabilities:
            with _evaluating(model):
                rows = model.sample(20, generator=torch.Generator().manual_seed(seed), **(sampler_options or {}))
            from genzoo.data import chorales

            say("chorale music statistics")  # beside each, its floor: held-out windows of the samples' length
            texts = [chorales.row_text(r, model.tokenizer) for r in rows.tolist()]
            metrics.update(music.music_metrics(texts, tokens=rows.shape[1]))
    return metrics


@contextlib.contextmanager
def _evaluating(model):
    """Eval mode without gradients for the block, then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _evaluate_table(model, data_name: str, metrics: dict, *, n_samples, seed, sampler_options, batch_size, say) -> dict:
    """A table model: its samples decoded to rows and scored by ``genzoo.eval.tables`` (floors: validation rows)."""
    from genzoo.data import table as tables
    from genzoo.eval.tables import table_scores

    spec = model.data_spec["table"]
    with _evaluating(model):
        x, seconds = draw_samples(model, n_samples, (tables.width(spec),), seed=seed, batch_size=max(batch_size, 1000),
                                  options=sampler_options, say=say)
    metrics.update(n_samples=int(n_samples), sample_seconds=seconds, samples_per_second=n_samples / max(seconds, 1e-9))
    say("table metrics")
    frames = {s: tables.split_frame(data_name, s) for s in ("train", "val", "test")}
    metrics.update(table_scores(tables.decode(x, spec), frames["train"], frames["test"], frames["val"], tables.target_of(spec),
                                spec["columns"], seed=seed))
    return metrics


# ---- sampling -----------------------------------------------------------


def draw_samples(model, n: int, shape: tuple, *, seed: int, batch_size: int, options: dict | None,
                 say=lambda *_: None) -> tuple[torch.Tensor, float]:
    """``n`` samples as a float32 CPU tensor of shape (n, *shape), and the seconds they took."""
    if n < 10:
        raise GenzooError(f"n_samples must be at least 10 for sample metrics, got {n}")
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    start = time.perf_counter()
    with _seeded_global_rng(seed, device):  # for models that draw some noise from the global RNG
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            x = model.sample(m, generator=generator, **(options or {}))
            x = torch.as_tensor(x).detach().to("cpu", torch.float32)
            if tuple(x.shape) != (m, *shape):
                raise GenzooError(f"{type(model).__name__}.sample({m}) returned shape {tuple(x.shape)}; "
                                  f"this dataset needs {(m, *shape)}")
            chunks.append(x)
            say(f"sampled {i + m}/{n}")
    seconds = time.perf_counter() - start
    return torch.cat(chunks), seconds


@contextlib.contextmanager
def _seeded_global_rng(seed: int, device: torch.device):
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


# ---- digits ---------------------------------------------------------------


def digits_sample_metrics(samples: torch.Tensor) -> dict:
    """FD, PRDC and class metrics of digits samples (levels) against the test set, with floors."""
    from genzoo.eval.evaluator import get_digits_evaluator

    evaluator = get_digits_evaluator()
    floor_n = min(len(samples), 1000)
    scores = _digits_scores(evaluator, evaluator.features(samples), evaluator.predict(samples))
    floor = _digits_floor(evaluator.version, evaluator.weights_sha256, floor_n)
    out = {}
    for name, value in scores.items():
        out[name] = value
        out[name + "_floor"] = floor[name]
    out.update(
        floor_n=floor_n,
        evaluator_version=evaluator.version,
        evaluator_sha256=evaluator.weights_sha256[:12],
        evaluator_test_accuracy=evaluator.test_accuracy,
    )
    return out


def _digits_scores(evaluator, features: torch.Tensor, predicted: torch.Tensor) -> dict:
    test_features, test_labels = _digits_test_reference(evaluator.version, evaluator.weights_sha256)
    return {
        "fd_digits": frechet_distance(features, test_features),
        **prdc(real=test_features, fake=features, k=DEFAULT_K),
        "class_coverage": class_coverage(predicted, 10),
        "class_kl": class_kl(predicted, test_labels, 10),
    }


@lru_cache(maxsize=4)
def _digits_test_reference(version: str, sha: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-set features and true labels (cached per evaluator; arguments are the cache key)."""
    from genzoo.data import load_dataset
    from genzoo.eval.evaluator import get_digits_evaluator

    test = load_dataset("digits", "test")
    return get_digits_evaluator().features(test.x), test.y


@lru_cache(maxsize=16)
def _digits_floor(version: str, sha: str, n: int) -> dict:
    """The scores of ``n`` real training images (a fixed random subset) in place of samples."""
    from genzoo.data import load_dataset
    from genzoo.eval.evaluator import get_digits_evaluator

    evaluator = get_digits_evaluator()
    train = load_dataset("digits", "train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(FLOOR_SEED))[:n]
    x = train.x[idx]
    return _digits_scores(evaluator, evaluator.features(x), evaluator.predict(x))


# ---- toy2d ----------------------------------------------------------------


def toy2d_sample_metrics(samples: torch.Tensor, data_name: str) -> dict:
    """MMD^2 of samples against the test reference points, and the same for real training points."""
    from genzoo.data import load_dataset

    reference, self_kernel = _toy2d_reference(data_name)
    train = load_dataset(data_name, "train").x
    floor_n = min(len(samples), len(train))
    return {
        "mmd2": toy2d.mmd2(samples, reference, y_self_kernel=self_kernel),
        "mmd2_floor": _toy2d_floor(data_name, floor_n),
        "floor_n": floor_n,
        "mmd_reference_points": len(reference),
    }


@lru_cache(maxsize=8)
def _toy2d_reference(data_name: str) -> tuple[torch.Tensor, float]:
    from genzoo.data import load_dataset

    reference = toy2d.reference_points(load_dataset(data_name, "test").x)
    return reference, toy2d.mean_self_kernel(reference)


@lru_cache(maxsize=32)
def _toy2d_floor(data_name: str, n: int) -> float:
    from genzoo.data import load_dataset

    reference, self_kernel = _toy2d_reference(data_name)
    train = load_dataset(data_name, "train").x  # i.i.d. draws: the first n are a random subset
    return toy2d.mmd2(train[:n], reference, y_self_kernel=self_kernel)


# ---- memorization ---------------------------------------------------------


def memorization_sample_metrics(samples: torch.Tensor, data_name: str) -> dict:
    """Copying figures of the samples (train split as the memory, test split as held-out), with floors.

    The floor is the same figures for validation examples (a fixed random
    subset, as many as there are samples where the split has enough) used as
    the samples: real data the model never saw, so what "no copying" reads.
    """
    reference = _memorization_reference(data_name)
    floor, floor_n = _memorization_floor(data_name, len(samples))
    out = {}
    for name, value in reference.metrics(samples).items():
        out[name] = value
        out[name + "_floor"] = floor[name]
    out.update(reference.context(), copy_floor_n=floor_n)
    return out


def _builtin(data_name: str) -> bool:
    """Built-in datasets never change within a process, so their references can be cached."""
    return data_name == "digits" or data_name.startswith("toy2d")


def _memorization_reference(data_name: str) -> MemorizationReference:
    return _cached_memorization_reference(data_name) if _builtin(data_name) else _build_reference(data_name)


def _build_reference(data_name: str) -> MemorizationReference:
    from genzoo.data import load_dataset

    train, test = load_dataset(data_name, "train"), load_dataset(data_name, "test")
    return MemorizationReference(train.x, test.x[:MEMORIZATION_HELDOUT_MAX])  # test splits are in random order


_cached_memorization_reference = lru_cache(maxsize=8)(_build_reference)


def _memorization_floor(data_name: str, n: int) -> tuple[dict, int]:
    if _builtin(data_name):
        return _cached_memorization_floor(data_name, n)
    return _build_memorization_floor(data_name, n)


def _build_memorization_floor(data_name: str, n: int) -> tuple[dict, int]:
    from genzoo.data import load_dataset

    val = load_dataset(data_name, "val").x
    n = min(n, len(val))
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(FLOOR_SEED))[:n]
    return _memorization_reference(data_name).metrics(val[idx]), n


_cached_memorization_floor = lru_cache(maxsize=32)(_build_memorization_floor)


# ---- likelihood -----------------------------------------------------------


def likelihood_metrics(model, test, *, seed: int, batch_size: int, options: dict | None, say=lambda *_: None) -> dict:
    """Test NLL: nats/image and bits/dim for discrete images, nats/point for points."""
    start = time.perf_counter()
    with _seeded_global_rng(seed, model_device(model)):  # stochastic bounds (IWAE, diffusion) repeat exactly
        nll = per_example_nll(model, test.x, batch_size=batch_size, options=options,
                                         progress=lambda i, n: say(f"log_prob {i}/{n}"))
    summary = summarize_nll(nll, test.dims)
    out = {"likelihood": str(getattr(model, "likelihood", None) or "unknown")}
    if test.kind == "image":
        out.update(nll_nats_per_image=summary["nats_per_example"], nll_bits_per_dim=summary["bits_per_dim"])
    else:
        out["nll_nats_per_point"] = summary["nats_per_example"]
    out.update(nll_std_err_nats=summary["std_err"], nll_seconds=time.perf_counter() - start)
    return out


# ---- rendering ------------------------------------------------------------

# (key, label, which way is better); the floor is looked up as key + "_floor".
_ROWS = [
    ("fd_digits", "FD (digits features)", "lower"),
    ("precision", "precision (k=5)", "higher"),
    ("recall", "recall (k=5)", "higher"),
    ("density", "density (k=5)", "~1"),
    ("coverage", "coverage (k=5)", "higher"),
    ("class_coverage", "class coverage", "higher"),
    ("class_kl", "class KL (nats)", "lower"),
    ("prompt_accuracy_w1", "prompt read right, w=1", "higher"),
    ("prompt_accuracy", "prompt read right, CFG", "higher"),
    ("prompt_accuracy_unseen", "  unseen phrasings, CFG", "higher"),
    ("clip_score", "CLIP score, CFG", "higher"),
    ("mmd2", "MMD^2 (RBF mix)", "lower"),
    ("exact_match", "test exact match", "higher"),
    ("char_f1", "test character F1", "higher"),
    ("test_accuracy", "test accuracy", "higher"),
    ("test_cross_entropy", "test cross-entropy", "lower"),
    ("zero_shot_accuracy", "zero-shot digit acc.", "higher"),
    ("retrieval_R@1", "text->image R@1", "higher"),
    ("retrieval_R@5", "text->image R@5", "higher"),
    ("retrieval_class_match@1", "text->image class@1", "higher"),
    ("retrieval_unseen_class_match@1", "  unseen prompts, class", "higher"),
    ("nll_nats_per_image", "test NLL (nats/image)", "lower"),
    ("nll_bits_per_dim", "test NLL (bits/dim)", "lower"),
    ("nll_nats_per_point", "test NLL (nats/point)", "lower"),
    ("bits_per_char", "test bits / character", "lower"),
    ("bz2_bits_per_char", "  bz2 given train", "ref."),
    ("xz_bits_per_char", "  xz given train", "ref."),
    ("bits_per_token", "test bits / token", "lower"),
    ("ngram1_bits_per_token", "  unigram", "ref."),
    ("ngram_best_bits_per_token", "  best n-gram (add-k)", "ref."),
    ("in_range_share", "samples in voice range", "higher"),
    ("pitch_class_js", "pitch-class JS to test", "lower"),
    ("interval_js", "interval JS to test", "lower"),
    ("no_parallels_share", "no parallel 5ths/8ves", "higher"),
    ("perplexity_per_token", "perplexity / token", "lower"),
    ("parse_share", "samples that parse", "higher"),
    ("distinct_2", "distinct-2 (words)", "higher"),
    ("tokens_per_second", "tokens / second", "higher"),
    ("samples_per_second", "samples / second", "higher"),
    ("parameters", "parameters", ""),
]


def format_report(metrics: dict) -> str:
    """A readable text table of ``evaluate``'s result, floors beside scores."""
    head = f"{metrics.get('model', 'model')} on {metrics.get('data', '?')}"
    if "n_samples" in metrics:
        head += f"  ({metrics['n_samples']} samples, seed {metrics.get('seed', 0)})"
    if metrics.get("data_kind") == "audio":
        from genzoo.eval.audio_report import format_audio

        return "\n".join([head, *format_audio(metrics, _fmt)])
    lines = [head, f"{'metric':<24}{'score':>12}{'floor':>12}  better"]
    for key, label, better in _ROWS:
        if key not in metrics:
            continue
        floor = metrics.get(key + "_floor")
        lines.append(f"{label:<24}{_fmt(metrics[key]):>12}{_fmt(floor) if floor is not None else '-':>12}  {better}")
    if "floor_n" in metrics:
        lines.append(f"floor: real training data in place of samples (n={metrics['floor_n']})")
    if "prompt_guidance" in metrics:
        lines.append(f"prompts: {metrics['prompt_per_digit']} per digit, read by the digits evaluator; CFG scale "
                     f"w={metrics['prompt_guidance']:g}; chance 0.1; floor: the evaluator's accuracy on real test images")
    if "seq2seq_n" in metrics:
        lines.append(f"text-to-text: greedy outputs on {metrics['seq2seq_n']} test pairs; floor: the better of copying the "
                     "input and the training split's most frequent target")
        lines.append(f"an output: {metrics['seq2seq_example'][:300]}")
    if "no_parallels_share_floor" in metrics:
        lines.append("chorales: JS divergence (bits) of key-aligned pitch-class and of interval histograms to the test chorales; parallels: "
                     "soprano-bass; floor: as many validation-chorale windows of the samples' length")
    if "retrieval_chance_R@1" in metrics:
        lines.append(f"retrieval: each test caption ranks the test images (chance R@1 {metrics['retrieval_chance_R@1']:.4f}); "
                     "class: the top image shows the asked digit; `genzoo clip eval RUN` gives the whole table")
    alarm = alarm_from_metrics(metrics)
    if alarm is not None:
        lines.append("mode-collapse alarm: " + ("RAISED: " + "; ".join(alarm["reasons"]) if alarm["alarm"]
                                                else "not raised (every class has at least half its share, class KL <= 0.1)"))
    if "table_rows" in metrics:
        from genzoo.eval.tables import table_lines

        lines += table_lines(metrics)
    if "copy_ct" in metrics:
        lines += _memorization_lines(metrics)
    if "likelihood" in metrics:
        std_err = metrics.get("nll_std_err_nats")
        lines.append(f"likelihood: {metrics['likelihood']}" + (f", standard error of the NLL ±{_fmt(std_err)} nats" if std_err is not None else ""))
    if "evaluator_version" in metrics:
        lines.append(f"evaluator: {metrics['evaluator_version']} (weights {metrics.get('evaluator_sha256', '?')}), "
                     f"test accuracy {metrics['evaluator_test_accuracy']:.4f}")
    if "sample_text" in metrics:
        lines.append(f"a sample: {metrics['sample_text'][:200]!r}")
    if "notes" in metrics:
        lines.append(f"notes: {metrics['notes']}")
    return "\n".join(lines)


# (key, label, what "no copying" reads as); the floor is key + "_floor".
_MEMORIZATION_ROWS = [
    ("copy_exact_share", "exact training copies", "0 = no copying"),
    ("copy_nn_below_p5_share", "NN-train < test p5", "5% = no copying, more = copying"),
    ("copy_nn_median", "median NN-train dist.", "held-out: {copy_nn_median_heldout}"),
    ("copy_ct", "C_T (Meehan 2020)", "~0; << 0 copying, >> 0 underfitting"),
]
C_T_ALARM = 3.0  # |C_T| beyond this reads as copying / underfitting; for real data C_T stays within about +-1.5
NN_SHARE_ALARM = 0.05  # NN<p5 share this far above its floor reads as copying: > 3 sd of the share at n=350..1000


def _memorization_lines(m: dict) -> list[str]:
    """The memorization section of ``format_report``: rows beside their floors, then a one-line reading."""
    lines = [f"memorization (data copying, in data space; {m.get('copy_train_n', '?')} training, "
             f"{m.get('copy_heldout_n', '?')} held-out test examples)"]
    for key, label, reading in _MEMORIZATION_ROWS:
        if key not in m:
            continue
        floor = m.get(key + "_floor")
        note = reading.format(copy_nn_median_heldout=_fmt(m.get("copy_nn_median_heldout")))
        lines.append(f"{label:<24}{_fmt(m[key]):>12}{_fmt(floor) if floor is not None else '-':>12}  {note}")
    lines.append(f"memorization floor: {m.get('copy_floor_n', '?')} validation examples in place of samples; "
                 f"C_T over {m.get('copy_ct_cells', '?')}/{m.get('copy_ct_cells_total', '?')} k-means cells "
                 f"(cells with < {m.get('copy_ct_min_per_cell', '?')} samples dropped)")
    lines.append("memorization reading: " + memorization_reading(m))
    return lines


def memorization_reading(m: dict) -> str:
    """One line saying whether the samples copy the training set, underfit it, or neither."""
    ct, exact = m.get("copy_ct", math.nan), m.get("copy_exact_share", 0.0)
    near, near_floor = m.get("copy_nn_below_p5_share"), m.get("copy_nn_below_p5_share_floor")
    parts = []
    if exact > 0:
        parts.append(f"{exact:.1%} of samples are exact training examples")
    if near is not None and near_floor is not None and near > near_floor + NN_SHARE_ALARM:
        parts.append(f"{near:.1%} of samples sit nearer a training example than 95% of test examples do "
                     f"(real data: {near_floor:.1%}): some copying")
    if not math.isfinite(ct):
        parts.append("C_T undefined (too few samples in every cell)")
    elif ct < -C_T_ALARM:
        parts.append(f"C_T = {ct:.1f} << 0: samples sit closer to the training set than new data does (copying)")
    elif ct > C_T_ALARM:
        parts.append(f"C_T = {ct:+.1f} >> 0: samples are farther from the training data than new data is "
                     "(underfitting, not copying)")
    else:
        parts.append(f"C_T = {ct:+.2f} ~ 0: no sign of copying in C_T")
    return "; ".join(parts)


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def _printer(enabled: bool, every_seconds: float = 2.0):
    """Progress lines on stderr; "i/n" counters at most every few seconds, plus their last step."""
    last = [-math.inf]

    def say(message: str) -> None:
        if not enabled:
            return
        done, _, total = message.rpartition(" ")[2].partition("/")
        counter = bool(total) and done.isdigit() and total.isdigit()
        now = time.monotonic()
        if counter and done != total and now - last[0] < every_seconds:
            return
        last[0] = now
        print(f"[eval] {message}", file=sys.stderr, flush=True)

    return say
