"""`genzoo serve RUN...`: the OpenAI-compatible API, genzoo's /api and the web app on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from genzoo.cli.app import GenzooTyper, StoreOption, note
from genzoo.core.errors import GenzooError

app = GenzooTyper()
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    runs: List[Path] = typer.Argument(None, help="run folders to serve (text or image families); requests name them by folder name"),
    store: StoreOption = None,
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface; give keys, not --open)"),
    port: int = typer.Option(8000, help="port to listen on"),
    guardrails: Optional[Path] = typer.Option(None, "--guardrails", help="check every answer against this policy (.toml)"),
    open_access: bool = typer.Option(False, "--open", help="requests without a key act as the store's local admin (loopback only)"),
    require_key: bool = typer.Option(False, "--require-key", help="refuse requests without a gz_ API key (401)"),
    max_body: int = typer.Option(1_000_000, "--max-body-bytes", help="larger request bodies get 413"),
    timeout: float = typer.Option(120.0, "--timeout", help="seconds a generation may run"),
    rate_limit: int = typer.Option(120, "--rate-limit", help="requests per minute per key or client (0: off)"),
    concurrency: int = typer.Option(1, "--concurrency", help="generations at once"),
    queue: int = typer.Option(16, "--queue", help="generations that may wait; more get 503 + Retry-After"),
    cors: Optional[List[str]] = typer.Option(None, "--cors-origin", help="allow this browser origin (repeatable; default: none)"),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="do not serve all-minilm-l6-v2 on /v1/embeddings"),
    no_store: bool = typer.Option(False, "--no-store", help="do not record generations in the store"),
) -> None:
    """Serve models over HTTP: /v1 (the openai client works unchanged), /api (search, ask, feedback, stats), / (web app), /docs.
    Requests authenticate with `Authorization: Bearer gz_...` (keys from `genzoo store key`); without one they are an
    anonymous reader (generate, read shared records) unless --open or --require-key."""
    import uvicorn

    from genzoo.serve.app import create_app
    from genzoo.serve.settings import ServeSettings

    if open_access and require_key:
        raise GenzooError("give --open or --require-key, not both")
    if open_access and host not in LOOPBACK:
        raise GenzooError(f"--open makes every request an admin; it is only allowed on a loopback host, not {host}")
    settings = ServeSettings(runs=list(runs or []), store=store, host=host, port=port, guardrails=guardrails,
                             max_body_bytes=max_body, request_timeout_s=timeout, rate_limit_per_minute=rate_limit,
                             concurrency=concurrency, queue_size=queue, cors_origins=list(cors or []),
                             anonymous="admin" if open_access else "none" if require_key else "reader",
                             embeddings=not no_embeddings, record=not no_store)
    application = create_app(settings)
    names = ", ".join(application.state.pool.models) or "none"
    note(f"serving {names} on http://{host}:{port} (API docs at /docs; without a key: {settings.anonymous})")
    uvicorn.run(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
