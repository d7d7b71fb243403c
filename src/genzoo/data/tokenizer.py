"""Tokenizers for text families, built on the Hugging Face ``tokenizers`` library.

    tok = TextTokenizer.train(train_corpus.documents, kind="bpe", vocab_size=2048)
    ids = tok.encode("def f(x):")
    tok.save(run_dir)                      # tokenizer.json + tokenizer_config.json
    tok = TextTokenizer.load(run_dir)

Kinds (train on the training split only; the caller passes it):

- ``char``: one token per character (Unicode code point) seen in the training
  texts, plus ``<|endoftext|>`` (id 0, end of document) and ``<unk>`` (id 1).
  A character never seen in training is encoded as ``<unk>`` (one ``<unk>`` per
  character) and decodes to the text ``<unk>``: the round trip is exact for
  text drawn from the training alphabet and lossy, but visibly so, outside it.
  With ``vocab_size`` set, only the ``vocab_size - 2`` most frequent characters
  are kept (ties broken by code point).
- ``bpe``: byte-level BPE (GPT-2 style): text is cut into UTF-8 bytes shown as
  the ByteLevel alphabet, the initial alphabet holds all 256 bytes, so any
  Unicode text round-trips exactly and there is no ``<unk>``. ``<|endoftext|>``
  is id 0; the vocabulary holds at most ``vocab_size`` tokens (fewer when the
  training text runs out of pairs worth merging).
- ``hf``: a Hugging Face model folder's ``tokenizer.json`` (``from_hf_folder``),
  used as it is (Llama, Mistral, Qwen2 ...).

Special tokens. ``eos_id`` is the end-of-document id that ``genzoo.data.text.stream``
puts between documents and that generation stops at. ``bos_id``: genzoo's own
tokenizers follow GPT-2 and use ``<|endoftext|>`` as beginning-of-sequence as
well, so ``bos_id == eos_id`` (a model generating from an empty prompt starts
from it); Hugging Face folders give their own (or None). ``encode`` never adds
special tokens. For genzoo's kinds, text that happens to spell
``<|endoftext|>`` is encoded as ordinary text, never as the special id (only
code inserts it); Hugging Face folders keep their usual behaviour.

``token_bytes()`` gives the bytes each id stands for, the ``tokens: list[bytes]``
that constrained-decoding libraries such as llguidance's ``TokenizerWrapper``
expect; llguidance marks special tokens with a leading ``0xFF`` byte, which
``token_bytes(special_marker=True)`` adds.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from genzoo.core.errors import GenzooError

EOS = "<|endoftext|>"
UNK = "<unk>"
KINDS = ("char", "bpe")
DEFAULT_BPE_VOCAB = 2048
FORMAT_VERSION = 1


def byte_to_unicode() -> dict[int, str]:
    """The GPT-2 ByteLevel alphabet: each byte 0..255 as one printable character.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for
    themselves; the other 68 bytes take the code points 256, 257, ... in byte order.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_UNICODE_TO_BYTE = {c: b for b, c in byte_to_unicode().items()}


class TextTokenizer:
    """A trained or loaded ``tokenizers.Tokenizer`` with genzoo's conventions (see the module docstring)."""

    def __init__(self, tokenizer, *, kind: str, eos_token: str | None = EOS, bos_token: str | None = None,
                 unk_token: str | None = None, extra_stop_ids: Sequence[int] = (), add_bos: bool = False):
        self.tokenizer = tokenizer
        self.kind = kind
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.unk_token = unk_token
        self.add_bos = add_bos  # a Hugging Face folder whose model expects bos before the prompt
        self._extra_stop_ids = [int(i) for i in extra_stop_ids]
        if kind in KINDS:
            # Text is text: "<|endoftext|>" typed in a document stays characters; only code inserts the eos id.
            tokenizer.encode_special_tokens = True
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        for tok in (eos_token, bos_token, unk_token):
            if tok is not None and tokenizer.token_to_id(tok) is None:
                raise GenzooError(f"tokenizer has no token {tok!r} in its vocabulary")

    # --- training -------------------------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str] | str, kind: str = "char", vocab_size: int | None = None, *,
              min_frequency: int = 2) -> "TextTokenizer":
        """Train on ``texts`` (the training split only). ``vocab_size``: bpe's upper bound (default 2048,
        at least 257: 256 bytes + ``<|endoftext|>``); for char, an optional cap on the alphabet."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if kind not in KINDS:
            raise GenzooError(f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(KINDS)}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not any(texts):
            raise GenzooError("cannot train a tokenizer on empty text; pass the training split's documents")
        if kind == "char":
            counts: Counter = Counter()
            for t in texts:
                counts.update(t)
            chars = sorted(counts)
            if vocab_size is not None:
                if vocab_size < 3:
                    raise GenzooError(f"a char tokenizer needs vocab_size >= 3 (eos, unk and a character), got {vocab_size}")
                if len(chars) > vocab_size - 2:
                    chars = sorted(sorted(chars, key=lambda c: (-counts[c], c))[: vocab_size - 2])
            vocab = {EOS: 0, UNK: 1}
            for c in chars:
                vocab[c] = len(vocab)
            # A BPE model without merges is a character lookup; unseen characters become <unk>.
            tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
            tok.add_special_tokens([EOS])
            tok.decoder = decoders.Fuse()
            return cls(tok, kind="char", eos_token=EOS, bos_token=EOS, unk_token=UNK)
        vocab_size = DEFAULT_BPE_VOCAB if vocab_size is None else int(vocab_size)
        if vocab_size < 257:
            raise GenzooError(f"byte-level BPE needs vocab_size >= 257 (256 bytes + <|endoftext|>), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer, length=len(texts))
        return cls(tok, kind="bpe", eos_token=EOS, bos_token=EOS)

    # --- encoding -------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no special tokens are added."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; special tokens appear as their text unless ``skip_special_tokens``."""
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self._vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self._vocab_size)
            raise GenzooError(f"token id {bad} is outside the vocabulary (0..{self._vocab_size - 1})")
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def __call__(self, text: str | bytes) -> list[int]:
        """``encode``, also for UTF-8 bytes (the encode call llguidance's wrapper makes)."""
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        return self.encode(text)

    # --- vocabulary -----------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def __len__(self) -> int:
        return self._vocab_size

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def eos_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def unk_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def stop_ids(self) -> list[int]:
        """Ids that end generation: eos plus any extra end ids a Hugging Face folder lists."""
        ids = [] if self.eos_id is None else [self.eos_id]
        return ids + [i for i in self._extra_stop_ids if i not in ids]

    @property
    def special_ids(self) -> list[int]:
        """Ids that stand for no text of their own: added special tokens, and ``<unk>``."""
        ids = {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        ids.update(i for i in (self.eos_id, self.bos_id, self.unk_id) if i is not None)
        return sorted(ids)

    def _is_byte_level(self) -> bool:
        if self.kind == "bpe":
            return True
        if self.kind == "char":
            return False
        spec = json.loads(self.tokenizer.to_str())

        def has_byte_level(node) -> bool:
            if isinstance(node, dict):
                return node.get("type") == "ByteLevel" or any(has_byte_level(v) for v in node.values())
            if isinstance(node, list):
                return any(has_byte_level(v) for v in node)
            return False

        return has_byte_level(spec.get("pre_tokenizer")) or has_byte_level(spec.get("decoder"))

    def token_bytes(self, *, special_marker: bool = False) -> list[bytes]:
        """``out[i]`` = the bytes token ``i`` stands for; concatenating them for ``encode(s)`` gives ``s``'s UTF-8.

        Byte-level vocabularies map the ByteLevel alphabet back to bytes; SentencePiece-style ones
        (Llama 2, Mistral) map ``▁`` to a space and ``<0xAB>`` to that byte; char tokens give the UTF-8
        of their character. Special tokens (and ``<unk>``) give their text, prefixed by ``0xFF`` when
        ``special_marker`` (llguidance's marker, so that they never match ordinary text).
        """
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        specials = set(self.special_ids)
        added = {i for i in self.tokenizer.get_added_tokens_decoder()}
        byte_level = self._is_byte_level()
        out: list[bytes] = [b""] * self._vocab_size
        for token, i in vocab.items():
            if i >= self._vocab_size:
                continue
            if i in specials:
                out[i] = (b"\xff" if special_marker else b"") + token.encode("utf-8")
            elif i in added or self.kind == "char":
                out[i] = token.encode("utf-8")
            elif byte_level:
                try:
                    out[i] = bytes(_UNICODE_TO_BYTE[c] for c in token)
                except KeyError:
                    out[i] = token.encode("utf-8")
            elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                out[i] = bytes([int(token[3:5], 16)])
            else:
                out[i] = token.replace("\u2581", " ").encode("utf-8")
        return out

    # --- saving and loading ---------------------------------------------------------------------------------

    def config(self) -> dict:
        """The ``tokenizer_config.json`` written beside ``tokenizer.json`` (readable by transformers too)."""
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": self.eos_token,
            "bos_token": self.bos_token,
            "unk_token": self.unk_token,
            "add_bos_token": self.add_bos,
            "clean_up_tokenization_spaces": False,
            "genzoo": {"kind": self.kind, "format": FORMAT_VERSION, "extra_stop_ids": self._extra_stop_ids},
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory`` (each written, then renamed)."""
        from genzoo.core.atomic import write_atomic_file

        d = Path(directory)
        for name, text in (("tokenizer.json", self.tokenizer.to_str(pretty=True)),
                           ("tokenizer_config.json", json.dumps(self.config(), indent=2))):
            write_atomic_file(d / name, text)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TextTokenizer":
        """Load what ``save`` wrote (a Hugging Face folder works too, as in ``from_hf_folder``)."""
        return cls._from_folder(Path(directory))

    @classmethod
    def from_hf_folder(cls, directory: str | os.PathLike) -> "TextTokenizer":
        """A Hugging Face model folder's ``tokenizer.json``, with eos/bos from ``tokenizer_config.json``,
        ``config.json`` or ``generation_config.json`` (first found wins; every eos id listed becomes a stop id)."""
        return cls._from_folder(Path(directory))

    @classmethod
    def _from_folder(cls, d: Path) -> "TextTokenizer":
        from tokenizers import Tokenizer

        if d.is_file() and d.name == "tokenizer.json":
            d = d.parent
        if not d.is_dir():
            raise GenzooError(f"tokenizer folder {str(d)!r} does not exist")
        path = d / "tokenizer.json"
        if not path.is_file():
            raise GenzooError(f"{d}: no tokenizer.json; save one with TextTokenizer.save, or point at a Hugging Face "
                              "model folder that has one (older folders with only tokenizer.model / vocab.json "
                              "need converting with transformers' AutoTokenizer(...).save_pretrained)")
        try:
            tok = Tokenizer.from_str(_read_json_text(path))
        except GenzooError:
            raise
        except Exception as e:  # the Rust side raises its own exception type
            raise GenzooError(f"{path}: not a valid tokenizer.json ({e})") from None
        # Some folders (BERT's all-MiniLM-L6-v2) save padding to a fixed 128 and truncation in tokenizer.json;
        # encode must give a text's own ids, so callers pad and truncate themselves.
        tok.no_padding()
        tok.no_truncation()
        cfg = _read_json(d / "tokenizer_config.json")
        model_cfg = _read_json(d / "config.json")
        gen_cfg = _read_json(d / "generation_config.json")
        meta = cfg.get("genzoo") if isinstance(cfg.get("genzoo"), dict) else None
        if meta is not None:
            kind = meta.get("kind")
            if kind not in (*KINDS, "hf"):  # "hf": a Hugging Face model's tokenizer saved again by genzoo
                raise GenzooError(f"{d / 'tokenizer_config.json'}: unknown genzoo tokenizer kind {kind!r}")
            return cls(tok, kind=kind, eos_token=_token_text(cfg.get("eos_token")),
                       bos_token=_token_text(cfg.get("bos_token")), unk_token=_token_text(cfg.get("unk_token")),
                       extra_stop_ids=meta.get("extra_stop_ids", ()), add_bos=bool(cfg.get("add_bos_token", False)))

        def token_for(key: str) -> tuple[str | None, list[int]]:
            text = _token_text(cfg.get(f"{key}_token"))
            ids: list[int] = []
            for c in (model_cfg, gen_cfg):
                v = c.get(f"{key}_token_id")
                ids += [int(i) for i in (v if isinstance(v, list) else [v]) if isinstance(i, int)]
            if text is not None and tok.token_to_id(text) is None:
                text = None
            if text is None and ids:
                text = tok.id_to_token(ids[0])
            return text, ids

        eos, eos_ids = token_for("eos")
        bos, _ = token_for("bos")
        unk = _token_text(cfg.get("unk_token"))
        if unk is not None and tok.token_to_id(unk) is None:
            unk = None
        return cls(tok, kind="hf", eos_token=eos, bos_token=bos, unk_token=unk, extra_stop_ids=eos_ids,
                   add_bos=bool(cfg.get("add_bos_token", False)))

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self._vocab_size}, eos_id={self.eos_id})"


def _token_text(value) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise GenzooError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise GenzooError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                          "save the tokenizer again") from None
    return text


def _read_json(path: Path) -> dict:
    """An optional JSON object (``{}`` when the file is absent)."""
    if not path.is_file():
        return {}
    value = json.loads(_read_json_text(path))
    if not isinstance(value, dict):
        raise GenzooError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
