"""Side-by-side benchmark: every registered family, same data, same budget, same metrics."""

from genzoo.bench.runner import run_bench  # noqa: F401
