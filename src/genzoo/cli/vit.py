"""``genzoo vit ...``: train the ViT digits classifier, measure it, and read digits with it
(``genzoo.models.vit_classifier``; not a Trainer family: it predicts labels). torch loads only when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genzoo.core.errors import GenzooError

vit_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="ViT digits classifier: train, eval (test accuracy), predict (labels of images in a .npy).")


def _fail(e: GenzooError):
    typer.secho(f"error: {e}", fg="red", err=True)
    raise typer.Exit(2)


def run_train(out: Path, *, epochs: int, seed: int, width: int, depth: int, threads: int = 1, progress: bool = True) -> dict:
    """Train on digits/train (validation accuracy per epoch on digits/val), save to ``out``; return the record."""
    import dataclasses
    import time

    import torch

    from genzoo.data import load_dataset
    from genzoo.train.progress import ProgressReporter
    from genzoo.models.vit_classifier import ViTClassifier, ViTClassifierConfig

    if epochs < 1 or width < 1 or depth < 1:
        raise GenzooError("--epochs, --width and --depth must be at least 1")
    config = dataclasses.replace(ViTClassifierConfig(), epochs=epochs, seed=seed, width=width, depth=depth)
    if width % config.heads:
        raise GenzooError(f"--width {width} must be a multiple of the {config.heads} attention heads")
    torch.set_num_threads(threads)
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    bar = ProgressReporter(epochs, 0, progress, desc="vit epochs")
    start = time.perf_counter()
    try:
        model = ViTClassifier(config).fit(train.x, train.y, x_val=val.x, y_val=val.y,
                                          on_epoch=lambda epoch, rec: bar.update(epoch, {"val_acc": rec.get("val_accuracy", 0.0)}))
    finally:
        bar.close()
    record = {"train_seconds": round(time.perf_counter() - start, 1), "val_accuracy": model.history[-1].get("val_accuracy"),
              "parameters": model.describe()["parameters"]}
    model.save(out, extra=record)
    return record


@vit_app.command("train")
def train_command(
    out: Path = typer.Option(..., "-o", "--out", help="folder to write the classifier to (replaced atomically)"),
    epochs: int = typer.Option(300, help="passes over the 1000 training digits (300: test accuracy 0.971, benchmarks section 24)"),
    width: int = typer.Option(64, help="token width"),
    depth: int = typer.Option(4, help="transformer blocks"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="CPU threads (one: the model is small)"),
) -> None:
    """Train the ViT digits classifier on digits/train, selecting nothing: the last epoch is saved."""
    try:
        record = run_train(out, epochs=epochs, seed=seed, width=width, depth=depth, threads=threads)
    except GenzooError as e:
        _fail(e)
    typer.echo(f"trained in {record['train_seconds']} s; validation accuracy {record['val_accuracy']:.4f} -> {out}")


@vit_app.command("eval")
def eval_command(run: Path = typer.Argument(..., help="a folder written by `genzoo vit train`")) -> None:
    """Test accuracy on the 447 digits test images, beside the digits evaluator's (a CNN) on the same images."""
    try:
        from genzoo.data import load_dataset
        from genzoo.eval.evaluator import get_digits_evaluator
        from genzoo.models.vit_classifier import ViTClassifier

        model = ViTClassifier.load(run)
        test = load_dataset("digits", "test")
        accuracy = model.score(test.x, test.y)
    except GenzooError as e:
        _fail(e)
    typer.echo(f"ViT test accuracy {accuracy:.4f} on {len(test.x)} digits (the digits evaluator, a CNN: "
               f"{get_digits_evaluator().test_accuracy:.4f})")


@vit_app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., help="a folder written by `genzoo vit train`"),
    images: Path = typer.Argument(..., help=".npy of digits, levels 0..16, shape (N, 1, 8, 8) or (N, 8, 8) (e.g. what `genzoo sample` writes)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the labels and their probabilities as JSON here"),
) -> None:
    """The digit the classifier reads in each image, with its probability."""
    import json

    import numpy as np

    try:
        from genzoo.models.vit_classifier import ViTClassifier

        try:
            x = np.load(images, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GenzooError(f"cannot read {images} as a .npy array ({e})") from None
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise GenzooError(f"{images} holds shape {tuple(x.shape)}; give (N, 1, 8, 8) or (N, 8, 8) digits of levels 0..16")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 16:
            raise GenzooError(f"{images} holds values outside the levels 0..16 of digits")
        model = ViTClassifier.load(run)
        probs = model.predict_proba(x.astype(np.float32))
    except GenzooError as e:
        _fail(e)
    labels = probs.argmax(1).tolist()
    confidence = probs.max(1).values.tolist()
    for i, (label, p) in enumerate(zip(labels, confidence)):
        typer.echo(f"{i}\t{label}\t{p:.3f}")
    if out is not None:
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"labels": labels, "probability": confidence}))
        tmp.replace(out)
