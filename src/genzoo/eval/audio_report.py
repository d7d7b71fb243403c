"""Sample quality of an audio model on ``spoken-digits``, judged by the evaluator that listens.

- ``heard_as_asked``: share of class-conditional samples (digit i % 10 for sample i) that the
  held-out-voice classifier hears as the asked digit; floor: its accuracy on real test clips.
- ``fd_audio``: Frechet distance between samples and the test clips in the classifier's feature
  space; floor: as many real training clips in place of the samples (a fixed subset).
- ``class_coverage`` of what the classifier hears (floor: the training clips').
- memorization in the classifier's feature space (time shifts make raw-sample distances
  meaningless): the share of samples nearer a training clip than 95% of test clips are
  (``copy_nn_below_p5_share``; 5% = no copying), floor: validation clips in place of samples.
- ``nll_bits_per_sample``: exact test NLL for families with an exact likelihood (a fixed subset of
  test clips, given their digit where the model is conditional); diffusion's bound needs every one
  of its T network passes per clip and is left out here.
- ``audio_seconds_per_second``: seconds of audio made per second of sampling.
"""

from __future__ import annotations

import math
import time

import torch

from genzoo.eval.classes import class_coverage
from genzoo.eval.frechet import frechet_distance

MAX_SAMPLES = 100  # sequential models make 8000 steps a clip: ten clips a digit keeps eval within minutes
NLL_CLIPS = 64
FLOOR_SEED = 0


def audio_sample_metrics(model, data_name: str, *, n_samples: int, seed: int, options: dict | None, batch_size: int,
                         nll: bool, say=lambda *_: None) -> dict:
    from genzoo.data import load_dataset
    from genzoo.eval.audio_classifier import get_audio_evaluator

    n = max(10, min(n_samples, MAX_SAMPLES))
    spec = model.data_spec
    rate = int(spec.get("sample_rate") or 8000)
    out: dict = {"n_samples": n}
    caps = set(getattr(model, "capabilities", ()))
    conditional = "label_condition" in caps and getattr(model.config, "num_classes", 0)
    asked = torch.arange(n) % 10 if conditional else None
    if "sample" in caps:
        say("audio samples")
        g = torch.Generator().manual_seed(seed)
        chunks, start = [], time.perf_counter()
        for i in range(0, n, batch_size):
            cond = asked[i : i + batch_size] if asked is not None else None
            chunks.append(torch.as_tensor(model.sample(len(range(i, min(n, i + batch_size))), condition=cond, generator=g,
                                                       **(options or {}))).detach().cpu().float())
        seconds = time.perf_counter() - start
        samples = torch.cat(chunks)
        out.update(sample_seconds=seconds, samples_per_second=n / max(seconds, 1e-9),
                   audio_seconds_per_second=n * samples.shape[-1] / rate / max(seconds, 1e-9))
        if data_name == "spoken-digits":
            say("listening: the spoken-digit evaluator")
            out.update(listen_metrics(get_audio_evaluator(), samples, asked, load_dataset))
    if nll and model.likelihood == "exact" and "log_prob" in caps:
        say("test NLL")
        test = load_dataset(data_name, "test")
        rows = torch.randperm(len(test.x), generator=torch.Generator().manual_seed(FLOOR_SEED))[:NLL_CLIPS]
        condition = test.y[rows] if conditional and test.y is not None else None
        with torch.no_grad():
            nats = -model.log_prob(test.x[rows], condition=condition)
        out.update(nll_bits_per_sample=float(nats.mean()) / (test.x.shape[-1] * math.log(2)), nll_clips=len(rows),
                   nll_given_digit=condition is not None, likelihood="exact")
    return out


def listen_metrics(evaluator, samples: torch.Tensor, asked: torch.Tensor | None, load_dataset) -> dict:
    train, val, test = (load_dataset("spoken-digits", s) for s in ("train", "val", "test"))
    n = len(samples)
    f_test = evaluator.features(test.x).numpy()
    f_samples = evaluator.features(samples)
    heard = evaluator.net.head(torch.relu(f_samples)).argmax(1)
    rows = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(FLOOR_SEED))[:n]
    f_floor = evaluator.features(train.x[rows])
    heard_floor = evaluator.net.head(torch.relu(f_floor)).argmax(1)
    f_train = evaluator.features(train.x)
    out = {
        "fd_audio": frechet_distance(f_samples.numpy(), f_test),
        "fd_audio_floor": frechet_distance(f_floor.numpy(), f_test),
        "class_coverage": class_coverage(heard, 10),
        "class_coverage_floor": class_coverage(heard_floor, 10),
        "evaluator_version": evaluator.version,
        "evaluator_sha256": evaluator.weights_sha256[:12],
        "evaluator_test_accuracy": evaluator.test_accuracy,
        "floor_n": n,
    }
    if asked is not None:
        out["heard_as_asked"] = (heard == asked).float().mean().item()
        out["heard_as_asked_floor"] = evaluator.test_accuracy  # real clips of unseen voices, heard as their digit
    # memorization: nearest training clip in feature space, against held-out test clips' distances
    d_test = torch.cdist(torch.as_tensor(f_test), f_train).min(1).values
    p5 = torch.quantile(d_test, 0.05)
    d_samples = torch.cdist(f_samples, f_train).min(1).values
    f_val = evaluator.features(val.x[:n])
    d_val = torch.cdist(f_val, f_train).min(1).values
    out.update(copy_nn_below_p5_share=(d_samples < p5).float().mean().item(),
               copy_nn_below_p5_share_floor=(d_val < p5).float().mean().item(),
               copy_nn_median=d_samples.median().item(), copy_nn_median_heldout=d_test.median().item())
    return out


ROWS = [
    ("heard_as_asked", "heard as asked digit", "higher"),
    ("fd_audio", "FD (digit-classifier)", "lower"),
    ("class_coverage", "class coverage", "higher"),
    ("copy_nn_below_p5_share", "NN-train < test p5", "5% = no copying"),
    ("nll_bits_per_sample", "test NLL (bits/sample)", "lower"),
    ("audio_seconds_per_second", "audio s / compute s", "higher"),
]


def format_audio(metrics: dict, fmt) -> list[str]:
    lines = [f"{'metric':<24}{'score':>12}{'floor':>12}  better"]
    for key, label, better in ROWS:
        if key in metrics:
            floor = metrics.get(key + "_floor")
            lines.append(f"{label:<24}{fmt(metrics[key]):>12}{fmt(floor) if floor is not None else '-':>12}  {better}")
    if "evaluator_version" in metrics:
        lines.append(f"listener: {metrics['evaluator_version']} (weights {metrics['evaluator_sha256']}), accuracy "
                     f"{metrics['evaluator_test_accuracy']:.4f} on test voices it never heard; heard-as-asked floor = that accuracy; "
                     f"FD floor: {metrics.get('floor_n')} real training clips; memorization in its feature space "
                     f"(median NN-train distance {fmt(metrics.get('copy_nn_median'))}, held-out {fmt(metrics.get('copy_nn_median_heldout'))})")
    if "nll_clips" in metrics:
        lines.append(f"likelihood: exact, {metrics['nll_clips']} test clips" + (", given their digit" if metrics["nll_given_digit"] else ""))
    return lines
