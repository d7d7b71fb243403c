"""The web app's pages through TestClient: they render, escape, search, page, sign in, check CSRF,
refuse a reader's write in words, stream the playground, and show runs and usage.

Fixtures (tests/serve/conftest.py): a tiny GPT run, one model pool, ``make_app``. The pages get their
own store here (a writer, a reader and some shared records), so other server tests see none of it."""

from __future__ import annotations

import io
import json
import re

import pytest

from genzoo.serve.web import CSRF_COOKIE, KEY_COOKIE


def png_bytes(shade: int = 128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8), shade).save(buf, "PNG")
    return buf.getvalue()


def build_site(root, run) -> dict:
    """A store for the pages (users, shared texts, an image, a sound, an SVG, a private text),
    an eval.json with floors in the run and a bench report beside it."""
    from genzoo.store.api import Store

    path = root / "web.db"
    with Store.open(path, encoder=None, redact=False) as store:
        _, writer = store.create_user("wendy", "writer")
        _, reader = store.create_user("rita", "reader")
    with Store.open(path, api_key=writer, encoder=None, redact=False) as store:
        for i in range(14):
            store.record(kind="text", text=f"zebra number {i} walks", prompt=f"zebra {i}", family="gpt", visibility="shared")
        store.record(kind="text", text="<script>alert('x')</script> a fox", prompt="<b>fox</b>", family="gpt", visibility="shared")
        ids = {"image": store.record(kind="image", content=png_bytes(), content_type="image/png", prompt="a grey square",
                                     family="vae", visibility="shared"),
               "audio": store.record(kind="array", content=b"RIFF....WAVEfmt ", content_type="audio/wav", family="wavenet",
                                     visibility="shared"),
               "svg": store.record(kind="image", content=b"<svg onload='alert(1)'/>", content_type="image/svg+xml", visibility="shared"),
               "private": store.record(kind="text", text="my secret diary", visibility="private")}
    (run / "eval.json").write_text(json.dumps({"family": "gpt", "bits_per_char": 3.2, "fd_digits": 41.5, "fd_digits_floor": 2.25,
                                               "precision": 0.61, "precision_floor": 0.93}))
    (run.parent / "results.json").write_text(json.dumps({"data": "t.txt", "budget": {"steps": 30},
                                                         "rows": [{"family": "gpt", "parameters": 5000, "bits_per_char": 3.2}]}))
    return {"path": path, "writer": writer, "reader": reader, "ids": ids}


@pytest.fixture(scope="module")
def site(tmp_path_factory, gpt_run):
    return build_site(tmp_path_factory.mktemp("web-site"), gpt_run)


@pytest.fixture(scope="module")
def web(make_app, site):
    from fastapi.testclient import TestClient

    with TestClient(make_app(store=site["path"])) as c:
        yield c


def fresh(make_app, site, **settings):
    from fastapi.testclient import TestClient

    return TestClient(make_app(store=site["path"], **settings))


def token(client) -> str:
    if CSRF_COOKIE not in client.cookies:
        client.get("/login")
    return client.cookies[CSRF_COOKIE]


def sign_in(client, key: str):
    r = client.post("/login", data={"api_key": key, "csrf_token": token(client), "next": "/gallery"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r


@pytest.mark.parametrize("url,heading", [("/", "Gallery"), ("/gallery", "Gallery"), ("/playground", "Playground"), ("/runs", "Runs"),
                                         ("/runs/gpt", "Run gpt"), ("/stats", "Usage"), ("/login", "Sign in")])
def test_every_page_renders_with_its_heading_and_protections(web, url, heading):
    r = web.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f"<h1>{heading}</h1>" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    assert '<a class="skip" href="#main">' in r.text and 'name="viewport"' in r.text
    cookie = r.headers.get("set-cookie", "")
    assert not cookie or ("HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict"))


def test_text_and_prompts_are_escaped(web):
    r = web.get("/gallery", params={"q": "fox", "mode": "keyword"})
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in r.text
    assert "&lt;b&gt;fox&lt;/b&gt;" in r.text


def test_search_filters_and_pages(web, site):
    first = web.get("/gallery", params={"q": "zebra", "mode": "keyword"})
    assert first.text.count('class="card gen"') == 12 and 'rel="next"' in first.text
    second = web.get("/gallery", params={"q": "zebra", "mode": "keyword", "page": 2})
    assert second.text.count('class="card gen"') == 2 and 'rel="prev"' in second.text and 'rel="next"' not in second.text
    images = web.get("/gallery", params={"kind": "image"})
    assert f'src="/generations/{site["ids"]["image"]}/content"' in images.text and "zebra" not in images.text
    fam = web.get("/gallery", params={"family": "wavenet"})
    assert f'<audio controls preload="none" src="/generations/{site["ids"]["audio"]}/content"' in fam.text
    assert "No generations found" in web.get("/gallery", params={"min_rating": "5"}).text


def test_a_bad_filter_is_explained_in_words(web):
    r = web.get("/gallery", params={"min_rating": "lots", "page": "0"})
    assert r.status_code == 400
    assert "Minimum rating must be a number" in r.text and "Page must be a whole number" in r.text and 'role="alert"' in r.text


def test_content_serves_images_and_sound_but_never_svg_or_private_records(web, site):
    ids = site["ids"]
    img = web.get(f"/generations/{ids['image']}/content")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content == png_bytes()
    assert "sandbox" in img.headers["content-security-policy"]
    assert web.get(f"/generations/{ids['audio']}/content").headers["content-type"] == "audio/wav"
    assert web.get(f"/generations/{ids['svg']}/content").status_code == 404
    assert web.get(f"/generations/{ids['private']}/content").status_code == 404
    page = web.get(f"/generations/{ids['private']}")  # the anonymous reader: as if it did not exist
    assert page.status_code == 400 and "not visible to you" in page.text and "diary" not in page.text


def test_sign_in_keeps_the_key_in_an_httponly_strict_cookie(make_app, site):
    c = fresh(make_app, site)
    r = sign_in(c, site["writer"])
    assert r.headers["location"] == "/gallery"
    cookies = r.headers.get_list("set-cookie")
    key_cookie = next(h for h in cookies if h.startswith(KEY_COOKIE + "="))
    assert "HttpOnly" in key_cookie and re.search("samesite=strict", key_cookie, re.I)
    assert "Signed in as <strong>wendy</strong> (writer)" in c.get("/gallery").text
    r = c.post("/logout", data={"csrf_token": token(c)}, follow_redirects=False)
    assert r.status_code == 303 and "Not signed in" in c.get("/").text or "Browsing as anonymous" in c.get("/").text


def test_a_wrong_key_is_refused_in_words(make_app, site):
    c = fresh(make_app, site)
    r = c.post("/login", data={"api_key": "gz_not-a-real-key", "csrf_token": token(c)})
    assert r.status_code == 401 and "That key was not accepted" in r.text and "unknown or revoked API key" in r.text
    assert KEY_COOKIE not in c.cookies


def test_posts_without_the_csrf_token_are_refused(make_app, site):
    c = fresh(make_app, site)
    gid = site["ids"]["image"]
    assert c.post("/login", data={"api_key": site["writer"]}).status_code == 403
    sign_in(c, site["writer"])
    for data in ({"rating": "4"}, {"rating": "4", "csrf_token": "forged" * 7 + "x"}):
        r = c.post(f"/generations/{gid}/feedback", data=data)
        assert r.status_code == 403 and "security token does not match" in r.text
    r = c.post("/playground/stream", json={"model": "gpt", "prompt": "the"})
    assert r.status_code == 403 and "security token" in r.json()["error"]["message"]


def test_a_writer_rates_and_the_rating_shows_after_a_reload(make_app, site):
    c = fresh(make_app, site)
    sign_in(c, site["writer"])
    gid = site["ids"]["image"]
    r = c.post(f"/generations/{gid}/feedback", data={"rating": "4", "csrf_token": token(c)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/generations/{gid}?rated=1"
    page = c.get(f"/generations/{gid}")
    assert '<dd class="rating">4.0 / 5</dd>' in page.text and "<td>wendy</td><td>4.0</td>" in page.text
    assert c.post(f"/generations/{gid}/feedback", data={"rating": "9", "csrf_token": token(c)}).status_code == 400


def test_a_reader_is_refused_a_write_in_words(make_app, site):
    c = fresh(make_app, site)
    sign_in(c, site["reader"])
    r = c.post(f"/generations/{site['ids']['image']}/feedback", data={"rating": "2", "csrf_token": token(c)})
    assert r.status_code == 403
    assert "Your rating was not saved" in r.text and "has role &#39;reader&#39;, which cannot give feedback" in r.text


def events(response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def test_playground_streams_text_then_the_record_to_rate(make_app, site):
    c = fresh(make_app, site)
    sign_in(c, site["writer"])
    r = c.post("/playground/stream", json={"model": "gpt", "prompt": "the quick", "max_tokens": 12, "temperature": 0.8, "seed": 3},
               headers={"X-CSRF-Token": token(c)})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r)
    pieces = [e["text"] for e in got if "text" in e]
    assert len(pieces) >= 2 and got[-1]["done"] and 1 <= got[-1]["tokens"] <= 12
    gid = got[-1]["generation_id"]
    assert isinstance(gid, int) and got[-1]["guardrails"] is None
    record = c.get(f"/generations/{gid}")
    assert "".join(pieces)[:20].replace("<", "&lt;") in record.text.replace("&#39;", "'")


def test_playground_as_the_anonymous_reader_generates_but_records_nothing(web):
    r = web.post("/playground/stream", json={"model": "gpt", "prompt": "the", "max_tokens": 4}, headers={"X-CSRF-Token": token(web)})
    last = events(r)[-1]
    assert last["done"] and last["generation_id"] is None and "sign in with a writer key" in last["note"]


@pytest.mark.parametrize("body,message", [({"model": "gpt", "prompt": "x", "temperature": "hot"}, "Temperature must be a number"),
                                          ({"model": "gpt", "prompt": "x", "top_p": 0}, "Top-p must be above 0"),
                                          ({"model": "nope", "prompt": "x"}, "does not exist on this server")])
def test_playground_explains_bad_options(web, body, message):
    r = web.post("/playground/stream", json=body, headers={"X-CSRF-Token": token(web)})
    assert r.status_code in (400, 404) and message in r.json()["error"]["message"]


def test_run_page_shows_curves_eval_beside_floors_and_manifest(web):
    r = web.get("/runs/gpt")
    assert '<svg class="chart"' in r.text and "<polyline" in r.text and "loss" in r.text
    assert "<th scope=\"row\">fd_digits</th><td>41.5</td><td>2.25</td>" in r.text
    assert "bits_per_char" in r.text and "&#34;family&#34;: &#34;gpt&#34;" in r.text
    assert 'src="/runs/gpt/files/loss.png"' in r.text
    assert web.get("/runs/gpt/files/loss.png").headers["content-type"] == "image/png"
    for bad in ("/runs/gpt/files/run.json", "/runs/gpt/files/..%2Frun.json", "/runs/gpt/files/%2Fetc%2Fpasswd.png", "/runs/nope/files/loss.png"):
        assert web.get(bad).status_code == 404
    assert web.get("/runs/nope").status_code == 404


def test_stats_draws_usage_and_the_bench_report(web):
    r = web.get("/stats", params={"by": "week"})
    assert r.status_code == 200 and '<svg class="chart"' in r.text and "<rect" in r.text
    assert "<td>gpt</td><td>15</td>" in r.text  # the 15 shared gpt texts (the private one is not the reader's)
    assert "Bench report" in r.text and "bits/char" in r.text


def test_a_server_that_requires_a_key_sends_pages_to_sign_in(make_app, site):
    c = fresh(make_app, site, anonymous="none")
    r = c.get("/gallery?q=zebra", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fgallery")
    r = c.post("/playground/stream", json={"model": "gpt", "prompt": "x"}, headers={"X-CSRF-Token": token(c)})
    assert r.status_code == 401 and "sign in" in r.json()["error"]["message"]
    sign_in(c, site["reader"])
    assert "zebra number" in c.get("/gallery", params={"q": "zebra", "mode": "keyword"}).text
