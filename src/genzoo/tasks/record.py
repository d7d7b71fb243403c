"""From the CLI's outputs to store records, and back: what ``genzoo sample``/``generate`` record
and what ``genzoo reproduce GEN_ID`` replays.

Image/point samples keep the provenance manifest of ``genzoo.runs.manifest`` (format
``genzoo.manifest/1``) and the PNG as content. Text generations get a manifest of their own
(format ``genzoo.textgen/1``): the model folder and its weights' sha256, the prompt, the seed,
every decoding option and constraint, versions, time, and the sha256 of the text.
This module loads models only inside ``reproduce_generation`` (it is the CLI's, not the store's).
"""

from __future__ import annotations

import json
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.store.records import ModelRecord, NewGeneration, sha256_hex

from genzoo.runs.manifest import TEXT_FORMAT, text_manifest, weights_sha256  # noqa: F401  (re-exported: the CLI and RAG use them)


def open_for_cli(store_path: Path | None):
    """The store the CLI records into: --store, else GENZOO_STORE, else ~/.genzoo/store.db. The
    CLI writes without loading the text encoder (seconds to import); vectors are made by the
    first search that needs them."""
    from genzoo.store.api import Store
    from genzoo.tasks.encoders import MiniLMEncoder

    return Store.open(store_path, encoder=MiniLMEncoder(), embed_on_write=False)


def _model_record(folder: Path, family: str, variant: str = "", config: dict | None = None, config_sha256: str | None = None) -> ModelRecord:
    from genzoo.runs.checkpoint import run_root

    root = run_root(folder)
    metrics, lineage = {}, {"checkpoint_folder": str(folder), "run": str(root)}
    for name, into in (("eval.json", metrics), ("run.json", lineage)):
        f = root / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if name == "eval.json":
                into.update({k: v for k, v in data.items() if isinstance(v, (int, float, str, bool)) or v is None})
            else:
                lineage["data"] = data.get("data")
    return ModelRecord(name=root.name, family=family, variant=variant or "", config=config or {}, config_sha256=config_sha256,
                       checkpoint_uri=str(folder), checkpoint_sha256=weights_sha256(folder), metrics=metrics, lineage=lineage)


AUDIO_TYPES = {".wav": "audio/wav", ".mid": "audio/midi", ".midi": "audio/midi"}


def record_samples(store, manifest: dict, png: Path, model, samples=None, image_encoder=None) -> int:
    """Record a ``genzoo sample`` call: its manifest and its PNG (the id returned). For a
    digits-shaped model, each of ``samples`` is also recorded, as a child of the grid holding its
    levels (.npy) and its digits-evaluator features, so ``Store.similar`` finds images by image."""
    folder = Path(manifest["checkpoint"])
    mid = store.register_model(_model_record(folder, manifest["family"], manifest.get("variant", ""),
                                             model.config.to_dict() if hasattr(model.config, "to_dict") else {}, manifest["config_sha256"]))
    kind = {"image": "image", "points": "points"}.get((model.data_spec or {}).get("kind"), "array")
    condition = manifest.get("condition")
    prompt = None if condition is None else f"condition: {json.dumps(condition)}"
    content_type = "text/csv" if png.suffix == ".csv" else "image/png"
    if content_type == "text/csv":  # a synthetic table: a dataset of its own kind, its lineage in the manifest
        kind = "table"
    if png.suffix.lower() in AUDIO_TYPES:  # a WAV (audio data) or a MIDI (music tokens) is what a person plays
        kind, content_type = "audio", AUDIO_TYPES[png.suffix.lower()]
    elif (model.data_spec or {}).get("kind") == "audio":  # -o named the spectrogram: record the sound beside it
        kind, content_type, png = "audio", "audio/wav", png.with_suffix(".wav")
    gid = store.record(NewGeneration(
        kind=kind, content=png.read_bytes(), content_type=content_type, manifest=manifest, model_id=mid, family=manifest["family"],
        prompt=prompt, seed=manifest["seed"], synthetic=True,
    ))
    if samples is not None and is_digits_shaped(model.data_spec):
        record_sample_images(store, gid, manifest, samples, mid, image_encoder)
    return gid


def is_digits_shaped(data_spec: dict | None) -> bool:
    """8x8 single-channel images of 17 levels: what the digits evaluator's features are made for."""
    spec = data_spec or {}
    return spec.get("kind") == "image" and tuple(spec.get("shape") or ()) == (1, 8, 8) and spec.get("levels") == 17


def record_sample_images(store, parent_id: int, manifest: dict, samples, model_id: int, encoder=None) -> list[int]:
    """One image record per sample (levels as .npy, its features in the encoder's space), in one write.
    The encoder (torch, the digits CNN) is loaded here, only when images are recorded."""
    import io

    import numpy as np

    if encoder is None:
        from genzoo.tasks.encoders import DigitsImageEncoder

        encoder = DigitsImageEncoder()
    images = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples)
    levels = np.clip(np.rint(images), 0, 16).astype(np.int16).reshape(len(images), 1, 8, 8)
    vectors = encoder.encode(levels)
    items = []
    for i, (image, vector) in enumerate(zip(levels, vectors)):
        buf = io.BytesIO()
        np.save(buf, image, allow_pickle=False)
        items.append(NewGeneration(
            kind="image", content=buf.getvalue(), content_type="application/x-npy", manifest={**manifest, "sample_index": i},
            model_id=model_id, family=manifest["family"], seed=manifest["seed"], synthetic=True, parent_id=parent_id,
            embedding=vector, space=encoder.space))
    return store.record_many(items)


def record_text(store, manifest: dict, text: str, model, conversation_id: str | None = None) -> int:
    folder = Path(manifest["checkpoint"])
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    from genzoo.runs.manifest import config_hash

    mid = store.register_model(_model_record(folder, manifest["family"], config.get("variant", ""), config, config_hash(config)))
    return store.record(NewGeneration(kind="text", text=text, prompt=manifest["prompt"], manifest=manifest, model_id=mid,
                                      family=manifest["family"], seed=manifest["seed"], conversation_id=conversation_id))


def reproduce_generation(store, generation_id: int, *, device: str | None = None, checkpoint: Path | None = None) -> dict:
    """Regenerate a stored generation from its manifest and checkpoint; a dict like ``provenance.reproduce``'s."""
    g = store.get(generation_id)
    manifest = g.manifest
    fmt = manifest.get("format")
    if fmt == TEXT_FORMAT:
        return _reproduce_text(g, manifest, device=device, checkpoint=checkpoint)
    if isinstance(fmt, str) and fmt.startswith("genzoo.manifest/"):
        from genzoo.runs import manifest as provenance

        result = provenance.reproduce(manifest, checkpoint=checkpoint, device=device)
        if g.content_sha256 and g.content is not None and sha256_hex(g.content) != g.content_sha256:
            result["notes"].append("the stored content no longer matches its recorded sha256")
        return result
    raise GenzooError(f"generation {generation_id} has no replayable manifest (format {fmt!r}); it was recorded without one")


def _reproduce_text(g, manifest: dict, *, device, checkpoint) -> dict:
    from genzoo.tasks.textgen import generate_text, load_text_model

    folder = Path(checkpoint or manifest["checkpoint"])
    if not folder.exists():
        raise GenzooError(f"the model folder this generation names, {folder}, is missing; pass --checkpoint PATH to a folder with the same weights")
    sha = weights_sha256(folder)
    if sha != manifest["checkpoint_sha256"]:
        raise GenzooError(f"checkpoint sha256 mismatch: {folder} has {sha}, the record {manifest['checkpoint_sha256']}; restore the original weights")
    model, tokenizer = load_text_model(folder, device or "cpu")
    result = generate_text(model, tokenizer, [manifest["prompt"]], seed=manifest["seed"], **manifest["options"])[0]
    now = sha256_hex(result.text)
    notes = []
    if manifest.get("redacted"):
        notes.append("PII was redacted from this record's prompt or text before storage; the replay uses the redacted prompt")
    return {
        "identical": now == manifest["outputs"]["sha256"], "max_abs_diff": None, "outputs_sha256": now,
        "recorded_sha256": manifest["outputs"]["sha256"], "compared_with": "sha256", "checkpoint": str(folder),
        "checkpoint_sha256": sha, "checkpoint_matches": True, "device": device or "cpu", "version_changes": {}, "notes": notes,
        "text": result.text,
    }


def record_with(store_path: Path | None, write) -> tuple[int | list[int], str]:
    """Open the CLI's store, run ``write(store)``, close; (what it returned, the store's URL)."""
    store = open_for_cli(store_path)
    try:
        return write(store), store.backend.url
    finally:
        store.close()


def looks_like_id(target: str) -> bool:
    """A generation id (digits) rather than a manifest path: a file of that name wins."""
    return target.isdigit() and not Path(target).exists()
