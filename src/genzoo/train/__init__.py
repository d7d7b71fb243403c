"""Training: ``Trainer(model, data, TrainConfig(...), out_dir).fit()``.

The names load on first use (PEP 562), so ``genzoo.train.config`` can be read, e.g. by the command
line to derive its options, without importing torch.
"""

import importlib

_NAMES = {"TrainConfig": "genzoo.train.config", "Preempted": "genzoo.train.trainer", "Trainer": "genzoo.train.trainer",
          "batch_indices": "genzoo.train.trainer", "has_checkpoint": "genzoo.train.trainer"}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'genzoo.train' has no attribute {name!r}")
