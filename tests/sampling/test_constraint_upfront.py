"""Constraints are checked against the vocabulary before the first token: a character the
vocabulary cannot write is refused by name (never as <unk>), special tokens never pass a mask,
and a constraint the vocabulary can write still works."""

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.data.tokenizer import TextTokenizer
from genzoo.models.gpt import GPT, GPTConfig
from genzoo.sampling.constrained import Constraint
from genzoo.tasks.textgen import generate_text

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:\nAy me! 0123456789 xyz\n"  # no { - ; "


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(TEXT, kind="char")


def refused(tok, missing: str, **constraint) -> str:
    with pytest.raises(GenzooError) as e:
        Constraint(tok, special_ids=tok.special_ids, **constraint)
    message = str(e.value)
    assert f"needs {missing!r}" in message and "cannot write" in message and "unk" not in message.lower()
    assert "\n" not in message
    return message


def test_a_json_schema_needing_a_missing_brace_is_refused(tok):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    message = refused(tok, "{", json_schema=schema)
    assert "char" in message and f"{tok.vocab_size} tokens" in message


def test_a_regex_needing_a_missing_character_is_refused(tok):
    refused(tok, "-", regex=r"[0-9]{3}-[a-z]+")  # past a choice of digits: read from the regex
    refused(tok, ";", regex=r"(ROMEO|JULIET);")
    with pytest.raises(GenzooError, match="one of"):
        Constraint(tok, regex=r"[a-z]+(;|\{)")  # every alternative missing


def test_a_grammar_whose_forced_text_is_missing_a_character_is_refused(tok):
    message = refused(tok, ";", grammar='start: "ROMEO" ";" /[a-z]+/')
    assert "after 'ROMEO'" in message


def test_special_tokens_never_pass_a_mask(tok):
    c = Constraint(tok, regex=r"[a-z ]+", special_ids=tok.special_ids)
    allowed = c.matcher().allowed()
    assert allowed.any() and not allowed[tok.special_ids].any()


def tiny(tok) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(data={"kind": "tokens", "vocab_size": tok.vocab_size}, context=16, layers=1, width=32,
                          heads=4, dropout=0.0))
    model.tokenizer = tok
    return model.eval()


@pytest.mark.parametrize("constraint, pattern", [
    ({"regex": r"(ROMEO|JULIET): [a-z]{3,8}!"}, r"(ROMEO|JULIET): [a-z]{3,8}!"),
    ({"grammar": 'start: "Ay " /[0-9]{2}/ "!"'}, r"Ay [0-9]{2}!"),
])
def test_a_constraint_the_vocabulary_can_write_works(tok, constraint, pattern):
    for seed in range(3):
        out = generate_text(tiny(tok), tok, ["x"], max_tokens=40, seed=seed, **constraint)[0]
        assert re.fullmatch(pattern, out.text), out.text


def test_cli_refuses_before_the_first_token(tok, tmp_path):
    tiny(tok).save_pretrained(tmp_path / "run")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}))
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "JULIET:", "--json-schema", str(schema), "--no-store"])
    assert result.exit_code == 2 and "{" in result.output and "unk" not in result.output.lower()
    assert "Traceback" not in result.output and "JULIET:" not in result.output  # nothing streamed
