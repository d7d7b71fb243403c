"""Training: ``Trainer(model, data, TrainConfig(...), out_dir).fit()``."""

from genzoo.train.config import TrainConfig  # noqa: F401
from genzoo.train.trainer import Preempted, Trainer, batch_indices, has_checkpoint  # noqa: F401
