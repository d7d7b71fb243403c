"""Mode-collapse indicators from the evaluator's class predictions.

- ``class_histogram``: share of samples predicted as each class.
- ``class_coverage``: share of classes that receive at least ``threshold`` of
  the samples. Rule: the default threshold is half the uniform share,
  1 / (2 * num_classes) (5% for digits), so a class counts as produced only
  if the model makes it at least half as often as a balanced model would;
  a handful of stray samples does not count as covering a class.
- ``class_kl``: KL(sample histogram || reference histogram) in nats, with
  add-``alpha`` smoothing of both histograms' counts so that a class the
  reference lacks does not make it infinite. 0 for a matching mix; a model
  collapsed onto one of 10 balanced classes scores about log 10 = 2.3.
"""

from __future__ import annotations

import math

import torch

from genzoo.core.errors import GenzooError

SMOOTHING = 0.5  # pseudo-count per class (Jeffreys prior)


def class_counts(labels, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().flatten().cpu()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenzooError(f"class labels must lie in 0..{num_classes - 1}")
    return torch.bincount(labels, minlength=num_classes).double()


def class_histogram(labels, num_classes: int) -> list[float]:
    """Share of labels in each class (sums to 1)."""
    counts = class_counts(labels, num_classes)
    return (counts / counts.sum().clamp_min(1)).tolist()


def class_coverage(labels, num_classes: int, threshold: float | None = None) -> float:
    """Share of classes that get at least ``threshold`` of the labels (default 1 / (2 * num_classes))."""
    threshold = 1 / (2 * num_classes) if threshold is None else threshold
    shares = torch.tensor(class_histogram(labels, num_classes))
    return (shares >= threshold - 1e-12).double().mean().item()


def class_kl(labels, reference_labels, num_classes: int, alpha: float = SMOOTHING) -> float:
    """KL(p_labels || p_reference) in nats, both histograms smoothed with ``alpha`` pseudo-counts."""
    p = _smoothed(class_counts(labels, num_classes), alpha)
    q = _smoothed(class_counts(reference_labels, num_classes), alpha)
    return float((p * (p.log() - q.log())).sum().clamp_min(0))


def _smoothed(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    counts = counts + alpha
    if counts.sum() <= 0 or not math.isfinite(counts.sum().item()):
        raise GenzooError("class_kl needs at least one label, or alpha > 0")
    return counts / counts.sum()
