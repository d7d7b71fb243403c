"""Mode collapse: an alarm from class coverage and class-histogram KL, and the PacGAN mode protocol.

The alarm (``collapse_alarm``) reads the class each sample falls in (the
digits evaluator's prediction; on toy2d 8gaussians, the nearest mode) and
fires when either

- class coverage < 1: some class gets less than half of its uniform share of
  the samples (``eval.classes.class_coverage``'s rule), or
- KL(sample classes || real classes) > ``KL_ALARM`` = 0.1 nats: about what
  losing one of 10 balanced classes entirely costs (log 10/9 = 0.105; one of
  8 modes: log 8/7 = 0.134). Real data scores about 0.001 against the digits
  test split, the 5-minute bench models 0.006-0.066.

The PacGAN protocol (Lin et al. 2018, on a ring of 8 Gaussians): every sample
is assigned to its nearest mode; it is *high quality* when it lies within 3
standard deviations of that mode's centre; a mode is *covered* when at least
one high-quality sample is assigned to it. The paper's anchors: a plain GAN
covers 6.3 of 8 modes with 98.2% high-quality samples, PacGAN2 7.9 / 95.6%.
For a perfect 2-D isotropic Gaussian, P(|x - mu| < 3 sigma) = 1 - exp(-4.5) = 98.9%,
so real data scores 98.9%, not 100%.
"""

from __future__ import annotations

import math

import torch

from genzoo.core.errors import GenzooError
from genzoo.eval.classes import class_coverage, class_histogram, class_kl

KL_ALARM = 0.1  # nats; see the module doc
HIGH_QUALITY_SIGMAS = 3.0

# genzoo's toy2d "8gaussians" (genzoo.data.toy2d): 8 centres on a circle of radius 2 * 1.414, each
# coordinate with standard deviation sqrt(0.5) * 0.2 * 1.414 (the whole set is scaled by 1.414).
_ANGLES = torch.arange(8, dtype=torch.float64) * math.pi / 4
EIGHT_GAUSSIANS_CENTRES = torch.stack([_ANGLES.cos(), _ANGLES.sin()], 1) * 2.0 * 1.414
EIGHT_GAUSSIANS_STD = 0.5**0.5 * 0.2 * 1.414


def collapse_alarm(labels, reference_labels, num_classes: int, kl_alarm: float = KL_ALARM) -> dict:
    """Class coverage and class KL of ``labels`` against ``reference_labels``, and whether they
    raise the alarm (``alarm``), with the reasons in words."""
    coverage = class_coverage(labels, num_classes)
    kl = class_kl(labels, reference_labels, num_classes)
    shares = class_histogram(labels, num_classes)
    reasons = []
    if coverage < 1.0:
        rare = [k for k, s in enumerate(shares) if s < 1 / (2 * num_classes) - 1e-12]
        reasons.append(f"classes {rare} get under half their uniform share of the samples")
    if kl > kl_alarm:
        reasons.append(f"class-histogram KL {kl:.3f} nats > {kl_alarm} (about one of {num_classes} classes lost)")
    return {"alarm": bool(reasons), "class_coverage": coverage, "class_kl": kl,
            "class_shares": [round(s, 4) for s in shares], "reasons": reasons}


def alarm_from_metrics(metrics: dict, kl_alarm: float = KL_ALARM) -> dict | None:
    """The alarm read from an ``evaluate`` result (its ``class_coverage`` and ``class_kl``);
    None when the result has no class metrics (data without an evaluator)."""
    if "class_coverage" not in metrics or "class_kl" not in metrics:
        return None
    reasons = []
    if metrics["class_coverage"] < 1.0:
        reasons.append(f"class coverage {metrics['class_coverage']:.2f} < 1")
    if metrics["class_kl"] > kl_alarm:
        reasons.append(f"class-histogram KL {metrics['class_kl']:.3f} nats > {kl_alarm}")
    return {"alarm": bool(reasons), "reasons": reasons}


def digits_collapse_alarm(samples: torch.Tensor) -> dict:
    """The alarm for digits samples (integer levels), classes read by the digits evaluator
    against the test split's true labels."""
    from genzoo.data import load_dataset
    from genzoo.eval.evaluator import get_digits_evaluator

    predicted = get_digits_evaluator().predict(samples)
    return collapse_alarm(predicted, load_dataset("digits", "test").y, 10)


def nearest_mode(points, centres) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each point's nearest centre and the distance to it."""
    points, centres = _as_points(points), torch.as_tensor(centres, dtype=torch.float64)
    if points.shape[1] != centres.shape[1]:
        raise GenzooError(f"points have {points.shape[1]} dimensions, the centres {centres.shape[1]}")
    d = torch.cdist(points, centres)
    dist, idx = d.min(1)
    return idx, dist


def mode_coverage(points, centres=EIGHT_GAUSSIANS_CENTRES, std: float = EIGHT_GAUSSIANS_STD,
                  sigmas: float = HIGH_QUALITY_SIGMAS) -> dict:
    """The PacGAN protocol: modes covered (of ``len(centres)``) and the share of high-quality samples
    (within ``sigmas * std`` of their nearest centre), with the high-quality samples per mode."""
    if std <= 0 or sigmas <= 0:
        raise GenzooError("std and sigmas must be positive")
    idx, dist = nearest_mode(points, centres)
    good = dist < sigmas * std
    per_mode = torch.bincount(idx[good], minlength=len(centres))
    return {
        "modes_covered": int((per_mode > 0).sum()),
        "modes": len(centres),
        "high_quality_share": float(good.double().mean()) if len(good) else 0.0,
        "high_quality_per_mode": per_mode.tolist(),
    }


def eight_gaussians_alarm(points, reference_points) -> dict:
    """The collapse alarm on toy2d 8gaussians: classes are the nearest modes of the high-quality samples."""
    idx, dist = nearest_mode(points, EIGHT_GAUSSIANS_CENTRES)
    ref_idx, _ = nearest_mode(reference_points, EIGHT_GAUSSIANS_CENTRES)
    good = idx[dist < HIGH_QUALITY_SIGMAS * EIGHT_GAUSSIANS_STD]
    if not len(good):
        return {"alarm": True, "class_coverage": 0.0, "class_kl": math.inf, "class_shares": [0.0] * 8,
                "reasons": ["no sample lies within 3 standard deviations of any mode"]}
    return collapse_alarm(good, ref_idx, 8)


def _as_points(x) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim != 2:
        raise GenzooError(f"points must be (N, D), got shape {tuple(x.shape)}")
    return x
