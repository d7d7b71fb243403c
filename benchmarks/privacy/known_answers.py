"""Known answers for genzoo's membership attacks on digits (members: the 1000 training images; non-members:
the 447 test images): a replaying "model" must be caught, one independent of the training set must not.

    .venv/bin/python benchmarks/privacy/known_answers.py

- replay: samples = the training images (each once), log p = a Gaussian KDE on them with bandwidth 1 level
  (a model that memorized its training set);
- independent: the same, built from the 350 validation images instead.
"""

import json

import torch

from genzoo.data import load_dataset
from genzoo.eval.privacy import attack_model, format_attack
from genzoo.models.base import LOG_PROB, SAMPLE


class Memory(torch.nn.Module):
    family = "memory"
    capabilities = frozenset({SAMPLE, LOG_PROB})

    def __init__(self, rows, bandwidth=1.0):
        super().__init__()
        self.rows, self.bandwidth = rows.double().flatten(1), bandwidth

    def sample(self, n, *, generator=None):
        idx = torch.randperm(len(self.rows), generator=generator).repeat(n // len(self.rows) + 1)[:n]
        return self.rows[idx].view(n, 1, 8, 8)

    def log_prob(self, x):
        d2 = torch.cdist(x.double().flatten(1), self.rows).square()
        return torch.logsumexp(-d2 / (2 * self.bandwidth**2), 1)


if __name__ == "__main__":
    out = {}
    for name, split in (("replay (memorized training set)", "train"), ("independent (validation set)", "val")):
        results = attack_model(Memory(load_dataset("digits", split).x), "digits", n_synthetic=1000)
        out[name] = results
        for r in results:
            print(f"{name}: {format_attack(r)}")
    print(json.dumps({k: [{"attack": r["attack"], "auc": round(r["auc"], 4), "tpr_at_1pct_fpr": round(r["tpr_at_1pct_fpr"], 4)}
                          for r in v] for k, v in out.items()}, indent=1))
