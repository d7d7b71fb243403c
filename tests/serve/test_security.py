"""Identity, limits and errors: every refusal is OpenAI-shaped JSON with the right status, never a trace."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def is_error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text and "File \"" not in r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["message"]
    return err


def test_a_30_mb_body_is_refused_with_413_before_it_is_read(client):
    body = b'{"model":"gpt","prompt":"' + b"a" * 30_000_000 + b'"}'
    is_error(client.post("/v1/completions", content=body, headers={"content-type": "application/json"}), 413)


def test_a_chunked_body_past_the_limit_is_413_too(client):
    def chunks():
        for _ in range(40):
            yield b"a" * 100_000

    is_error(client.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"}), 413)


def test_bad_json_and_bad_fields(client):
    assert is_error(client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)
    err = is_error(client.post("/v1/completions", json={"prompt": "x"}), 422)
    assert "model" in err["message"]
    is_error(client.post("/v1/completions", json={"model": "gpt", "prompt": "x", "max_tokens": -3}), 422)
    is_error(client.post("/v1/chat/completions", json={"model": "gpt", "messages": [{"role": "user", "content": "x"}],
                                                       "response_format": {"type": "yaml"}}), 400)


def test_unknown_model_and_paths_are_404(client):
    for name in ("no-such-model", "../../etc/passwd", "/tmp"):
        is_error(client.post("/v1/completions", json={"model": name, "prompt": "x"}), 404)
    is_error(client.get("/no/such/route"), 404)


def test_roles(client, store_keys):
    writer, reader = ({"Authorization": f"Bearer {store_keys[r]}"} for r in ("writer", "reader"))
    gid = client.post("/v1/completions", json={"model": "gpt", "prompt": "the", "max_tokens": 3}, headers=writer).json()["genzoo"]["generation_ids"][0]
    assert client.post(f"/api/generations/{gid}/feedback", json={"rating": 5}, headers=writer).status_code == 200
    is_error(client.post(f"/api/generations/{gid}/feedback", json={"rating": 1}, headers=reader), 403)
    is_error(client.post(f"/api/generations/{gid}/feedback", json={"rating": 1}), 403)  # anonymous: a reader
    is_error(client.post(f"/api/generations/{gid}/reproduce", headers=reader), 403)
    is_error(client.get("/v1/models", headers={"Authorization": "Bearer gz_not-a-real-key"}), 401)
    assert client.get("/v1/models", headers={"Authorization": "Bearer sk-placeholder"}).status_code == 200  # no genzoo key: anonymous


def test_require_key_refuses_anonymous(make_app, store_keys):
    with TestClient(make_app(anonymous="none")) as c:
        is_error(c.get("/v1/models"), 401)
        assert c.get("/v1/models", headers={"Authorization": f"Bearer {store_keys['reader']}"}).status_code == 200


def test_rate_limit_is_429_with_retry_after(make_app, store_keys):
    with TestClient(make_app(rate_limit_per_minute=3)) as c:
        assert all(c.get("/v1/models").status_code == 200 for _ in range(3))
        r = c.get("/v1/models")
        is_error(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        # the limit is per key: another key still has its own
        assert c.get("/v1/models", headers={"Authorization": f"Bearer {store_keys['writer']}"}).status_code == 200


def test_a_full_queue_is_503_with_retry_after(make_app):
    app = make_app(concurrency=1, queue_size=0)
    with TestClient(app) as c:
        ticket = app.state.pool.gate.admit()  # the only place is taken
        try:
            r = c.post("/v1/completions", json={"model": "gpt", "prompt": "x", "max_tokens": 2})
            is_error(r, 503)
            assert int(r.headers["retry-after"]) >= 1
        finally:
            ticket.abandon()
        assert c.post("/v1/completions", json={"model": "gpt", "prompt": "x", "max_tokens": 2}).status_code == 200


def test_security_headers_everywhere_and_no_cors_by_default(client):
    for r in (client.get("/"), client.get("/v1/models"), client.post("/v1/completions", json={"model": "nope", "prompt": ""})):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
    r = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_only_for_configured_origins(make_app):
    with TestClient(make_app(cors_origins=["https://ok.example"])) as c:
        assert c.get("/v1/models", headers={"Origin": "https://ok.example"}).headers["access-control-allow-origin"] == "https://ok.example"
        assert "access-control-allow-origin" not in c.get("/v1/models", headers={"Origin": "https://evil.example"}).headers


def test_docs_are_served(client):
    assert client.get("/openapi.json").json()["info"]["title"] == "genzoo"
    assert client.get("/docs").status_code == 200
