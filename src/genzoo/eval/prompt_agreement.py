"""Prompt-image agreement of text-to-image samples, measured by genzoo's contrastive model (CLIP).

``prompt_agreement(clip, images, prompts)`` gives

* ``clip_score``: the mean cosine between each image's CLIP embedding and its prompt's (raw
  cosine in [-1, 1], not CLIP's 100 x max(cos, 0) convention; compare scores only within one
  CLIP version, which the result names);
* ``reads_as_accuracy``: zero-shot reading: the share of images whose most similar of the ten
  prompts "a handwritten {word}" is the digit that their prompt asked for. The asked digit is
  given (``digits=``) or read from the prompt (a digit word or numeral, exactly one).

``default_clip()`` is the CLIP that eval uses when none is given: the clip family trained by the
Trainer with its default recipe and seed 0 on the captioned-digits train split (about a minute
on one CPU thread), and cached like the digits evaluator, under ``$GENZOO_CACHE`` (default
``~/.cache/genzoo``) in ``clip-<version>/``, where the version hashes the model config, the
training settings and the data version, so changing any of them retrains instead of reusing
stale weights.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from genzoo.core.errors import GenzooError
from genzoo.eval.evaluator import cache_dir, one_thread
from genzoo.models.clip import CLIP

CLIP_REVISION = 2  # bump when the CLIP architecture, its loss or its training changes (2: trained by the Trainer)
DATA = "captioned-digits"
SEED = 0
# The default CLIP's recipe on top of the family's defaults (none: `genzoo train clip` as it is). Measured
# for the old loop at 600 steps of 256 pairs: 20-60 s on one thread, by the machine's load (benchmarks section 27).
DEFAULT_OVERRIDES: dict = {}  # model config fields
DEFAULT_TRAIN: dict = {}  # TrainConfig fields


def zero_shot_prompts() -> list[str]:
    from genzoo.data.captions import WORDS

    return [f"a handwritten {w}" for w in WORDS]


def _recipe(overrides: dict | None, train: dict | None):
    """(training data, model config, TrainConfig) of the default CLIP: the family's defaults, then these."""
    from genzoo.data import load_dataset
    from genzoo.train import TrainConfig

    data = load_dataset(DATA, "train")
    config = replace(CLIP.default_config(data.spec()), **(DEFAULT_OVERRIDES if overrides is None else overrides))
    settings = {**CLIP.default_train(data.spec()), "seed": SEED, "device": "cpu", "progress": False,
                **(DEFAULT_TRAIN if train is None else train)}
    return data, config, TrainConfig(**settings)


def clip_version(overrides: dict | None = None, train: dict | None = None) -> str:
    from genzoo.data import captions

    _, config, settings = _recipe(overrides, train)
    recipe = {"revision": CLIP_REVISION, "config": config.to_dict(), "train": {**settings.to_dict(), "progress": None},
              "data": DATA, "captions": [captions.SEED, captions.CAPTIONS_PER_IMAGE, list(captions.TRAIN_TEMPLATES)]}
    return "clip-" + hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]


def train_default_clip(overrides: dict | None = None, train: dict | None = None) -> tuple[CLIP, dict]:
    """A CLIP trained by the Trainer on captioned-digits/train, deterministically; the model (its weights
    best on validation) and its record. The caller's global RNG and thread count are left as they were."""
    from genzoo.data import load_dataset
    from genzoo.train import Trainer  # an eval instrument trained by the one Trainer (eval sits above train: tests/test_contract.py LAYERS)

    data, config, settings = _recipe(overrides, train)
    start = time.perf_counter()
    with one_thread(), torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(settings.seed)  # the same seed, the same initial weights
        trainer = Trainer(CLIP(config), data, settings, data_name=DATA, val_data=load_dataset(DATA, "val"))
        summary = trainer.fit()
    record = {"version": clip_version(overrides, train), "data": DATA, "config": config.to_dict(), "train": settings.to_dict(),
              "train_seconds": round(time.perf_counter() - start, 1), "best_step": summary.get("best_step"),
              "best_val_loss": summary.get("best_val_loss"), "torch_version": torch.__version__}
    return trainer.selected_model.eval(), record


_LOADED: dict[str, CLIP] = {}
RECORD = "record.json"  # beside the cached weights: the version they were trained for


def _read_cached(folder: Path, version: str) -> CLIP | None:
    """The cached CLIP of ``version``, or None when the folder is missing, torn, foreign or stale."""
    try:
        record = json.loads((folder / RECORD).read_text())
        if record.get("version") != version:
            return None
        model = CLIP.from_pretrained(folder)
    except (OSError, json.JSONDecodeError, GenzooError):
        return None
    model.meta = record
    return model


def default_clip(*, retrain: bool = False, progress: bool = False) -> CLIP:
    """The cached default CLIP: from memory, else ``$GENZOO_CACHE/clip-<version>/``, else trained now
    (``progress``: say so on stderr first, it takes about a minute)."""
    from genzoo.core.atomic import write_atomic_dir

    version = clip_version()
    folder = cache_dir() / version
    if version in _LOADED and not retrain:
        return _LOADED[version]
    model = None if retrain else _read_cached(folder, version)
    if model is None:
        if progress:
            print(f"training genzoo's default CLIP once (seeded, about a minute); it is cached in {folder}", file=sys.stderr, flush=True)
        model, record = train_default_clip()

        def fill(tmp: Path) -> None:
            model.save_pretrained(tmp)
            (tmp / RECORD).write_text(json.dumps(record, indent=2))

        try:
            write_atomic_dir(folder, fill)
        except OSError as e:  # a read-only cache, or another process caching at once, must not stop evaluation
            warnings.warn(f"could not cache the default CLIP in {folder}: {e}", stacklevel=2)
        model.meta = record
    _LOADED[version] = model
    return model


def load_clip(clip, *, progress: bool = False) -> CLIP:
    """A CLIP object, a run or checkpoint folder of `genzoo train clip`, or None for ``default_clip()``."""
    if clip is None:
        return default_clip(progress=progress)
    if isinstance(clip, CLIP):
        return clip
    if isinstance(clip, (str, Path)):
        from genzoo.runs.checkpoint import load_model  # a run folder's best/ weights (eval sits above runs)

        model = load_model(clip)
        if not isinstance(model, CLIP):
            raise GenzooError(f"{clip} holds a {model.family} model, not a CLIP; train one with "
                              "`genzoo train clip --data captioned-digits --out DIR`")
        return model
    raise GenzooError(f"pass a CLIP, a CLIP run folder or None (the default CLIP), not {type(clip).__name__}")


_DIGIT_WORDS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}


def asked_digit(prompt: str) -> int | None:
    """The digit a prompt names (as a word or a numeral), or None when it names none or several."""
    found = {_DIGIT_WORDS[w] for w in re.findall(r"[a-z]+", prompt.lower()) if w in _DIGIT_WORDS}
    found |= {int(d) for d in re.findall(r"(?<!\d)\d(?!\d)", prompt)}
    return found.pop() if len(found) == 1 else None


def prompt_agreement(clip, images_levels, prompts: str | Sequence[str], *, digits: Sequence[int] | None = None,
                     per_image: bool = False) -> dict:
    """How well images agree with their prompts (module docstring).

    ``clip``: a CLIP, a CLIP run folder, or None (``default_clip()``). ``images_levels``: (N, 1, 8, 8)
    levels 0..16 (numpy or torch). ``prompts``: one prompt for all images, or one per image.
    ``digits``: the digit each prompt asks for (default: read from the prompt; prompts naming no
    single digit are left out of ``reads_as_accuracy``, counted in ``reads_as_n``)."""
    model = load_clip(clip)
    with one_thread():
        image_vecs = model.encode_images(images_levels)
        n = len(image_vecs)
        if isinstance(prompts, str):
            prompts = [prompts] * n
        prompts = list(prompts)
        if len(prompts) != n:
            raise GenzooError(f"{n} images but {len(prompts)} prompts; give one prompt, or one per image")
        distinct = sorted(set(prompts))
        text_vecs = model.encode_texts(distinct)
        where = {p: i for i, p in enumerate(distinct)}
        scores = (image_vecs * text_vecs[[where[p] for p in prompts]]).sum(1)
        read = (image_vecs @ model.encode_texts(zero_shot_prompts()).T).argmax(1)
    if digits is None:
        asked = [asked_digit(p) for p in prompts]
    else:
        asked = [int(d) for d in digits]
        if len(asked) != n or any(not 0 <= d <= 9 for d in asked):
            raise GenzooError(f"digits must give one digit 0..9 per image ({n})")
    known = [i for i, d in enumerate(asked) if d is not None]
    hits = [int(read[i]) == asked[i] for i in known]
    result = {
        "clip_score": float(scores.mean()),
        "clip_score_std": float(scores.std()) if n > 1 else 0.0,
        "reads_as_accuracy": float(np.mean(hits)) if hits else None,
        "reads_as_n": len(hits),
        "n": n,
        "clip": getattr(model, "meta", {}).get("version", "given"),
    }
    if per_image:
        result["per_image_score"] = scores.tolist()
        result["per_image_read_as"] = read.tolist()
    return result


__all__ = ["asked_digit", "clip_version", "default_clip", "load_clip", "prompt_agreement", "train_default_clip", "zero_shot_prompts"]
