"""The served models, loaded once at start and shared by every request, and the gate in front of them.

Generation runs in worker threads (torch releases the GIL), at most ``concurrency`` at once; up to
``queue_size`` more wait their turn and any beyond get 503 + Retry-After at once, so a burst cannot
pile up unbounded work. A generation stops early (``Cancelled``) when its client goes away or its
deadline passes: ``Job.cancel`` is checked at every token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.serve.errors import ApiError
from genzoo.serve.settings import ServeSettings

EMBEDDING_MODEL = "all-minilm-l6-v2"


class Cancelled(Exception):
    """Raised inside a generation (from its token hook) to stop it: client gone or deadline passed."""


@dataclass
class Served:
    """One served model: the name requests use, where it came from, and what it does."""

    name: str
    path: Path  # resolved at start; never taken from a request
    kind: str  # "text" or "image"
    model: object
    tokenizer: object = None
    checkpoint: Path | None = None  # image models: the checkpoint folder the manifest names
    created: int = 0


def load_served(path: Path) -> Served:
    """A run folder as a served model: a text model with a tokenizer, or a family that samples images."""
    from genzoo.core.folders import resolve_checkpoint, run_root
    from genzoo.runs.load import load

    path = Path(path).expanduser()
    if not path.exists():
        raise GenzooError(f"no run folder {path}")
    folder = path.resolve()
    name = run_root(folder).name if (folder / "run.json").exists() or folder.name in ("best", "checkpoint") else folder.name
    model = load(folder, "cpu")
    created = int(folder.stat().st_mtime)
    if getattr(model, "tokenizer", None) is not None and hasattr(model, "new_cache"):
        return Served(name, folder, "text", model.eval(), model.tokenizer, created=created)
    from genzoo.models.base import SAMPLE
    from genzoo.runs import manifest as provenance

    if SAMPLE in model.capabilities and (model.data_spec or {}).get("kind") == "image":
        model, ckpt = provenance.load_checkpoint(folder, "cpu")
        return Served(name, folder, "image", model.eval(), checkpoint=ckpt, created=created)
    raise GenzooError(f"{folder} holds a {model.family} model, which genzoo serve cannot serve (text and image families only)")


def _warm_redactor() -> None:
    try:
        from genzoo.store.pii import redact

        redact("warm up")
    except Exception:  # only a head start: a real failure shows on the first record
        pass


class Gate:
    """Admission (``admit``: 503 when ``concurrency + queue_size`` are already in) and a slot to run in."""

    def __init__(self, concurrency: int, queue_size: int, retry_after_s: int = 2):
        self.concurrency, self.limit, self.retry_after_s = concurrency, concurrency + queue_size, retry_after_s
        self.inside = 0
        self._running: asyncio.Semaphore | None = None  # made on first use, inside the server's event loop

    def admit(self) -> "Ticket":
        if self.inside >= self.limit:
            raise ApiError(503, f"the server is busy ({self.inside} generations running or queued); retry in {self.retry_after_s} s",
                           "server_busy", {"Retry-After": str(self.retry_after_s)})
        self.inside += 1
        if self._running is None:
            self._running = asyncio.Semaphore(self.concurrency)
        return Ticket(self)


class Ticket:
    """An admitted request: waits for a slot, runs its work in a thread, gives the slot back when the
    thread ends (not when the request ends: a cancelled generation holds its slot until it stops)."""

    def __init__(self, gate: Gate):
        self.gate, self.done = gate, False
        self.cancel = threading.Event()

    async def run(self, executor: ThreadPoolExecutor, work, deadline: float):
        loop = asyncio.get_running_loop()
        try:
            await self.gate._running.acquire()
        except BaseException:
            self._leave(False)
            raise

        def job():
            try:
                return work(self.check)
            finally:
                loop.call_soon_threadsafe(self._leave, True)

        self.deadline = deadline
        return await asyncio.wrap_future(executor.submit(job))

    def check(self) -> None:
        """Called from the worker at every token: stop when cancelled or late."""
        if self.cancel.is_set():
            raise Cancelled("the client went away")
        if time.monotonic() > self.deadline:
            raise Cancelled("the request took longer than the server's timeout")

    def _leave(self, held: bool) -> None:
        if self.done:
            return
        self.done = True
        self.gate.inside -= 1
        if held:
            self.gate._running.release()

    def abandon(self) -> None:
        """Give up a ticket that never ran (an error before the work started)."""
        if not self.done:
            self._leave(False)


class ModelPool:
    """Everything a request may use: the served models by name, the embedder, the gate and the workers."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.models: dict[str, Served] = {}
        for path in settings.runs:
            served = load_served(path)
            if served.name in self.models or served.name == EMBEDDING_MODEL:
                raise GenzooError(f"two served models are named {served.name!r}; serve runs whose folder names differ")
            self.models[served.name] = served
        self.encoder = None
        if settings.embeddings:
            from genzoo.tasks.encoders import MiniLMEncoder, embeddings_available

            if embeddings_available():
                self.encoder = MiniLMEncoder()  # loads on first use, then stays (shared by search and /v1/embeddings)
        self.gate = Gate(settings.concurrency, settings.queue_size)
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="genzoo-gen")
        if settings.record:  # the store's PII redactor loads in seconds on first use: not on the first request's time
            threading.Thread(target=_warm_redactor, name="genzoo-warm", daemon=True).start()
        self.store_lock = threading.Lock()  # one store write at a time from this process (SQLite writes serialise anyway)

    def get(self, name: str, kind: str | None = None) -> Served:
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"the model {name!r} does not exist on this server; served: {known}", "model_not_found")
        if kind is not None and served.kind != kind:
            raise ApiError(400, f"the model {name!r} is a {served.kind} model; this endpoint needs a {kind} model", "wrong_model_kind")
        return served

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    async def run(self, work, ticket: "Ticket | None" = None):
        """``work(check)`` in a worker thread once a slot is free; ``check()`` must be called per token."""
        ticket = ticket or self.gate.admit()
        try:
            return await ticket.run(self.executor, work, self.deadline())
        except Cancelled as e:
            raise ApiError(504 if "timeout" in str(e) else 499, str(e), "generation_stopped") from None
        finally:
            ticket.cancel.set()  # a request cancelled while awaiting stops its generation at the next token

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
