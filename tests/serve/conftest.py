"""Shared fixtures for the server tests: a tiny GPT trained once, a store with a writer and a reader,
one model pool (models load once) and apps over it, and a real uvicorn on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx  # noqa: F401  (imported whole before any thread: the openai client reads a half-imported httpx as broken)
import pytest

TEXT = "the quick brown fox jumps over the lazy dog. " * 300


@pytest.fixture(scope="session")
def gpt_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve-gpt")
    data = root / "t.txt"
    data.write_text(TEXT)
    out = root / "gpt"
    cmd = [sys.executable, "-m", "genzoo.cli", "train", "gpt", "--data", str(data), "--steps", "30", "--out", str(out), "--no-eval",
           "--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=32"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "GENZOO_STORE": str(root / "train-store.db")})
    return out


@pytest.fixture(scope="session")
def store_keys(tmp_path_factory) -> dict:
    """A fresh store with a writer and a reader; their keys by role, and the path."""
    from genzoo.store.api import Store

    path = tmp_path_factory.mktemp("serve-store") / "s.db"
    with Store.open(path, encoder=None) as store:  # the local admin
        _, writer = store.create_user("wendy", "writer")
        _, reader = store.create_user("rita", "reader")
    return {"path": path, "writer": writer, "reader": reader}


@pytest.fixture(scope="session")
def pool(gpt_run, store_keys):
    from genzoo.serve.pool import ModelPool
    from genzoo.serve.settings import ServeSettings

    p = ModelPool(ServeSettings(runs=[gpt_run], store=store_keys["path"]))
    yield p
    p.close()


@pytest.fixture(scope="session")
def make_app(pool, gpt_run, store_keys):
    """An app over the shared pool with these settings (a fresh gate when queue/concurrency are given)."""
    from genzoo.serve.app import create_app
    from genzoo.serve.pool import Gate
    from genzoo.serve.settings import ServeSettings

    def make(**overrides):
        settings = ServeSettings(**{"runs": [gpt_run], "store": store_keys["path"], "rate_limit_per_minute": 0, **overrides})
        app = create_app(settings, pool=pool)
        app.state.owns_pool = False
        if "queue_size" in overrides or "concurrency" in overrides:
            import copy

            shadow = copy.copy(pool)  # same models and workers, its own gate
            shadow.gate = Gate(settings.concurrency, settings.queue_size)
            shadow.settings = settings
            app.state.pool = shadow
        return app

    return make


@pytest.fixture(scope="session")
def client(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        yield c


@pytest.fixture(scope="session")
def server(make_app):
    """A real uvicorn on 127.0.0.1 and a free port, in a thread: (base URL, app)."""
    import uvicorn

    app = make_app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(10)
