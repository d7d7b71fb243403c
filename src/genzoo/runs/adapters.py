"""Adapter folders are models: a LoRA adapter written by `genzoo finetune` (``adapter_config.json`` +
``adapter_model.safetensors``) opens wherever a model folder does.

The adapter's config records its base: the folder's absolute path, that path relative to the
adapter (so a project moved as a whole still works), and the sha256 of the base's weight file(s).
Loading finds the base, refuses it when its weights are not the recorded ones, loads it, puts the
adapter on and merges it (the merged model runs at the base's speed and computes what the wrapped
one does). Several adapters over one base are found by ``find_adapters``: the adapter folders
beside the base (under its parent folder) that name it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.core.folders import ADAPTER_CONFIG, is_adapter, resolve_checkpoint, run_root

SEARCH_DEPTH = 3  # folders below the base's parent searched for adapters (a parent such as $HOME stays cheap)


def base_info(path: str | Path, adapter_dir: str | Path | None = None) -> dict:
    """Where a base model comes from, as an adapter records it: a genzoo run/checkpoint (its folder,
    resolved checkpoint and the sha256 of its model.safetensors) or a local Hugging Face folder (the
    sha256 of each *.safetensors file); with ``adapter_dir``, also the base's path relative to it."""
    from genzoo.nn.lora import file_sha256
    from genzoo.core.folders import hf_model_type

    path = Path(path).resolve()
    if is_adapter(path):
        raise GenzooError(f"{path} is an adapter, not a base model; use its base, or fine-tune its merged model "
                          "(`genzoo finetune BASE ... --merge` writes OUT/merged)")
    if hf_model_type(path) is not None:
        info = {"kind": "huggingface", "path": str(path),
                "sha256": {f.name: file_sha256(f) for f in sorted(path.glob("*.safetensors"))}}
    else:
        ckpt = resolve_checkpoint(path)
        info = {"kind": "genzoo", "path": str(path), "checkpoint": str(ckpt),
                "sha256": {"model.safetensors": file_sha256(ckpt / "model.safetensors")}}
    if adapter_dir is not None:
        info["relative_path"] = os.path.relpath(path, Path(adapter_dir).resolve())
    return info


def read_config(adapter: str | Path) -> dict:
    from genzoo.nn.lora import read_adapter_config

    return read_adapter_config(adapter)


def base_folder(adapter: str | Path, meta: dict | None = None) -> Path:
    """The base an adapter names: its recorded path, else that path relative to the adapter."""
    adapter = Path(adapter)
    meta = meta or read_config(adapter)
    base = meta.get("base") or {}
    if not base.get("path"):
        raise GenzooError(f"{adapter / ADAPTER_CONFIG} names no base model; give it: `genzoo generate BASE --adapter {adapter}`")
    candidates = [Path(base["path"])]
    if base.get("relative_path"):
        candidates.append(adapter / base["relative_path"])
    for cand in candidates:
        if cand.exists():
            return cand
    raise GenzooError(f"the base model of adapter {adapter} is missing: expected at {base['path']}; if it moved, "
                      f"pass it (`genzoo generate NEW_BASE --adapter {adapter}`) or set base.path in {adapter / ADAPTER_CONFIG}")


def check_base(adapter: str | Path, meta: dict, base: str | Path) -> None:
    """Refuse a base whose weight files are not the ones the adapter was trained on (sha256)."""
    recorded = (meta.get("base") or {}).get("sha256") or {}
    if not recorded:
        return  # an adapter that recorded no file sha256: load_adapter checks its tensor fingerprint instead
    now = base_info(base)["sha256"]
    for name, sha in sorted(recorded.items()):
        if now.get(name) != sha:
            have = (now.get(name) or "missing")[:16]
            raise GenzooError(f"the base model {base} changed since adapter {adapter} was trained on it: {name} sha256 is "
                              f"{have}..., the adapter recorded {sha[:16]}...; restore those weights or fine-tune again on this base")


def load_adapter_model(adapter: str | Path, device: str = "cpu", base: str | Path | None = None, *, load_base):
    """The base of ``adapter`` (or ``base`` when given: a moved base) with the adapter merged in, in eval mode.
    ``load_base``: how to load the base (``genzoo.runs.load.load``, passed in: it calls this module)."""
    from genzoo.nn.lora import load_adapter, merge_lora

    adapter = Path(adapter)
    meta = read_config(adapter)
    base = Path(base) if base is not None else base_folder(adapter, meta)
    if is_adapter(base):
        raise GenzooError(f"{base} is an adapter, not a base model; give the model adapter {adapter} was trained on")
    check_base(adapter, meta, base)
    model = load_base(base, device)
    # The file sha256 above already pins the base; the tensor fingerprint is the check of adapters that recorded none.
    load_adapter(model, adapter, check_base=not (meta.get("base") or {}).get("sha256"))
    merge_lora(model)  # plain Linear layers again: the base's speed, the same outputs as the wrapped adapter
    model.adapter = {"path": str(adapter.resolve()), "base": str(Path(base).resolve())}
    return model.eval()


def _names_base(meta: dict, adapter: Path, targets: set[Path]) -> bool:
    base = meta.get("base") or {}
    named = [base.get("path"), base.get("checkpoint")]
    if base.get("relative_path"):
        named.append(str(adapter / base["relative_path"]))
    return any(p and Path(p).resolve() in targets for p in named)


def find_adapters(base: str | Path) -> list[dict]:
    """The adapter folders under the base's parent folder (a few levels deep) that name ``base``,
    by name (their path relative to that parent); ``ok`` says whether the base still has the
    weights each was trained on."""
    base = Path(base)
    if not base.exists():
        raise GenzooError(f"{base} does not exist; pass the base model folder the adapters were fine-tuned from")
    targets = {base.resolve()}
    try:
        ckpt = resolve_checkpoint(base).resolve()
        targets.add(ckpt)
        targets.add(run_root(ckpt))
    except GenzooError:
        pass  # a Hugging Face folder
    root = run_root(base.resolve()).parent
    found, now = [], None
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth < SEARCH_DEPTH and (Path(folder) / d).resolve() not in targets)
        if ADAPTER_CONFIG not in files:
            continue
        adapter = Path(folder)
        try:
            meta = read_config(adapter)
        except GenzooError:
            continue  # a corrupt or foreign adapter_config.json is not one of ours
        if not _names_base(meta, adapter, targets):
            continue
        now = now or base_info(base)["sha256"]
        recorded = (meta.get("base") or {}).get("sha256") or {}
        summary = _finetune_summary(adapter)
        found.append({"name": str(adapter.relative_to(root)), "path": str(adapter), "rank": meta["rank"],
                      "targets": meta["targets"], "steps": summary.get("steps"), "data": (meta.get("base") or {}).get("data"),
                      "ok": all(now.get(k) == v for k, v in recorded.items())})
    return found


def _finetune_summary(adapter: Path) -> dict:
    try:
        return json.loads((adapter / "finetune.json").read_text())
    except (OSError, ValueError):
        return {}


def find_adapter(base: str | Path, name: str | Path) -> Path:
    """``name``: an adapter folder's path, or its name as ``find_adapters(base)`` lists it."""
    if is_adapter(name):
        return Path(name)
    found = find_adapters(base)
    for a in found:
        if a["name"] == str(name) or Path(a["name"]).name == str(name):
            return Path(a["path"])
    names = ", ".join(a["name"] for a in found)
    raise GenzooError(f"no adapter {str(name)!r} over {base}; " + (f"its adapters: {names} (`genzoo adapters {base}`)" if names else
                      f"none found beside it: fine-tune one with `genzoo finetune {base} --data FILE --out DIR`"))


def run_info(adapter: str | Path) -> dict:
    """What ``genzoo info`` shows for an adapter folder: the adapter, its base, its fine-tuning."""
    adapter = Path(adapter)
    meta = read_config(adapter)
    info = {"checkpoint": str(adapter.resolve()), "adapter": {k: v for k, v in meta.items() if k != "modules"}}
    try:
        from genzoo.models.base import GenerativeModel
        from genzoo.core.folders import hf_model_type

        base = base_folder(adapter, meta)
        kind = hf_model_type(base)
        info["family"] = f"huggingface {kind}" if kind else GenerativeModel.read_meta(resolve_checkpoint(base))["family"]
    except GenzooError as e:
        info["base_problem"] = str(e)  # info still describes an adapter whose base moved
    if (summary := _finetune_summary(adapter)):
        info["finetune"] = summary
    if (adapter / "eval.json").is_file():
        info["eval"] = json.loads((adapter / "eval.json").read_text())
    return info
