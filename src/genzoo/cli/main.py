"""The `genzoo` command: list, train, sample, eval, info, bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from genzoo.core.errors import GenzooError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, sample and compare generative models.")
console = Console(stderr=True)
out = Console()


def _fail(e: Exception) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(e))}")  # messages may quote [brackets] (bench entries)
    raise typer.Exit(2)


@app.command("list")
def list_cmd() -> None:
    """Families, their variants, capabilities and sampler options; built-in datasets."""
    from genzoo.data import builtin_names
    from genzoo.registry import families

    table = Table(title="genzoo families")
    for col in ("family", "variants", "data", "capabilities", "likelihood", "sample options"):
        table.add_column(col)
    for name, info in sorted(families().items()):
        if name.startswith("test-"):
            continue
        opts = ", ".join(f"{k}={v}" for k, v in info.model_class.sampler_options().items())
        table.add_row(name, ", ".join(info.variants), ", ".join(info.data_kinds), ", ".join(sorted(info.capabilities)), info.likelihood or "-", opts)
    out.print(table)
    from genzoo.task_models import task_models

    tasks = Table(title="task models (not sample()-able; trained and run through their own commands)")
    for col in ("model", "task", "data", "commands", "python"):
        tasks.add_column(col)
    for m in task_models():
        tasks.add_row(m.name, m.task, m.data, ", ".join(m.commands), m.module)
    out.print(tasks)
    out.print("datasets: " + ", ".join(builtin_names()) + ", or a path to a folder of images / .npy / .npz")


@app.command()
def train(
    family: str = typer.Argument(..., help="model family (see `genzoo list`)"),
    data: str = typer.Option("digits", "--data", "-d", help="dataset name or path"),
    variant: Optional[str] = typer.Option(None, help="family variant"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock training budget"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default runs/FAMILY-DATA)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint (none yet: start fresh)"),
    batch_size: Optional[int] = typer.Option(None, help="global batch size"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="micro-batches per step (the same update as the whole batch, less memory)"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    seed: Optional[int] = typer.Option(None, help="random seed (same seed, same weights)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:1"),
    precision: Optional[str] = typer.Option(None, help="auto, fp32, bf16, fp16"),
    ema_decay: Optional[float] = typer.Option(None, help="EMA decay (0 turns EMA off)"),
    checkpoint_every: Optional[int] = typer.Option(None, help="steps between checkpoints"),
    checkpoint_minutes: Optional[float] = typer.Option(None, help="also checkpoint after this many minutes since the last one"),
    sample_every: Optional[int] = typer.Option(None, help="steps between sample grids (0: at the end)"),
    val_every: Optional[int] = typer.Option(None, help="steps between validation losses; the best weights go to best/ (0: off)"),
    patience: Optional[int] = typer.Option(None, help="stop after this many validations without improvement (0: never)"),
    select_best: Optional[bool] = typer.Option(None, "--select-best/--no-select-best", help="keep the best weights on validation (default: per family)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="model config field, KEY=VALUE (repeatable)"),
    tokenizer: Optional[str] = typer.Option(None, help="text data: char (default) or bpe, trained on the training split"),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="text data: BPE vocabulary size (default 2048)"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="evaluate the model when training ends"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training step (gpt; needs a C++ compiler on CPU)"),
) -> None:
    """Train a FAMILY on a dataset; writes a checkpoint, samples, metrics.jsonl and loss.png.

    Preemption-safe: SIGTERM or Ctrl-C finishes the step, writes a checkpoint and exits; re-running
    the same command with --resume continues exactly where it stopped (or starts fresh when the
    run folder has no checkpoint yet)."""
    from genzoo import api
    from genzoo.train import Preempted, has_checkpoint

    try:
        out_dir = out_dir or Path("runs") / f"{family}-{data.replace(':', '-').replace('/', '_')}"
        settings = dict(
            steps=steps, minutes=minutes, batch_size=batch_size, grad_accum=grad_accum, lr=lr, seed=seed, device=device,
            precision=precision, checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
            sample_every=sample_every, ema_decay=ema_decay, val_every=val_every, patience=patience, select_best=select_best,
            compile=compile_ or None,
        )
        if resume and _is_main_process():
            if has_checkpoint(out_dir):
                console.print(f"resuming {out_dir} from its last checkpoint")
            else:
                console.print(f"--resume: {out_dir} has no checkpoint yet; starting fresh")
        _, summary = api.train(family, data, variant=variant, out=out_dir, resume=resume, model_overrides=api.parse_assignments(set_),
                               tokenizer=tokenizer, vocab_size=vocab_size, **settings)
    except Preempted as e:
        console.print(str(e))
        raise typer.Exit(128 + e.signum)
    except GenzooError as e:
        _fail(e)
    except KeyboardInterrupt:
        console.print(f"interrupted; the last checkpoint is in {out_dir}/checkpoint — continue with --resume")
        raise typer.Exit(130)
    from genzoo.train import distributed

    distributed.shutdown()  # under torchrun: every rank leaves together; evaluation runs on rank 0 alone
    if not _is_main_process():
        return
    out.print(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s) -> {out_dir}")
    if "best_step" in summary:
        out.print(f"best validation loss {summary['best_val_loss']:.4f} at step {summary['best_step']}: {out_dir}/best is what eval and sample use")
    if evaluate:
        _evaluate_and_print(out_dir, n=1000, sampler_opts={}, nll=True, nll_opts={})


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _sampler_options(model, opt: list[str] | None, **named) -> dict:
    """The named sampler flags that were given plus ``--opt KEY=VALUE`` items, checked against the family's options."""
    from genzoo import api

    given = {k: v for k, v in named.items() if v is not None}
    given.update(api.parse_assignments(opt))
    allowed = type(model).sampler_options()
    bad = set(given) - set(allowed)
    if bad:
        valid = ", ".join(f"--{k}" if k in ("sampler", "steps", "guidance", "temperature") else f"--opt {k}=..." for k in allowed) or "none"
        raise GenzooError(f"{model.family} sampling has no option(s) {sorted(bad)}; its options: {valid}")
    return given


@app.command()
def sample(
    run: Path = typer.Argument(..., help="run or checkpoint folder"),
    n: int = typer.Option(64, "--n", help="number of samples"),
    sampler: Optional[str] = typer.Option(None, help="sampler, e.g. ddpm, ddim, dpmpp2m (diffusion)"),
    steps: Optional[int] = typer.Option(None, help="sampler steps"),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance scale"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    condition: Optional[int] = typer.Option(None, help="class label to condition on"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="text prompt for a text-to-image model, e.g. 'a handwritten seven' (add --guidance 3 for classifier-free guidance)"),
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="other sampler option KEY=VALUE"),
    seed: int = typer.Option(0, help="random seed (same seed, same samples)"),
    device: str = typer.Option("cpu"),
    output: Path = typer.Option(Path("samples.png"), "--output", "-o", help="PNG grid (images) or plot (points); its manifest (.json) and raw samples (.npy) go beside it"),
    save_array: Optional[Path] = typer.Option(None, "--save-npy", help="also save the raw samples as .npy here"),
    store: Optional[str] = typer.Option(None, "--store", help="record into this store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record this generation in the store"),
) -> None:
    """Draw samples from a trained model; write them as a PNG with a provenance manifest (.json) and the raw samples (.npy) beside it."""
    from genzoo.runs import manifest as provenance
    from genzoo.models.base import SAMPLE
    from genzoo.viz.samples import save_samples

    try:
        if n < 1:
            raise GenzooError("--n must be at least 1")
        if output.suffix.lower() in (".json", ".npy"):
            raise GenzooError(f"-o names the picture (e.g. grid.png); the manifest (.json) and the raw samples (.npy) are written beside it, got {output}")
        model, checkpoint = provenance.load_checkpoint(run, device)
        if SAMPLE not in model.capabilities:
            raise GenzooError(f"{model.family} cannot sample")
        options = _sampler_options(model, opt, sampler=sampler, steps=steps, guidance=guidance, temperature=temperature)
        if prompt is not None:
            if condition is not None:
                raise GenzooError("give --condition (a class label) or --prompt (text), not both")
            if not getattr(model.config, "text_encoder", ""):
                raise GenzooError(f"this {model.family} model was not trained on text: train a text-to-image model with "
                                  "`genzoo train diffusion --data captioned-digits`, or sample with --condition LABEL")
            condition = prompt
        if condition is not None:
            model.check_condition(condition, n)  # refuses clearly when the model takes no labels (or no text)
        gen = provenance.generate(model, n, seed=seed, condition=condition, checkpoint=checkpoint, device=device, **options)
        manifest_path, array_path = output.with_suffix(".json"), output.with_suffix(".npy")
        output.parent.mkdir(parents=True, exist_ok=True)
        save_samples(gen.outputs, output, model.data_spec)
        provenance.write_array(array_path, gen.outputs)
        if save_array:
            provenance.write_array(save_array, gen.outputs)
        # the manifest goes last: where one exists, the files it names are complete
        provenance.write_manifest(manifest_path, {**gen.manifest, "image": output.name, "array": array_path.name})
        if not no_store:
            from genzoo.tasks import record as recording

            gid, url = recording.record_with(store, lambda s: recording.record_samples(s, gen.manifest, output, model, gen.outputs))
    except GenzooError as e:
        _fail(e)
    out.print(f"wrote {n} samples to {output}", soft_wrap=True, markup=False)
    out.print(f"manifest: {manifest_path} (raw samples: {array_path}); replay it with `genzoo reproduce {manifest_path}`", soft_wrap=True, markup=False)
    if not no_store:
        out.print(f"recorded as generation {gid} in {url}; replay it with `genzoo reproduce {gid}`", soft_wrap=True, markup=False)


@app.command()
def reproduce(
    manifest: str = typer.Argument(..., help="manifest .json that `genzoo sample` wrote beside its PNG, or a generation id from the store"),
    device: Optional[str] = typer.Option(None, help="replay on this device (default: the recorded one; bit-identity is only promised there)"),
    checkpoint: Optional[Path] = typer.Option(None, help="use this checkpoint folder instead of the recorded one (if the run moved); its sha256 must match"),
    store: Optional[str] = typer.Option(None, "--store", help="the store a generation id refers to (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Regenerate the samples a manifest or a stored generation records and say whether they are bit-identical (exit code 1 if not)."""
    from genzoo.runs import manifest as provenance
    from genzoo.tasks import record as recording

    try:
        if recording.looks_like_id(manifest):
            result, _ = recording.record_with(store, lambda s: recording.reproduce_generation(s, int(manifest), device=device, checkpoint=checkpoint))
        else:
            result = provenance.reproduce(Path(manifest), checkpoint=checkpoint, device=device)
    except GenzooError as e:
        _fail(e)

    def say(text: str) -> None:
        out.print(text, soft_wrap=True, markup=False, highlight=False)

    say(f"checkpoint {result['checkpoint']}: sha256 {result['checkpoint_sha256']} matches the manifest")
    for name, (was, now) in result["version_changes"].items():
        say(f"note: generated with {name} {was}, now {now}")
    for note in result["notes"]:
        say(f"note: {note}")
    if result["identical"]:
        say(f"bit-identical: yes (outputs sha256 {result['outputs_sha256']}, checked against {result['compared_with']})")
        return
    diff = result["max_abs_diff"]
    diff = "unknown (no saved array to measure it)" if diff is None else f"{diff:.6g}"
    say(f"NOT bit-identical: max |diff| = {diff} (outputs sha256 {result['outputs_sha256']}, recorded {result['recorded_sha256']})")
    raise typer.Exit(1)


@app.command()
def generate(
    run: Path = typer.Argument(..., help="a text model's run/checkpoint folder, or a local Hugging Face Llama/Mistral/Qwen2 folder"),
    prompt: List[str] = typer.Argument(None, help="prompt(s) to continue (none: start a new document)"),
    max_tokens: int = typer.Option(100, "--max-tokens", help="new tokens at most"),
    temperature: float = typer.Option(1.0, help="0: greedy"),
    greedy: bool = typer.Option(False, "--greedy", help="the most likely token each step (temperature 0)"),
    top_k: int = typer.Option(0, "--top-k", help="keep the k most likely tokens (0: off)"),
    top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass (1: off)"),
    min_p: float = typer.Option(0.0, "--min-p", help="drop tokens below min_p x the top probability"),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty"),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="stop string (repeatable)"),
    seed: int = typer.Option(0, help="random seed (same seed, same text)"),
    regex: Optional[str] = typer.Option(None, help="constrain the output to this regular expression"),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="constrain the output to this JSON schema (file)"),
    grammar: Optional[Path] = typer.Option(None, help="constrain the output to this Lark grammar (file)"),
    verify: Optional[str] = typer.Option(None, help="verifier in the loop: python (the output must parse)"),
    attempts: int = typer.Option(8, help="verifier: attempts at most"),
    device: str = typer.Option("cpu"),
    store: Optional[str] = typer.Option(None, "--store", help="record into this store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the generated text in the store"),
) -> None:
    """Continue a prompt with a text model, streamed token by token; optionally constrained or verified."""
    from genzoo.tasks import textgen

    try:
        if greedy:
            temperature = 0.0
        if sum(x is not None for x in (regex, json_schema, grammar)) > 1:
            raise GenzooError("give at most one of --regex, --json-schema, --grammar")
        model, tokenizer = textgen.load_text_model(run, device)
        options = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                       repetition_penalty=repetition_penalty, stop=stop, regex=regex,
                       json_schema=_read_text_file(json_schema, "JSON schema"), grammar=_read_text_file(grammar, "grammar"))
        prompts = list(prompt or [""])
        if verify:
            if len(prompts) != 1:
                raise GenzooError("--verify takes one prompt")
            result = textgen.generate_checked(model, tokenizer, prompts[0], verify, attempts, seed=seed, **options)
            out.print(result.text, markup=False, highlight=False, soft_wrap=True)
            if not no_store:  # the checked text holds the prompt; the attempt that passed used seed + attempts - 1
                _record_texts(store, run, model, [prompts[0]], [result.text[len(prompts[0]):]], seed + result.attempts - 1, options)
            console.print(f"verifier {verify}: {'passed' if result.ok else 'FAILED'} after {result.attempts} attempt(s) of {attempts}")
            if not result.ok:
                raise typer.Exit(1)
            return
        streamed = _TokenStream(tokenizer, prompts[0]) if len(prompts) == 1 else None
        results = textgen.generate_text(model, tokenizer, prompts, seed=seed, on_token=streamed, **options)
    except GenzooError as e:
        _fail(e)
    if streamed:
        streamed.finish(results[0].text)
    else:
        for p, r in zip(prompts, results):
            out.print(p + r.text, markup=False, highlight=False, soft_wrap=True)
    if not no_store:  # after the text is out: the note goes to stderr on a line of its own
        try:
            _record_texts(store, run, model, prompts, [r.text for r in results], seed, options)
        except GenzooError as e:
            _fail(e)
    console.print(f"[{', '.join(f'{len(r.ids)} tokens, {r.stop_reason}' for r in results)}]")


def _record_texts(store, run, model, prompts, texts, seed, options) -> None:
    """Record each prompt's continuation; a batch of prompts replays as one prompt each (same seed)."""
    from genzoo.tasks import record as recording

    def write(s):
        return [recording.record_text(s, recording.text_manifest(run, model, p, t, seed, options), t, model) for p, t in zip(prompts, texts)]

    ids, url = recording.record_with(store, write)
    console.print(f"recorded as generation(s) {', '.join(map(str, ids))} in {url}", markup=False, highlight=False)


class _TokenStream:
    """Prints a generation as it grows: decodes the tokens so far and writes what is new (a byte-level
    token can end inside a character, so decoding token by token would garble it)."""

    def __init__(self, tokenizer, prompt: str):
        from genzoo.tasks.textgen import visible_text

        self.decode, self.prompt, self.ids, self.shown = visible_text(tokenizer), prompt, [], ""

    def __call__(self, row: int, token: int) -> None:
        if not self.ids:
            print(self.prompt, end="", flush=True)  # only once generation has started (bad options fail first)
        self.ids.append(token)
        text = self.decode(self.ids)
        if not text.endswith("\ufffd") and text.startswith(self.shown):
            print(text[len(self.shown):], end="", flush=True)
            self.shown = text

    def finish(self, final: str) -> None:
        if not self.ids:
            print(self.prompt, end="")
        if final.startswith(self.shown):  # the tail (a stop string is cut from the final text)
            print(final[len(self.shown):], end="")
        print(flush=True)


def _read_text_file(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as e:
        raise GenzooError(f"cannot read the {what} file {path}: {e}") from e


@app.command()
def finetune(
    base: Path = typer.Argument(..., help="a text model's run/checkpoint folder, or a local Hugging Face Llama/Mistral/Qwen2 folder"),
    data: str = typer.Option(..., "--data", "-d", help="text to fine-tune on: a .txt/.md/.jsonl file or a folder of .txt/.md files"),
    lora_rank: int = typer.Option(8, "--lora-rank", help="rank of each adapter"),
    lora_alpha: float = typer.Option(16.0, "--lora-alpha", help="adapter scale alpha (the update is alpha/rank * B A)"),
    lora_dropout: float = typer.Option(0.0, "--lora-dropout", help="dropout on the adapters' input"),
    targets: str = typer.Option("attention,mlp", help="layers to adapt: attention, mlp, or layers such as attn.qkv (comma-separated)"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock training budget"),
    lr: float = typer.Option(1e-3, help="peak learning rate of the adapters"),
    batch_size: int = typer.Option(16, "--batch-size", help="windows per step"),
    window: Optional[int] = typer.Option(None, help="tokens per training window (default: the model's context, at most 256)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="adapter folder (default runs/finetune-BASE)"),
    merge: bool = typer.Option(False, "--merge", help="also write the merged full model to OUT/merged (for genzoo generate)"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
) -> None:
    """Fine-tune a text model on your text with LoRA adapters; writes only the adapter (base untouched)."""
    from genzoo.tasks.finetune import finetune as run_finetune

    try:
        if steps is None and minutes is None:
            raise GenzooError("give a budget: --steps N or --minutes M")
        result = run_finetune(base, data, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, targets=targets,
                              steps=steps, minutes=minutes, lr=lr, batch_size=batch_size, out=out_dir, merge=merge,
                              seed=seed, device=device, window=window)
    except GenzooError as e:
        _fail(e)

    def say(text: str) -> None:
        out.print(text, soft_wrap=True, markup=False, highlight=False)

    share = result.trainable_parameters / max(1, result.total_parameters)
    say(f"fine-tuned {result.steps} steps in {result.seconds:.1f} s; trainable {result.trainable_parameters:,} of "
        f"{result.total_parameters:,} parameters ({100 * share:.2f}%)")
    say(f"validation loss (nats/token): {result.val_loss_before:.4f} before -> {result.val_loss_after:.4f} after")
    say(f"adapter: {result.out}/adapter_model.safetensors (+ adapter_config.json)")
    if result.merged:
        say(f"merged model: {result.merged} (try `genzoo generate {result.merged} \"...\"`)")


MASKS = ("top-half", "left-half", "bottom-half", "center")


def observed_mask(kind: str, shape: tuple[int, ...]):
    """True where a pixel is given; the model fills in the rest."""
    import torch

    c, h, w = shape
    m = torch.zeros(1, c, h, w, dtype=torch.bool)
    if kind == "top-half":
        m[..., : h // 2, :] = True
    elif kind == "left-half":
        m[..., :, : w // 2] = True
    elif kind == "bottom-half":
        m[..., h // 2 :, :] = True
    elif kind == "center":  # everything but a centre square
        m[:] = True
        m[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = False
    else:
        raise GenzooError(f"unknown mask {kind!r}; valid masks: {', '.join(MASKS)}")
    return m


def _model_and_test_images(run: Path, capability: str, verb: str):
    """The run's model, checked for ``capability``, and the test split of the images it was trained on."""
    from genzoo import api
    from genzoo.data import load_dataset

    model = api.load(run)
    if capability not in model.capabilities:
        raise GenzooError(f"{model.family} cannot {verb}; families that can: see `genzoo list` (capability '{capability}')")
    test = load_dataset(api.run_data(run, model), "test")
    if test.kind != "image":
        raise GenzooError(f"{verb} works on images; this model was trained on {test.kind}")
    return model, test


@app.command()
def complete(
    run: Path = typer.Argument(..., help="run or checkpoint folder of a model that can complete images"),
    given: str = typer.Option("top-half", help=f"which part is observed: {', '.join(MASKS)}"),
    images: int = typer.Option(8, help="how many test images to complete"),
    per_image: int = typer.Option(4, help="completions drawn per image"),
    temperature: Optional[float] = typer.Option(None),
    seed: int = typer.Option(0),
    output: Path = typer.Option(Path("completions.png"), "--output", "-o"),
) -> None:
    """Fill in a partly observed test image; rows: the original, then completions."""
    import torch

    from genzoo.models.base import COMPLETE
    from genzoo.viz.samples import save_image_grid

    try:
        model, test = _model_and_test_images(run, COMPLETE, "complete images")
        x = test.x[:images]
        mask = observed_mask(given, test.shape).expand_as(x)
        options = {"temperature": temperature} if temperature is not None else {}
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            filled = [model.complete(x, mask, generator=g, **options) for _ in range(per_image)]
        shown = torch.where(mask, x, torch.zeros_like(x))
        rows = torch.stack([x, shown, *filled], 1).flatten(0, 1)  # per image: original, observed, completions
        save_image_grid(rows, output, levels=model.data_spec.get("levels"), nrow=per_image + 2)
    except GenzooError as e:
        _fail(e)
    out.print(f"wrote {images} x {per_image} completions to {output} (each row: original, observed part, completions)")


@app.command()
def translate(
    run: Path = typer.Argument(..., help="run or checkpoint folder of a model that can translate (cyclegan)"),
    source: str = typer.Option(..., "--from", help="domain of the input images: A or B"),
    n: int = typer.Option(32, "--n", help="how many test images of that domain"),
    output: Path = typer.Option(Path("translations.png"), "--output", "-o"),
) -> None:
    """Translate test images of one domain into the other; rows: inputs, translations, round trips."""
    from genzoo.tasks.translate import translate_run

    try:
        done = translate_run(run, source, output, n)
    except GenzooError as e:
        _fail(e)
    out.print(f"wrote {done['images']} {done['from']} images, their translations and round trips to {done['grid']} "
              f"(mean round-trip error {done['cycle_error_levels']} levels per pixel)")


@app.command()
def interpolate(
    run: Path = typer.Argument(..., help="run or checkpoint folder of a model that can interpolate (the flows)"),
    pair: Optional[List[str]] = typer.Option(None, "--pair", help="two test-image indices A,B (repeatable; default 0,1 2,3 4,5 6,7)"),
    steps: int = typer.Option(10, help="images per row, both ends included"),
    method: str = typer.Option("slerp", help="slerp or linear"),
    output: Path = typer.Option(Path("interpolation.png"), "--output", "-o"),
) -> None:
    """Decode the latent path between two test images; one row per pair."""
    import torch

    from genzoo.models.base import INTERPOLATE
    from genzoo.viz.samples import save_image_grid

    try:
        model, test = _model_and_test_images(run, INTERPOLATE, "interpolate")
        pairs = [_index_pair(p, len(test.x)) for p in (pair or ["0,1", "2,3", "4,5", "6,7"])]
        with torch.no_grad():
            rows = [model.interpolate(test.x[a], test.x[b], steps, method=method) for a, b in pairs]
        save_image_grid(torch.cat(rows), output, levels=model.data_spec.get("levels"), nrow=steps)
    except GenzooError as e:
        _fail(e)
    out.print(f"wrote {len(pairs)} interpolations of {steps} images to {output}")


def _index_pair(text: str, n: int) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise GenzooError(f"--pair takes two test-image indices like 3,17; got {text!r}") from None
    if not (0 <= a < n and 0 <= b < n):
        raise GenzooError(f"--pair indices must lie in 0..{n - 1}; got {text!r}")
    return a, b


def _evaluate_and_print(run: Path, n: int, sampler_opts: dict, nll: bool, nll_opts: dict, seed: int = 0, model=None) -> dict:
    from genzoo import api
    from genzoo.core.atomic import write_atomic_file
    from genzoo.runs.checkpoint import run_root
    from genzoo.eval import evaluate, format_report

    model = model or api.load(run)
    info = api.run_info(run)
    data_name = info.get("run", {}).get("data") or model.data_spec["name"]
    metrics = evaluate(model, data_name, n_samples=n, sampler_options=sampler_opts, nll=nll, nll_options=nll_opts, seed=seed, progress=True)
    metrics = {"family": model.family, **metrics}  # evaluate reports data and parameters itself
    if "train_seconds" in info:
        metrics["train_seconds"], metrics["trained_steps"] = info["train_seconds"], info["trained_steps"]
    ckpt = Path(info["checkpoint"])
    metrics["weights"] = ckpt.name
    if "selected" in info:
        metrics["selected_step"] = info["selected"]["step"]
    root = run_root(ckpt)
    # eval.json describes the weights a run's eval/sample use by default; other folders get their own file
    name = "eval.json" if _default_weights(root) == ckpt else f"eval_{ckpt.name}.json"
    write_atomic_file(root / name, json.dumps(metrics, indent=2))
    out.print(format_report(metrics))
    return metrics


def _default_weights(root: Path) -> Path | None:
    from genzoo.runs.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(root)
    except GenzooError:
        return None


@app.command("eval")
def eval_cmd(
    run: Path = typer.Argument(..., help="run or checkpoint folder"),
    n: int = typer.Option(1000, "--n", help="samples for sample-quality metrics"),
    sampler: Optional[str] = typer.Option(None),
    steps: Optional[int] = typer.Option(None),
    guidance: Optional[float] = typer.Option(None),
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="sampler option KEY=VALUE"),
    nll: bool = typer.Option(True, "--nll/--no-nll", help="test-set likelihood where the family has one"),
    nll_opt: Optional[List[str]] = typer.Option(None, "--nll-opt", help="likelihood option KEY=VALUE, e.g. k=1000"),
    seed: int = typer.Option(0),
) -> None:
    """Measure a trained model: NLL, FD_digits, precision/recall, ... beside the real-vs-real floor."""
    from genzoo import api

    try:
        model = api.load(run)
        options = _sampler_options(model, opt, sampler=sampler, steps=steps, guidance=guidance)
        _evaluate_and_print(run, n, options, nll, api.parse_assignments(nll_opt), seed, model=model)
    except GenzooError as e:
        _fail(e)


@app.command()
def info(run: Path = typer.Argument(..., help="run or checkpoint folder")) -> None:
    """What a run holds: family, config, training progress, last metrics, evaluation."""
    from genzoo import api

    try:
        out.print_json(json.dumps(api.run_info(run), default=str))
    except GenzooError as e:
        _fail(e)


@app.command()
def dedup(
    data: Optional[str] = typer.Argument(None, help="dataset: pydocs, pycode, digits, a .txt / .jsonl file, a folder, a .npy / .npz; with --store: the store (path or postgresql:// URL; default $GENZOO_STORE or ~/.genzoo/store.db)"),
    threshold: Optional[float] = typer.Option(None, help="near-duplicate threshold: Jaccard for text (default 0.8), cosine for images (0.99 of pixels; with --store 0.998 of stored features)"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="write the kept items here (.jsonl / .txt for text, .npz for images); `genzoo train --data` reads it"),
    unit: str = typer.Option("word", help="text shingles: word or char"),
    k: int = typer.Option(5, help="text shingle size (words or characters)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    in_store: bool = typer.Option(False, "--store", help="report duplicates among the stored generations you may see (read-only)"),
    kind: str = typer.Option("text", "--kind", help="with --store: text (MinHash) or image (cosine of stored image vectors)"),
) -> None:
    """Report exact and near-duplicate items in a dataset (optionally write a cleaned copy), or with --store among stored generations."""
    from genzoo.cli.dedup import print_report, run_dedup

    try:
        if in_store:
            from genzoo.cli.dedup import print_store_report, store_dedup

            report = store_dedup(data, kind=kind, threshold=threshold, out=out_path)
            print_store_report(report, out, as_json)
            return
        if data is None:
            raise GenzooError("give the data to dedup (e.g. `genzoo dedup pydocs`), or --store for the stored generations")
        if kind != "text":
            raise GenzooError("--kind selects what to compare among stored generations: add --store (a dataset's kind is its own)")
        report = run_dedup(data, threshold=threshold, out=out_path, unit=unit, k=k)
    except GenzooError as e:
        _fail(e)
    print_report(report, out, as_json)


@app.command()
def bench(
    data: str = typer.Option("digits", "--data", "-d"),
    minutes: Optional[float] = typer.Option(None, help="training budget per family"),
    steps: Optional[int] = typer.Option(None, help="training steps per family (instead of --minutes)"),
    families_: Optional[str] = typer.Option(None, "--families", help="comma-separated FAMILY[:VARIANT][[KEY=VALUE,...]] (default: every registered family that handles the data); e.g. 'diffusion,diffusion\\[backbone=dit]'"),
    out_dir: Path = typer.Option(Path("bench_runs"), "--out", "-o"),
    n: int = typer.Option(1000, "--n", help="samples for sample-quality metrics"),
    nll_opt: Optional[List[str]] = typer.Option(None, "--nll-opt", help="FAMILY.KEY=VALUE likelihood option, e.g. vae.k=1000"),
    sample_opt: Optional[List[str]] = typer.Option(None, "--sample-opt", help="FAMILY.KEY=VALUE sampler option, e.g. diffusion.steps=50"),
    seed: int = typer.Option(0),
) -> None:
    """Train every family on the same data with the same budget; write a Markdown/JSON table and an HTML report."""
    from genzoo.bench import run_bench
    from genzoo.bench.runner import split_entries

    try:
        if minutes is None and steps is None:
            raise GenzooError("give a budget per family: --minutes M or --steps N")
        names = split_entries(families_) if families_ else None
        report = run_bench(
            data, families=names, minutes=minutes, steps=steps, out_dir=out_dir, n_samples=n,
            nll_options=_per_family(nll_opt), sample_options=_per_family(sample_opt), seed=seed,
        )
    except GenzooError as e:
        _fail(e)
    out.print(report["markdown"], markup=False)  # entries like diffusion[backbone=dit] are not Rich markup
    out.print(f"report: {out_dir / 'report.html'}  table: {out_dir / 'results.md'}, {out_dir / 'results.json'}")


@app.command()
def search(
    query: str = typer.Argument(..., help="words to look for (an empty string lists the newest records)"),
    mode: str = typer.Option("auto", help="hybrid, keyword or vector; auto: hybrid when the embedding model is installed, else keyword"),
    k: int = typer.Option(10, "--k", help="results to show"),
    fusion: str = typer.Option("rrf", help="hybrid fusion: rrf (reciprocal rank, k=60) or weighted"),
    alpha: float = typer.Option(0.5, help="weighted fusion: weight of the vector side"),
    model: Optional[str] = typer.Option(None, help="only this model (name)"),
    family: Optional[str] = typer.Option(None, help="only this family"),
    user: Optional[str] = typer.Option(None, help="only this user's records"),
    kind: Optional[str] = typer.Option(None, help="text, image, points or array"),
    since: Optional[str] = typer.Option(None, help="recorded at or after (ISO 8601, e.g. 2025-01-31)"),
    until: Optional[str] = typer.Option(None, help="recorded at or before (ISO 8601)"),
    min_rating: Optional[float] = typer.Option(None, "--min-rating", help="mean feedback rating at least this"),
    synthetic: Optional[bool] = typer.Option(None, "--synthetic/--real", help="only synthetic (model output) or only real records"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
    images: bool = typer.Option(False, "--images", help="search stored digit images by text, ranked by a CLIP (genzoo clip)"),
    clip: Optional[Path] = typer.Option(None, "--clip", help="with --images: a folder from `genzoo clip train` (default: genzoo's cached CLIP)"),
) -> None:
    """Search the generation store: keyword (BM25), vector (all-MiniLM-L6-v2) or both fused, with filters;
    --images: digit images by text."""
    from genzoo.cli.search import run_search

    try:
        table = run_search(query, store_path=store, mode=mode, k=k, fusion=fusion, alpha=alpha, model=model, family=family,
                           user=user, kind=kind, since=since, until=until, min_rating=min_rating, synthetic=synthetic,
                           images=images, clip=clip)
    except GenzooError as e:
        _fail(e)
    out.print(table)


rag_app = typer.Typer(no_args_is_help=True, help="Retrieval-augmented generation over documents indexed in the store.")
app.add_typer(rag_app, name="rag")

from genzoo.cli.t5 import t5_app  # noqa: E402  (T5 fine-tune / generate; imports torch only when run)

app.add_typer(t5_app, name="t5")

from genzoo.cli.clip import clip_app  # noqa: E402  (contrastive image-text model; imports torch only when run)

app.add_typer(clip_app, name="clip")

from genzoo.cli.vit import vit_app  # noqa: E402  (ViT digits classifier; imports torch only when run)

app.add_typer(vit_app, name="vit")


@rag_app.command("index")
def rag_index(
    paths: List[Path] = typer.Argument(..., help="files or folders (.txt, .md, .rst, .py; folders recursively)"),
    chunk_chars: int = typer.Option(1000, "--chunk-chars", help="largest chunk, in characters"),
    overlap: int = typer.Option(150, "--overlap", help="characters a chunk repeats from the one before"),
    shared: bool = typer.Option(False, "--shared", help="let every user of the store retrieve these documents"),
    keyword_only: bool = typer.Option(False, "--keyword-only", help="do not embed the chunks (keyword retrieval only)"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Chunk documents (paragraphs, Markdown sections, Python definitions) and index them for keyword + vector retrieval."""
    from genzoo.cli.store_data import run_rag_index

    try:
        out.print(run_rag_index(paths, store_path=store, chunk_chars=chunk_chars, overlap=overlap, shared=shared, keyword_only=keyword_only),
                  markup=False, highlight=False)
    except GenzooError as e:
        _fail(e)


@rag_app.command("ask")
def rag_ask(
    question: str = typer.Argument(..., help="the question"),
    model: Path = typer.Option(..., "--model", help="a genzoo text run folder or a local Hugging Face checkpoint folder"),
    k: int = typer.Option(4, "--k", help="sources to retrieve"),
    mode: str = typer.Option("hybrid", help="retrieval: hybrid, keyword or vector"),
    max_tokens: int = typer.Option(128, "--max-tokens", help="longest answer, in tokens"),
    temperature: float = typer.Option(0.0, help="0: greedy decoding"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the question and answer"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Answer a question from the indexed documents; prints the answer and the sources it used ([1] path:lines)."""
    from genzoo.cli.store_data import format_answer, run_rag_ask

    try:
        answer = run_rag_ask(question, model=model, store_path=store, k=k, mode=mode, max_tokens=max_tokens, temperature=temperature,
                             seed=seed, device=device, no_store=no_store)
    except GenzooError as e:
        _fail(e)
    out.print(format_answer(answer), markup=False, highlight=False)


@app.command("graph")
def graph_cmd(
    node: str = typer.Argument(..., help="TYPE:ID, e.g. generation:12, model:3, document:5 (types: generation, prompt, model, document, chunk, entity)"),
    direction: str = typer.Option("in", help="in: what led to it (prompts, models, documents, parents); out: what it led to"),
    types: Optional[str] = typer.Option(None, help="only these node types, comma-separated"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Walk the store's relationship graph: which prompts, models and documents led to an output, or what a model or document led to."""
    from genzoo.cli.store_data import run_graph

    try:
        out.print(run_graph(node, store_path=store, direction=direction, types=types), markup=False, highlight=False)
    except GenzooError as e:
        _fail(e)


@app.command()
def stats(
    by: str = typer.Option("day", help="day or week"),
    model: Optional[str] = typer.Option(None, help="only this model (name)"),
    png: Optional[Path] = typer.Option(None, "--out", "-o", help="also draw the chart into this PNG"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Usage and feedback over time per model: generations, mean rating, label counts (table, and a PNG chart with -o)."""
    from genzoo.cli.store_data import run_stats

    try:
        out.print(run_stats(store_path=store, by=by, model=model, png=png))
    except GenzooError as e:
        _fail(e)
    if png is not None:
        out.print(f"chart: {png}", markup=False, highlight=False)


@app.command("export")
def export_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="where to write: .jsonl / .parquet for text, .npz for images"),
    rated_min: Optional[float] = typer.Option(None, "--rated-min", help="records whose mean rating is at least this"),
    label: Optional[str] = typer.Option(None, "--label", help="records given this label"),
    include_synthetic: bool = typer.Option(False, "--include-synthetic", help="also export synthetic (model-made) records"),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, parquet or npz (default: from the -o suffix)"),
    store: Optional[str] = typer.Option(None, "--store", help="the store (a file path or a postgresql:// URL; default: $GENZOO_STORE or ~/.genzoo/store.db)"),
) -> None:
    """Export rated or labeled records as a training set that `genzoo train --data` reads (real records only by default)."""
    from genzoo.cli.store_data import run_export

    try:
        out.print(run_export(out_path, store_path=store, rated_min=rated_min, label=label, include_synthetic=include_synthetic, fmt=fmt),
                  markup=False, highlight=False)
    except GenzooError as e:
        _fail(e)


@app.command()
def fill(
    run: Path = typer.Argument(..., help="a bert run or checkpoint, or a local Hugging Face BERT folder with its masked-LM head"),
    texts: List[str] = typer.Argument(..., help='texts with [MASK] where tokens are missing, e.g. "the [MASK] statement"'),
    top_k: int = typer.Option(5, "--top-k", help="candidates shown per [MASK]"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Fill each [MASK] with a BERT's most likely token (and show the top candidates)."""
    from genzoo.cli.bert import run_fill

    try:
        results = run_fill(run, texts, top_k=top_k)
    except GenzooError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps(results))
        return
    for r in results:
        out.print(r["text"])
        for i, cands in enumerate(r["masks"]):
            out.print(f"  [MASK] {i + 1}: " + ", ".join(f"{t!r} {p:.3f}" for t, p in cands))


@app.command()
def embed(
    run: Path = typer.Argument(..., help="a sentence-transformers / Hugging Face BERT folder, or a bert run"),
    texts: Optional[List[str]] = typer.Argument(None, help="texts to embed"),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="a text file: one text per line"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="write the (n, dim) float32 vectors to this .npy"),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise (default: as the folder says; runs: yes)"),
) -> None:
    """Mean-pooled sentence embeddings from genzoo's own BERT (all-MiniLM-L6-v2 matches sentence-transformers)."""
    from genzoo.cli.bert import run_embed

    try:
        items = list(texts or [])
        if file is not None:
            items += [line for line in _read_text_file(file, "--file").splitlines() if line.strip()]
        vectors = run_embed(run, items, out=out_path, normalize=normalize)
    except GenzooError as e:
        _fail(e)
    if out_path is not None:
        out.print(f"{vectors.shape[0]} vectors of {vectors.shape[1]} dims -> {out_path}")
    else:
        for text, v in zip(items, vectors):
            out.print(json.dumps({"text": text, "vector": [round(float(x), 6) for x in v]}))


def _per_family(items: list[str] | None) -> dict[str, dict]:
    """['vae.k=1000', 'diffusion.steps=20'] -> {'vae': {'k': 1000}, 'diffusion': {'steps': 20}}"""
    from genzoo import api

    out: dict[str, dict] = {}
    for item in items or []:
        close = item.find("].") + 1  # an entry with overrides: diffusion[dropout=0.1].steps=20
        family, dot, assignment = (item[:close], ".", item[close + 1:]) if close else item.partition(".")  # family names keep their hyphens (gated-pixelcnn)
        if not dot or not assignment:
            raise GenzooError(f"expected FAMILY.KEY=VALUE, got {item}")
        out.setdefault(family.strip(), {}).update(api.parse_assignments([assignment]))
    return out


def main() -> None:  # pragma: no cover
    try:
        app()
    except GenzooError as e:
        console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
