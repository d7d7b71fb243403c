"""Constrained decoding (llguidance) and the verifier loop: valid by construction, errors that say why."""

import ast
import json
import re
import string

import pytest
import torch

pytest.importorskip("llguidance")
tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402

from genzoo.core.errors import GenzooError  # noqa: E402
from genzoo.sampling.constrained import Constraint, constraint_cost  # noqa: E402
from genzoo.sampling.text import generate  # noqa: E402
from genzoo.sampling.verify import (  # noqa: E402
    all_of,
    arithmetic_equals,
    evaluate_arithmetic,
    generate_verified,
    predicate,
    python_parses,
)

# ----------------------------------------------------------------------------- stand-in tokenizers


def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Byte-level BPE spells each byte as a printable character; this is the inverse of that spelling."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class HFTokenizer:
    """The tokenizer interface genzoo's text models use, over a Hugging Face ``tokenizers.Tokenizer``."""

    def __init__(self, tk, byte_level: bool, special=("<|endoftext|>",)):
        self.tk, self.byte_level = tk, byte_level
        self.eos_id = tk.token_to_id("<|endoftext|>")
        self.vocab_size = tk.get_vocab_size()
        self.special_ids = [tk.token_to_id(s) for s in special]

    def encode(self, s: str) -> list[int]:
        return self.tk.encode(s).ids

    def decode(self, ids) -> str:
        return self.tk.decode(list(ids))

    def token_bytes(self) -> list[bytes]:
        u2b = _gpt2_unicode_to_byte()
        out = []
        for i in range(self.vocab_size):
            s = self.tk.id_to_token(i)
            if i in self.special_ids:
                out.append(s.encode())  # a control token: its literal name (marked special)
            elif self.byte_level:
                out.append(bytes(u2b[c] for c in s))
            else:
                out.append(s.encode())
        return out


def _corpus() -> str:
    import pydoc_data.topics

    return "".join(pydoc_data.topics.topics.values())[:150_000] + ' {"name": "abc", "n": 12} (1+2)*3-4/5 ' * 20


@pytest.fixture(scope="module")
def bpe():
    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([_corpus()], trainer)
    return HFTokenizer(tk, byte_level=True)


@pytest.fixture(scope="module")
def chars():
    alphabet = sorted(set(string.printable))
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<unk>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tk = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.add_special_tokens(["<|endoftext|>", "<unk>"])
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return HFTokenizer(tk, byte_level=False, special=("<|endoftext|>", "<unk>"))


# ----------------------------------------------------------------------------- stand-in models


class RandomModel:
    """Random logits (its own seeded generator in the "cache") plus a fixed bias; wider than the tokenizer."""

    def __init__(self, width: int, seed: int, bias: torch.Tensor | None = None, scale: float = 2.0):
        self.width, self.seed, self.scale = width, seed, scale
        self.bias = torch.zeros(width) if bias is None else bias

    def __call__(self, ids, cache):
        g = cache if cache is not None else torch.Generator().manual_seed(self.seed)
        out = torch.randn(ids.shape[0], ids.shape[1], self.width, generator=g) * self.scale + self.bias
        return out, g


EXTRA = 7  # the model's vocabulary is padded past the tokenizer's


def bias_towards(tok: HFTokenizer, chars_: str, amount: float, eos: float = 0.0) -> torch.Tensor:
    """A model that loves tokens holding any of ``chars_`` (and the padding ids past the vocabulary)."""
    bias = torch.zeros(tok.vocab_size + EXTRA)
    for i, b in enumerate(tok.token_bytes()):
        if i not in tok.special_ids and any(c.encode() in b for c in chars_):
            bias[i] = amount
    bias[tok.vocab_size:] = 2 * amount
    bias[tok.eos_id] = eos
    return bias


ROWS = 50  # independent random streams per case (rows of one batch, each with its own generator)


def run(tok, constraint, model, *, max_new_tokens, seed=0, constrained=True):
    prompts = [[tok.eos_id]] * (ROWS // 2) + [[tok.eos_id, tok.eos_id]] * (ROWS - ROWS // 2)
    if constrained:
        proc = constraint.as_logits_processor()
    else:  # only the padding ids past the vocabulary are masked (they have no text)
        def proc(row, ids, logits):
            return logits.masked_fill(torch.arange(len(logits)) >= tok.vocab_size, float("-inf"))
    out = generate(model, prompts, max_new_tokens=max_new_tokens, eos_id=tok.eos_id, decode=tok.decode,
                   generator=torch.Generator().manual_seed(seed), logits_processor=proc)
    if constrained:
        for o in out:
            assert all(0 <= t < tok.vocab_size and t not in tok.special_ids for t in o.ids)
    return out, proc


# ----------------------------------------------------------------------------- regex


REGEX = r"[0-9]{3}-[a-z]+"


@pytest.mark.parametrize("tok_name", ["bpe", "chars"])
@pytest.mark.parametrize("biased", [False, True])
def test_regex_outputs_always_match(tok_name, biased, request, capsys):
    tok = request.getfixturevalue(tok_name)
    c = Constraint(tok, regex=REGEX)
    width = tok.vocab_size + EXTRA
    bias = bias_towards(tok, "x}", 8.0, eos=2.0) if biased else None
    for seed in (0, 1):
        model = RandomModel(width, seed, bias)
        out, proc = run(tok, c, model, max_new_tokens=40, seed=seed)
        for r, o in enumerate(out):
            assert re.fullmatch(REGEX, o.text), o.text
            assert proc.is_accepting(r)
        free, _ = run(tok, c, RandomModel(width, seed, bias), max_new_tokens=40, seed=seed, constrained=False)
        rate = sum(bool(re.fullmatch(REGEX, o.text or "")) for o in free) / len(free)
        print(f"regex {tok_name} biased={biased}: constrained 100% valid, unconstrained {rate:.0%}")
        assert rate < 0.5


def test_regex_forced_stop_even_when_model_hates_eos(chars):
    c = Constraint(chars, regex="abc")
    bias = torch.zeros(chars.vocab_size + EXTRA)
    bias[chars.eos_id] = -100.0
    out, proc = run(chars, c, RandomModel(len(bias), 0, bias), max_new_tokens=20)
    assert all(o.text == "abc" and o.stop_reason == "eos" for o in out)
    assert all(proc.matchers[r].is_stopped() for r in range(ROWS))


# ----------------------------------------------------------------------------- JSON schema


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["name", "n"],
    "additionalProperties": False,
}


def valid_json(text: str) -> bool:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return (
        isinstance(obj, dict)
        and set(obj) == {"name", "n"}
        and isinstance(obj["name"], str)
        and len(obj["name"]) <= 6
        and isinstance(obj["n"], int)
        and not isinstance(obj["n"], bool)
        and 0 <= obj["n"] <= 99
    )


@pytest.mark.parametrize("tok_name", ["bpe", "chars"])
@pytest.mark.parametrize("biased", [False, True])
def test_json_schema_outputs_always_valid(tok_name, biased, request):
    tok = request.getfixturevalue(tok_name)
    c = Constraint(tok, json_schema=SCHEMA)
    width = tok.vocab_size + EXTRA
    bias = bias_towards(tok, "}x", 8.0, eos=8.0) if biased else None  # closes early, ends early
    model = RandomModel(width, 3, bias)
    out, proc = run(tok, c, model, max_new_tokens=80, seed=3)
    for r, o in enumerate(out):
        assert o.stop_reason == "eos", o.text  # the schema is bounded: the matcher ends every row
        assert valid_json(o.text), o.text
        assert c.validate(o.text)
    free, _ = run(tok, c, RandomModel(width, 3, bias), max_new_tokens=80, seed=3, constrained=False)
    rate = sum(valid_json(o.text) for o in free) / len(free)
    print(f"json {tok_name} biased={biased}: constrained 100% valid, unconstrained {rate:.0%}")
    assert rate < 0.5


def test_json_schema_as_string_and_flexible_whitespace(bpe):
    """Free JSON whitespace lets a whitespace-loving model wander until the token limit: why compact is the default."""
    c = Constraint(bpe, json_schema=json.dumps(SCHEMA), whitespace_flexible=True)
    bias = bias_towards(bpe, " \n", 4.0, eos=0.0)
    out, _ = run(bpe, c, RandomModel(bpe.vocab_size + EXTRA, 5, bias), max_new_tokens=100)
    done = [o for o in out if o.stop_reason == "eos"]
    assert all(valid_json(o.text) for o in done) and len(done) < ROWS
    compact, _ = run(bpe, Constraint(bpe, json_schema=SCHEMA), RandomModel(bpe.vocab_size + EXTRA, 5, bias),
                     max_new_tokens=100)
    assert all(o.stop_reason == "eos" and valid_json(o.text) for o in compact)
    assert c.validate('{ "name" : "ab",\n "n": 5 }') and not c.validate('{"name": "abcdefg", "n": 5}')


# ----------------------------------------------------------------------------- Lark grammar


GRAMMAR = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")" | "-" factor
NUMBER: /0|[1-9][0-9]{0,2}/
"""


def valid_arith(text: str) -> bool:
    if not re.fullmatch(r"[0-9+\-*/()]+", text):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub)
    return all(isinstance(n, allowed) for n in ast.walk(tree))


@pytest.mark.parametrize("tok_name", ["bpe", "chars"])
@pytest.mark.parametrize("biased", [False, True])
def test_lark_grammar_outputs_always_parse(tok_name, biased, request):
    tok = request.getfixturevalue(tok_name)
    c = Constraint(tok, grammar=GRAMMAR)
    width = tok.vocab_size + EXTRA
    bias = bias_towards(tok, "x)}", 6.0, eos=6.0) if biased else bias_towards(tok, "", 0.0, eos=4.0)
    out, proc = run(tok, c, RandomModel(width, 11, bias), max_new_tokens=60, seed=11)
    ended = [o for o in out if o.stop_reason == "eos"]
    assert len(ended) >= 0.8 * ROWS  # unbounded grammar: most rows end by choice, the rest hit the limit
    for r, o in enumerate(out):
        if o.stop_reason == "eos":
            assert valid_arith(o.text), o.text
            assert proc.is_accepting(r)
        else:  # cut by the token limit: a valid prefix, which llguidance still accepts token by token
            assert o.stop_reason == "length" and c.matcher().consume(tok.encode(o.text), strict=False)
    free, _ = run(tok, c, RandomModel(width, 11, bias), max_new_tokens=60, seed=11, constrained=False)
    rate = sum(valid_arith(o.text) for o in free) / len(free)
    print(f"lark {tok_name} biased={biased}: constrained valid (ended rows) 100%, unconstrained {rate:.0%}")
    assert rate < 0.5


# ----------------------------------------------------------------------------- errors and edges


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"regex": "[0-9"}, "unclosed character class"),
        ({"regex": "(a"}, "invalid regex"),
        ({"json_schema": {"type": "foo"}}, "foo"),
        ({"json_schema": "{not json"}, "not JSON"),
        ({"json_schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}, "nowhere"),
        ({"json_schema": [1, 2]}, "expected an object"),
        ({"grammar": "start: foo\nfoo: 'a' | "}, "invalid grammar"),
        ({"grammar": "start: undefined_rule"}, "undefined_rule"),
        ({}, "exactly one"),
        ({"regex": "a", "grammar": "start: 'a'"}, "exactly one"),
    ],
)
def test_invalid_constraints_raise_with_the_reason(chars, kwargs, words):
    with pytest.raises(GenzooError, match=re.escape(words)):
        Constraint(chars, **kwargs)


def test_model_narrower_than_tokenizer_is_refused(chars):
    c = Constraint(chars, regex="a+")
    with pytest.raises(GenzooError, match="tokenizer has"):
        generate(RandomModel(chars.vocab_size - 1, 0), [[0]], max_new_tokens=3, eos_id=chars.eos_id,
                 logits_processor=c.as_logits_processor())


def test_forgotten_eos_id_is_a_clear_error(chars):
    c = Constraint(chars, regex="ab")
    with pytest.raises(GenzooError, match="eos_id"):
        generate(RandomModel(chars.vocab_size, 0), [[0]], max_new_tokens=5,
                 logits_processor=c.as_logits_processor(), generator=torch.Generator().manual_seed(0))


def test_greedy_constrained_and_reuse(chars):
    c = Constraint(chars, regex=REGEX)
    model = RandomModel(chars.vocab_size + EXTRA, 2, bias_towards(chars, "x", 10.0, eos=0.0))
    outs = [generate(model, [[chars.eos_id]], max_new_tokens=12, eos_id=chars.eos_id, decode=chars.decode,
                     temperature=0, logits_processor=c.as_logits_processor())[0] for _ in range(2)]
    assert outs[0].ids == outs[1].ids and re.fullmatch(REGEX, outs[0].text)


def test_constraint_cost_ratio_is_measured(bpe, capsys):
    prompts = [[bpe.eos_id]] * 4
    for kind, c in [("regex", Constraint(bpe, regex=REGEX)), ("json", Constraint(bpe, json_schema=SCHEMA))]:
        model = RandomModel(bpe.vocab_size + EXTRA, 0, bias_towards(bpe, "", 0.0, eos=-5.0))
        cost = constraint_cost(model, prompts, c, max_new_tokens=30, repeats=2)
        with capsys.disabled():
            print(f"\n[constraint cost] {kind} V={bpe.vocab_size}: {cost['seconds_per_token'] * 1e6:.0f} us/token free, "
                  f"{cost['constrained_seconds_per_token'] * 1e6:.0f} us/token constrained, "
                  f"ratio {cost['ratio']:.2f}x (a near-free random 'model'; compile {c.compile_seconds * 1e3:.1f} ms)")
        assert cost["constrained_seconds_per_token"] - cost["seconds_per_token"] < 5e-3  # < 5 ms per token


# ----------------------------------------------------------------------------- verifier in the loop


def test_verifier_counts_attempts():
    candidates = ["def f(:", "x = = 1", "def f(x):\n    return x\n", "never reached"]
    seen = []
    text, attempts, ok = generate_verified(lambda i: candidates[i], python_parses, 4,
                                           on_attempt=lambda i, t, r: seen.append(r))
    assert (text, attempts, ok) == (candidates[2], 3, True)
    assert isinstance(seen[0], str) and "SyntaxError" in seen[0] and seen[2] is True
    text, attempts, ok = generate_verified(lambda i: "1 +", python_parses, 3)
    assert (attempts, ok) == (3, False)
    with pytest.raises(GenzooError):
        generate_verified(lambda i: "x", python_parses, 0)


def test_arithmetic_equals_exact_and_safe(tmp_path):
    check = arithmetic_equals(24)
    assert check("(1 + 5) * 4") is True
    assert check(" 3 * 8\n") is True
    assert check("2 ** 3 * 3") is True
    assert check("-(-24)") is True
    assert isinstance(check("25"), str)
    assert arithmetic_equals(0.3)("0.1 + 0.2") is True
    assert evaluate_arithmetic("0.1 + 0.2") == evaluate_arithmetic("3/10")  # decimals are exact
    assert arithmetic_equals(1.4142135623730951)("2 ** 0.5") is True
    marker = tmp_path / "ran"
    for bad in [
        "__import__('os').system('touch " + str(marker) + "')",
        "abs(-24)",
        "x + 1",
        "(1).__class__",
        "[24][0]",
        "24 if True else 0",
        "lambda: 24",
        "'24'",
        "True * 24",
        "24 // 1",
        "1 / 0",
        "9 ** 9 ** 9",
        "(" * 500 + "1" + ")" * 500,
        "",
    ]:
        r = check(bad)
        assert isinstance(r, str) and r, bad
    assert not marker.exists()  # nothing was evaluated
    assert "Call" in check("__import__('os')")


def test_verifier_with_arithmetic_and_predicates():
    proposals = ["2 + 2", "3 * 3 - 1", "__import__('os')", "10 - 2"]
    text, attempts, ok = generate_verified(lambda i: proposals[i], arithmetic_equals(8), 4)
    assert (text, attempts, ok) == ("3 * 3 - 1", 2, True)
    short = predicate(lambda t: len(t) < 8, "too long")
    both = all_of(arithmetic_equals(8), short)
    assert generate_verified(lambda i: proposals[i], both, 4) == ("10 - 2", 4, True)
    assert both("3 * 3 - 1") == "too long"
    assert predicate(lambda t: 1 / 0)("x").startswith("the predicate failed: ZeroDivisionError")


def test_verifier_over_a_sampled_model(chars):
    """The loop as the CLI runs it: constrained proposals from a random model, checked for value."""
    c = Constraint(chars, regex=r"[1-9][+*][1-9]")
    model = RandomModel(chars.vocab_size, 0)

    def propose(attempt):
        g = torch.Generator().manual_seed(attempt)
        out = generate(model, [[chars.eos_id]], max_new_tokens=5, eos_id=chars.eos_id, decode=chars.decode,
                       generator=g, logits_processor=c.as_logits_processor())
        return out[0].text

    text, attempts, ok = generate_verified(propose, arithmetic_equals(12), 200)
    assert ok and evaluate_arithmetic(text) == 12 and 1 <= attempts <= 200
