"""Verbs named by a capability, for whichever family has it: `genzoo classify` (classify) and
`genzoo score` (score). `genzoo generate` serves both text capabilities (sample on a causal LM,
seq2seq on an encoder-decoder: ``cli.text``). The per-model groups (`genzoo vit predict`,
`genzoo clip score`, `genzoo t5 generate`) are their old spellings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genzoo.cli.app import GenzooTyper, RunArgument, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()


def load_with(run: Path, capability: str, verb: str):
    """The model in ``run``, or a clear refusal naming the capability ``verb`` needs."""
    from genzoo import api

    model = api.load(run)
    if capability not in model.capabilities:
        raise GenzooError(f"{model.family} cannot {verb}: `genzoo {verb}` needs a family with the "
                          f"'{capability}' capability (see `genzoo list`)")
    return model


def read_examples(path: Path, model):
    """A .npy of examples as the model's data stores them (one-channel images may drop the channel axis)."""
    import numpy as np

    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise GenzooError(f"cannot read {path} as a .npy array ({e})") from None
    shape, levels = tuple(model.data_spec["shape"]), model.data_spec.get("levels")
    if x.ndim == len(shape) and shape[0] == 1:
        x = x[:, None]  # (N, H, W) for one-channel images
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise GenzooError(f"{path} holds shape {tuple(x.shape)}; give (N, {', '.join(map(str, shape))})"
                          + (f" or (N, {shape[1]}, {shape[2]})" if shape[0] == 1 and len(shape) == 3 else "")
                          + (f" of levels 0..{levels - 1}" if levels else ""))
    if not np.isfinite(x).all() or (levels and (x.min() < 0 or x.max() > levels - 1)):
        raise GenzooError(f"{path} holds values outside the levels 0..{levels - 1} of the model's data" if levels
                          else f"{path} holds NaN or infinite values")
    return x.astype(np.float32)


@app.command()
def classify(
    run: RunArgument,
    examples: Annotated[Path, typer.Argument(help=".npy of examples as the model's data stores them; digits: levels 0..16, (N, 1, 8, 8) or (N, 8, 8)")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="also write the labels and their probabilities as JSON here")] = None,
) -> None:
    """The class a classifier (vit) reads in each example, with its probability."""
    from genzoo.models.base import CLASSIFY

    print_classes(load_with(run, CLASSIFY, "classify"), examples, out)


def print_classes(model, examples: Path, out: Path | None) -> None:
    """What `classify` prints (and writes to ``out``) for a loaded classifier."""
    from genzoo.core.atomic import write_atomic_file

    probs = model.predict_proba(read_examples(examples, model)).cpu()
    labels, confidence = probs.argmax(1).tolist(), probs.max(1).values.tolist()
    for i, (label, p) in enumerate(zip(labels, confidence)):
        say(f"{i}\t{label}\t{p:.3f}")
    if out is not None:
        write_atomic_file(out, json.dumps({"labels": labels, "probability": confidence}))


@app.command()
def score(
    run: RunArgument,
    examples: Annotated[Path, typer.Argument(help=".npy of digit images, (N, 1, 8, 8) or (N, 8, 8), levels 0..16")],
    prompt: Annotated[str, typer.Option("--prompt", help="the text to compare every example with")],
) -> None:
    """Per-example agreement of each example with the prompt (clip: cosine in its joint space), and what digit each reads as."""
    from genzoo.eval.prompt_agreement import prompt_agreement
    from genzoo.models.base import SCORE

    if not prompt.strip():
        raise GenzooError("--prompt must be non-empty text, e.g. --prompt 'a handwritten seven'")
    model = load_with(run, SCORE, "score")
    r = prompt_agreement(model, read_examples(examples, model), prompt, per_image=True)
    for i, (s, d) in enumerate(zip(r["per_image_score"], r["per_image_read_as"])):
        say(f"{i}\t{s:.4f}\treads as {d}")
    acc = "-" if r["reads_as_accuracy"] is None else f"{r['reads_as_accuracy']:.3f}"
    say(f"mean cosine {r['clip_score']:.4f} over {r['n']} images; reads as the asked digit: {acc}")
