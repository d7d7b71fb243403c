"""The OpenAI-compatible API, through the official openai client against a real uvicorn, and TestClient."""

from __future__ import annotations

import json
import time

import pytest

openai = pytest.importorskip("openai")

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "word": {"type": "string"}},
          "required": ["n", "word"], "additionalProperties": False}


@pytest.fixture(scope="module")
def oai(server):
    base, _ = server
    return openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)


def test_models_lists_each_run_and_the_embedder(oai):
    ids = [m.id for m in oai.models.list().data]
    assert ids[0] == "gpt" and "all-minilm-l6-v2" in ids


def test_completion_is_text_and_greedy_is_repeatable(oai):
    a = oai.completions.create(model="gpt", prompt="the quick", max_tokens=8, temperature=0, seed=1)
    b = oai.completions.create(model="gpt", prompt="the quick", max_tokens=8, temperature=0, seed=2)
    assert isinstance(a.choices[0].text, str) and a.choices[0].text == b.choices[0].text
    assert a.usage.completion_tokens == 8 and a.choices[0].finish_reason == "length"


def test_streamed_chat_comes_in_chunks_and_matches_the_whole_answer(oai):
    kw = dict(model="gpt", messages=[{"role": "user", "content": "the quick"}], max_tokens=8, seed=3)
    chunks = list(oai.chat.completions.create(stream=True, **kw))
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == oai.chat.completions.create(**kw).choices[0].message.content


def test_stop_and_n(oai):
    r = oai.completions.create(model="gpt", prompt="the", max_tokens=12, n=2, seed=5, stop=["o"])
    assert len(r.choices) == 2 and all("o" not in c.text for c in r.choices)


def test_json_schema_answers_always_parse_and_match(oai):
    for seed in range(10):
        r = oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "a number"}], max_tokens=20, seed=seed,
                                        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}})
        v = json.loads(r.choices[0].message.content)
        assert set(v) == {"n", "word"} and isinstance(v["n"], int) and isinstance(v["word"], str)
    r = oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_embeddings_shape(oai):
    from genzoo.tasks.encoders import embeddings_available

    if not embeddings_available():
        pytest.skip("all-MiniLM-L6-v2 is not installed")
    e = oai.embeddings.create(model="all-minilm-l6-v2", input=["a sentence", "another"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 384


def test_unknown_model_is_404_json(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.completions.create(model="no-such-model", prompt="x")
    assert "no-such-model" in e.value.body["message"] and e.value.body["code"] == "model_not_found"


def test_a_writer_s_generations_are_recorded_and_readable(client, store_keys):
    h = {"Authorization": f"Bearer {store_keys['writer']}"}
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": "the lazy", "max_tokens": 5, "seed": 7}, headers=h)
    assert r.status_code == 200, r.text
    (gid,) = r.json()["genzoo"]["generation_ids"]
    g = client.get(f"/api/generations/{gid}", headers=h).json()
    assert g["text"] == r.json()["choices"][0]["text"] and g["manifest"]["seed"] == 7
    # an anonymous reader's are not (a reader cannot write), and it cannot read the writer's private record
    r = client.post("/v1/completions", json={"model": "gpt", "prompt": "the lazy", "max_tokens": 5})
    assert r.status_code == 200 and r.json()["genzoo"]["generation_ids"] == []
    assert client.get(f"/api/generations/{gid}").status_code == 404


def test_search_and_stats(client, store_keys):
    h = {"Authorization": f"Bearer {store_keys['writer']}"}
    client.post("/v1/completions", json={"model": "gpt", "prompt": "fox", "max_tokens": 4}, headers=h)
    hits = client.get("/api/search", params={"q": "", "mode": "keyword"}, headers=h).json()["hits"]
    assert hits and hits[0]["generation"]["kind"] == "text"
    rows = client.get("/api/stats", headers=h).json()["rows"]
    assert sum(r["generations"] for r in rows) >= 1


def test_a_client_that_leaves_mid_stream_stops_its_generation(server):
    import httpx

    base, app = server
    body = {"model": "gpt", "prompt": "the", "max_tokens": 4000, "stream": True, "temperature": 1.0}
    with httpx.Client(timeout=30) as c, c.stream("POST", f"{base}/v1/completions", json=body) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data:")
    gate = app.state.pool.gate
    for _ in range(100):  # the worker notices at its next token and frees its slot
        if gate.inside == 0:
            break
        time.sleep(0.05)
    assert gate.inside == 0
