"""``create_app(settings)``: the FastAPI app of `genzoo serve`: models loaded once (``pool``), identity and
limits (``security``), errors as OpenAI's JSON (``errors``), the /v1 and /api routes and the web app."""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from genzoo.serve import errors, genzoo_routes, openai_routes
from genzoo.serve.guard import load_guard
from genzoo.serve.pool import ModelPool
from genzoo.serve.security import Authenticator, ProtectionMiddleware, RateLimiter
from genzoo.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"


def create_app(settings: ServeSettings, pool: ModelPool | None = None) -> FastAPI:
    pool = pool or ModelPool(settings)  # models load here, once; a test may share one pool between apps

    @asynccontextmanager
    async def lifespan(app):
        yield
        if app.state.owns_pool:
            pool.close()

    app = FastAPI(title="genzoo", description="genzoo's models and generation store: an OpenAI-compatible API (/v1) "
                  "and genzoo's own (/api). Authenticate with Authorization: Bearer gz_... (a store API key).",
                  version="1", lifespan=lifespan)
    app.state.settings, app.state.pool, app.state.owns_pool = settings, pool, True
    app.state.open_store = _store_opener(settings, pool)
    app.state.auth = Authenticator(settings, app.state.open_store)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.guardrails = load_guard(settings.guardrails)
    errors.install(app)
    app.include_router(openai_routes.router)
    app.include_router(genzoo_routes.router)
    from genzoo.serve import web  # the web app's pages (another module's)

    app.include_router(web.router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.cors_origins:  # off unless asked: browsers then refuse other sites' scripts reading our answers
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(ProtectionMiddleware, max_body_bytes=settings.max_body_bytes)  # outermost: before anything reads
    return app


def _store_opener(settings: ServeSettings, pool: ModelPool):
    @contextmanager
    def open_store(api_key: str | None):
        from genzoo.store.api import Store

        store = Store.open(settings.store, api_key=api_key, encoder=pool.encoder, embed_on_write=False)
        try:
            yield store
        finally:
            store.close()

    return open_store
