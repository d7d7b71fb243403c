"""``genzoo t5 ...``: fine-tune a T5 on input/target pairs and generate with it (T5 is not a Trainer family:
its data are pairs, see ``genzoo.models.t5``). torch is imported only when a command runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from genzoo.core.errors import GenzooError

t5_app = typer.Typer(add_completion=False, no_args_is_help=True,
                     help="T5 encoder-decoder: text-to-text fine-tuning (JSONL pairs or the docsig task) and generation.")


def load_t5(folder: Path):
    """A genzoo T5 checkpoint folder or a local Hugging Face T5 folder."""
    from genzoo.models.base import GenerativeModel
    from genzoo.models.hf.t5 import load_hf_t5
    from genzoo.models.t5 import T5

    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        raise GenzooError(f"{folder} has no config.json; pass a folder written by `genzoo t5 finetune` or a Hugging Face T5 folder")
    if json.loads(cfg.read_text()).get("model_type") == "t5":
        return load_hf_t5(folder)
    meta = GenerativeModel.read_meta(folder)
    if meta["family"] != "t5":
        raise GenzooError(f"{folder} holds a {meta['family']} model, not a T5")
    return T5.from_pretrained(folder)


def _fail(e: GenzooError):
    typer.secho(f"error: {e}", fg="red", err=True)
    raise typer.Exit(2)


@t5_app.command("finetune")
def finetune_command(
    out: Path = typer.Argument(..., help="folder to write the fine-tuned model to (replaced atomically)"),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help='JSONL, one {"input": ..., "target": ...} per line'),
    task: Optional[str] = typer.Option(None, "--task", help="built-in task instead of --pairs: docsig"),
    start: Optional[Path] = typer.Option(None, "--from", help="start from this T5 (genzoo or Hugging Face folder); default: a new model"),
    tokenizer: str = typer.Option("bpe", "--tokenizer", help="a new model's tokenizer, trained on the pairs: bpe or char"),
    vocab_size: int = typer.Option(1024, "--vocab-size", help="bpe: vocabulary size (at least 257); char: a cap on the alphabet"),
    steps: int = typer.Option(500, "--steps"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="linear warm-up steps before the cosine decay (default: a tenth of --steps, at most 100)"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine (to 0 at the last step) or constant"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
) -> None:
    """Supervised text-to-text fine-tuning; prints the first and last training loss."""
    try:
        import torch

        from genzoo.models.t5 import T5, T5Config, finetune, read_pairs_jsonl

        if (pairs is None) == (task is None):
            raise GenzooError("give exactly one of --pairs FILE.jsonl or --task docsig")
        if task is not None and task != "docsig":
            raise GenzooError(f"unknown task {task!r}; built-in: docsig")
        if steps < 1 or batch_size < 1:
            raise GenzooError("--steps and --batch-size must be at least 1")
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        if task == "docsig":
            from genzoo.data.docsig import load_pairs

            data = load_pairs("train")
        else:
            data = read_pairs_jsonl(pairs)
        if start is not None:
            model = load_t5(start)
            if model.tokenizer is None:
                raise GenzooError(f"{start} has no tokenizer.json beside its weights; T5 fine-tuning needs one")
        else:
            from genzoo.data.tokenizer import TextTokenizer

            # BPE by default: a docsig pair is about 3x fewer BPE tokens than characters, so a step costs less
            # and the decoder writes whole pieces (`def`, `(self`); benchmarks/README.md section 25
            tok = TextTokenizer.train([a + "\n" + b for a, b in data], kind=tokenizer, vocab_size=vocab_size)
            model = T5(T5Config(data={"name": str(pairs or task), "kind": "pairs", "vocab_size": tok.vocab_size},
                                ffn="gated-gelu", num_sentinels=32, eos_token_id=tok.eos_id))
            model.tokenizer = tok
        warmup = min(100, steps // 10) if warmup is None else warmup
        losses = finetune(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup_steps=warmup, schedule=schedule)
        model.save(out)
    except GenzooError as e:
        _fail(e)
    typer.echo(f"{len(data)} pairs, {steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}; saved {out}")


@t5_app.command("generate")
def generate_command(
    run: Path = typer.Argument(..., help="a T5 folder (genzoo t5 finetune output or a Hugging Face T5 folder)"),
    texts: List[str] = typer.Argument(..., help="input texts"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Decode an output for each input text (greedy by default, KV-cached)."""
    try:
        import torch

        model = load_t5(run)
        outputs = model.generate_text(texts, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                      generator=torch.Generator().manual_seed(seed))
    except GenzooError as e:
        _fail(e)
    for text, output in zip(texts, outputs):
        typer.echo(json.dumps({"input": text, "output": output}))
