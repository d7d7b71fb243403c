"""Who a request acts as, how often it may ask, and the protections every response carries.

Identity. ``Authorization: Bearer gz_...`` is a store API key: the request acts as that key's user
and role (``genzoo store user/key`` make them); an unknown or revoked ``gz_`` key is refused (401).
A request without a genzoo key (no header, or a placeholder such as the ``"none"`` the openai client
must be given) is *anonymous*, and what it may do is the server's setting, never the request's:

- ``reader`` (default): list models, generate, embed, and read/search records shared with everyone,
  as the store user ``anonymous`` (role reader, made at start). Its generations are not recorded
  (a reader cannot write) and it cannot give feedback, reproduce, or read private records.
- ``none`` (``--require-key``): 401 without a key.
- ``admin`` (``--open``): the store's local admin, as the CLI without a key. Only for a server that
  nobody else can reach; the CLI refuses it on a non-loopback host.

Limits. Requests per minute per key (per client address when anonymous): 429 + Retry-After. The
body size is checked before it is read: a larger Content-Length, or a chunked body that grows past
the limit, gets 413. Headers: nosniff, no framing, no referrer; CORS only for configured origins.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from genzoo.serve.errors import ApiError, error_body
from genzoo.serve.settings import ServeSettings

ANONYMOUS_USER = "anonymous"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


@dataclass(frozen=True)
class Caller:
    """The request's identity. The store is opened with ``api_key``; an anonymous reader has no key
    and is set as ``user`` on a store opened by the server (``deps.store_as``)."""

    name: str
    role: str
    api_key: str | None
    limit_key: str  # what the rate limit counts by
    user: object = None  # the store's ``anonymous`` User, for an anonymous reader

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "writer")


class Authenticator:
    """Turns a request's Authorization header into a ``Caller``, checking gz_ keys against the store."""

    def __init__(self, settings: ServeSettings, open_store):
        self.settings, self.open_store = settings, open_store
        self.anonymous_user = self._anonymous_reader() if settings.anonymous == "reader" else None

    def _anonymous_reader(self):
        """The store user ``anonymous`` (role reader, made on first start). It holds no usable key:
        the server acts as it by setting it on a store it opened, so no key can leak or pile up."""
        with self.open_store(None) as store:  # the local admin: whoever runs the server owns the store file
            user = store.backend.user_by_name(ANONYMOUS_USER)
            if user is None:
                store.create_user(ANONYMOUS_USER, "reader")
                store.revoke_keys(ANONYMOUS_USER)
                user = store.backend.user_by_name(ANONYMOUS_USER)
            if user.role != "reader":
                from genzoo.core.errors import GenzooError

                raise GenzooError(f"the store's user {ANONYMOUS_USER!r} has role {user.role!r}, not reader; "
                                  "change it back or serve with --require-key")
            return user

    def caller(self, request: Request) -> Caller:
        token = bearer(request)
        if token is not None and token.startswith("gz_"):
            from genzoo.store.api import AccessDenied

            try:
                with self.open_store(token) as store:
                    user = store.user
            except AccessDenied as e:
                raise ApiError(401, str(e), "invalid_api_key", {"WWW-Authenticate": "Bearer"}) from None
            return Caller(user.name, user.role, token, "key:" + hashlib.sha256(token.encode()).hexdigest())
        client = f"ip:{request.client.host if request.client else 'unknown'}"
        if self.settings.anonymous == "none":
            raise ApiError(401, "this server needs an API key: send Authorization: Bearer gz_... (genzoo store key NAME makes one)",
                           "missing_api_key", {"WWW-Authenticate": "Bearer"})
        if self.settings.anonymous == "admin":
            return Caller("local", "admin", None, client)
        return Caller(ANONYMOUS_USER, "reader", None, client, self.anonymous_user)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled evenly; 0 turns it off."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self.lock = threading.Lock()

    def hit(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self.buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / rate))
                raise ApiError(429, f"rate limit of {self.per_minute} requests per minute reached; retry in {wait} s",
                               "rate_limit_exceeded", {"Retry-After": str(wait)})
            self.buckets[key] = (tokens - 1.0, now)
            if len(self.buckets) > 100_000:  # forget idle clients rather than grow without bound
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 60}


class ProtectionMiddleware:
    """Pure ASGI (streams pass through untouched): the body limit before any read, and security headers."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in names]
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max):
            return await _send_json(send_secured, 413 if length.isdigit() else 400,
                                    f"the request body is larger than this server's limit of {self.max} bytes"
                                    if length.isdigit() else "invalid Content-Length")
        seen = 0

        async def receive_limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max:  # a chunked body without a Content-Length: stop at the limit
                raise TooLarge(413, f"the request body is larger than this server's limit of {self.max} bytes")
            return message

        await self.app(scope, receive_limited, send_secured)


class TooLarge(ApiError):
    def __init__(self, status: int, message: str):
        super().__init__(status, message, "request_too_large")


async def _send_json(send, status: int, message: str) -> None:
    import json

    body = json.dumps(error_body(status, message, "request_too_large" if status == 413 else "invalid_request")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


