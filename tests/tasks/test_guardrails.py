"""Guardrails (issue 27): each rule against known answers, the policy file, and the CLI wiring
(`genzoo rag ask` and `genzoo sample` with --guardrails record the verdict in the manifest)."""

import json

import pytest
import torch

import twoopt  # noqa: F401  (registers the test-only family "test-twoopt")

from genzoo.core.errors import GenzooError
from genzoo.tasks.guardrails import Policy, Verdict, load_policy

SOURCES = ["To continue a stopped run, pass --resume with the same --out folder.",
           "Use genzoo sample RUN --n 16 to draw images from a trained model."]


def policy(**sections) -> Policy:
    return Policy({"pii": {"enabled": False}, **sections})


def test_the_default_policy_redacts_pii_and_says_so_in_one_line():
    v = load_policy(None).check_text("write to ana.lopez@example.com today")
    assert isinstance(v, Verdict) and v.action == "redacted" and v.text == "write to <EMAIL> today"
    assert v.rules == [{"rule": "pii", "action": "redacted", "detail": {"email": 1}}]
    assert v.summary() == "guardrails: redacted (pii: 1 email)"
    assert load_policy(None).check_text("the list is sorted in place").action == "passed"


def test_blocked_terms_match_whole_words_in_any_case_and_patterns_as_written():
    p = policy(terms={"blocked": ["ass", "c++"], "patterns": [r"\bsk-[a-z0-9]{8,}\b"]})
    assert p.check_text("What an ASS.").action == "withheld"
    assert p.check_text("I wrote it in C++ today").action == "withheld"
    assert p.check_text("the key sk-abcdef123456 leaked").rules[0]["detail"] == {"matched": r"\bsk-[a-z0-9]{8,}\b"}
    for clean in ("a class and a pass", "the assignment", "c+ grade", "task-abcdef123456"):
        assert p.check_text(clean).action == "passed", clean
    v = policy(terms={"blocked": ["secret"], "action": "flag"}).check_text("a Secret plan")
    assert (v.action, v.text) == ("flagged", "a Secret plan")


def test_a_withheld_text_is_replaced_by_the_policy_placeholder():
    p = Policy({"withheld_text": "[withheld]", "terms": {"blocked": ["secret"]}})
    assert p.check_text("the secret is out").text == "[withheld]"


def test_length_limits():
    p = policy(length={"min_chars": 5, "max_chars": 20})
    assert p.check_text("hi").rules[0]["detail"] == "2 chars < min 5"
    assert p.check_text("x" * 21).action == "flagged"
    assert p.check_text("just right").action == "passed"


def test_json_schema_and_python_structure():
    schema = {"type": "object", "required": ["name", "age"], "additionalProperties": False,
              "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}
    p = policy(structure={"json_schema": schema})
    assert p.check_text('{"name": "x", "age": 3}').action == "passed"
    for bad in ('{"name": "x"}', '{"name": "x", "age": -1}', '{"name": "x", "age": "3"}', '{"name": "x", "age": 1, "z": 0}',
                "not json", '[1, 2]'):
        assert p.check_text(bad).action == "flagged", bad
    # a call's schema applies even without a [structure] section
    assert policy().check_text("{}", schema={"type": "object", "required": ["a"]}).rules[0]["rule"] == "structure"
    py = policy(structure={"python": True, "action": "withhold"})
    assert py.check_text("def f(x):\n    return x\n").action == "passed"
    assert py.check_text("def f(x) return x").action == "withheld"


def test_grounding_flags_unsupported_sentences_and_says_when_no_source_is_relevant():
    p = policy(grounding={})
    q = "how do I continue a stopped run?"
    assert p.check_text("Pass --resume with the same --out folder to continue a stopped run.", prompt=q, sources=SOURCES).action == "passed"
    v = p.check_text("Pass --resume to continue. Bananas grow on tall tropical plants in Ecuador.", prompt=q, sources=SOURCES)
    assert v.action == "flagged" and v.rules[0]["rule"] == "grounding" and v.rules[0]["detail"]["unsupported"] == 1
    v = p.check_text("Bake it at 200 degrees.", prompt="how long should sourdough bread bake?", sources=SOURCES)
    assert (v.action, v.text, v.rules[0]["rule"]) == ("withheld", "not found in the sources", "no_source")
    assert p.check_text("anything", prompt=q, sources=[]).text == "not found in the sources"
    assert p.check_text("Bananas grow in Ecuador, a tropical country.").action == "passed"  # no sources given: not a RAG answer


def test_harm_catches_abuse_and_passes_technical_text():
    p = policy(harm={})
    for bad in ("You are a worthless idiot.", "Shut up, you stupid moron.", "The docs are fine. You are a fucking idiot though."):
        assert p.check_text(bad).action == "withheld", bad
    for clean in ("Return a new sorted list from the items in iterable.", "The process was killed by the kernel's OOM handler."):
        assert p.check_text(clean).action == "passed", clean


def _digits():
    from genzoo.data import load_dataset

    return load_dataset("digits", "train").x, load_dataset("digits", "test").x, load_dataset("digits", "val").x


def test_the_copy_guard_withholds_copies_of_training_digits_and_passes_fresh_ones():
    train, test, val = _digits()
    p = policy(copy={})
    g = torch.Generator().manual_seed(0)
    near = (train[:20] + torch.randint(-1, 2, train[:20].shape, generator=g)).clamp(0, 16)  # each level moved by at most 1
    verdicts = p.check_samples(torch.cat([train[:20], near]), train=train, holdout=test)
    assert all(v.action == "withheld" and v.rules[0]["rule"] == "copy" for v in verdicts)
    assert verdicts[0].rules[0]["detail"]["nn_distance"] == 0
    fresh = p.check_samples(val, train=train, holdout=test)
    assert sum(v.action != "passed" for v in fresh) / len(val) < 0.15  # ~5% by construction; 9.1% measured (eval.memorization)
    flag = policy(copy={"action": "flag", "data": "digits"}).check_samples(train[:3])
    assert [v.action for v in flag] == ["flagged"] * 3
    assert [v.action for v in policy().check_samples(train[:3])] == ["passed"] * 3  # no [copy]: nothing checked


def test_bad_policies_fail_with_one_clear_line(tmp_path):
    cases = {"[pi]\n": "unknown section", "[terms]\nblocked = ['x']\naction = 'delete'\n": "action must be",
             "[terms]\npatterns = ['(']\n": "not a valid regular expression", "[grounding]\nmethod = 'vibes'\n": "lexical or minilm",
             "[length]\nmax = 3\n": "has no setting", "[pii\n": "not valid TOML",
             "[structure]\njson_schema = {type = 'object', oneOf = []}\n": "jsonschema"}
    for text, message in cases.items():
        f = tmp_path / "p.toml"
        f.write_text(text)
        with pytest.raises(GenzooError, match=message):
            load_policy(f)
    with pytest.raises(GenzooError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(GenzooError, match="training data"):
        policy(copy={}).check_samples(torch.zeros(2, 4))


def test_the_example_policy_loads_and_a_schema_file_is_read_beside_it(tmp_path):
    assert set(load_policy("examples/guardrails.toml").rules) == {"pii", "terms", "length", "structure", "grounding", "harm", "copy"}
    (tmp_path / "s.json").write_text(json.dumps({"type": "array"}))
    (tmp_path / "p.toml").write_text('[pii]\nenabled = false\n[structure]\njson_schema = "s.json"\n')
    p = load_policy(tmp_path / "p.toml")
    assert p.check_text("[1]").action == "passed" and p.check_text("{}").action == "flagged"
    entry = p.manifest_entry(p.check_text("{}"))
    assert "text" not in entry and entry["action"] == "flagged" and entry["policy"]["rules"] == ["structure"]


# ---- the CLI: the verdict is printed and recorded -------------------------------------------------


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_STORE", str(tmp_path / "s.db"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENZOO_API_KEY", raising=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "resume.md").write_text("# Resuming\n\nTo continue a stopped run, pass --resume with the same --out folder.\n")
    (docs / "sample.md").write_text("# Sampling\n\nUse genzoo sample RUN --n 16 to draw images from a trained model.\n")
    return tmp_path


def cli(*args, code=0):
    from typer.testing import CliRunner

    from genzoo.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def test_rag_ask_records_the_verdict_and_does_not_print_a_withheld_answer(env):
    from genzoo.store.api import Store

    (env / "g.toml").write_text("[grounding]\n[terms]\nblocked = ['resume']\n")
    cli("rag", "index", env / "docs", "--keyword-only")
    out = cli("rag", "ask", "how do I continue a stopped run?", "--mode", "keyword", "--guardrails", env / "g.toml")
    assert "guardrails: withheld (terms: matched resume)" in out and "(withheld by the guardrails)" in out
    assert "pass --resume" not in out
    out = cli("rag", "ask", "how long should sourdough bread bake?", "--mode", "keyword", "--guardrails", env / "g.toml", "--no-store")
    assert out.startswith("not found in the sources") and "guardrails: withheld (no_source" in out
    with Store.open(env / "s.db", encoder=None) as s:
        g = s.get(1)
        assert g.manifest["guardrails"]["action"] == "withheld" and g.manifest["guardrails"]["rules"][0]["rule"] == "terms"
        assert g.text == ""  # the store keeps what the verdict lets through
    bad = cli("rag", "ask", "q?", "--guardrails", env / "nope.toml", code=2)
    assert "cannot read the policy file" in bad


def test_sample_with_a_copy_guard_records_each_caught_sample(env):
    import numpy as np

    run = env / "run"
    cli("train", "test-twoopt", "--data", "toy2d:moons", "--steps", "3", "--batch-size", "32", "--out", run, "--no-eval")
    (env / "c.toml").write_text("[pii]\nenabled = false\n[copy]\npercentile = 50.0\n")  # half of fresh data is caught
    out = cli("sample", run, "--n", "40", "-o", env / "s.png", "--guardrails", env / "c.toml", "--no-store")
    assert "guardrails: " in out
    manifest = json.loads((env / "s.json").read_text())["guardrails"]
    assert manifest["samples"] == 40 and manifest["policy"]["rules"] == ["copy"]
    withheld = [c["sample"] for c in manifest["caught"] if c["action"] == "withheld"]
    assert (np.load(env / "s.npy")[withheld] == 0).all()
