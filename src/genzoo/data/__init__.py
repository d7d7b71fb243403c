"""Datasets: built-in ``digits``, ``toy2d:<shape>``, ``pydocs``, ``pycode`` and ``docsig`` (text pairs), or a path to the user's own files.

>>> from genzoo.data import load_dataset
>>> train = load_dataset("digits", "train")
>>> text = load_dataset("pydocs", "train")          # a token stream, char tokenizer trained on the train split
>>> val = load_dataset("pydocs", "val", tokenizer=text.meta["tokenizer"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from genzoo.data import captions, digits, domains, files, pairs, text, toy2d, typed_digits
from genzoo.data import table as tables
from genzoo.data import chorales, spoken_digits, wav_folder
from genzoo.data.base import Dataset, dequantize, from_signed_unit, to_signed_unit  # noqa: F401
from genzoo.core.errors import GenzooError

SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".txt", ".md", ".jsonl")


def builtin_names() -> list[str]:
    return ["digits", captions.NAME, typed_digits.NAME, domains.BUILTIN] + [f"toy2d:{s}" for s in sorted(toy2d.GENERATORS)] + list(text.BUILTIN) + [pairs.NAME] + list(tables.BUILTIN_TARGETS) + [spoken_digits.NAME, chorales.NAME]


def is_text(name: str) -> bool:
    """Whether ``name`` is text that needs a tokenizer: pydocs, pycode, docsig, a .txt / .md / .jsonl file
    (text or input/target pairs: ``pairs.is_pairs``), or a folder of .txt / .md files."""
    if name in text.BUILTIN or name == pairs.NAME or name.lower().endswith(TEXT_SUFFIXES):
        return True
    path = Path(name)
    if path.is_dir():
        found = {p.suffix.lower() for p in path.rglob("*") if p.is_file()}
        return bool(found & {".txt", ".md"}) and not found & files.IMAGE_SUFFIXES
    return False


@dataclass(frozen=True)
class DataSource:
    """A dataset name parsed once (``resolve``): what it names and how to load a split of it.
    ``tokenized``: text or input/target pairs, loaded with a tokenizer trained on its training split."""

    name: str
    loader: Callable[[str, object], Dataset] = field(repr=False, compare=False)
    tokenized: bool = False

    def load(self, split: str = "train", tokenizer=None) -> Dataset:
        if split not in SPLITS:
            raise GenzooError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        if self.tokenized and tokenizer is None:
            tokenizer = self.train_tokenizer()
        return self.loader(split, tokenizer)

    def train_tokenizer(self, kind: str = "char", vocab_size: int | None = None):
        if not self.tokenized:
            raise GenzooError(f"--tokenizer and --vocab-size apply to text data; {self.name} is not text")
        return train_tokenizer(self.name, kind, vocab_size)


def resolve(name: str) -> DataSource:
    """Parse a dataset name: a built-in set, ``toy2d:<shape>``, ``domains:ROOT``, a text or pairs
    file, or a path to the user's files; a clear error for anything else."""
    def plain(load):  # a loader that takes no tokenizer
        return lambda split, tokenizer: load(split)

    builtin = {"digits": digits.load, captions.NAME: captions.load, typed_digits.NAME: typed_digits.load,
               spoken_digits.NAME: spoken_digits.load}
    if name in builtin:
        return DataSource(name, plain(builtin[name]))
    if tables.is_table(name):  # diamonds, penguins, cancer, a .csv / .tsv / .parquet (NAME#target=COL names the target)
        return DataSource(name, plain(lambda split: tables.load(name, split)))
    if domains.is_domains(name):  # two image domains for unpaired translation
        return DataSource(name, plain(lambda split: domains.load(name, split)))
    if name.startswith("toy2d"):
        shape = name.partition(":")[2] or "moons"
        if shape not in toy2d.GENERATORS:
            raise GenzooError(f"unknown toy2d shape {shape!r}; valid: {', '.join(sorted(toy2d.GENERATORS))}")
        return DataSource(name, plain(lambda split: toy2d.load(shape, split)))
    if name == chorales.NAME:  # Bach chorales as event tokens, with a char tokenizer like text
        return DataSource(name, lambda split, tokenizer: chorales_dataset(split, tokenizer), tokenized=True)
    if pairs.is_pairs(name):  # before text: a .jsonl of input/target pairs is not a token stream
        return DataSource(name, lambda split, tokenizer: pairs.load(name, split, tokenizer), tokenized=True)
    if is_text(name):
        return DataSource(name, lambda split, tokenizer: text_dataset(name, split, tokenizer), tokenized=True)
    if wav_folder.is_wav_folder(name):  # a folder of .wav files (sub-folders: classes)
        return DataSource(name, plain(lambda split: wav_folder.load(name, split)))
    if Path(name).exists() or "/" in name or name.endswith((".npy", ".npz")):
        return DataSource(name, plain(lambda split: files.load(name, split)))
    raise GenzooError(
        f"unknown dataset {name!r}; valid datasets: {', '.join(builtin_names())}, "
        "or a path to a folder of images / a .npy / .npz file / a .txt, .md or .jsonl file (text, or input/target pairs), "
        "or domains:ROOT (two image folders ROOT/A and ROOT/B) for translation"
    )


def load_dataset(name: str, split: str = "train", *, tokenizer=None) -> Dataset:
    """Load one split of a built-in dataset, or of a user's folder / array / text file.

    Text comes back as a token stream (kind "tokens"); without ``tokenizer`` a character-level one
    is trained on the corpus's training split (``train_tokenizer`` makes others); the tokenizer
    rides along in ``meta["tokenizer"]`` so a model can save it beside its weights."""
    if split not in SPLITS:  # before the name: a bad split is the caller's error whatever the data
        raise GenzooError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return resolve(name).load(split, tokenizer)


@lru_cache(maxsize=8)
def train_tokenizer(name: str, kind: str = "char", vocab_size: int | None = None):
    """A tokenizer trained on the training split of text corpus (or pairs data) ``name`` only (cached per process)."""
    from genzoo.data.tokenizer import TextTokenizer

    if name == chorales.NAME:
        return TextTokenizer.train(chorales.documents("train"), kind=kind, vocab_size=vocab_size)
    texts = pairs.tokenizer_texts(name) if pairs.is_pairs(name) else text.load_corpus(name, "train").documents
    return TextTokenizer.train(texts, kind=kind, vocab_size=vocab_size)


@lru_cache(maxsize=6)
def chorales_dataset(split: str, tokenizer) -> Dataset:
    return chorales.load(split, tokenizer)


def text_dataset(name: str, split: str, tokenizer) -> Dataset:
    """One split of a text corpus as a token stream (documents joined by the end-of-document id)."""
    return _text_dataset(name, split, tokenizer)


@lru_cache(maxsize=16)
def _text_dataset(name: str, split: str, tokenizer) -> Dataset:
    corpus = text.load_corpus(name, split)
    ids = text.stream(corpus, tokenizer)
    meta = {"tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id, "characters": corpus.n_chars,
            "documents": len(corpus.documents), "tokenizer_kind": tokenizer.kind}
    return Dataset(name, split, ids, meta=meta, kind="tokens")
