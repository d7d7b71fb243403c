"""Metrics, the same for every family (see DESIGN.md, "Metrics").

    from genzoo.eval import evaluate, format_report
    print(format_report(evaluate(model, "digits")))

Modules, one concept each: ``evaluator`` (the digits CNN whose features the
image metrics use), ``frechet``, ``prdc``, ``classes`` (mode collapse),
``likelihood`` (units and the dequantization bound), ``toy2d`` (MMD),
``report`` (``evaluate`` and its rendering).
"""

from genzoo.eval.classes import class_coverage, class_histogram, class_kl
from genzoo.eval.evaluator import DigitsEvaluator, get_digits_evaluator
from genzoo.eval.frechet import feature_statistics, frechet_distance, frechet_distance_from_stats
from genzoo.eval.likelihood import (
    bin_log_volume,
    bits_per_dim_to_nats,
    discrete_log_prob_bound,
    nats_to_bits_per_dim,
    per_example_nll,
    summarize_nll,
)
from genzoo.eval.prdc import prdc
from genzoo.eval.report import evaluate, format_report
from genzoo.eval.toy2d import mmd2

__all__ = [
    "DigitsEvaluator",
    "bin_log_volume",
    "bits_per_dim_to_nats",
    "class_coverage",
    "class_histogram",
    "class_kl",
    "discrete_log_prob_bound",
    "evaluate",
    "feature_statistics",
    "format_report",
    "frechet_distance",
    "frechet_distance_from_stats",
    "get_digits_evaluator",
    "mmd2",
    "nats_to_bits_per_dim",
    "per_example_nll",
    "prdc",
    "summarize_nll",
]
