"""Bench entries with config overrides: one family benched twice (UNet vs DiT) at the same budget."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genzoo.bench.runner import _options_for, parse_entry, split_entries
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError


def test_entries_parse_family_variant_and_overrides():
    assert parse_entry("diffusion") == ("diffusion", None, {})
    assert parse_entry("gan:wgan-gp") == ("gan", "wgan-gp", {})
    assert parse_entry("diffusion[backbone=dit]") == ("diffusion", None, {"backbone": "dit"})
    assert parse_entry("diffusion:v[backbone=dit,dit_depth=2]") == ("diffusion", "v", {"backbone": "dit", "dit_depth": 2})
    assert parse_entry("diffusion[channels=[8,16]]") == ("diffusion", None, {"channels": [8, 16]})
    assert split_entries("diffusion, diffusion[backbone=dit,dit_depth=2],gan:dcgan") == [
        "diffusion", "diffusion[backbone=dit,dit_depth=2]", "gan:dcgan"]
    for bad in ("diffusion[backbone=dit", "diffusion[]", "diffusion[backbone]", "diffusion:[x=1]"):
        with pytest.raises(GenzooError):
            parse_entry(bad)


def test_options_go_to_the_whole_entry_then_the_variant_then_the_family():
    opts = {"diffusion": {"steps": 1}, "diffusion[backbone=dit]": {"steps": 2}, "diffusion:v": {"steps": 3}}
    assert _options_for(opts, "diffusion[backbone=dit]") == {"steps": 2}
    assert _options_for(opts, "diffusion[dropout=0.1]") == {"steps": 1}
    assert _options_for(opts, "diffusion:v[backbone=dit]") == {"steps": 3}


def test_bench_refuses_a_bad_override_before_training(tmp_path):
    from genzoo.bench import run_bench

    with pytest.raises(GenzooError, match="backbone"):
        run_bench("digits", families=["diffusion[backbone=dti]"], steps=1, out_dir=tmp_path, progress=False)
    with pytest.raises(GenzooError, match="no config field"):
        run_bench("digits", families=["diffusion[depthh=2]"], steps=1, out_dir=tmp_path, progress=False)
    with pytest.raises(GenzooError, match="repeat"):
        run_bench("digits", families=["diffusion", "diffusion"], steps=1, out_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_bench_runs_unet_and_dit_side_by_side(tmp_path):
    tiny = "heads=2,timesteps=20"
    entries = f"diffusion[channels=[8,16],{tiny}],diffusion[backbone=dit,dit_width=16,dit_depth=1,{tiny}]"
    result = CliRunner().invoke(app, ["bench", "--data", "digits", "--steps", "2", "--n", "16", "--families", entries,
                                      "--sample-opt", "diffusion.steps=4", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "diffusion[backbone=dit" in result.output  # printed as text, not eaten as Rich markup
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    rows = [r for r in rows if r["family"].startswith("diffusion")]
    assert [r["family"] for r in rows] == split_entries(entries)
    assert [r["overrides"].get("backbone") for r in rows] == [None, "dit"]
    assert all(r["train_steps"] == 2 and r["train_steps_per_second"] > 0 for r in rows)
    backbones = [json.loads((Path(r["run"]) / "checkpoint" / "config.json").read_text())["config"]["backbone"] for r in rows]
    assert backbones == ["unet", "dit"]
    assert rows[0]["parameters"] != rows[1]["parameters"]


def test_cli_error_quotes_the_entry_verbatim(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--steps", "1", "--families", "diffusion[backbone=dit", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "e.g. diffusion[backbone=dit]" in " ".join(result.output.split())  # not swallowed as Rich markup
