"""Commands on models and runs: list, adapters, train, sample, reproduce, eval, info, complete, translate,
interpolate, bench. Wherever a run folder is taken, a LoRA adapter folder (`genzoo finetune --out`) is too."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from genzoo.cli.app import DataOption, GenzooTyper, GuardrailsOption, JsonFlag, StoreOption, load_guardrails, note, out, say
from genzoo.core.errors import GenzooError

app = GenzooTyper()


@app.command("list")
def list_cmd(as_json: JsonFlag = False) -> None:
    """Families, their variants, capabilities and sampler options; built-in datasets."""
    from genzoo.data import builtin_names
    from genzoo.registry import families

    if as_json:
        say(json.dumps({"families": {name: {"variants": list(info.variants), "data": list(info.data_kinds),
                                            "default_variant": {kind: info.default_variant_for(kind) for kind in info.data_kinds},
                                            "capabilities": sorted(info.capabilities), "likelihood": info.likelihood,
                                            "sample_options": info.model_class.sampler_options()}
                                     for name, info in sorted(families().items()) if not name.startswith("test-")},
                        "datasets": builtin_names()}, default=str))
        return

    table = Table(title="genzoo families")
    table.add_column("family", no_wrap=True)  # names stay whole at any terminal width
    for col in ("variants", "data", "capabilities", "likelihood", "sample options"):
        table.add_column(col, overflow="fold")
    for name, info in sorted(families().items()):
        if name.startswith("test-"):
            continue
        opts = ", ".join(f"{k}={v}" for k, v in info.model_class.sampler_options().items())
        variants = ", ".join(info.variants) + "".join(f"; {v} by default on {k}" for k, v in info.default_variants.items())
        table.add_row(name, variants, ", ".join(info.data_kinds), ", ".join(sorted(info.capabilities)), info.likelihood or "-", opts)
    out.print(table)
    say("datasets: " + ", ".join(builtin_names()) + ", or a path to a folder of images / .npy / .npz")


@app.command("adapters")
def adapters_cmd(
    base: Annotated[Path, typer.Argument(help="a base model folder (run, checkpoint or Hugging Face folder)")],
    as_json: JsonFlag = False,
) -> None:
    """The LoRA adapters fine-tuned from BASE: adapter folders beside it (under its parent folder) that name it.
    Use one with `genzoo generate ADAPTER_DIR "..."` or `genzoo generate BASE --adapter NAME "..."`."""
    from genzoo.runs.adapters import find_adapters

    found = find_adapters(base)
    if as_json:
        say(json.dumps(found))
        return
    if not found:
        say(f"no adapters over {base}; fine-tune one: genzoo finetune {base} --data FILE --out DIR")
        return
    table = Table(title=f"adapters over {base}")
    for col in ("name", "rank", "steps", "data", "base"):
        table.add_column(col, overflow="fold")
    for a in found:
        table.add_row(a["name"], str(a["rank"]), str(a["steps"] if a["steps"] is not None else "-"), str(a["data"] or "-"),
                      "ok" if a["ok"] else "CHANGED (fine-tune again)")
    out.print(table)
    say(f"use one: genzoo generate {base} --adapter NAME \"...\" (or genzoo generate ADAPTER_DIR \"...\")")


def _run_info(run: Path) -> dict:
    """``api.run_info``, or for an adapter folder what it holds (``genzoo.runs.adapters.run_info``)."""
    from genzoo import api
    from genzoo.core.folders import is_adapter

    if is_adapter(run):
        from genzoo.runs.adapters import run_info

        return run_info(run)
    return api.run_info(run)


def train(
    family: Annotated[str, typer.Argument(help="model family (see `genzoo list`)")],
    data: DataOption = "digits",
    variant: Annotated[Optional[str], typer.Option(help="family variant")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="run folder (default runs/FAMILY-DATA)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its last checkpoint (none yet: start fresh)")] = False,
    set_: Annotated[Optional[List[str]], typer.Option("--set", help="model config field, KEY=VALUE (repeatable)")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(help="text data: char (default) or bpe, trained on the training split")] = None,
    vocab_size: Annotated[Optional[int], typer.Option("--vocab-size", help="text data: BPE vocabulary size (default 2048)")] = None,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="evaluate the model when training ends")] = True,
    target: Annotated[Optional[str], typer.Option("--target", help="table data: the column ML efficacy predicts")] = None,
    **settings,  # the TrainConfig fields with a "help": see _with_train_options
) -> None:
    """Train a FAMILY on a dataset; writes a checkpoint, samples, metrics.jsonl and loss.png.

    Preemption-safe: SIGTERM or Ctrl-C finishes the step, writes a checkpoint and exits; re-running
    the same command with --resume continues exactly where it stopped (or starts fresh when the
    run folder has no checkpoint yet)."""
    from genzoo import api
    from genzoo.train import Preempted, has_checkpoint

    out_dir = out_dir or Path("runs") / f"{family}-{data.replace(':', '-').replace('/', '_')}"
    from genzoo.cli import tables

    data = tables.train_data(data, target)  # a table: --target rides in its name; its schema is shown first
    try:
        if resume and _is_main_process():
            if has_checkpoint(out_dir):
                note(f"resuming {out_dir} from its last checkpoint")
            else:
                note(f"--resume: {out_dir} has no checkpoint yet; starting fresh")
        _, summary = api.train(family, data, variant=variant, out=out_dir, resume=resume, model_overrides=api.parse_assignments(set_),
                               tokenizer=tokenizer, vocab_size=vocab_size, **settings)
    except Preempted as e:
        note(str(e))
        raise typer.Exit(128 + e.signum)
    except KeyboardInterrupt:
        note(f"interrupted; the last checkpoint is in {out_dir}/checkpoint — continue with --resume")
        raise typer.Exit(130)
    from genzoo.train import distributed

    distributed.shutdown()  # under torchrun: every rank leaves together; evaluation runs on rank 0 alone
    if not _is_main_process():
        return
    say(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s) -> {out_dir}")
    if "privacy" in summary:
        p = summary["privacy"]
        say(f"differential privacy: epsilon {p['epsilon']:.3f} spent of {p['epsilon_target']} (delta {p['delta']:.2g}, "
            f"noise multiplier {p['noise_multiplier']:.3f}, clip {p['max_grad_norm']}) -> {out_dir}/privacy.json")
    if "best_step" in summary:
        say(f"best validation loss {summary['best_val_loss']:.4f} at step {summary['best_step']}: {out_dir}/best is what eval and sample use")
    if evaluate:
        _evaluate_and_print(out_dir, n=1000, sampler_opts={}, nll=True, nll_opts={})


def _with_train_options(command):
    """Give ``command`` one option per TrainConfig field that has a "help" (its flag, type and help
    come from the dataclass, so the command line never lists them again). Default None: the
    family's own default for the data applies (``api.train_config_for``)."""
    import inspect

    from genzoo.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    sig = inspect.signature(command, eval_str=True)  # real annotations: typer reads a preset signature as it is
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for f in dataclasses.fields(TrainConfig):
        if "help" not in f.metadata:
            continue
        kind = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        decl = f"{flag}/--no-{f.name.replace('_', '-')}" if kind is bool else flag
        annotation = Annotated[Optional[kind], typer.Option(decl, help=f.metadata["help"])]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    command.__signature__ = sig.replace(parameters=params)
    return command


app.command()(_with_train_options(train))


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
    run: Path = typer.Argument(..., help="run, checkpoint or adapter folder"),
    n: int = typer.Option(64, "--n", help="number of samples"),
    sampler: Optional[str] = typer.Option(None, help="sampler, e.g. ddpm, ddim, dpmpp2m (diffusion)"),
    steps: Optional[int] = typer.Option(None, help="sampler steps"),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance scale"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    condition: Optional[str] = typer.Option(None, help="class label to condition on, or COLUMN=VALUE for a table model (e.g. income='>50K')"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="text prompt for a text-to-image model, e.g. 'a handwritten seven' (add --guidance 3 for classifier-free guidance)"),
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="other sampler option KEY=VALUE"),
    seed: int = typer.Option(0, help="random seed (same seed, same samples)"),
    device: str = typer.Option("cpu"),
    output: Path = typer.Option(Path("samples.png"), "--output", "-o", help="PNG grid (images) or plot (points); its manifest (.json) and raw samples (.npy) go beside it"),
    save_array: Optional[Path] = typer.Option(None, "--save-npy", help="also save the raw samples as .npy here"),
    store: StoreOption = None,
    no_store: bool = typer.Option(False, "--no-store", help="do not record this generation in the store"),
    guardrails: GuardrailsOption = None,
    in_range: bool = typer.Option(False, "--in-range", help="chorale models: keep every voice in its range (genzoo.data.chorales.RANGES) by constrained decoding"),
) -> None:
    """Draw samples from a trained model; write them as a PNG with a provenance manifest (.json) and the raw samples (.npy) beside it."""
    from genzoo.runs import manifest as provenance
    from genzoo.models.base import SAMPLE
    from genzoo.viz.samples import save_samples

    if n < 1:
        raise GenzooError("--n must be at least 1")
    if output.suffix.lower() in (".json", ".npy"):
        raise GenzooError(f"-o names the picture (e.g. grid.png); the manifest (.json) and the raw samples (.npy) are written beside it, got {output}")
    model, checkpoint = provenance.load_checkpoint(run, device)
    if SAMPLE not in model.capabilities:
        raise GenzooError(f"{model.family} cannot sample")
    if model.data_spec.get("kind") == "tokens" and model.data_spec.get("name") != "chorales":
        raise GenzooError(f"{run} is a text model: `genzoo generate {run}` writes text (with no prompt it starts new "
                          "documents); `genzoo sample` draws images, points, audio, tables and chorales")
    options = _sampler_options(model, opt, sampler=sampler, steps=steps, guidance=guidance, temperature=temperature)
    from genzoo.cli import tables

    if tables.is_table_model(model):  # rows as a CSV; --condition COLUMN=VALUE
        output = tables.csv_output(output)
    elif condition is not None:
        condition = tables.class_label(condition)
    if prompt is not None:
        if condition is not None:
            raise GenzooError("give --condition (a class label) or --prompt (text), not both")
        if not getattr(model.config, "text_encoder", ""):
            raise GenzooError(f"this {model.family} model was not trained on text: train a text-to-image model with "
                              "`genzoo train diffusion --data captioned-digits`, or sample with --condition LABEL")
        condition = prompt
    if condition is not None:
        model.check_condition(condition, n)  # refuses clearly when the model takes no labels (or no text)
    policy = load_guardrails(guardrails)
    if in_range:  # a sampler option of the chorale GPT: recorded in the manifest, so reproduce replays it
        if model.data_spec.get("name") != "chorales":
            raise GenzooError(f"--in-range keeps the voices of a chorale model in range; {run} was trained on "
                              f"{model.data_spec.get('name') or 'other data'}: drop --in-range")
        options["in_range"] = True
    gen = provenance.generate(model, n, seed=seed, condition=condition, checkpoint=checkpoint, device=device, **options)
    if tables.is_table_model(model):  # lineage of a synthetic table: source, its sha256, target, columns
        gen.manifest["table"] = tables.lineage(model)
    outputs = gen.outputs
    if policy is not None:
        outputs = _guard_samples(policy, gen, run, model)
    manifest_path, array_path = output.with_suffix(".json"), output.with_suffix(".npy")
    output.parent.mkdir(parents=True, exist_ok=True)
    if model.data_spec.get("name") == "chorales":  # music tokens: MIDI files and a WAV rendered with sines
        from genzoo.viz.music import save_chorales

        save_chorales(outputs, output, model.tokenizer)
    else:
        save_samples(outputs, output, model.data_spec)  # audio: a WAV and its spectrograms
    provenance.write_array(array_path, outputs)
    if save_array:
        provenance.write_array(save_array, outputs)
    # the manifest goes last: where one exists, the files it names are complete
    provenance.write_manifest(manifest_path, {**gen.manifest, "image": output.name, "array": array_path.name})
    if not no_store:
        from genzoo.tasks import record as recording

        gid, url = recording.record_with(store, lambda s: recording.record_samples(s, gen.manifest, output, model, outputs))
    say(f"wrote {n} samples to {output}")
    say(f"manifest: {manifest_path} (raw samples: {array_path}); replay it with `genzoo reproduce {manifest_path}`")
    if not no_store:
        say(f"recorded as generation {gid} in {url}; replay it with `genzoo reproduce {gid}`")


def _guard_samples(policy, gen, run: Path, model):
    """The copy guard on each sample: the verdicts go into the manifest (under "guardrails") and one line
    to stderr; a withheld sample is blanked (zeros) in the picture, the .npy and the store. The manifest's
    outputs sha256 stays the generated samples', so `genzoo reproduce` still checks the replay."""
    from genzoo import api
    from genzoo.tasks.guardrails import summarize

    verdicts = policy.check_samples(gen.outputs, data=api.run_data(run, model))
    gen.manifest["guardrails"] = policy.samples_entry(verdicts)
    note(summarize(verdicts))
    withheld = [i for i, v in enumerate(verdicts) if v.withheld]
    if not withheld:
        return gen.outputs
    outputs = gen.outputs.clone()
    outputs[withheld] = 0
    return outputs


@app.command()
def reproduce(
    manifest: str = typer.Argument(..., help="manifest .json that `genzoo sample` wrote beside its PNG, or a generation id from the store"),
    device: Optional[str] = typer.Option(None, help="replay on this device (default: the recorded one; bit-identity is only promised there)"),
    checkpoint: Optional[Path] = typer.Option(None, help="use this checkpoint folder instead of the recorded one (if the run moved); its sha256 must match"),
    store: StoreOption = None,
) -> None:
    """Regenerate the samples a manifest or a stored generation records and say whether they are bit-identical (exit code 1 if not)."""
    from genzoo.runs import manifest as provenance
    from genzoo.tasks import record as recording

    if recording.looks_like_id(manifest):
        result, _ = recording.record_with(store, lambda s: recording.reproduce_generation(s, int(manifest), device=device, checkpoint=checkpoint))
    else:
        result = provenance.reproduce(Path(manifest), checkpoint=checkpoint, device=device)

    say(f"checkpoint {result['checkpoint']}: sha256 {result['checkpoint_sha256']} matches the manifest")
    for name, (was, now) in result["version_changes"].items():
        say(f"note: generated with {name} {was}, now {now}")
    for remark in result["notes"]:
        say(f"note: {remark}")
    if result["identical"]:
        say(f"bit-identical: yes (outputs sha256 {result['outputs_sha256']}, checked against {result['compared_with']})")
        return
    diff = result["max_abs_diff"]
    diff = "unknown (no saved array to measure it)" if diff is None else f"{diff:.6g}"
    say(f"NOT bit-identical: max |diff| = {diff} (outputs sha256 {result['outputs_sha256']}, recorded {result['recorded_sha256']})")
    raise typer.Exit(1)


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
    say(f"wrote {images} x {per_image} completions to {output} (each row: original, observed part, completions)")


@app.command()
def translate(
    run: Path = typer.Argument(..., help="run or checkpoint folder of a model that can translate (cyclegan)"),
    source: str = typer.Option(..., "--from", help="domain of the input images: A or B"),
    n: int = typer.Option(32, "--n", help="how many test images of that domain"),
    output: Path = typer.Option(Path("translations.png"), "--output", "-o"),
) -> None:
    """Translate test images of one domain into the other; rows: inputs, translations, round trips."""
    from genzoo.tasks.translate import translate_run

    done = translate_run(run, source, output, n)
    say(f"wrote {done['images']} {done['from']} images, their translations and round trips to {done['grid']} "
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

    model, test = _model_and_test_images(run, INTERPOLATE, "interpolate")
    pairs = [_index_pair(p, len(test.x)) for p in (pair or ["0,1", "2,3", "4,5", "6,7"])]
    with torch.no_grad():
        rows = [model.interpolate(test.x[a], test.x[b], steps, method=method) for a, b in pairs]
    save_image_grid(torch.cat(rows), output, levels=model.data_spec.get("levels"), nrow=steps)
    say(f"wrote {len(pairs)} interpolations of {steps} images to {output}")


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
    info = _run_info(run)
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
    run: Path = typer.Argument(..., help="run, checkpoint or adapter folder"),
    n: int = typer.Option(1000, "--n", help="samples for sample-quality metrics"),
    sampler: Optional[str] = typer.Option(None),
    steps: Optional[int] = typer.Option(None),
    guidance: Optional[float] = typer.Option(None),
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="sampler option KEY=VALUE"),
    nll: bool = typer.Option(True, "--nll/--no-nll", help="test-set likelihood where the family has one"),
    nll_opt: Optional[List[str]] = typer.Option(None, "--nll-opt", help="likelihood option KEY=VALUE, e.g. k=1000"),
    seed: int = typer.Option(0),
    privacy: bool = typer.Option(False, "--privacy", help="run membership-inference attacks (LOSS where the family has a likelihood, distance to samples) instead of the quality metrics"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="--privacy: a run of the same family trained on other data, for the likelihood-ratio attack"),
) -> None:
    """Measure a trained model: NLL, FD_digits, precision/recall, ... beside the real-vs-real floor."""
    from genzoo import api

    model = api.load(run)
    options = _sampler_options(model, opt, sampler=sampler, steps=steps, guidance=guidance)
    if privacy:
        _privacy_and_print(run, model, nll, api.parse_assignments(nll_opt), seed, api.load(reference) if reference else None)
        return
    _evaluate_and_print(run, n, options, nll, api.parse_assignments(nll_opt), seed, model=model)


def _privacy_and_print(run: Path, model, nll: bool, nll_opts: dict, seed: int, reference=None) -> None:
    """Membership-inference attacks on the run's training split (members) vs its test split; results
    beside the chance floor, written to privacy_eval.json in the run folder."""
    from genzoo.core.atomic import write_atomic_file
    from genzoo.eval.privacy import attack_model, format_attack
    from genzoo.runs.checkpoint import run_root

    info = _run_info(run)
    data_name = info.get("run", {}).get("data") or model.data_spec["name"]
    results = attack_model(model, data_name, likelihood=nll, nll_options=nll_opts, seed=seed, say=note, reference=reference)
    root = run_root(Path(info["checkpoint"]))
    dp = json.loads((root / "privacy.json").read_text()) if (root / "privacy.json").is_file() else None
    write_atomic_file(root / "privacy_eval.json", json.dumps({"family": model.family, "data": data_name, "attacks": results,
                                                              "dp": dp}, indent=2))
    for r in results:
        say(format_attack(r))
    say(f"trained with differential privacy: epsilon {dp['epsilon']:.3f} spent (delta {dp['delta']:.2g})" if dp
        else "trained without differential privacy (epsilon = infinity)")


@app.command()
def info(run: Path = typer.Argument(..., help="run, checkpoint or adapter folder")) -> None:
    """What a run holds: family, config, training progress, last metrics, evaluation (an adapter: its base and fine-tuning)."""

    out.print_json(json.dumps(_run_info(run), default=str))


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

    if minutes is None and steps is None:
        raise GenzooError("give a budget per family: --minutes M or --steps N")
    names = split_entries(families_) if families_ else None
    report = run_bench(
        data, families=names, minutes=minutes, steps=steps, out_dir=out_dir, n_samples=n,
        nll_options=_per_family(nll_opt), sample_options=_per_family(sample_opt), seed=seed,
    )
    out.print(report["markdown"], markup=False)  # entries like diffusion[backbone=dit] are not Rich markup
    say(f"report: {out_dir / 'report.html'}  table: {out_dir / 'results.md'}, {out_dir / 'results.json'}")


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
