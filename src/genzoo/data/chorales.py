"""``chorales``: J. S. Bach's four-part chorales from the corpus ``music21`` ships, as event tokens.

Each chorale (soprano, alto, tenor, bass; files with other part counts are skipped) is laid on a
16th-note grid. A grid step is written as ``|`` followed by one token per voice, soprano first:
a note starting there (its MIDI pitch p as the character ``chr(0x100 + p)``), ``-`` (the voice's
note goes on) or ``.`` (a rest). One character per event lets the char tokenizer of the text
families (``genzoo.data.tokenizer``) serve as the music tokenizer, saved beside the weights as
``tokenizer.json`` like any text model's, so ``genzoo train gpt --data chorales`` needs nothing new.

Split by chorale (the SHA-1 of its file name: 80% train, 10% val, 10% test); the training split
adds every chorale transposed by -3..+3 semitones (where every voice stays in MIDI 28..96) as
augmentation. Parsing with music21 takes about 0.2 s a file, so the first ``MAX_FILES`` files in
name order are used and the result is cached in ``$GENZOO_CACHE/data``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from genzoo.core.atomic import write_atomic_file
from genzoo.core.errors import GenzooError

NAME = "chorales"
VERSION = 1
MAX_FILES = 160  # of the 433 Bach files; about 0.2 s each to parse
STEPS_PER_QUARTER = 4  # a 16th-note grid
STEP, HOLD, REST = "|", "-", "."
PITCH0 = 0x100
VOICES = ("soprano", "alto", "tenor", "bass")
# what each voice sings in the chorales (MIDI), a little widened: the bound constrained decoding keeps
RANGES = {"soprano": (59, 83), "alto": (52, 77), "tenor": (45, 72), "bass": (33, 66)}
TRANSPOSE = range(-3, 4)
SECONDS_PER_STEP = 60 / 80 / STEPS_PER_QUARTER  # rendered at 80 quarter notes a minute


def cache_path() -> Path:
    root = Path(os.environ.get("GENZOO_CACHE") or Path.home() / ".cache" / "genzoo")
    return root / "data" / f"{NAME}-v{VERSION}-{MAX_FILES}.json"


def pitch_char(p: int) -> str:
    return chr(PITCH0 + int(p))


def char_pitch(c: str) -> int | None:
    p = ord(c) - PITCH0
    return p if 0 <= p < 128 else None


def split_of(name: str) -> str:
    u = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def _grid(path) -> list[list[int]] | None:
    """(steps, 4) events of one file: pitch >= 0 an onset, -1 hold, -2 rest; None unless 4 parts on the grid."""
    from music21 import converter

    score = converter.parse(str(path))
    parts = [p for p in score.parts if p.flatten().notes]
    if len(parts) != 4:
        return None
    length = int(round(float(score.highestTime) * STEPS_PER_QUARTER))
    grid = np.full((length, 4), -2, dtype=np.int64)
    for v, part in enumerate(parts):
        for n in part.flatten().notesAndRests:
            start = float(n.offset) * STEPS_PER_QUARTER
            steps = float(n.quarterLength) * STEPS_PER_QUARTER
            if start != int(start) or (steps and steps != int(steps)):
                return None  # off the 16th grid (triplets, 32nds): skip the chorale
            s, e = int(start), int(start + steps)
            if n.isRest or not steps:
                continue
            p = n.pitches[-1].midi if n.isChord else n.pitch.midi  # a chord in one part: its top note
            tied = n.tie is not None and n.tie.type in ("continue", "stop")
            grid[s:e, v] = -1
            if not tied:
                grid[s, v] = p
    return grid.tolist()


def encode(grid) -> str:
    out = []
    for row in grid:
        out.append(STEP + "".join(pitch_char(e) if e >= 0 else HOLD if e == -1 else REST for e in row))
    return "".join(out)


def decode(text: str) -> list[list[tuple[int, int, int]]]:
    """Notes of each of the 4 voices as (start step, end step, pitch); tolerant of malformed samples
    (a step with too few voices holds the rest, unknown characters are skipped)."""
    voices: list[list[list[int]]] = [[] for _ in VOICES]
    step = -1
    for chunk in text.split(STEP)[1:]:
        step += 1
        for v, c in enumerate(chunk[:4]):
            p = char_pitch(c)
            if p is not None:
                voices[v].append([step, step + 1, p])
            elif c == HOLD and voices[v] and voices[v][-1][1] == step:
                voices[v][-1][1] = step + 1
        for v in range(len(chunk[:4]), 4):  # a short step: the voice holds
            if voices[v] and voices[v][-1][1] == step:
                voices[v][-1][1] = step + 1
    return [[tuple(n) for n in notes] for notes in voices]


def transpose(grid, k: int):
    return [[e + k if e >= 0 else e for e in row] for row in grid]


def _in_midi_range(grid) -> bool:
    pitches = [e for row in grid for e in row if e >= 0]
    return bool(pitches) and min(pitches) >= 28 and max(pitches) <= 96


@lru_cache(maxsize=1)
def _chorales() -> dict[str, list]:
    """{file name: grid} of the usable chorales (cached on disk)."""
    path = cache_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    try:
        from music21 import corpus
    except ImportError as e:
        raise GenzooError("chorales need the music21 package (pip install music21)") from e
    files = sorted(corpus.getComposer("bach"), key=lambda p: p.name)[:MAX_FILES]
    found = {}
    for f in files:
        try:
            grid = _grid(f)
        except Exception:  # noqa: BLE001  a file music21 cannot read is skipped, as are non-4-part ones
            grid = None
        if grid:
            found[f.name] = grid
    try:
        write_atomic_file(path, json.dumps(found))
    except OSError:
        pass
    return found


def documents(split: str) -> list[str]:
    """The split's chorales as token strings (train: with its transpositions)."""
    out = []
    for name, grid in sorted(_chorales().items()):
        if split_of(name) != split:
            continue
        shifts = TRANSPOSE if split == "train" else (0,)
        out += [encode(transpose(grid, k)) for k in shifts if _in_midi_range(transpose(grid, k))]
    return out


def load(split: str, tokenizer):
    """One split as a token stream (chorales joined by the end-of-document id), kind "tokens"."""
    import torch

    from genzoo.data.base import Dataset

    docs = documents(split)
    if not docs:
        raise GenzooError(f"the chorales corpus has no {split} chorales; is music21 installed with its corpus?")
    eos = tokenizer.eos_id
    ids: list[int] = []
    for i, doc in enumerate(tokenizer.encode_batch(docs)):
        ids += ([eos] if i else []) + doc
    meta = {"tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size, "eos_id": eos, "documents": len(docs),
            "characters": sum(map(len, docs)) + len(docs) - 1,  # one character per event: bits/char = bits/token
            "tokenizer_kind": tokenizer.kind, "music": NAME, "steps_per_quarter": STEPS_PER_QUARTER}
    return Dataset(NAME, split, torch.tensor(ids, dtype=torch.long), meta=meta, kind="tokens")


def to_midi(text: str, program: int = 52):
    """The chorale in ``text`` as a ``pretty_midi.PrettyMIDI`` (one instrument per voice; 52: choir aahs)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=60 / SECONDS_PER_STEP / STEPS_PER_QUARTER)
    for name, notes in zip(VOICES, decode(text)):
        inst = pretty_midi.Instrument(program=program, name=name)
        for s, e, p in notes:
            inst.notes.append(pretty_midi.Note(velocity=80, pitch=int(p), start=s * SECONDS_PER_STEP, end=e * SECONDS_PER_STEP))
        pm.instruments.append(inst)
    return pm


def render(pm, sample_rate: int = 16000) -> np.ndarray:
    """A waveform of the MIDI with pretty_midi's sine synthesizer (offline; no soundfont), peak 0.9."""
    wav = pm.synthesize(fs=sample_rate)
    return (wav / max(np.abs(wav).max(), 1e-9) * 0.9).astype(np.float32) if len(wav) else np.zeros(sample_rate // 2, np.float32)


# ----------------------------------------------------------------------------- voices kept in range


def range_regex(ranges: dict | None = None) -> str:
    """The regex of chorale text whose every note lies in its voice's range: grid steps ``|`` + one
    character per voice (a pitch in that voice's range, ``-`` or ``.``), one or more of them.

    Complete steps only, so an end of document (eos) is allowed exactly between steps, as in the
    training chorales; at least one, else an eos could follow an eos (empty chorales). Pitch characters are single code points (U+0100 + MIDI), so a range is a
    character class ``[lo-hi]``."""
    ranges = RANGES if ranges is None else ranges
    missing = [v for v in VOICES if v not in ranges]
    if missing:
        raise GenzooError(f"voice ranges need all of {', '.join(VOICES)}; missing {', '.join(missing)}")
    classes = []
    for v in VOICES:
        lo, hi = (int(x) for x in ranges[v])
        if not 0 <= lo <= hi <= 127:
            raise GenzooError(f"the {v} range must be MIDI lo..hi within 0..127, got {lo}..{hi}")
        classes.append(f"[{pitch_char(lo)}-{pitch_char(hi)}\\-.]")
    return f"(\\{STEP}{''.join(classes)})+"


def sample(model, n: int, *, condition=None, generator=None, temperature: float = 1.0, max_tokens: int | None = None,
           in_range: bool = False):
    """(n, max_tokens) token ids of a chorale model (``GPT.sample``); with ``in_range`` every voice stays
    in ``RANGES`` by construction (``genzoo.sampling.chorale_ranges``)."""
    if condition is not None:
        raise GenzooError("chorale models sample unconditionally; drop --condition")
    if in_range and (getattr(model, "tokenizer", None) is None or not hasattr(model, "generate_tokens")):
        raise GenzooError(f"in-range sampling needs a chorale model of the gpt family, got {getattr(model, 'family', model)!r}")
    if temperature < 0:
        raise GenzooError(f"temperature must be >= 0, got {temperature}")
    return model.sample(n, generator=generator, temperature=temperature, max_tokens=max_tokens, in_range=in_range)


DOC_SEP = "\n"  # between the chorales of one sample row (not a token character)


def row_text(ids, tokenizer) -> str:
    """One sampled row as text: the chorales it holds (split at eos) joined by ``DOC_SEP``."""
    eos = int(tokenizer.eos_id)
    pieces, cur = [], []
    for t in (int(t) for t in ids):
        if t == eos:
            pieces.append(cur)
            cur = []
        else:
            cur.append(t)
    pieces.append(cur)
    return DOC_SEP.join(tokenizer.decode(p, skip_special_tokens=True) for p in pieces if p)
