"""Provenance: every sample comes back with the record of what made it.

``generate`` draws samples from a model and returns them with a *manifest*:
a plain, versioned, JSON-ready dict (only str, int, float, bool, None, lists
and dicts) naming the family, the config hash, the checkpoint and its sha256,
the seed, the sampler options (complete: the family's defaults filled in),
the condition, the versions of genzoo / torch / Python / numpy, the time, and
the shape, dtype and sha256 of the outputs. ``reproduce`` replays a manifest
and says whether the result is bit-identical.

The generation store records exactly this manifest. It must not import torch
models, so this module imports torch (and the checkpoint loader) only inside
the functions that sample: ``read_manifest``, ``check_manifest``,
``MANIFEST_FORMAT`` and the hashing helpers work without torch.

Manifest fields (format ``genzoo.manifest/1``)::

    format            "genzoo.manifest/1"
    family, variant   the model family and its variant
    config_sha256     sha256 of the canonical JSON of the model config
    checkpoint        absolute path of the checkpoint folder (None: an in-memory model)
    checkpoint_sha256 sha256 of that folder's model.safetensors (None: in-memory)
    seed, n           the torch.Generator seed and the number of samples
    condition         the condition as given (class id(s), text), or None
    sampler_options   the options as given, over the family's defaults
    device            where the generator and the model ran
    versions          {genzoo, torch, python, numpy}
    created_at        UTC ISO 8601, when sampling started
    duration_s        seconds spent sampling
    outputs           {shape, dtype, sha256 of the raw bytes of the contiguous CPU tensor}
    data              the name of the dataset the model was built for

Writers may add keys (``genzoo sample`` adds ``image`` and ``array``: file
names relative to the manifest's folder); readers ignore keys they do not know.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genzoo.core.errors import GenzooError

MANIFEST_FORMAT = "genzoo.manifest/1"  # samples drawn by ``generate``
# Text continuations (``text_manifest``). Stored in every recorded generation: never change a
# format string; a new layout gets a new version (tests/runs/test_provenance.py freezes them).
TEXT_FORMAT = "genzoo.textgen/1"
MANIFEST_PREFIX = "genzoo.manifest/"
# What ``reproduce`` needs; a manifest without one of these cannot be replayed.
REQUIRED_KEYS = (
    "format", "family", "config_sha256", "checkpoint", "checkpoint_sha256", "seed", "n",
    "condition", "sampler_options", "device", "outputs",
)
OUTPUT_KEYS = ("shape", "dtype", "sha256")


@dataclass
class Generation:
    """Samples and the manifest that says how they were made."""

    outputs: Any  # torch.Tensor, (n, ...) in data space
    manifest: dict

    def to_json(self) -> str:
        return manifest_json(self.manifest)


# ---- hashing ---------------------------------------------------------------
def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def config_hash(config) -> str:
    """sha256 of the canonical JSON (sorted keys, compact) of a model config (or its dict)."""
    d = config.to_dict() if hasattr(config, "to_dict") else config
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tensor_sha256(x) -> str:
    """sha256 of the raw bytes of ``x`` as a contiguous CPU tensor (any dtype, bfloat16 included)."""
    import torch

    t = x.detach().to("cpu").contiguous().reshape(-1)
    if t.dtype != torch.bool:
        t = t.view(torch.uint8)
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


_digests: dict[tuple, str] = {}


def checkpoint_sha256(folder: str | Path) -> str:
    """sha256 of ``folder/model.safetensors``, remembered while the file is untouched (same inode,
    size, mtime and ctime), so loading and then sampling hash big weights once."""
    f = Path(folder) / "model.safetensors"
    if not f.is_file() and (Path(folder) / "adapter_config.json").is_file():
        f = Path(folder) / "adapter_model.safetensors"  # an adapter folder: its own weights (its base is checked by sha256 as it loads)
    try:
        st = f.stat()
    except OSError as e:
        raise GenzooError(f"{f} cannot be read ({e}); pass a checkpoint folder with config.json + model.safetensors") from e
    key = (str(f.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(f)
    return _digests[key]


# ---- plain values ------------------------------------------------------------
def plain(value, what: str = "value"):
    """``value`` as plain JSON types (tensors and arrays become lists, paths strings), or a clear error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, what) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return plain(value.tolist(), what)
    raise GenzooError(f"cannot record a {what} of type {type(value).__name__} in a manifest; give plain values (numbers, strings, lists)")


def manifest_json(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


# ---- generating --------------------------------------------------------------
def versions() -> dict:
    import numpy
    import torch

    import genzoo

    return {"genzoo": genzoo.__version__, "torch": torch.__version__, "python": platform.python_version(), "numpy": numpy.__version__}


def utc_now() -> str:
    """UTC ISO 8601 with milliseconds, the time stamp of every manifest."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def weights_sha256(folder: Path) -> str:
    """sha256 of model.safetensors; for a sharded Hugging Face folder, of the shards' digests in name order."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return checkpoint_sha256(folder)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise GenzooError(f"{folder} has no .safetensors weights to fingerprint")
    return hashlib.sha256("".join(sha256_file(s) for s in shards).encode()).hexdigest()


def text_manifest(run: str | Path, model, prompt: str, text: str, seed: int, options: dict) -> dict:
    """The manifest of a text continuation: the weights folder and their sha256, the prompt, the seed,
    every decoding option and constraint, versions, time, and the sha256 of the text."""
    from genzoo.runs.load import hf_model_type

    folder = Path(run).resolve()
    if hf_model_type(folder) is None:
        from genzoo.runs.checkpoint import resolve_checkpoint

        folder = resolve_checkpoint(folder).resolve()
    return {
        "format": TEXT_FORMAT,
        "family": getattr(model, "family", "hf"),
        "checkpoint": str(folder),
        "checkpoint_sha256": weights_sha256(folder),
        "prompt": prompt,
        "seed": seed,
        "options": dict(options),
        "versions": versions(),
        "created_at": utc_now(),
        "outputs": {"sha256": hashlib.sha256(text.encode()).hexdigest()},
    }


def complete_options(model, options: dict) -> dict:
    """The options as given over the family's defaults; refuses options the family does not have."""
    defaults = type(model).sampler_options()
    bad = set(options) - set(defaults)
    if bad:
        valid = ", ".join(sorted(defaults)) or "none"
        raise GenzooError(f"{model.family} sampling has no option(s) {sorted(bad)}; its options: {valid}")
    return {**defaults, **options}


def _dp_record(ckpt: Path) -> dict | None:
    """The spent (epsilon, delta) of a run trained with --dp-epsilon (its privacy.json), else None."""
    from genzoo.runs.checkpoint import run_root

    f = run_root(ckpt) / "privacy.json"
    if not f.is_file():
        return None
    try:
        p = json.loads(f.read_text())
        return {k: p[k] for k in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "steps", "accountant")}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise GenzooError(f"{f} is corrupt; the run's privacy record cannot be read") from None


def generate(model, n: int, *, seed: int, condition=None, checkpoint: str | Path | None = None, device: str = "cpu", **options) -> Generation:
    """Draw ``n`` samples with a ``torch.Generator(device)`` seeded by ``seed``; return them with their manifest.

    ``checkpoint`` names the folder the model was loaded from (recorded with its sha256 so that
    ``reproduce`` can find and check the weights); without it the manifest says None and the
    generation cannot be replayed. The model should already be on ``device``.
    """
    import torch

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GenzooError(f"n must be a whole number of at least 1, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GenzooError(f"seed must be an integer, got {seed!r}")
    options = complete_options(model, options)
    ckpt_path, ckpt_sha = None, None
    if checkpoint is not None:
        from genzoo.runs.checkpoint import resolve_checkpoint

        ckpt = resolve_checkpoint(checkpoint).resolve()
        ckpt_path, ckpt_sha = str(ckpt), checkpoint_sha256(ckpt)
    manifest = {
        "format": MANIFEST_FORMAT,
        "family": model.family,
        "variant": getattr(model.config, "variant", ""),
        "config_sha256": config_hash(model.config),
        "checkpoint": ckpt_path,
        "checkpoint_sha256": ckpt_sha,
        "seed": seed,
        "n": n,
        "condition": plain(condition, "condition"),
        "sampler_options": plain(options, "sampler option"),
        "device": str(device),
        "versions": versions(),
        "created_at": utc_now(),
    }
    try:
        g = torch.Generator(device=device).manual_seed(seed)
    except RuntimeError as e:
        raise GenzooError(f"cannot draw random numbers on device {device!r} ({e}); use --device cpu or a device this machine has") from e
    start = time.perf_counter()
    with torch.no_grad():
        x = model.sample(n, condition=condition, generator=g, **options)
    manifest["duration_s"] = round(time.perf_counter() - start, 6)
    manifest["outputs"] = {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch."), "sha256": tensor_sha256(x)}
    manifest["data"] = (model.data_spec or {}).get("name")
    if ckpt_path is not None:
        privacy = _dp_record(Path(ckpt_path))
        if privacy:
            manifest["privacy"] = privacy  # the run's differential-privacy budget, as its accountant spent it
    return Generation(x, manifest)


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, resolved checkpoint folder). Refuses weights that change while they load (a run still
    training swaps its checkpoint folder), so the sha256 recorded is that of the weights used."""
    from genzoo.runs.checkpoint import load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(path).resolve()
    before = checkpoint_sha256(ckpt)
    model = load_model(ckpt, device)
    if checkpoint_sha256(ckpt) != before:
        raise GenzooError(f"the weights in {ckpt} changed while loading (is training still writing it?); try again")
    return model, ckpt


# ---- files ---------------------------------------------------------------------
def write_manifest(path: str | Path, manifest: dict) -> Path:
    """Write the manifest as JSON, atomically (a reader never sees half a file)."""
    from genzoo.core.atomic import write_atomic_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_file(path, manifest_json(manifest))
    return path


def write_array(path: str | Path, outputs) -> Path:
    """Save the raw outputs as ``.npy``, atomically."""
    import numpy as np

    from genzoo.core.atomic import write_atomic_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, outputs.detach().cpu().numpy() if hasattr(outputs, "detach") else np.asarray(outputs))
    write_atomic_file(path, buf.getvalue())
    return path


def check_manifest(manifest, source: str = "manifest") -> dict:
    """The manifest if it is one this genzoo can replay, else a GenzooError that says what is wrong."""
    if not isinstance(manifest, dict):
        raise GenzooError(f"{source} is not a genzoo manifest (expected a JSON object, got {type(manifest).__name__}); pass the .json that `genzoo sample` wrote beside its PNG")
    fmt = manifest.get("format")
    if fmt != MANIFEST_FORMAT:
        if isinstance(fmt, str) and fmt.startswith(MANIFEST_PREFIX):
            raise GenzooError(f"{source} has manifest format {fmt!r}; this genzoo reads {MANIFEST_FORMAT!r}: use the genzoo version that wrote it (or a newer one)")
        raise GenzooError(f"{source} is not a genzoo manifest (format {fmt!r}, expected {MANIFEST_FORMAT!r}); pass the .json that `genzoo sample` wrote beside its PNG")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    outputs = manifest.get("outputs")
    if isinstance(outputs, dict):
        missing += [f"outputs.{k}" for k in OUTPUT_KEYS if k not in outputs]
    elif "outputs" not in missing:
        missing.append("outputs.{shape,dtype,sha256}")
    if missing:
        raise GenzooError(f"{source} lacks {', '.join(missing)}; it was edited or truncated: sample again to get a complete manifest")
    if not isinstance(manifest["sampler_options"], dict):
        raise GenzooError(f"{source}: sampler_options must be an object; sample again to get a valid manifest")
    for key in ("seed", "n"):
        if not isinstance(manifest[key], int) or isinstance(manifest[key], bool):
            raise GenzooError(f"{source}: {key} must be an integer, got {manifest[key]!r}; sample again to get a valid manifest")
    return manifest


def read_manifest(path: str | Path) -> dict:
    """Load and check a manifest file."""
    path = Path(path)
    if not path.is_file():
        raise GenzooError(f"{path} does not exist or is not a file; pass the .json that `genzoo sample` wrote beside its PNG")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GenzooError(f"{path} is not valid JSON ({e}); pass the .json that `genzoo sample` wrote, or sample again") from e
    return check_manifest(manifest, str(path))


# ---- reproducing ---------------------------------------------------------------
def reproduce(manifest, *, outputs=None, checkpoint: str | Path | None = None, device: str | None = None) -> dict:
    """Regenerate what a manifest records and compare it bit for bit.

    ``manifest``: a manifest file or dict. The weights come from the recorded checkpoint folder
    (or ``checkpoint``, when the run has moved) and must have the recorded sha256, else this
    refuses. The outputs are compared with ``outputs`` (an array, tensor or .npy path) when
    given, else with the saved array the manifest names (``array``, relative to the manifest's
    folder) when it exists, and always with the recorded sha256. ``device`` overrides the
    recorded device (bit-identity is only promised on the recorded one).

    Returns a plain dict: identical, max_abs_diff (None when there is no array to measure it
    against), outputs_sha256, recorded_sha256, compared_with, checkpoint, checkpoint_sha256,
    device, version_changes ({name: [recorded, now]}), notes.
    """
    import numpy as np

    base = None
    if isinstance(manifest, (str, Path)):
        base = Path(manifest).resolve().parent
        manifest = read_manifest(manifest)
    else:
        manifest = check_manifest(manifest)
    if checkpoint is None:
        checkpoint = manifest["checkpoint"]
        if checkpoint is None:
            raise GenzooError("this manifest records no checkpoint (the model was not loaded from a folder), so it cannot be replayed; pass checkpoint=PATH")
        if not Path(checkpoint).exists():
            raise GenzooError(f"the checkpoint this manifest names, {checkpoint}, is missing; restore it or pass --checkpoint PATH to a folder with the same weights")
    ckpt_sha = _ckpt_sha(checkpoint)
    if ckpt_sha != manifest["checkpoint_sha256"]:
        raise GenzooError(
            f"checkpoint sha256 mismatch: {checkpoint}/model.safetensors has sha256 {ckpt_sha}, the manifest records "
            f"{manifest['checkpoint_sha256']}: the weights changed since this generation; restore the original weights "
            "(or pass --checkpoint PATH to a folder that has them) to reproduce it"
        )
    device = device or manifest["device"]
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise GenzooError(f"this generation ran on {device} and this machine has no GPU; pass --device cpu (the outputs then need not be bit-identical)")
    model, ckpt = load_checkpoint(checkpoint, device)
    if config_hash(model.config) != manifest["config_sha256"]:
        raise GenzooError(f"config sha256 mismatch: {ckpt}/config.json is not the config this generation used; restore it to reproduce the generation")
    if model.family != manifest["family"]:
        raise GenzooError(f"{ckpt} holds a {model.family} model, the manifest a {manifest['family']}; pass the checkpoint it was made with")
    try:
        gen = generate(model, manifest["n"], seed=manifest["seed"], condition=manifest["condition"], checkpoint=ckpt, device=device, **manifest["sampler_options"])
    except (TypeError, ValueError) as e:  # an edited manifest: options or condition the model does not take
        raise GenzooError(f"the model refused this manifest's sampler options or condition ({e}); sample again to get a valid manifest") from e
    if gen.manifest["checkpoint_sha256"] != manifest["checkpoint_sha256"]:
        raise GenzooError(f"the weights in {ckpt} changed while reproducing (is training still writing it?); try again")

    recorded = manifest["outputs"]
    new = gen.manifest["outputs"]
    same_record = new["sha256"] == recorded["sha256"] and new["shape"] == list(recorded["shape"]) and new["dtype"] == recorded["dtype"]
    notes = []
    compared_with, reference = "sha256", None
    if outputs is not None:
        reference, compared_with = _as_array(outputs), "outputs" if not isinstance(outputs, (str, Path)) else str(outputs)
    elif manifest.get("array"):
        f = Path(manifest["array"])
        f = f if f.is_absolute() else (base or Path.cwd()) / f
        if f.is_file():
            reference, compared_with = _as_array(f), str(f)
        else:
            notes.append(f"the saved array {f} is missing; compared with the recorded sha256 only")
    max_abs_diff = None
    identical = same_record
    if reference is not None:
        now = gen.outputs.detach().cpu().numpy()
        same_array = reference.shape == now.shape and reference.dtype == now.dtype and reference.tobytes() == now.tobytes()
        if reference.shape == now.shape:
            a, b = reference.astype(np.float64), now.astype(np.float64)
            max_abs_diff = 0.0 if same_array else float(np.nan_to_num(np.abs(a - b), nan=np.inf).max(initial=0.0))
        else:
            max_abs_diff = math.inf
            notes.append(f"shape {list(now.shape)} now, {list(reference.shape)} in {compared_with}")
        if same_array and not same_record:
            notes.append("the regenerated outputs equal the saved array but not the manifest's sha256: the manifest or the array was edited")
        identical = same_array and (same_record or outputs is not None)
    elif same_record:
        max_abs_diff = 0.0
    now_versions = gen.manifest["versions"]
    changes = {k: [v, now_versions.get(k)] for k, v in (manifest.get("versions") or {}).items() if now_versions.get(k) != v}
    if str(device) != str(manifest["device"]):
        notes.append(f"replayed on {device}, recorded on {manifest['device']}")
    return {
        "identical": bool(identical),
        "max_abs_diff": max_abs_diff,
        "outputs_sha256": new["sha256"],
        "recorded_sha256": recorded["sha256"],
        "compared_with": compared_with,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": ckpt_sha,
        "checkpoint_matches": True,
        "device": str(device),
        "version_changes": changes,
        "notes": notes,
    }


def _ckpt_sha(checkpoint) -> str:
    from genzoo.runs.checkpoint import resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(checkpoint)
    except GenzooError as e:
        raise GenzooError(f"the checkpoint this manifest names cannot be used: {e}") from e
    return checkpoint_sha256(ckpt)


def _as_array(value):
    import numpy as np

    if isinstance(value, (str, Path)):
        try:
            return np.load(value, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GenzooError(f"{value} is not a readable .npy array ({e}); sample again to rewrite it") from e
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
