"""What every API route depends on: the caller (authenticated, rate-limited) and a store opened as them."""

from __future__ import annotations

from contextlib import contextmanager

from fastapi import Request

from genzoo.serve.security import Caller


def caller(request: Request) -> Caller:
    """Authenticate, then count the request against its key's (or address's) rate limit."""
    state = request.app.state
    who = state.auth.caller(request)
    state.limiter.hit(who.limit_key)
    return who


@contextmanager
def store_as(request: Request, who: Caller):
    """The store opened as ``who`` for one use (a connection per use: safe across worker threads)."""
    with request.app.state.open_store(who.api_key) as store:
        if who.user is not None:  # the anonymous reader: the server's own opening, narrowed to that user
            store._key_sha256 = None  # a GENZOO_API_KEY in the server's environment must not re-assert itself
            store.user = who.user
        yield store
