"""The uniform verbs, shared by the CLI, the bench and Python users.

>>> from genzoo import api
>>> model, summary = api.train("diffusion", "digits", steps=2000, out="runs/ddpm")
>>> x = api.load("runs/ddpm").sample(16, sampler="dpmpp2m", steps=20)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from genzoo.core.errors import GenzooError
from genzoo.data import Dataset, resolve
from genzoo.registry import get_family
from genzoo.train import Trainer, TrainConfig


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, '[1,2]' -> [1, 2], anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GenzooError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def build_model(family: str, data: Dataset, variant: str | None = None, overrides: dict | None = None, seed: int = 0):
    """A fresh model of ``family`` configured for ``data``; ``overrides`` set config fields."""
    info = get_family(family)
    if data.kind not in info.data_kinds:
        raise GenzooError(f"{family} does not handle {data.kind} data; it handles: {', '.join(info.data_kinds)}")
    cls = info.model_class
    config = cls.default_config(data.spec(), variant or "")  # applies the variant (and refuses an unknown one)
    fields = {f.name for f in dataclasses.fields(config)}
    bad = set(overrides or {}) - fields
    if bad:
        raise GenzooError(f"{family} has no config field(s) {sorted(bad)}; valid: {', '.join(sorted(fields - {'data'}))}")
    config = dataclasses.replace(config, **(overrides or {}))
    torch.manual_seed(seed)  # the same seed gives the same initial weights
    model = cls(config)
    model.tokenizer = data.meta.get("tokenizer")  # text: saved beside the weights
    return model


def train_config_for(model_cls, data: Dataset, **settings) -> TrainConfig:
    """TrainConfig defaults, then the family's defaults for this data, then the caller's settings."""
    family = model_cls.default_train(data.spec())
    given = {k: v for k, v in settings.items() if v is not None}
    if "steps" in given or "minutes" in given:  # the caller's budget replaces the family's default budget
        family = {k: v for k, v in family.items() if k not in ("steps", "minutes")}
    merged = {**family, **given}
    bad = set(merged) - set(TrainConfig.fields())
    if bad:
        raise GenzooError(f"unknown training setting(s) {sorted(bad)}; valid: {', '.join(TrainConfig.fields())}")
    if merged.get("steps") is None and merged.get("minutes") is None:
        merged["steps"] = 2000
    return TrainConfig(**merged)


def train(
    family: str,
    data: str = "digits",
    *,
    variant: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    model_overrides: dict | None = None,
    tokenizer: str | None = None,
    vocab_size: int | None = None,
    **settings,
):
    """Train ``family`` on dataset ``data``; returns (model for sampling, summary).

    ``resume=True`` continues the run in ``out`` from its last checkpoint, or starts fresh (and
    says so in the summary: ``started_fresh``) when there is none yet, so that a scheduler can
    re-run one command after any kill. Text data: ``tokenizer`` ("char" or "bpe") and
    ``vocab_size`` choose the tokenizer trained on the training split (default: characters)."""
    from genzoo.train import has_checkpoint

    if resume and out and has_checkpoint(out):
        return _resume(out, **settings)
    source = resolve(data)  # the name is parsed here, once; every split below loads from it
    text_tokenizer = source.train_tokenizer(tokenizer or "char", vocab_size) if source.tokenized or tokenizer or vocab_size else None
    train_data = source.load("train", text_tokenizer)
    seed = settings.get("seed") or 0
    load_split = _split_loader(source, data, text_tokenizer)
    if settings.get("dp_epsilon") is not None and train_data.kind == "table":
        # the encoding a checkpoint carries is fitted privately too, and the accountant counts it (genzoo.train.dp_table_encoding)
        from genzoo.train import dp_table_encoding

        spec = dp_table_encoding.private_spec(data, settings["dp_epsilon"], settings.get("dp_delta"), seed)
        dp_table_encoding.announce(spec)
        load_split = _split_loader(source, data, text_tokenizer, spec)
        train_data = load_split("train")
    model = build_model(family, train_data, variant, model_overrides, seed)
    config = train_config_for(type(model), train_data, **settings)
    val_data = load_split("val") if config.val_every else None
    trainer = Trainer(model, train_data, config, out_dir=out, data_name=data, val_data=val_data)
    summary = trainer.fit()
    if resume:
        summary["started_fresh"] = True
    return trainer.selected_model, summary


def _resume(out, **settings):
    if not out:
        raise GenzooError("--resume needs --out pointing at the run to continue")
    run_file = Path(out) / "run.json"
    if not run_file.is_file():
        raise GenzooError(f"{out} has no run.json; it is not a run folder made by `genzoo train`")
    run = json.loads(run_file.read_text())
    from genzoo.runs.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(out, prefer_best=False)
    tokenizer = None
    if (ckpt / "tokenizer.json").is_file():  # text: the very tokenizer the run started with
        from genzoo.data.tokenizer import TextTokenizer

        tokenizer = TextTokenizer.load(ckpt)
    source = resolve(run["data"])
    cls = get_family(run["family"]).model_class
    model = cls(cls.config_class.from_dict(run["model_config"]))
    model.tokenizer = tokenizer
    table = (model.data_spec or {}).get("table", {})
    # a DP table run: rows encoded by its own private encoding
    load_split = _split_loader(source, run["data"], tokenizer, table if "privacy" in table else None)
    train_data = load_split("train")
    saved = run["train_config"]
    _check_resume_privacy(out, saved, settings)
    for key in ("steps", "minutes", "device", "progress", "checkpoint_every", "checkpoint_minutes"):  # may change on resume
        if settings.get(key) is not None:
            saved[key] = settings[key]
    config = TrainConfig(**saved)
    val_data = load_split("val") if config.val_every else None
    trainer = Trainer(model, train_data, config, out_dir=out, data_name=run["data"], val_data=val_data)
    summary = trainer.fit(resume=True)
    return trainer.selected_model, summary


def _split_loader(source, name: str, tokenizer, table_spec: dict | None = None):
    """split -> Dataset: the source's own loading, or a table's rows encoded by ``table_spec`` (a DP run's private encoding)."""
    if table_spec is None:
        return lambda split: source.load(split, tokenizer)
    from genzoo.data import table as tables

    return lambda split: tables.load(name, split, table_spec)


def _check_resume_privacy(out, saved: dict, settings: dict) -> None:
    """A resume continues the run's own privacy settings; a DP flag that would change them is refused, not
    ignored (the noise was calibrated once, at the start, for the first run's epsilon, delta and clip)."""
    if saved.get("dp_epsilon") is None:
        given = [f"--{k.replace('_', '-')}" for k in ("dp_epsilon", "dp_delta", "dp_max_grad_norm") if settings.get(k) is not None]
        if given:
            raise GenzooError(f"{out} was trained without differential privacy; a resume cannot add {', '.join(given)} "
                              "(the steps already taken were not private): start a new run with --dp-epsilon")
        return
    for key, flag in (("dp_epsilon", "--dp-epsilon"), ("dp_delta", "--dp-delta"), ("dp_max_grad_norm", "--dp-max-grad-norm")):
        new, old = settings.get(key), saved.get(key)
        if new is not None and (old is None or abs(float(new) - float(old)) > 1e-12 * max(1.0, abs(float(old)))):
            raise GenzooError(f"{out} was trained with {flag} {old if old is not None else '(default)'}; a resume keeps the "
                              f"run's privacy settings, so drop {flag} {new} or start a new run")


def load(run: str | Path, device: str = "cpu"):
    """The model in a run, checkpoint or local Hugging Face folder (``genzoo.runs.load``)."""
    from genzoo.runs.load import load as load_any

    return load_any(run, device)


def run_data(run: str | Path, model) -> str:
    """The dataset a run was trained on (its run.json), else the one named in the model's data spec."""
    from genzoo.runs.checkpoint import run_data as data_of

    return data_of(run, model)


def run_info(run: str | Path) -> dict:
    """What a run folder holds: family, data, configs, last logged metrics, evaluation."""
    from genzoo.runs.checkpoint import read_config, resolve_checkpoint, run_root

    ckpt = resolve_checkpoint(run)
    meta = read_config(ckpt)
    root = run_root(ckpt)
    info = {"checkpoint": str(ckpt), "family": meta["family"], "model_config": meta["config"]}
    if (ckpt / "selection.json").is_file():
        info["selected"] = json.loads((ckpt / "selection.json").read_text())
    for name in ("run.json", "eval.json"):
        if (root / name).is_file():
            info[name.removesuffix(".json")] = json.loads((root / name).read_text())
    log = root / "metrics.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        info["last_metrics"] = json.loads(lines[-1]) if lines else None
    state = resolve_checkpoint(root, prefer_best=False) / "trainer_state.pt"  # best/ holds weights only
    if state.is_file():
        s = torch.load(state, map_location="cpu", weights_only=False)
        info["trained_steps"], info["train_seconds"] = s["step"], round(s["elapsed"], 1)
    return info


def generate(run: str | Path, n: int, *, seed: int = 0, condition=None, device: str = "cpu", **options):
    """``n`` samples from the model in a run or checkpoint folder, with their provenance manifest.

    >>> gen = api.generate("runs/vae", 16, seed=3, temperature=0.8)
    >>> gen.outputs.shape, gen.manifest["checkpoint_sha256"]
    """
    from genzoo.runs import manifest as provenance

    model, checkpoint = provenance.load_checkpoint(run, device)
    return provenance.generate(model, n, seed=seed, condition=condition, checkpoint=checkpoint, device=device, **options)


def reproduce(manifest, *, outputs=None, checkpoint: str | Path | None = None, device: str | None = None) -> dict:
    """Replay a generation's manifest (file or dict); ``result["identical"]`` says whether it is bit-identical."""
    from genzoo.runs import manifest as provenance

    return provenance.reproduce(manifest, outputs=outputs, checkpoint=checkpoint, device=device)
