"""What one `genzoo serve` process is configured with; read once at start, never from a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ANONYMOUS = ("none", "reader", "admin")  # what a request without a genzoo key may do (see security.py)


@dataclass
class ServeSettings:
    runs: list[Path] = field(default_factory=list)  # served models, chosen by folder name in requests
    store: Path | str | None = None  # None: GENZOO_STORE or ~/.genzoo/store.db (as the CLI)
    host: str = "127.0.0.1"
    port: int = 8000
    guardrails: Path | None = None  # a policy .toml for genzoo.tasks.guardrails (None: the default policy, if any)
    max_body_bytes: int = 1_000_000
    request_timeout_s: float = 120.0  # a generation still running after this is stopped (504)
    rate_limit_per_minute: int = 120  # requests per key (or per client address without a key); 0: off
    concurrency: int = 1  # generations that run at once (models are shared; CPU threads are few)
    queue_size: int = 16  # generations that may wait for a slot; more get 503 + Retry-After
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers at all
    anonymous: str = "reader"  # none (key required), reader (generate + read shared records), admin (--open)
    embeddings: bool = True  # serve all-minilm-l6-v2 on /v1/embeddings when its package is installed
    record: bool = True  # record generations in the store (as the CLI does)

    def __post_init__(self):
        from genzoo.core.errors import GenzooError

        if self.anonymous not in ANONYMOUS:
            raise GenzooError(f"anonymous must be one of {', '.join(ANONYMOUS)}, got {self.anonymous!r}")
        for name in ("max_body_bytes", "concurrency"):
            if getattr(self, name) < 1:
                raise GenzooError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queue_size < 0 or self.rate_limit_per_minute < 0 or self.request_timeout_s <= 0:
            raise GenzooError("queue_size and rate_limit_per_minute must be >= 0 and request_timeout_s > 0")
        self.runs = [Path(r) for r in self.runs]
