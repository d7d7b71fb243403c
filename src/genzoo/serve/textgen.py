"""Text generation for the API: one request's options -> ``genzoo.tasks.textgen.generate_text``,
run inside a worker (``pool.Ticket``), with a token hook that streams, checks for cancellation, and
holds back text that may turn out to be the start of a stop string (it is cut from the final text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genzoo.core.errors import GenzooError

MAX_N = 8


@dataclass
class TextJob:
    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    n: int = 1
    json_schema: dict | None = None

    def __post_init__(self):
        if not 1 <= self.n <= MAX_N:
            raise GenzooError(f"n must be between 1 and {MAX_N}, got {self.n}")
        if not 1 <= self.max_tokens <= 4096:
            raise GenzooError(f"max_tokens must be between 1 and 4096, got {self.max_tokens}")
        if len(self.stop) > 4:
            raise GenzooError("give at most 4 stop strings")

    def options(self) -> dict:
        """The keyword arguments of generate_text: what the store's manifest records and reproduce replays."""
        return dict(max_tokens=self.max_tokens, temperature=self.temperature, top_k=0, top_p=self.top_p, min_p=0.0,
                    repetition_penalty=1.0, stop=list(self.stop) or None, regex=None, json_schema=self.json_schema, grammar=None)


@dataclass
class TextResult:
    text: str
    tokens: int
    finish_reason: str  # OpenAI's: stop or length (content_filter from guardrails)
    filled: bool = False  # a JSON answer the vocabulary could not spell, completed by the server (structured.py)


def generate(served, job: TextJob, check, emit=None) -> list[TextResult]:
    """``job`` on ``served`` (n rows, one seed: rows differ). ``check()`` per token; ``emit(row, text)`` streams."""
    from genzoo.tasks.textgen import generate_text, visible_text

    decode = visible_text(served.tokenizer)
    rows: dict[int, list[int]] = {}
    shown: dict[int, str] = {}

    def on_token(row: int, token: int) -> None:
        check()
        if emit is None:
            return
        ids = rows.setdefault(row, [])
        ids.append(token)
        text = decode(ids)
        safe = text[:len(text) - _held_back(text, job.stop)]
        before = shown.get(row, "")
        if not safe.endswith("\ufffd") and safe.startswith(before) and len(safe) > len(before):
            shown[row] = safe
            emit(row, safe[len(before):])

    try:
        out = generate_text(served.model, served.tokenizer, [job.prompt] * job.n, seed=job.seed, on_token=on_token, **job.options())
        results = [TextResult(g.text, len(g.ids), "length" if g.stop_reason == "length" else "stop")
                   for g in out]
    except GenzooError as e:
        if job.json_schema is None or "cannot write" not in str(e):
            raise
        from genzoo.serve.structured import fill_json

        results = [TextResult(*fill_json(served, job, row, check), "stop", filled=True) for row in range(job.n)]
    if emit is not None:
        for row, r in enumerate(results):
            before = shown.get(row, "")
            if r.text.startswith(before) and len(r.text) > len(before):
                emit(row, r.text[len(before):])
            elif not r.text.startswith(before):  # cannot happen for plain text; say so rather than send a wrong stream
                raise GenzooError("the streamed text and the final text differ")
    return results


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could still become a stop string (not streamed yet)."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                best = max(best, k)
                break
    return best


def render_chat(messages: list[dict]) -> str:
    """Messages as the plain prompt a small GPT continues: "role: content" lines, then "assistant:"."""
    lines = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise GenzooError("a message's content must be text or a list of text parts")
        lines.append(f"{m.get('role', 'user')}: {content}")
    return "\n".join(lines + ["assistant:"])


async def relay(request, pool, served, job: TextJob, ticket, *, stream_pieces: bool):
    """Run ``job`` in the pool and yield ``(row, text)`` for each piece of new text as it is made
    (only when ``stream_pieces``: with guardrails the text is checked whole first), then one
    ``(None, results)``; a generation that failed yields ``(None, exception)``. Stops the generation
    (at its next token) when the client disconnects or the consumer stops iterating. Shared by the
    OpenAI stream and the web playground."""
    import asyncio

    from genzoo.serve.pool import Cancelled

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    emit = (lambda row, text: loop.call_soon_threadsafe(pieces.put_nowait, (row, text))) if stream_pieces else None
    task = asyncio.ensure_future(ticket.run(pool.executor, lambda check: generate(served, job, check, emit), pool.deadline()))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved here if the client left early
    try:
        while not task.done() or not pieces.empty():
            if not pieces.empty():
                yield pieces.get_nowait()
                continue
            getter = asyncio.ensure_future(pieces.get())
            done, _ = await asyncio.wait({getter, task}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
                if not done and await request.is_disconnected():
                    return
        try:
            yield None, task.result()
        except (Cancelled, GenzooError) as e:
            yield None, e
    finally:
        ticket.cancel.set()
