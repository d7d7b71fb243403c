"""The ``docsig`` text-to-text task: a function's docstring -> its signature line, from ``pycode``.

Every function and method of the standard library's ``.py`` files (the ``pycode`` corpus) that
has a docstring gives one pair: input = the docstring (``ast.get_docstring``, cleaned, whitespace
runs collapsed, cut to ``max_input_chars``), target = the signature line rebuilt from the parsed
tree, ``def name(args) -> returns:`` (``async def`` where async), so that formatting quirks of the
source (line breaks, comments inside the argument list) do not count.

The split is pycode's: by module (SHA-1 of its relative path), so the held-out pairs come from
modules never seen in training. Pairs whose signature is longer than ``max_target_chars`` are
skipped; exact duplicate pairs within a split are kept once.

Scores (``score``): exact match of the whole line, and character-level F1, the harmonic mean of
precision and recall of the multiset of characters shared by prediction and reference (the
SQuAD token F1, applied to characters), averaged over pairs.

As a dataset, ``load_dataset("docsig", split)`` gives these pairs as "pairs" data (``genzoo.data.pairs``):
``genzoo train t5 --data docsig``.
"""

from __future__ import annotations

import ast
from collections import Counter

from genzoo.data.text import load_corpus


def signature_line(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}:"


def pairs_of_source(source: str, *, max_input_chars: int = 200, max_target_chars: int = 80) -> list[tuple[str, str]]:
    """(docstring, signature) of every documented function in ``source`` (none when it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if not doc or not doc.strip():
                continue
            sig = signature_line(node)
            if len(sig) <= max_target_chars:
                out.append((" ".join(doc.split())[:max_input_chars], sig))
    return out


def load_pairs(split: str = "train", **limits) -> list[tuple[str, str]]:
    """The docsig pairs of one pycode split (module-level split, duplicates removed, source order)."""
    corpus = load_corpus("pycode", split)
    seen, pairs = set(), []
    for doc in corpus.documents:
        for pair in pairs_of_source(doc, **limits):
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def char_f1(prediction: str, reference: str) -> float:
    """F1 of the shared character multiset (1.0 for equal strings, 0.0 when nothing is shared)."""
    common = sum((Counter(prediction) & Counter(reference)).values())
    if common == 0:
        return float(prediction == reference)
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def score(predictions: list[str], references: list[str]) -> dict:
    """Exact match and mean character-level F1 of predictions against references."""
    if len(predictions) != len(references) or not references:
        raise ValueError("score needs as many predictions as references, at least one")
    exact = sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)
    f1 = sum(char_f1(p.strip(), r.strip()) for p, r in zip(predictions, references)) / len(references)
    return {"n": len(references), "exact_match": exact, "char_f1": f1}
