"""The README's text examples run as written, on tiny models: every `genzoo train gpt|t5`, `generate`,
`finetune`, `adapters` and `rag` line of its code blocks, in order, in a scratch folder. What is
changed is only what makes them fast (steps, a tiny model size) or names what a reader supplies
(a Hugging Face folder, my.txt, schema.json, pairs.jsonl); a line the README adds later is picked
up automatically."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
WANTED = re.compile(r"^\.venv/bin/genzoo (train (gpt|t5)|generate|finetune|adapters|rag) ")
TINY = ["--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32"]


def readme_lines() -> list[str]:
    lines, block = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            block = not block
            continue
        if block and WANTED.match(line):
            lines.append(line)
    return lines


def fast(line: str) -> list[str]:
    """The command's arguments, made quick: no comment, a few steps instead of minutes, a tiny model."""
    args = shlex.split(line, comments=True)[1:]
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in ("--minutes", "--steps"):
            out += ["--steps", "2"]
            skip = True
        elif a == "--compile":  # compiling takes a minute on a CPU; training is the same without it
            continue
        elif a == "--attempts":
            out += ["--attempts", "2"]
            skip = True
        elif a == "--max-tokens":
            out += ["--max-tokens", "12"]
            skip = True
        else:
            out.append(a.replace("runs/gpt-pydocs", "runs/gpt"))
    if out[:2] in (["train", "gpt"], ["train", "t5"]):
        out += TINY[:6] if out[1] == "t5" else TINY
        out += ["--no-eval", "--batch-size", "4"]
    if out[0] in ("generate", "rag") and "--no-store" not in out and out[:2] != ["rag", "index"]:
        out.append("--no-store")
    if out[0] == "generate" and "--max-tokens" not in out:
        out += ["--max-tokens", "12"]
    return out


def test_the_readme_has_text_examples():
    lines = readme_lines()
    assert any(" generate " in s for s in lines) and any(" finetune " in s for s in lines) and any(" rag ask " in s for s in lines)


@pytest.mark.slow
def test_every_text_example_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GENZOO_STORE", str(tmp_path / "store.db"))
    monkeypatch.delenv("GENZOO_API_KEY", raising=False)
    (tmp_path / "schema.json").write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))
    (tmp_path / "my.txt").write_text("KING:\nthe night is good my lord.\n\n" * 200)
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"input": f"add {i} and {i + 1}", "target": str(2 * i + 1)}) + "\n"
                                                 for i in range(100)))
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    hf = None
    runner = CliRunner()
    for line in readme_lines():
        args = fast(line)
        if "path/to/hf-llama-folder" in args:
            if hf is None:
                pytest.importorskip("transformers")
                from hf_tiny import save_tiny_llama

                save_tiny_llama(tmp_path / "hf-llama")
                hf = tmp_path / "hf-llama"
            args = [str(hf) if a == "path/to/hf-llama-folder" else a for a in args]
        result = runner.invoke(app, args)
        if "--verify" in args and result.exit_code == 1:  # a 2-step model's code rarely parses: the designed refusal
            assert "verifier python: FAILED after 2 attempt(s)" in result.output, result.output
            continue
        assert result.exit_code == 0, f"README line failed: {line}\n  ran: genzoo {' '.join(args)}\n{result.output}"
