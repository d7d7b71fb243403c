"""`genzoo train --dp-epsilon` records its spent epsilon; `genzoo eval --privacy` prints the membership attacks;
both refuse what they cannot do with one clear line."""

import json

from typer.testing import CliRunner

from genzoo.cli.main import app

runner = CliRunner()
TINY = ["--set", "conv_widths=[8,16]", "--set", "hidden_widths=[32]", "--set", "latent_dim=4"]


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_dp_training_records_epsilon_and_eval_privacy_reports_the_attacks(tmp_path):
    out = tmp_path / "dp"
    r = run("train", "vae", "--data", "digits", "--steps", "3", "--batch-size", "32", "--val-every", "0", *TINY,
            "--dp-epsilon", "3", "--dp-delta", "1e-5", "--out", out, "--no-eval")
    assert "differential privacy: epsilon" in r.output
    spent = json.loads((out / "privacy.json").read_text())
    assert 2.9 <= spent["epsilon"] <= 3.0 and spent["delta"] == 1e-5 and spent["steps"] == 3
    assert "dp_epsilon_spent" in (out / "metrics.jsonl").read_text()

    run("sample", out, "--n", "4", "-o", tmp_path / "s.png", "--no-store")
    assert json.loads((tmp_path / "s.json").read_text())["privacy"]["epsilon"] == spent["epsilon"]  # the manifest carries it

    r = run("eval", out, "--privacy", "--nll-opt", "k=4")
    assert "membership inference (LOSS" in r.output and "membership inference (distance" in r.output
    assert "chance 0.5" in r.output and "epsilon 2.9" in r.output
    saved = json.loads((out / "privacy_eval.json").read_text())
    assert len(saved["attacks"]) == 2 and saved["dp"]["epsilon"] == spent["epsilon"]


def test_dp_refusals_are_one_clear_line(tmp_path):
    r = run("train", "vae", "--data", "digits", "--minutes", "1", "--dp-epsilon", "3", "--out", tmp_path / "x", ok=False)
    assert r.exit_code != 0 and "--dp-epsilon needs --steps" in r.output and "Traceback" not in r.output
    r = run("train", "vae", "--data", "digits", "--steps", "2", "--dp-delta", "1e-5", "--out", tmp_path / "y", ok=False)
    assert r.exit_code != 0 and "--dp-delta needs --dp-epsilon" in r.output


def test_a_resume_refuses_to_change_the_privacy_settings(tmp_path):
    common = ["--data", "digits", "--steps", "2", "--batch-size", "32", "--val-every", "0", *TINY, "--no-eval"]
    plain, private = tmp_path / "plain", tmp_path / "private"
    run("train", "vae", *common, "--out", plain)
    r = run("train", "vae", *common, "--out", plain, "--resume", "--dp-epsilon", "3", ok=False)
    said = " ".join(r.output.split())  # any terminal width
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "was trained without differential privacy; a resume cannot add --dp-epsilon" in said

    run("train", "vae", *common, "--out", private, "--dp-epsilon", "3", "--dp-delta", "1e-5")
    for flag, value in (("--dp-epsilon", "8"), ("--dp-delta", "1e-6"), ("--dp-max-grad-norm", "2")):
        r = run("train", "vae", *common, "--out", private, "--resume", "--dp-epsilon", "3", flag, value, ok=False)
        said = " ".join(r.output.split())
        assert r.exit_code != 0 and "Traceback" not in r.output and f"so drop {flag} " in said, said
    # the run's own settings, repeated, are fine
    run("train", "vae", *common, "--out", private, "--resume", "--dp-epsilon", "3", "--dp-delta", "1e-5")
