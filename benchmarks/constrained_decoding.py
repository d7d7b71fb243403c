"""Constrained decoding and the verifier loop on a trained char-level GPT (issue 13, "Must show").

For fixed prompts x seeds, generates with and without each constraint (a JSON schema, a regular
expression, a small Lark arithmetic grammar) and checks every output by parsing it independently of
the constraint library (json.loads + keys/types/bounds, re.fullmatch, a recursive-descent parser).
The per-token cost of each constraint is measured in one run, in alternating blocks (unconstrained,
json, regex, grammar, repeat), same prompts and seeds, model steps included; one thread.
Then the verifier loop (``generate_checked`` with ``--verify python`` semantics, 8 attempts at most)
on 20 code-ish prompts.

    .venv/bin/python benchmarks/constrained_decoding.py --run runs/gpt-pydocs-10min-ctx64
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

from genzoo.sampling.constrained import Constraint
from genzoo.sampling.text import generate
from genzoo.tasks.textgen import generate_checked, load_text_model, model_step, visible_text

PROMPTS = [
    "Result: ", "The value is ", "Answer: ", "Output: ", "data = ", "Example: ", "Returns ",
    "The object ", "Note: ", "id ", "code: ", "x = ", "See also ", "print(", "Record: ",
    "The list ", "value: ", "Use ", "A ", "In Python ",
]
CODE_PROMPTS = [
    "x = ", "def f(", "for i in ", "if x ", "import ", "return ", "while ", "print(", "class A", "y = [",
    "with open(", "try:\n    ", "lambda ", "from os import ", "assert ", "z = x + ", "del ", "a, b = ",
    "if not ", "s = '",
]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name", "n"], "additionalProperties": False}
REGEX = r"[0-9]{3}-[a-z]+"
GRAMMAR = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,3}/
"""
# The same arithmetic with bounded length (at most 31 characters), so that no output can be cut by the
# token limit mid-expression: what "valid by construction" can promise within a fixed budget.
GRAMMAR_BOUNDED = r"""
start: expr
expr: term | term ADD term
term: factor | factor MUL factor
factor: NUMBER | "(" NUMBER ADD NUMBER ")"
ADD: "+" | "-"
MUL: "*" | "/"
NUMBER: /[0-9]{1,2}/
"""


# ----------------------------------------------------------------------------- independent checks
def valid_json(text: str) -> bool:
    try:
        v = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False
    if not isinstance(v, dict) or set(v) != {"name", "n"}:
        return False
    return (isinstance(v["name"], str) and len(v["name"]) <= 6 and isinstance(v["n"], int)
            and not isinstance(v["n"], bool) and 0 <= v["n"] <= 99)


def valid_regex(text: str) -> bool:
    return re.fullmatch(REGEX, text) is not None


def valid_arith(text: str) -> bool:
    """Recursive descent over exactly the grammar above (no whitespace)."""
    pos = 0

    def number():
        nonlocal pos
        m = re.compile(r"[0-9]{1,3}").match(text, pos)
        if not m or (m.end() < len(text) and text[m.end()].isdigit()):
            raise ValueError
        pos = m.end()

    def factor():
        nonlocal pos
        if pos < len(text) and text[pos] == "(":
            pos += 1
            expr()
            if pos >= len(text) or text[pos] != ")":
                raise ValueError
            pos += 1
        else:
            number()

    def term():
        nonlocal pos
        factor()
        while pos < len(text) and text[pos] in "*/":
            pos += 1
            factor()

    def expr():
        nonlocal pos
        term()
        while pos < len(text) and text[pos] in "+-":
            pos += 1
            term()

    try:
        expr()
    except (ValueError, RecursionError):
        return False
    return pos == len(text)


CHECKS = {"json_schema": valid_json, "regex": valid_regex, "grammar": valid_arith, "grammar_bounded": valid_arith}


def lenient(text: str) -> str:
    """The unconstrained text's first line, stripped: a generous reading of a free-running model."""
    return text.strip().split("\n")[0].strip()


# ----------------------------------------------------------------------------- generation
def run_one(model, tok, prompt: str, seed: int, max_tokens: int, constraint: Constraint | None, temperature: float):
    ids = tok.encode(prompt)
    step = model_step(model, len(ids) + max_tokens)
    proc = constraint.as_logits_processor() if constraint is not None else None
    g = torch.Generator().manual_seed(seed)
    eos = list(getattr(tok, "stop_ids", None) or [tok.eos_id])
    t0 = time.perf_counter()
    out = generate(step, [ids], max_new_tokens=max_tokens, eos_id=eos, decode=visible_text(tok),
                   temperature=temperature, generator=g, logits_processor=proc)[0]
    dt = time.perf_counter() - t0
    n = len(out.ids) + (out.stop_reason == "eos")
    return out, dt, n, (proc.mask_seconds if proc is not None else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/gpt-pydocs-10min-ctx64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=40)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--attempts", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/constrained_decoding.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok = load_text_model(args.run)
    ctx = model.config.context
    assert max(len(tok.encode(p)) for p in PROMPTS + CODE_PROMPTS) + args.max_tokens <= ctx

    t0 = time.perf_counter()
    cons = {"json_schema": Constraint(tok, json_schema=SCHEMA, special_ids=getattr(tok, "special_ids", None)),
            "regex": Constraint(tok, regex=REGEX, special_ids=getattr(tok, "special_ids", None)),
            "grammar": Constraint(tok, grammar=GRAMMAR, special_ids=getattr(tok, "special_ids", None)),
            "grammar_bounded": Constraint(tok, grammar=GRAMMAR_BOUNDED, special_ids=getattr(tok, "special_ids", None))}
    compile_s = {k: round(c.compile_seconds, 4) for k, c in cons.items()}
    print("compiled", compile_s, f"{time.perf_counter() - t0:.2f}s", flush=True)

    conditions = [None, "json_schema", "regex", "grammar", "grammar_bounded"]
    seeds = list(range(args.seeds))
    # Alternating blocks: a block is one prompt x all seeds, for each condition in turn.
    secs = {str(c): [] for c in conditions}  # per block: seconds per token
    tot = {str(c): [0.0, 0, 0.0] for c in conditions}  # seconds, tokens, mask seconds
    texts = {str(c): [] for c in conditions}
    stops = {str(c): [] for c in conditions}
    for pi, prompt in enumerate(PROMPTS):
        for c in conditions:
            s_sum, n_sum = 0.0, 0
            for seed in seeds:
                out, dt, n, ms = run_one(model, tok, prompt, seed, args.max_tokens, cons.get(c), args.temperature)
                s_sum += dt
                n_sum += n
                tot[str(c)][2] += ms
                texts[str(c)].append(out.text)
                stops[str(c)].append(out.stop_reason)
            secs[str(c)].append(s_sum / max(n_sum, 1))
            tot[str(c)][0] += s_sum
            tot[str(c)][1] += n_sum
        print(f"prompt {pi + 1}/{len(PROMPTS)}", flush=True)

    n_out = len(PROMPTS) * len(seeds)
    base = statistics.median(secs["None"])
    results = {"run": args.run, "prompts": len(PROMPTS), "seeds": seeds, "max_tokens": args.max_tokens,
               "temperature": args.temperature, "threads": 1, "compile_seconds": compile_s,
               "unconstrained_seconds_per_token_median": base, "constraints": {}}
    for c in ("json_schema", "regex", "grammar", "grammar_bounded"):
        check = CHECKS[c]
        con = cons[c]
        v_con = [check(t) for t in texts[c]]
        finished = [r == "eos" for r in stops[c]]
        v_free = [check(t) for t in texts["None"]]
        v_free_len = [check(lenient(t)) for t in texts["None"]]
        ll_agree = sum(con.validate(t) == ok for t, ok in zip(texts[c], v_con))
        ratios = [a / b for a, b in zip(secs[c], secs["None"])]
        results["constraints"][c] = {
            "source": con.source if c != "json_schema" else SCHEMA,
            "valid_constrained": sum(v_con) / n_out,
            "valid_constrained_among_finished": (sum(v and f for v, f in zip(v_con, finished)) / sum(finished)
                                                 if any(finished) else None),
            "finished_share_constrained": sum(finished) / n_out,
            "valid_unconstrained_raw": sum(v_free) / n_out,
            "valid_unconstrained_first_line": sum(v_free_len) / n_out,
            "llguidance_validate_agrees": ll_agree / n_out,
            "stop_reasons_constrained": {r: stops[c].count(r) for r in set(stops[c])},
            "mean_tokens_constrained": tot[c][1] / n_out,
            "mean_tokens_unconstrained": tot["None"][1] / n_out,
            "seconds_per_token": statistics.median(secs[c]),
            "cost_ratio_median_of_blocks": statistics.median(ratios),
            "cost_ratio_total": (tot[c][0] / tot[c][1]) / (tot["None"][0] / tot["None"][1]),
            "mask_share_of_time": tot[c][2] / tot[c][0],
            # the mask alone, as if the constrained run had the unconstrained run's per-token model cost
            "mask_only_ratio": 1 + (tot[c][2] / tot[c][1]) / (tot["None"][0] / tot["None"][1]),
            "examples_constrained": texts[c][:5],
            "examples_unconstrained": texts["None"][:3],
            "invalid_constrained": [t for t, ok in zip(texts[c], v_con) if not ok][:5],
        }
        print(c, {k: v for k, v in results["constraints"][c].items() if not k.startswith(("examples", "source"))},
              flush=True)

    # ---- verifier loop: --verify python semantics (generate_checked, <= attempts)
    ver = []
    for prompt in CODE_PROMPTS:
        r = generate_checked(model, tok, prompt, "python", args.attempts, max_tokens=args.max_tokens,
                             temperature=args.temperature, seed=0)
        ver.append({"prompt": prompt, "attempts": r.attempts, "ok": r.ok, "text": r.text})
    results["verifier"] = {
        "verify": "python", "max_attempts": args.attempts, "prompts": len(CODE_PROMPTS),
        "success_share": sum(v["ok"] for v in ver) / len(ver),
        "mean_attempts": statistics.mean(v["attempts"] for v in ver),
        "mean_attempts_successful": (statistics.mean(v["attempts"] for v in ver if v["ok"])
                                     if any(v["ok"] for v in ver) else None),
        "per_prompt": ver,
    }
    # The same loop with the check on prompt + continuation (what a user of a code prompt means);
    # generate_checked itself checks the continuation alone.
    from genzoo.sampling.verify import generate_verified, python_parses
    from genzoo.tasks.textgen import generate_text

    ver2 = []
    for prompt in CODE_PROMPTS:
        def cand(a, prompt=prompt):
            return generate_text(model, tok, [prompt], seed=a, max_tokens=args.max_tokens,
                                 temperature=args.temperature)[0].text
        r = generate_verified(cand, lambda t, prompt=prompt: python_parses(prompt + t), args.attempts)
        ver2.append({"prompt": prompt, "attempts": r.attempts, "ok": r.ok, "text": r.text})
    results["verifier_prompt_plus_continuation"] = {
        "success_share": sum(v["ok"] for v in ver2) / len(ver2),
        "mean_attempts": statistics.mean(v["attempts"] for v in ver2),
        "mean_attempts_successful": (statistics.mean(v["attempts"] for v in ver2 if v["ok"])
                                     if any(v["ok"] for v in ver2) else None),
        "per_prompt": ver2,
    }
    print("verifier prompt+continuation", {k: v for k, v in results["verifier_prompt_plus_continuation"].items()
                                           if k != "per_prompt"}, flush=True)
    print("verifier", {k: v for k, v in results["verifier"].items() if k != "per_prompt"}, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
