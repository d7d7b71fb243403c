import json

import pytest
from typer.testing import CliRunner

import twoopt  # noqa: F401  (registers the test-only family "test-twoopt")
from genzoo.cli.main import app
from genzoo.registry import families

runner = CliRunner()


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_list_shows_families_and_datasets():
    result = run("list")
    assert "digits" in result.output and "toy2d:moons" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "gpt9", "--steps", "1"], "unknown family 'gpt9'; choose one of: "),
        (["train", "test-twoopt", "--data", "mnist", "--steps", "1"], "valid datasets"),
        (["train", "test-twoopt", "--data", "toy2d:moons", "--steps", "1", "--set", "depth=3"], "no config field"),
        (["train", "test-twoopt", "--data", "toy2d:moons", "--steps", "1", "--variant", "big"], "valid variants"),
        (["train", "test-twoopt", "--data", "toy2d:moons", "--steps", "0"], "at least 1"),
        (["sample", "no/such/run"], "does not exist"),
    ],
)
def test_bad_input_gets_a_clear_message(args, message):
    result = run(*args, ok=False)
    assert result.exit_code == 2
    assert message in result.output


def test_train_sample_info_resume(tmp_path):
    out = tmp_path / "run"
    run("train", "test-twoopt", "--data", "toy2d:moons", "--steps", "12", "--batch-size", "32", "--out", out, "--no-eval", "--checkpoint-every", "5")
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "loss.png").is_file()
    # a second train into the same folder is refused, not overwritten
    again = run("train", "test-twoopt", "--data", "toy2d:moons", "--steps", "12", "--out", out, "--no-eval", ok=False)
    assert "--resume" in again.output
    run("train", "test-twoopt", "--data", "toy2d:moons", "--steps", "20", "--out", out, "--resume", "--no-eval")
    info = json.loads(run("info", out).output)
    assert info["family"] == "test-twoopt" and info["trained_steps"] == 20
    png = tmp_path / "s.png"
    run("sample", out, "--n", "100", "-o", png, "--save-npy", tmp_path / "s.npy")
    assert png.stat().st_size > 0 and (tmp_path / "s.npy").is_file()
    bad = run("sample", out, "--sampler", "ddim", "-o", png, ok=False)
    assert "no option" in bad.output
    cond = run("sample", out, "--condition", "3", "-o", png, ok=False)
    assert "class conditioning" in cond.output


def test_a_given_budget_replaces_the_family_default_budget():
    from genzoo import api
    from genzoo.data import load_dataset
    from genzoo.registry import get_family

    digits = load_dataset("digits", "train")
    vae = get_family("vae").model_class
    assert api.train_config_for(vae, digits, minutes=5).steps is None  # not capped by the family's default steps
    assert api.train_config_for(vae, digits, steps=7).steps == 7
    assert api.train_config_for(vae, digits).steps == vae.default_train(digits.spec()).get("steps", 2000)


def test_complete_fills_in_the_bottom_half_and_refuses_models_that_cannot(tmp_path):
    out = tmp_path / "pcnn"
    run("train", "pixelcnn", "--data", "digits", "--steps", "3", "--batch-size", "16", "--out", out, "--no-eval",
        "--set", "channels=8", "--set", "layers=2", "--set", "head_channels=8")
    png = tmp_path / "done.png"
    result = run("complete", out, "--given", "top-half", "--images", "2", "--per-image", "2", "-o", png)
    assert png.stat().st_size > 0 and "completions" in result.output
    assert "valid masks" in run("complete", out, "--given", "diagonal", "-o", png, ok=False).output
    gan = tmp_path / "gan"
    run("train", "test-twoopt", "--data", "toy2d:moons", "--steps", "2", "--batch-size", "16", "--out", gan, "--no-eval")
    assert "cannot complete" in run("complete", gan, "-o", png, ok=False).output


def test_interpolate_draws_rows_and_refuses_bad_pairs_and_models_that_cannot(tmp_path):
    out = tmp_path / "glow"
    run("train", "glow", "--data", "digits", "--steps", "2", "--batch-size", "16", "--out", out, "--no-eval",
        "--set", "hidden=8", "--set", "levels=1", "--set", "steps_per_level=1")
    png = tmp_path / "interp.png"
    result = run("interpolate", out, "--pair", "0,5", "--pair", "1,2", "--steps", "6", "-o", png)
    assert "2 interpolations of 6 images" in result.output
    from PIL import Image

    w, h = Image.open(png).size
    assert w > 2.5 * h  # two rows of six tiles
    assert "two test-image indices" in run("interpolate", out, "--pair", "3", "-o", png, ok=False).output
    assert "must lie in 0..446" in run("interpolate", out, "--pair", "0,447", "-o", png, ok=False).output
    vae = tmp_path / "vae"
    run("train", "vae", "--data", "digits", "--steps", "2", "--batch-size", "16", "--out", vae, "--no-eval")
    assert "cannot interpolate" in run("interpolate", vae, "-o", png, ok=False).output


def test_per_family_options_keep_hyphenated_family_names():
    from genzoo.cli.training import _per_family

    assert _per_family(["gated-pixelcnn.temperature=0.5", "vae.k=10", "vae.batch-size=4"]) == {
        "gated-pixelcnn": {"temperature": 0.5}, "vae": {"k": 10, "batch_size": 4},
    }
    with pytest.raises(Exception, match="FAMILY.KEY=VALUE"):
        _per_family(["k=3"])


def test_bench_table_takes_the_floor_from_a_scored_row_when_the_first_failed():
    from genzoo.bench.report import markdown

    rows = [{"family": "broken", "error": "diverged"}, {"family": "vae", "fd_digits": 80.0, "fd_digits_floor": 35.2}]
    table = markdown(rows, "digits", {"minutes": 5})
    assert "real-vs-real floor" in table and "35.20" in table


def test_eval_names_the_weights_and_keeps_eval_json_for_the_selected_ones(tmp_path):
    out = tmp_path / "vae"
    run("train", "vae", "--data", "digits", "--steps", "4", "--val-every", "2", "--batch-size", "16", "--out", out, "--no-eval")
    assert (out / "best" / "selection.json").is_file()
    run("eval", out, "--n", "50", "--no-nll")
    run("eval", out / "checkpoint", "--n", "50", "--no-nll")
    selected = json.loads((out / "eval.json").read_text())
    last = json.loads((out / "eval_checkpoint.json").read_text())  # the last weights do not overwrite eval.json
    assert selected["weights"] == "best" and selected["selected_step"] in (2, 4) and selected["data"] == "digits"
    assert last["weights"] == "checkpoint" and "selected_step" not in last


def test_vit_and_clip_are_listed_as_families_with_their_capabilities():
    assert families()["vit"].capabilities == {"classify"} and families()["clip"].capabilities == {"score"}
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["families"]
    assert listed["vit"]["capabilities"] == ["classify"] and "image" in listed["vit"]["data"]
    assert listed["clip"]["capabilities"] == ["score"] and listed["t5"]["capabilities"] == ["seq2seq"]
    assert set(listed["bert"]["capabilities"]) == {"embed", "infill"} and "captioned-digits" in json.loads(result.output)["datasets"]
    table = CliRunner().invoke(app, ["list"])  # the table names every family whole, at any terminal width
    assert table.exit_code == 0 and all(name in table.output for name in listed)


def test_an_error_is_one_unwrapped_line_in_a_narrow_terminal(tmp_path):
    """The command as a user's shell runs it (not through CliRunner): at 40 columns, with a long
    path, the error is one line on stderr that starts `error:` and holds the path whole."""
    import os
    import subprocess
    import sys

    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "run"
    env = dict(os.environ, COLUMNS="40", TERM="xterm")
    r = subprocess.run([sys.executable, "-m", "genzoo.cli", "sample", str(missing), "--no-store"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], r.stderr


def test_sample_on_a_text_run_points_to_generate(tmp_path):
    """`genzoo sample` on a GPT run used to end in a plotting traceback; it now says which verb writes text."""
    out = tmp_path / "gpt"
    run("train", "gpt", "--data", "pydocs", "--steps", "1", "--set", "layers=1", "--set", "width=16", "--set", "heads=1",
        "--set", "context=16", "--no-eval", "--out", str(out))
    result = run("sample", str(out), "--n", "2", "--no-store", ok=False)
    assert "is a text model: `genzoo generate" in result.output and "Traceback" not in result.output
