"""``genzoo clip ...``: score images against a prompt and measure held-out retrieval with the
contrastive image-text model. It is a family (``genzoo.models.clip``) trained by ``genzoo train
clip --data captioned-digits``; ``clip train`` is that command's old spelling. torch is imported
only when a command runs."""

from __future__ import annotations

from pathlib import Path

import typer

from genzoo.cli.app import GenzooTyper, renamed, say
from genzoo.core.errors import GenzooError

clip_app = GenzooTyper(help="Contrastive image-text model (a family: `genzoo train clip --data captioned-digits`): score, eval.")


@clip_app.command("train")
def train_command(
    out: Path = typer.Option(..., "-o", "--out", help="run folder"),
    data: str = typer.Option("captioned-digits", "--data", help="a captioned image dataset"),
    steps: int = typer.Option(600, "--steps", help="optimizer steps (batches of --batch-size pairs)"),
    batch_size: int = typer.Option(256, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    embed_dim: int = typer.Option(64, "--embed-dim", help="dimension of the shared image-text space"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
) -> None:
    """Old spelling of `genzoo train clip --data captioned-digits` (the weights best on validation go to OUT/best)."""
    import torch

    from genzoo import api

    renamed("clip train", "train clip")
    torch.set_num_threads(threads)
    _, summary = api.train("clip", data, out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                           model_overrides={"embed_dim": embed_dim})
    best = f"; best validation loss {summary['best_val_loss']:.3f} at step {summary['best_step']}" if "best_step" in summary else ""
    say(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f} s{best}; saved {out}")


@clip_app.command("score")
def score_command(
    run: Path = typer.Argument(..., help="a run folder of `genzoo train clip`"),
    images: Path = typer.Argument(..., help=".npy of digit images, (N, 1, 8, 8) or (N, 8, 8), levels 0..16"),
    prompt: str = typer.Option(..., "--prompt", help="the text to compare every image with"),
) -> None:
    """Old spelling of `genzoo score`: per-image agreement of each image with the prompt."""
    from genzoo.cli.verbs import score

    renamed("clip score", "score")
    score(run, images, prompt)


@clip_app.command("eval")
def eval_command(
    run: Path = typer.Argument(..., help="a run folder of `genzoo train clip`"),
    split: str = typer.Option("test", "--split", help="val or test"),
) -> None:
    """Held-out text -> image retrieval (R@1, R@5, class-match) and zero-shot digit accuracy on captioned-digits."""
    from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics
    from genzoo.eval.prompt_agreement import load_clip

    if split not in ("val", "test"):
        raise GenzooError(f"--split must be val or test, got {split!r}")
    say(format_retrieval(retrieval_metrics(load_clip(run), split)))
