"""Provenance: sampling returns a manifest; `reproduce` replays it bit for bit or refuses clearly."""

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genzoo import api
from genzoo.runs import manifest as provenance
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError

runner = CliRunner()

FIELDS = {
    "format", "family", "variant", "config_sha256", "checkpoint", "checkpoint_sha256", "seed", "n", "condition",
    "sampler_options", "device", "versions", "created_at", "duration_s", "outputs", "data",
}


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny VAE run, trained once for the module (never modified: tests that tamper copy it)."""
    out = tmp_path_factory.mktemp("prov") / "run"
    api.train("vae", "digits", steps=5, out=out, progress=False, val_every=0, batch_size=16)
    return out


@pytest.fixture
def run_copy(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def assert_plain(value, where="manifest"):
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{where} is a {type(value).__name__}"


def test_sample_writes_png_manifest_and_npy_with_every_field(trained, tmp_path):
    png = tmp_path / "new" / "dir" / "grid.png"  # folders that do not exist yet
    result = cli("sample", trained, "--n", 8, "--seed", 3, "-o", png, "--temperature", 0.9)
    manifest_file, npy = png.with_suffix(".json"), png.with_suffix(".npy")
    assert png.stat().st_size > 0 and manifest_file.is_file() and npy.is_file()
    assert str(manifest_file) in result.output.replace("\n", "")
    m = json.loads(manifest_file.read_text())
    assert FIELDS <= set(m) and m["image"] == "grid.png" and m["array"] == "grid.npy"
    assert_plain(m)
    assert json.loads(json.dumps(m)) == m
    assert m["format"] == "genzoo.manifest/1" and m["family"] == "vae" and m["data"] == "digits"
    assert m["seed"] == 3 and m["n"] == 8 and m["condition"] is None and m["device"] == "cpu"
    # the options as given, over the family's defaults: a complete record
    assert m["sampler_options"] == {"temperature": 0.9, "mode": "sample"}
    ckpt = trained / "checkpoint"
    assert m["checkpoint"] == str(ckpt.resolve())
    assert m["checkpoint_sha256"] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    model = api.load(trained)
    canonical = json.dumps(model.config.to_dict(), sort_keys=True, separators=(",", ":"))
    assert m["config_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert set(m["versions"]) == {"genzoo", "torch", "python", "numpy"} and m["versions"]["torch"] == torch.__version__
    assert datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert m["duration_s"] >= 0
    x = np.load(npy)
    assert m["outputs"] == {"shape": [8, 1, 8, 8], "dtype": "float32", "sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()}


def test_reproduce_is_bit_identical_and_other_seeds_are_not(trained, tmp_path):
    png = tmp_path / "grid.png"
    cli("sample", trained, "--n", 8, "--seed", 3, "-o", png, "--save-npy", tmp_path / "extra.npy")
    assert np.array_equal(np.load(tmp_path / "extra.npy"), np.load(png.with_suffix(".npy")))
    result = cli("reproduce", png.with_suffix(".json"))
    text = result.output.lower()
    assert "bit-identical: yes" in text and "matches the manifest" in text
    assert "not identical" not in text and "differ" not in text

    same = api.reproduce(png.with_suffix(".json"))
    assert same["identical"] and same["max_abs_diff"] == 0.0 and same["compared_with"].endswith("grid.npy")

    other = api.generate(trained, 8, seed=4)
    assert other.manifest["outputs"]["sha256"] != same["outputs_sha256"]
    diff = api.reproduce(png.with_suffix(".json"), outputs=other.outputs)
    assert not diff["identical"] and diff["max_abs_diff"] > 0

    # the saved array swapped for another seed's: the CLI says so and exits 1
    np.save(png.with_suffix(".npy"), other.outputs.numpy())
    result = cli("reproduce", png.with_suffix(".json"), code=1)
    assert "NOT bit-identical: max |diff| = " in result.output


def test_api_generate_matches_and_refuses_unknown_options(trained):
    a = api.generate(trained, 4, seed=7, mode="mean")
    b = api.generate(trained, 4, seed=7, mode="mean")
    assert torch.equal(a.outputs, b.outputs) and a.manifest["outputs"] == b.manifest["outputs"]
    assert a.manifest["sampler_options"] == {"temperature": 1.0, "mode": "mean"}
    assert a.manifest["outputs"]["sha256"] == provenance.tensor_sha256(a.outputs)
    # without a saved array, reproduce compares with the recorded sha256
    r = provenance.reproduce(a.manifest)
    assert r["identical"] and r["compared_with"] == "sha256"
    edited = {**a.manifest, "outputs": {**a.manifest["outputs"], "sha256": "0" * 64}}
    r = provenance.reproduce(edited)
    assert not r["identical"] and r["max_abs_diff"] is None
    with pytest.raises(GenzooError, match="no option"):
        api.generate(trained, 4, seed=0, steps=10)
    # an in-memory model: recorded, but with no checkpoint to replay
    mem = provenance.generate(api.load(trained), 2, seed=0)
    assert mem.manifest["checkpoint"] is None
    with pytest.raises(GenzooError, match="no checkpoint"):
        provenance.reproduce(mem.manifest)


def test_changed_weights_are_refused_clearly(run_copy, tmp_path):
    from safetensors.torch import load_file, save_file

    png = tmp_path / "s" / "grid.png"
    cli("sample", run_copy, "--n", 4, "--seed", 1, "-o", png)
    weights = run_copy / "checkpoint" / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] += 1e-3
    save_file(state, str(weights))
    result = cli("reproduce", png.with_suffix(".json"), code=2)
    assert "error:" in result.output and "sha256 mismatch" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(GenzooError, match="weights changed"):
        api.reproduce(png.with_suffix(".json"))

    shutil.rmtree(run_copy)
    result = cli("reproduce", png.with_suffix(".json"), code=2)
    assert "error:" in result.output and "missing" in result.output and "--checkpoint" in result.output


def test_a_moved_run_replays_with_checkpoint(run_copy, tmp_path):
    png = tmp_path / "grid.png"
    cli("sample", run_copy, "--n", 4, "--seed", 2, "-o", png)
    moved = shutil.move(run_copy, tmp_path / "moved")
    assert "missing" in cli("reproduce", png.with_suffix(".json"), code=2).output
    assert "bit-identical: yes" in cli("reproduce", png.with_suffix(".json"), "--checkpoint", moved).output


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a genzoo manifest"),
        ('{"format": "genzoo.manifest/9"}', "genzoo.manifest/9"),
        ('{"format": "genzoo.manifest/1", "family": "vae"}', "lacks config_sha256"),
    ],
)
def test_bad_manifests_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    result = cli("reproduce", path, code=2)
    assert "error:" in result.output and message in result.output.replace("\n", " ")
    assert isinstance(result.exception, SystemExit)  # typer.Exit, not a traceback
    with pytest.raises(GenzooError, match="sample again|`genzoo sample`|genzoo version"):
        provenance.reproduce(path)


def test_sample_refuses_an_output_that_is_not_a_picture(trained, tmp_path):
    result = cli("sample", trained, "-o", tmp_path / "grid.json", code=2)
    assert "-o names the picture" in result.output


def test_reading_manifests_needs_no_torch(tmp_path):
    m = _write(tmp_path / "m.json", json.dumps({"format": "genzoo.manifest/1"}))
    code = (
        "import sys; from genzoo.runs import manifest as p\n"
        f"try:\n    p.read_manifest({str(m)!r})\nexcept p.GenzooError as e:\n    assert 'lacks' in str(e)\n"
        f"assert len(p.sha256_file({str(m)!r})) == 64\n"
        "assert 'torch' not in sys.modules, 'provenance imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_manifest_formats_are_frozen():
    """Stored records name their manifest's format: a renamed format string (as a module move once
    did to genzoo.textgen/1) would make every record written before it unreadable by `reproduce`."""
    from genzoo.runs.manifest import MANIFEST_FORMAT, TEXT_FORMAT
    from genzoo.tasks.rag import RAG_FORMAT

    assert (MANIFEST_FORMAT, TEXT_FORMAT, RAG_FORMAT) == ("genzoo.manifest/1", "genzoo.textgen/1", "genzoo.rag/1")
