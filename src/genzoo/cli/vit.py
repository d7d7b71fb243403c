"""``genzoo vit ...``: measure the ViT classifier and read digits with it. It is a family
(``genzoo.models.vit``) trained by ``genzoo train vit``; ``vit train`` is that command's old
spelling. torch loads only when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genzoo.cli.app import GenzooTyper, renamed, say
from genzoo.core.errors import GenzooError

vit_app = GenzooTyper(help="ViT image classifier (a family: `genzoo train vit`): eval (test accuracy), predict (labels of images in a .npy).")


def load_vit(run: Path):
    """The ViT in a run folder (its best weights) or a checkpoint folder; refuses another family."""
    from genzoo import api

    model = api.load(run)
    if model.family != "vit":
        raise GenzooError(f"{run} holds a {model.family} model, not a vit; train one with `genzoo train vit --data digits --out DIR`")
    return model


@vit_app.command("train")
def train_command(
    out: Path = typer.Option(..., "-o", "--out", help="run folder"),
    epochs: int = typer.Option(300, help="passes over the 1000 training digits, 16 steps each (300: test accuracy 0.971, benchmarks section 24)"),
    width: int = typer.Option(64, help="token width"),
    depth: int = typer.Option(4, help="transformer blocks"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="CPU threads (one: the model is small)"),
) -> None:
    """Old spelling of `genzoo train vit --data digits` (the weights best on validation go to OUT/best)."""
    import torch

    from genzoo import api

    renamed("vit train", "train vit")
    if epochs < 1:
        raise GenzooError("--epochs must be at least 1")
    torch.set_num_threads(threads)
    model, summary = api.train("vit", "digits", out=out, steps=epochs * 16, seed=seed, model_overrides={"width": width, "depth": depth})
    from genzoo.data import load_dataset

    val = load_dataset("digits", "val")
    say(f"trained in {summary['train_seconds']:.0f} s; validation accuracy {model.accuracy(val.x, val.y):.4f} -> {out}")


@vit_app.command("eval")
def eval_command(run: Path = typer.Argument(..., help="a run folder of `genzoo train vit`")) -> None:
    """Test accuracy on the run's data (digits: the 447 test images, beside the digits evaluator's, a CNN)."""
    from genzoo import api
    from genzoo.data import load_dataset

    model = load_vit(run)
    data = api.run_data(run, model)
    test = load_dataset(data, "test")
    accuracy = model.accuracy(test.x, test.y)
    line = f"ViT test accuracy {accuracy:.4f} on {len(test.x)} {data} images"
    if data == "digits":
        from genzoo.eval.evaluator import get_digits_evaluator

        line += f" (the digits evaluator, a CNN: {get_digits_evaluator().test_accuracy:.4f})"
    say(line)


@vit_app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., help="a run folder of `genzoo train vit`"),
    images: Path = typer.Argument(..., help=".npy of images as the model's data stores them; digits: levels 0..16, (N, 1, 8, 8) or (N, 8, 8) (e.g. what `genzoo sample` writes)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the labels and their probabilities as JSON here"),
) -> None:
    """Old spelling of `genzoo classify`: the class the classifier reads in each image, with its probability."""
    from genzoo.cli.verbs import print_classes

    renamed("vit predict", "classify")
    print_classes(load_vit(run), images, out)  # load_vit refuses another family with this group's message
