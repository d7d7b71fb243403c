"""Task models: networks genzoo trains and runs that are not sample()-able generative families.

The registry (``genzoo.registry``) holds families that the generic Trainer, ``bench``, ``eval`` and
the conformance suite drive through one API: data in, ``sample()`` out. Some models do not fit it:
T5's data are (input, target) pairs, the ViT classifier predicts a label, CLIP scores image-text
agreement. They have their own verbs instead. This catalog names them, so that ``genzoo list``
shows them in a second table beside the families; the test suite checks that every ``genzoo ...``
verb named here is a real command and every script exists, so the catalog cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskModel:
    name: str
    task: str  # what it maps to what
    data: str  # what it trains on here
    commands: tuple[str, ...]  # how to train and run it: `genzoo ...` verbs or scripts (paths from the repo root)
    module: str  # the Python entry point


TASK_MODELS: tuple[TaskModel, ...] = (
    TaskModel(
        name="t5",
        task="text-to-text (encoder-decoder, span-corruption pretraining)",
        data="JSONL input/target pairs; built-in docsig (docstring -> signature, from pycode)",
        commands=("genzoo t5 finetune", "genzoo t5 generate", "benchmarks/t5_docsig.py"),
        module="genzoo.models.t5",
    ),
    TaskModel(
        name="vit",
        task="image classification (ViT encoder; its blocks also make the DiT backbone of diffusion, backbone=dit)",
        data="digits (10 classes)",
        commands=("genzoo vit train", "genzoo vit eval", "genzoo vit predict", "benchmarks/vit_digits.py"),
        module="genzoo.models.vit_classifier",
    ),
    TaskModel(
        name="clip",
        task="image-text contrastive: prompt-image agreement score, text-to-image search",
        data="captioned-digits",
        commands=("genzoo clip train", "genzoo clip score", "genzoo clip eval"),
        module="genzoo.models.clip",
    ),
)


def task_models() -> tuple[TaskModel, ...]:
    return TASK_MODELS
