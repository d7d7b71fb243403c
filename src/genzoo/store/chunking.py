"""Cutting documents into chunks for retrieval: plain text by paragraphs, Markdown by headings and
paragraphs, Python by top-level definitions (``ast``).

Every chunk is an exact span of its document (``chunk.text == document[chunk.start:chunk.end]``)
and the chunks cover the whole document in order, so a chunk can always be shown as
``path:start_line-end_line`` and nothing is lost between chunks. A document is first cut into
natural segments that tile it; segments are packed greedily into chunks of at most
``chunk_chars`` characters; a segment longer than that is cut at line ends (a single longer line
at the budget). A Markdown heading or a Python top-level ``def``/``class`` always starts a new
chunk, so a chunk never straddles two sections or two functions. Each chunk after the first
begins up to ``overlap`` characters early (at a line or word start), so a sentence cut at a
border is whole in one of the two chunks.

Defaults: 1000 characters, 150 overlap. all-MiniLM-L6-v2 reads at most 256 word pieces and
English prose averages about 4 characters per piece, so a longer chunk would be embedded from
its first 1000 characters only.
"""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError

CHUNK_CHARS = 1000
OVERLAP = 150
KINDS = ("text", "markdown", "python")
SUFFIX_KIND = {".md": "markdown", ".markdown": "markdown", ".py": "python", ".txt": "text", ".rst": "text"}
_HEADING = re.compile(r"^#{1,6}\s")
_FENCE = re.compile(r"^(```|~~~)")


@dataclass
class Chunk:
    text: str
    start: int  # character offsets into the document, end exclusive
    end: int
    start_line: int  # 1-based, inclusive
    end_line: int


def kind_for(path: str | Path) -> str:
    return SUFFIX_KIND.get(Path(path).suffix.lower(), "text")


def chunk_document(text: str, kind: str = "text", chunk_chars: int = CHUNK_CHARS, overlap: int = OVERLAP) -> list[Chunk]:
    if kind not in KINDS:
        raise GenzooError(f"document kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(chunk_chars, int) or chunk_chars < 50:
        raise GenzooError(f"--chunk-chars must be a whole number of at least 50, got {chunk_chars!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < chunk_chars // 2:
        raise GenzooError(f"--overlap must be from 0 to half of --chunk-chars ({chunk_chars // 2 - 1}), got {overlap!r}")
    if not text:
        return []
    line_starts = _line_starts(text)
    segments = {"text": _paragraph_cuts, "markdown": _markdown_cuts, "python": _python_cuts}[kind](text, line_starts)
    spans = _pack(text, segments, chunk_chars)
    chunks = []
    for i, (start, end) in enumerate(spans):
        if i and overlap:
            start = _back_off(text, start, overlap)
        line_of = lambda pos: bisect.bisect_right(line_starts, pos)  # noqa: E731 (1-based line holding pos)
        chunks.append(Chunk(text[start:end], start, end, line_of(start), line_of(max(start, end - 1))))
    return [c for c in chunks if c.text.strip()] or chunks[:1]


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text) if m.end() < len(text)]


# A segmenter returns (offset, hard) cut points: a segment starts at each offset; ``hard`` cuts
# may never be merged across (headings, top-level definitions).

def _paragraph_cuts(text: str, line_starts: list[int], hard: bool = False) -> list[tuple[int, bool]]:
    cuts = [(0, hard)]
    for m in re.finditer(r"\n[ \t]*\n\s*", text):  # a paragraph starts after the blank lines
        if m.end() < len(text):
            cuts.append((m.end(), False))
    return cuts


def _markdown_cuts(text: str, line_starts: list[int]) -> list[tuple[int, bool]]:
    cuts, in_fence, blank_before = [(0, True)], False, False
    for start in line_starts:
        line = text[start:text.find("\n", start) if "\n" in text[start:] else len(text)]
        if _FENCE.match(line):
            if not in_fence:
                cuts.append((start, False))
            in_fence = not in_fence
        elif not in_fence and _HEADING.match(line):
            cuts.append((start, True))
        elif not in_fence and blank_before and line.strip():
            cuts.append((start, False))
        blank_before = not line.strip()
    return _dedupe(cuts)


def _python_cuts(text: str, line_starts: list[int]) -> list[tuple[int, bool]]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):  # not parseable: cut it as text
        return _paragraph_cuts(text, line_starts)
    cuts = [(0, True)]
    lines = text.split("\n")
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].lstrip().startswith("#"):  # comments right above belong to it
            first -= 1
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        cuts.append((line_starts[first - 1], is_def))
        if is_def and node.end_lineno < len(line_starts):  # what follows a definition starts afresh
            cuts.append((line_starts[node.end_lineno], True))
    return _dedupe(cuts)


def _dedupe(cuts: list[tuple[int, bool]]) -> list[tuple[int, bool]]:
    merged: dict[int, bool] = {}
    for pos, hard in cuts:
        merged[pos] = merged.get(pos, False) or hard
    return sorted(merged.items())


def _pack(text: str, cuts: list[tuple[int, bool]], budget: int) -> list[tuple[int, int]]:
    """Greedy packing of segments into spans of at most ``budget`` characters."""
    bounds = [pos for pos, _ in cuts] + [len(text)]
    spans: list[tuple[int, int]] = []
    cur_start = None
    for (start, hard), end in zip(cuts, bounds[1:]):
        if cur_start is not None and (hard or end - cur_start > budget):
            spans.append((cur_start, start))
            cur_start = None
        if end - start > budget:  # one segment over budget: cut it alone at line ends
            spans.extend(_split_long(text, start, end, budget))
            continue
        if cur_start is None:
            cur_start = start
    if cur_start is not None:
        spans.append((cur_start, len(text)))
    return spans


def _split_long(text: str, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    out = []
    while end - start > budget:
        cut = text.rfind("\n", start, start + budget)
        if cut <= start:
            cut = text.rfind(" ", start, start + budget)
        cut = cut + 1 if cut > start else start + budget
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def _back_off(text: str, start: int, overlap: int) -> int:
    """Move a chunk start up to ``overlap`` characters back, to a line start if one is in reach,
    else a word start."""
    lo = max(0, start - overlap)
    nl = text.find("\n", lo, start)
    if nl != -1:
        return nl + 1
    sp = text.find(" ", lo, start)
    return sp + 1 if sp != -1 else start
