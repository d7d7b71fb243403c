"""``genzoo t5 ...``: generate with a T5, and ``finetune``, the old spelling of ``genzoo train t5 --data pairs.jsonl``
(it runs the same Trainer and writes the same run folder). torch is imported only when a command runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from genzoo.cli.app import GenzooTyper, note, renamed, say
from genzoo.core.errors import GenzooError

t5_app = GenzooTyper(help="T5 encoder-decoder: text-to-text generation (training: genzoo train t5 --data pairs.jsonl).")


def load_t5(folder: Path, device: str = "cpu"):
    """A genzoo T5 run or checkpoint folder, or a local Hugging Face T5 folder."""
    from genzoo import api

    model = api.load(folder, device)
    if model.family != "t5":
        raise GenzooError(f"{folder} holds a {model.family} model, not a T5")
    return model


@t5_app.command("finetune")
def finetune_command(
    out: Path = typer.Argument(..., help="run folder to write (as --out of genzoo train)"),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help='JSONL, one {"input": ..., "target": ...} per line'),
    task: Optional[str] = typer.Option(None, "--task", help="built-in task instead of --pairs: docsig"),
    start: Optional[Path] = typer.Option(None, "--from", help="start from this T5 (genzoo run or Hugging Face folder) and its tokenizer; default: a new model"),
    tokenizer: str = typer.Option("bpe", "--tokenizer", help="a new model's tokenizer, trained on the training pairs: bpe or char"),
    vocab_size: int = typer.Option(1024, "--vocab-size", help="bpe: vocabulary size (at least 257); char: a cap on the alphabet"),
    steps: int = typer.Option(500, "--steps"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="linear warm-up steps before the cosine decay (default: a tenth of --steps, at most 100)"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine (to 0 at the last step) or constant"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
) -> None:
    """Old spelling of `genzoo train t5 --data pairs.jsonl` (BPE 1024 by default); prints the first and last logged loss."""
    import torch

    from genzoo import api

    note("note: `genzoo t5 finetune` is the old spelling; the new one is `genzoo train t5 --data pairs.jsonl` "
         "(or --data docsig), which it runs")
    if (pairs is None) == (task is None):
        raise GenzooError("give exactly one of --pairs FILE.jsonl or --task docsig")
    if task is not None and task != "docsig":
        raise GenzooError(f"unknown task {task!r}; built-in: docsig")
    data = str(pairs) if pairs is not None else task
    if pairs is not None:
        from genzoo.data.pairs import is_pairs, read_jsonl

        read_jsonl(pairs)  # a bad file's error names its line
        if not is_pairs(data):
            raise GenzooError(f'{pairs}: its first record has no "input" / "target" fields')
    torch.set_num_threads(threads)
    settings = dict(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10) if warmup is None else warmup,
                    schedule=schedule, seed=seed)
    if start is None:
        _, summary = api.train("t5", data, out=out, tokenizer=tokenizer, vocab_size=vocab_size, **settings)
    else:
        summary = _train_from(load_t5(start), data, out, settings)
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    losses = [r["loss"] for r in rows if r.get("event") == "train" and "loss" in r]
    say(f"{data}: {summary['steps']} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f} (logged means); run in {out}")


def _train_from(model, data: str, out: Path, settings: dict) -> dict:
    """Fine-tune an existing T5 (its own tokenizer encodes the pairs) with the Trainer, as api.train does for a new one."""
    from genzoo import api
    from genzoo.data import load_dataset
    from genzoo.train import Trainer

    if model.tokenizer is None:
        raise GenzooError("the starting T5 has no tokenizer.json beside its weights; T5 fine-tuning needs one")
    model.train()
    train_data = load_dataset(data, "train", tokenizer=model.tokenizer)
    config = api.train_config_for(type(model), train_data, **settings)
    val = load_dataset(data, "val", tokenizer=model.tokenizer) if config.val_every else None
    return Trainer(model, train_data, config, out_dir=out, data_name=data, val_data=val).fit()


@t5_app.command("generate")
def generate_command(
    run: Path = typer.Argument(..., help="a T5 run or checkpoint folder (genzoo train t5) or a Hugging Face T5 folder"),
    texts: List[str] = typer.Argument(..., help="input texts"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Old spelling of `genzoo generate` on a T5: an output for each input text (greedy by default); one JSON line per input."""
    from genzoo.cli.text import map_texts

    renamed("t5 generate", "generate")
    map_texts(load_t5(run), list(texts), max_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
