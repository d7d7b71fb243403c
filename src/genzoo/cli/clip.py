"""``genzoo clip ...``: train the contrastive image-text model, score images against a prompt, and
measure held-out retrieval (``genzoo.models.clip``; CLIP is not a Trainer family: it samples
nothing). torch is imported only when a command runs."""

from __future__ import annotations

from pathlib import Path

import typer

from genzoo.core.errors import GenzooError

clip_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Contrastive image-text model (CLIP-style) on captioned digits: train, score, eval.")


def _fail(e: GenzooError):
    typer.secho(f"error: {e}", fg="red", err=True)
    raise typer.Exit(2)


def run_train(out: Path, *, data: str = "captioned-digits", steps: int = 600, batch_size: int = 256, lr: float = 2e-3,
              seed: int = 0, embed_dim: int = 64, threads: int = 1, progress: bool = True) -> dict:
    """Train on ``data``'s train split, save to ``out`` (atomically); the record written beside the weights."""
    import time
    from dataclasses import asdict

    import torch

    from genzoo.data import load_dataset
    from genzoo.models.clip import CLIP, CLIPConfig, CLIPTrainSettings, train_clip
    from genzoo.train.progress import ProgressReporter

    if steps < 1 or batch_size < 2:
        raise GenzooError("--steps must be at least 1 and --batch-size at least 2")
    train = load_dataset(data, "train")
    if not isinstance(train.meta.get("captions"), list):
        raise GenzooError(f"dataset {data!r} has no captions; CLIP trains on captioned images, e.g. --data captioned-digits")
    torch.set_num_threads(threads)
    settings = CLIPTrainSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    torch.manual_seed(seed)
    model = CLIP(CLIPConfig(embed_dim=embed_dim))
    bar = ProgressReporter(steps, 0, progress, desc="clip")
    start = time.perf_counter()
    try:
        history = train_clip(model, train.x, train.meta["captions"], train.meta.get("image_index"), settings,
                             on_step=lambda step, info: bar.update(step, info))
    finally:
        bar.close()
    record = {"data": data, "settings": asdict(settings), "train_seconds": round(time.perf_counter() - start, 1),
              "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"], "history": history,
              "parameters": sum(p.numel() for p in model.parameters())}
    model.save_pretrained(out, extra=record)
    return record


@clip_app.command("train")
def train_command(
    out: Path = typer.Option(..., "-o", "--out", help="folder to write the CLIP to (replaced atomically)"),
    data: str = typer.Option("captioned-digits", "--data", help="a captioned image dataset"),
    steps: int = typer.Option(600, "--steps", help="optimizer steps (batches of --batch-size pairs)"),
    batch_size: int = typer.Option(256, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    embed_dim: int = typer.Option(64, "--embed-dim", help="dimension of the shared image-text space"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
) -> None:
    """Train a contrastive image-text model; prints the first and last loss and where it was saved."""
    try:
        r = run_train(out, data=data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, embed_dim=embed_dim, threads=threads)
    except GenzooError as e:
        _fail(e)
    typer.echo(f"loss {r['first_loss']:.3f} -> {r['final_loss']:.3f} in {r['train_seconds']} s ({steps} steps); saved {out}")


def run_score(folder: Path, prompt: str, images: Path) -> dict:
    import numpy as np

    from genzoo.eval.prompt_agreement import prompt_agreement

    if not prompt or not prompt.strip():
        raise GenzooError("--prompt must be non-empty text, e.g. --prompt 'a handwritten seven'")
    try:
        x = np.load(images, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise GenzooError(f"cannot read {images} as a .npy array of digit images ({e})") from None
    return prompt_agreement(folder, x, prompt, per_image=True)


@clip_app.command("score")
def score_command(
    folder: Path = typer.Argument(..., help="a folder written by `genzoo clip train`"),
    images: Path = typer.Argument(..., help=".npy of digit images, (N, 1, 8, 8) or (N, 8, 8), levels 0..16"),
    prompt: str = typer.Option(..., "--prompt", help="the text to compare every image with"),
) -> None:
    """Per-image agreement (cosine in the CLIP space) of each image with the prompt, and what digit each reads as."""
    try:
        r = run_score(folder, prompt, images)
    except GenzooError as e:
        _fail(e)
    for i, (s, d) in enumerate(zip(r["per_image_score"], r["per_image_read_as"])):
        typer.echo(f"{i}\t{s:.4f}\treads as {d}")
    acc = "-" if r["reads_as_accuracy"] is None else f"{r['reads_as_accuracy']:.3f}"
    typer.echo(f"mean cosine {r['clip_score']:.4f} over {r['n']} images; reads as the asked digit: {acc}")


@clip_app.command("eval")
def eval_command(
    folder: Path = typer.Argument(..., help="a folder written by `genzoo clip train`"),
    split: str = typer.Option("test", "--split", help="val or test"),
) -> None:
    """Held-out text -> image retrieval (R@1, R@5, class-match) and zero-shot digit accuracy."""
    from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics
    from genzoo.models.clip import CLIP

    try:
        if split not in ("val", "test"):
            raise GenzooError(f"--split must be val or test, got {split!r}")
        typer.echo(format_retrieval(retrieval_metrics(CLIP.from_pretrained(folder), split)))
    except GenzooError as e:
        _fail(e)
