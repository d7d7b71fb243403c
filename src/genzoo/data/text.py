"""Text corpora: ``pydocs``, ``pycode`` and a user's own text, split by document.

Built-in corpora come from the running interpreter, nothing is downloaded:

- ``pydocs``: English prose about Python. One document per help topic of
  ``pydoc_data.topics`` (named ``topic:<name>``) plus, for every module of the
  standard library, one document holding its docstrings (module, classes,
  functions and methods, in source order, separated by a blank line), named by
  the module's path relative to the stdlib folder (``json/decoder.py``). The
  docstrings are read with ``ast.get_docstring`` from parsed source, the
  modules are never imported.
- ``pycode``: one document per ``.py`` file of the standard library (named by
  its relative path), skipping files over 200 kB and files that are not UTF-8.

Both walk ``sysconfig.get_paths()["stdlib"]`` in sorted order and skip the test
suites (``test/``, ``tests/``, ``idle_test/``), ``idlelib/``, ``site-packages``,
``lib-dynload``, ``config-*`` and the machine-generated ``_sysconfigdata_*``
module. The content therefore depends on the Python version (recorded in
``meta["python"]``). The scan is cached in memory for the life of the process.

User data (``load_corpus(path, split)``):

- a ``.txt`` (or ``.md``) file is one long document, split by position:
  with ``n`` characters, train holds ``text[: n * 9 // 10]``, val
  ``text[n * 9 // 10 : n * 19 // 20]`` and test ``text[n * 19 // 20 :]``, i.e.
  the last tenth is held out, val its first half and test its second half;
- a folder: every ``.txt`` / ``.md`` file below it (hidden files skipped) is a
  document named by its relative path;
- a ``.jsonl`` file: one document per non-blank line, taken from its ``text``
  field (a string).

Split by document: a document goes to train if ``u < 0.9``, val if ``u < 0.95``
and test otherwise, where ``u`` in [0, 1) is read from the SHA-1 of its name
(the relative path; for ``.jsonl`` records, which have no name, the SHA-1 of
the text itself, so exact duplicates share a split). Adding or removing a
document never moves another one, the splits are disjoint, and a module's
docstrings (``pydocs``) and its code (``pycode``) share the same split, so a
model trained on one and evaluated on the other is not shown held-out text.
Documents are kept in sorted-name order (``.jsonl``: file order).

``stream(corpus, tokenizer)`` turns a split into the 1-D token stream that
language models read: documents encoded and joined with the tokenizer's
end-of-document id between them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genzoo.core.errors import GenzooError

SPLITS = ("train", "val", "test")
BUILTIN = ("pydocs", "pycode")
SPLIT_BOUNDS = (0.9, 0.95)  # hash fraction u: train < 0.9 <= val < 0.95 <= test
TEXT_SUFFIXES = (".txt", ".md")
MAX_CODE_BYTES = 200_000
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages",
                       "__pycache__", "lib-dynload"})


@dataclass
class Corpus:
    """One split of a text corpus: a list of documents (strings) and their names.

    ``names[i]`` names ``documents[i]`` (a relative path, ``topic:<name>``, or for
    ``.jsonl`` data ``<file>:<line>``); ``meta`` records where the text came from
    and how it was split.
    """

    name: str
    split: str
    documents: list[str]
    meta: dict = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    @property
    def n_chars(self) -> int:
        """Characters in all documents (separators not counted)."""
        return sum(len(d) for d in self.documents)

    def text(self, sep: str = "\n\n") -> str:
        """The documents joined into one string (for compressors and simple baselines)."""
        return sep.join(self.documents)

    def __len__(self) -> int:
        return len(self.documents)


def split_of(key: str) -> str:
    """The split a document named ``key`` belongs to (stable: depends on the name only)."""
    u = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if u < SPLIT_BOUNDS[0]:
        return "train"
    if u < SPLIT_BOUNDS[1]:
        return "val"
    return "test"


def builtin_names() -> list[str]:
    return list(BUILTIN)


def load_corpus(name_or_path: str | os.PathLike, split: str = "train") -> Corpus:
    """Load one split of ``pydocs``, ``pycode``, or a user's ``.txt`` / ``.md`` file, folder or ``.jsonl``."""
    if split not in SPLITS:
        raise GenzooError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    name = os.fspath(name_or_path)
    if name in BUILTIN:
        named = _pydocs_documents() if name == "pydocs" else _pycode_documents()
        meta = {"source": f"Python {sys.version.split()[0]} standard library", "python": sys.version.split()[0],
                "split_rule": "sha1(name)", "documents_total": len(named)}
        return _by_hash(name, split, named, meta)
    path = Path(name)
    if not path.exists():
        if path.suffix or os.sep in name or "/" in name:
            raise GenzooError(f"text data path {name!r} does not exist; pass an existing .txt, .md or .jsonl file "
                              "or a folder of .txt / .md files")
        raise GenzooError(f"unknown text corpus {name!r}; valid corpora: {', '.join(BUILTIN)}, "
                          "or a path to a .txt / .md / .jsonl file or a folder of .txt / .md files")
    if path.is_dir():
        return _load_folder(path, split)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _load_long_text(path, split)
    if suffix == ".jsonl":
        return _load_jsonl(path, split)
    raise GenzooError(f"{path}: unsupported text file type {path.suffix!r}; use .txt, .md, .jsonl or a folder")


def stream(corpus: Corpus, tokenizer) -> torch.Tensor:
    """The split as one 1-D int64 token stream: documents encoded, ``tokenizer.eos_id`` between them.

    The separator goes *between* documents (none before the first or after the
    last); ``tokenizer`` is a ``genzoo.data.tokenizer.TextTokenizer`` (any object
    with ``encode_batch`` and ``eos_id`` works).
    """
    eos = tokenizer.eos_id
    if eos is None:
        raise GenzooError("the tokenizer has no end-of-document token; train it with genzoo or give it an eos token")
    encoded = tokenizer.encode_batch(corpus.documents)
    ids: list[int] = []
    for i, doc in enumerate(encoded):
        if i:
            ids.append(eos)
        ids.extend(doc)
    return torch.tensor(ids, dtype=torch.long)


# --- splitting --------------------------------------------------------------------------------------------

def _by_hash(name: str, split: str, named, meta: dict, keys=None) -> Corpus:
    """Keep the documents whose hash key lands in ``split``; ``keys`` defaults to the names."""
    keys = keys if keys is not None else [n for n, _ in named]
    if not named:
        raise GenzooError(f"{name}: the corpus is empty (no non-blank documents)")
    picked = [(n, d) for (n, d), k in zip(named, keys) if split_of(k) == split]
    if not picked:
        raise GenzooError(
            f"{name}: the {split} split holds no documents ({len(named)} documents in all; a hash of each name "
            f"sends about 90% to train, 5% to val, 5% to test). Add documents, or pass a single .txt file, "
            "which is split by position")
    meta = dict(meta, documents=len(picked))
    return Corpus(name, split, [d for _, d in picked], meta, [n for n, _ in picked])


def position_bounds(n: int, split: str) -> tuple[int, int]:
    """Character range of ``split`` in a single document of ``n`` characters (train 9/10, val, test 1/20 each)."""
    a, b = n * 9 // 10, n * 19 // 20
    return {"train": (0, a), "val": (a, b), "test": (b, n)}[split]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GenzooError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None
    except OSError as e:
        raise GenzooError(f"{path}: cannot read it ({e.strerror})") from None


def _load_long_text(path: Path, split: str) -> Corpus:
    text = _read_text(path)
    if not text.strip():
        raise GenzooError(f"{path}: the corpus is empty (the file holds no text)")
    lo, hi = position_bounds(len(text), split)
    if hi <= lo:
        raise GenzooError(f"{path}: {len(text)} characters are too few for a {split} split; provide at least 20")
    meta = {"source": str(path.resolve()), "split_rule": "position", "start": lo, "end": hi, "chars_total": len(text)}
    return Corpus(str(path), split, [text[lo:hi]], meta, [f"{path.name}[{lo}:{hi}]"])


def _load_folder(path: Path, split: str) -> Corpus:
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise GenzooError(f"{path}: the folder holds no .txt or .md files")
    named = []
    for p in files:
        text = _read_text(p)
        if text.strip():
            named.append((p.relative_to(path).as_posix(), text))
    meta = {"source": str(path.resolve()), "split_rule": "sha1(relative path)", "documents_total": len(named)}
    return _by_hash(str(path), split, named, meta)


def json_lines(path: Path, lines: list[str]):
    """(line number, parsed value) of each non-blank line of a JSON Lines file, or a clear error
    naming the file and line that is not JSON."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise GenzooError(f"{path}, line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def _load_jsonl(path: Path, split: str) -> Corpus:
    named, keys = [], []
    for lineno, record in json_lines(path, _read_text(path).splitlines()):
        if not isinstance(record, dict) or "text" not in record:
            raise GenzooError(f"{path}, line {lineno}: no \"text\" field; every line must be an object like "
                              '{"text": "..."}')
        text = record["text"]
        if not isinstance(text, str):
            raise GenzooError(f"{path}, line {lineno}: the \"text\" field is {type(text).__name__}, not a string")
        if text.strip():
            named.append((f"{path.name}:{lineno}", text))
            keys.append(text)
    meta = {"source": str(path.resolve()), "split_rule": "sha1(text)", "documents_total": len(named)}
    return _by_hash(str(path), split, named, meta, keys)


# --- the standard library, scanned once per process ---------------------------------------------------------

def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=1)
def _stdlib_sources() -> tuple[tuple[str, str, int], ...]:
    """(relative path, source, size in bytes) of every UTF-8 ``.py`` file of the stdlib, sorted by path."""
    root = stdlib_root()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(("config-", ".")))
        for fname in sorted(filenames):
            if not fname.endswith(".py") or fname.startswith("_sysconfigdata"):
                continue
            p = Path(dirpath, fname)
            try:
                raw = p.read_bytes()
                src = raw.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            out.append((p.relative_to(root).as_posix(), src, len(raw)))
    out.sort()
    return tuple(out)


def _docstrings(tree: ast.AST) -> list[str]:
    """Docstrings of a module and of every class and function in it, in source order."""
    found = []

    def visit(node):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and doc.strip():
                found.append(doc.strip())
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):  # defs sit only in statement bodies
                visit(child)

    visit(tree)
    return found


@functools.lru_cache(maxsize=1)
def _pydocs_documents() -> tuple[tuple[str, str], ...]:
    from pydoc_data.topics import topics

    named = [(f"topic:{k}", v) for k, v in topics.items() if v.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes in old modules
        for rel, src, _ in _stdlib_sources():
            try:
                tree = ast.parse(src, filename=rel)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            docs = _docstrings(tree)
            if docs:
                named.append((rel, "\n\n".join(docs)))
    named.sort()
    return tuple(named)


@functools.lru_cache(maxsize=1)
def _pycode_documents() -> tuple[tuple[str, str], ...]:
    return tuple((rel, src) for rel, src, size in _stdlib_sources() if size <= MAX_CODE_BYTES and src.strip())
