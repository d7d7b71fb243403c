"""LoRA fine-tuning of a text model on the user's text: what ``genzoo finetune`` runs.

The base (a genzoo text run/checkpoint or a local Hugging Face Llama / Mistral / Qwen2 folder) is
loaded with its own tokenizer, which tokenizes the user's corpus (a .txt / .md / .jsonl file or a
folder; one long file is split by position, its last tenth held out for validation). Adapters
(``genzoo.nn.lora``) are added, the base weights frozen, and the genzoo Trainer trains the adapters
only, in memory: nothing is written into the base's folder. ``out`` receives the adapter alone
(``adapter_model.safetensors`` + ``adapter_config.json``, which names the base by path and sha256)
and, with ``merge``, a full merged checkpoint in ``out/merged`` (weights + tokenizer). ``out`` is a
model folder itself: ``genzoo generate out`` loads the base and applies the adapter
(``genzoo.runs.adapters``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.runs.adapters import base_info  # noqa: F401  (re-exported: where a base comes from, as adapters record it)

DEFAULT_WINDOW = 256  # tokens per training window at most (a Hugging Face model's context can be 100k+)
MAX_VAL_WINDOWS = 512  # validation windows at most (the same ones before and after)
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


@dataclass
class FinetuneResult:
    out: str
    merged: str | None
    steps: int
    seconds: float
    val_loss_before: float
    val_loss_after: float
    trainable_parameters: int
    total_parameters: int
    window: int
    train_tokens: int
    val_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def finetune(base: str | Path, data: str, *, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             targets="attention,mlp", steps: int | None = None, minutes: float | None = None, lr: float = 1e-3,
             batch_size: int = 16, out: str | Path | None = None, merge: bool = False, seed: int = 0,
             device: str = "cpu", window: int | None = None, progress: bool = True) -> FinetuneResult:
    """Train LoRA adapters of ``base`` on the text ``data``; write the adapter (and, with ``merge``,
    ``out/merged``) into ``out``. Returns steps, validation loss before and after (nats/token on
    the held-out split, the model's ``validation_loss``) and parameter counts."""
    from genzoo.data import is_text, load_dataset
    from genzoo.nn.lora import add_lora, merge_lora, save_adapter
    from genzoo.tasks.textgen import load_text_model
    from genzoo.train import Trainer, TrainConfig

    if steps is None and minutes is None:
        raise GenzooError("give a budget: --steps N or --minutes M")
    if not is_text(str(data)):
        raise GenzooError(f"{data} is not a text corpus; give a .txt, .md or .jsonl file, a folder of .txt/.md files, or pydocs/pycode")
    base = Path(base)
    out = Path(out) if out is not None else Path("runs") / f"finetune-{base.resolve().name}"
    if out.resolve() == base.resolve() or base.resolve() in out.resolve().parents:
        raise GenzooError(f"--out {out} lies inside the base model's folder; write the adapter elsewhere (the base stays untouched)")
    if (out / "adapter_config.json").exists():
        raise GenzooError(f"{out} already holds an adapter; choose another --out or remove it")
    # resolves the checkpoint (clear error when there is none), hashes its weights, and records the base's
    # path absolute and relative to ``out``: the adapter finds its base again when it is opened as a model
    info = base_info(base, adapter_dir=out)
    model, tokenizer = load_text_model(base, "cpu")
    train = load_dataset(str(data), "train", tokenizer=tokenizer)
    val = load_dataset(str(data), "val", tokenizer=tokenizer)
    context = int(model.config.context)
    window = min(context, window or DEFAULT_WINDOW)
    shortest = min(len(train.x), len(val.x)) - 1
    if shortest < 2:
        raise GenzooError(f"{data} is too short to fine-tune on: its train/val splits hold {len(train.x)}/{len(val.x)} tokens")
    window = min(window, shortest)  # a short user file still works: shorter windows

    trainable = add_lora(model, rank, alpha, targets, dropout)
    names = set(trainable)
    n_trainable = sum(p.numel() for n, p in model.named_parameters() if n in names)
    n_total = sum(p.numel() for p in model.parameters())

    # Windows of ``window`` + 1 tokens rather than the model's full context (instance override,
    # removed after training).
    model.prepare_data = lambda d: d.with_window(window + 1) if d.is_stream else d
    x_val, _ = val.with_window(window + 1).eval_examples()
    x_val = x_val[:MAX_VAL_WINDOWS]
    val_batch = max(1, min(64, batch_size * 4))

    warmup = min(20, steps // 10) if steps is not None else 20
    config = TrainConfig(steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, weight_decay=0.0, warmup_steps=warmup,
                         ema_decay=None, val_every=0, device=device, seed=seed, progress=progress, checkpoint_every=10**9)
    trainer = Trainer(model, train, config, data_name=str(data))
    val_before = model.validation_loss(x_val, batch_size=val_batch, seed=seed)  # on the Trainer's device; = the base's
    t0 = time.perf_counter()
    try:
        summary = trainer.fit()
    finally:
        del model.prepare_data
    seconds = time.perf_counter() - t0
    model = trainer.model.eval()
    val_after = model.validation_loss(x_val, batch_size=val_batch, seed=seed)

    save_adapter(model, out, {**info, "data": str(data), "steps": summary["steps"]})
    merged_dir = None
    if merge:
        merge_lora(model)
        merged_dir = out / "merged"
        if info["kind"] == "huggingface":
            # The base's own tokenizer files, copied as they are: a tokenizer read from a Hugging Face
            # folder (kind "hf") is not written back by TextTokenizer.save in a form it reloads.
            model.tokenizer = None
            model.cpu().save_pretrained(merged_dir)
            for name in HF_TOKENIZER_FILES:
                if (base / name).is_file():
                    shutil.copyfile(base / name, merged_dir / name)
        else:
            model.tokenizer = tokenizer
            model.cpu().save_pretrained(merged_dir)
    result = FinetuneResult(out=str(out), merged=str(merged_dir) if merged_dir else None, steps=summary["steps"],
                            seconds=round(seconds, 2), val_loss_before=float(val_before), val_loss_after=float(val_after),
                            trainable_parameters=n_trainable, total_parameters=n_total, window=window,
                            train_tokens=len(train.x), val_tokens=len(val.x))
    (out / "finetune.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def load_finetuned(base: str | Path, adapter: str | Path, device: str = "cpu"):
    """(model, tokenizer): the base with the adapter in ``adapter`` applied (refused on another base)."""
    from genzoo.nn.lora import load_adapter
    from genzoo.tasks.textgen import load_text_model

    model, tokenizer = load_text_model(base, device)
    load_adapter(model, adapter)
    return model.eval(), tokenizer

