"""Every built-in family; importing this module registers them (see genzoo.registry)."""

from genzoo.models.base import Batch, BatchRandom, GenerativeModel, ModelConfig, Updater  # noqa: F401
