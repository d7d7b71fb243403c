"""JSON output for a model whose vocabulary cannot spell it (a character model trained on prose has
no ``{``): a byte-level matcher of the schema walks the text; where an allowed character is one the
model has, the model picks among them (its own logits, masked); characters it lacks are written by
the server: the schema's forced ones, else the first of ``PREFERRED`` allowed (closing what is open).
The answer is therefore always valid, and marked ``filled`` so a client can tell it is not the
model's alone. Models that can spell JSON never come here (``textgen.generate`` tries them first).
"""

from __future__ import annotations

import torch

from genzoo.sampling.constrained import byte_tokenizer

from genzoo.core.errors import GenzooError

PREFERRED = b'}]0"'  # close an object or an array; a number's shortest digit; a string (only when none else)
MAX_CHARS = 1024


def fill_json(served, job, row: int, check) -> tuple[str, int]:
    """(valid JSON text for ``job.json_schema``, how many of its characters the model chose)."""
    import llguidance as llg

    spec = llg.LLMatcher.grammar_from_json_schema(job.json_schema, overrides={"whitespace_flexible": False})
    m = llg.LLMatcher(byte_tokenizer(), spec, log_level=0)
    if m.is_error():
        raise GenzooError(f"invalid JSON schema: {m.get_error().split('<state>')[0].strip()}")
    tok, model = served.tokenizer, served.model
    special = set(getattr(tok, "special_ids", None) or ())
    by_byte = {b[0]: i for i, b in enumerate(tok.token_bytes()) if len(b) == 1 and b[0] < 128 and i not in special}
    context = [i for i in tok.encode(job.prompt) if i not in special] or [tok.eos_id]
    g = torch.Generator().manual_seed(job.seed + row)
    written, chosen = bytearray(), 0
    while len(written) < MAX_CHARS:
        check()
        forced = m.compute_ff_bytes()
        if forced:
            _take(m, written, context, by_byte, forced)
            continue
        bits = _allowed(m)
        if m.is_accepting() and (m.is_stopped() or chosen >= job.max_tokens):
            break
        options = [b for b in range(128) if bits[b] and b in by_byte] if chosen < job.max_tokens else []
        if options:
            ids = [by_byte[b] for b in options] + ([tok.eos_id] if m.is_accepting() else [])
            pick = _sample(model, context, ids, job.temperature, g)
            chosen += 1
            if pick == tok.eos_id:
                break
            _take(m, written, context, by_byte, tok.token_bytes()[pick])
            continue
        if m.is_accepting():
            break
        allowed = [b for b in range(128) if bits[b]]
        if not allowed:
            raise GenzooError("the JSON schema cannot be completed with ASCII text")
        order = b'"' if _in_string(written) else PREFERRED  # inside a string, } and ] are just text: close it
        _take(m, written, context, by_byte, bytes([next((b for b in order if bits[b]), allowed[0])]))
    else:
        raise GenzooError(f"the JSON schema needs more than {MAX_CHARS} characters")
    return written.decode("utf-8"), chosen


def _in_string(written: bytearray) -> bool:
    inside, escaped = False, False
    for b in written:
        if escaped:
            escaped = False
        elif inside and b == 0x5C:  # backslash
            escaped = True
        elif b == 0x22:
            inside = not inside
    return inside


def _allowed(m) -> list[int]:
    import numpy as np

    return np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little").tolist()


def _take(m, written: bytearray, context: list[int], by_byte: dict, data: bytes) -> None:
    """Consume ``data`` in the matcher and the text; the model sees the characters it knows."""
    for b in data:
        if not m.consume_token(b):
            raise GenzooError("internal: a byte the schema allowed was refused")
        written.append(b)
        if b in by_byte:
            context.append(by_byte[b])


def _sample(model, context: list[int], ids: list[int], temperature: float, g: torch.Generator) -> int:
    window = torch.tensor([context[-int(model.config.context):]])
    with torch.no_grad():
        logits = model(window, last_only=True)
    logits = logits.reshape(-1, logits.shape[-1])[-1].float()[ids]
    if temperature <= 0:
        return ids[int(torch.argmax(logits))]
    probs = torch.softmax(logits / temperature, dim=-1)
    return ids[int(torch.multinomial(probs, 1, generator=g))]
