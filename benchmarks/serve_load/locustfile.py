"""Locust users for `genzoo serve` (driven by run.py; one scenario per locust run, chosen by GZ_SCENARIO).

    GZ_SCENARIO=search-keyword GZ_KEY=gz_... GZ_QUERIES=queries.json \
        .venv/bin/locust --headless -u 8 -r 8 --run-time 20s --host http://127.0.0.1:PORT -f locustfile.py --csv out/x

Scenarios (each user loops with no think time: U users = U requests in flight):
  search-keyword  GET /api/search?mode=keyword&k=10, a random 3-6 word pydocs phrase
  search-hybrid   the same with mode=hybrid (full-text + MiniLM vector, RRF)
  stream          POST /v1/completions, stream=true, 32 tokens from the GPT named GZ_TEXT_MODEL; besides locust's
                  own entry (time to response headers), two entries of our own: "first token" (time to the first
                  SSE chunk with text) and "whole stream" (to data: [DONE]; a failure if the stream carries an error)
  image           POST /v1/images/generations, n=4, from GZ_IMAGE_MODEL
  feedback        POST /api/generations/{id}/feedback (a rating; id random in 1..GZ_RECORDS): a write

A 503 (server busy) or 429 counts as a failure; the user then waits Retry-After before its next request,
as a well-behaved client does (otherwise a refused user would spin and its count would mean nothing).
"""

from __future__ import annotations

import json
import os
import random
import time

import gevent
import requests
from locust import HttpUser, constant, events, task

SCENARIO = os.environ.get("GZ_SCENARIO", "search-keyword")
KEY = os.environ.get("GZ_KEY", "")
QUERIES = json.loads(open(os.environ["GZ_QUERIES"]).read()) if os.environ.get("GZ_QUERIES") else ["for loop statement"]
RECORDS = int(os.environ.get("GZ_RECORDS", "1000"))
TEXT_MODEL = os.environ.get("GZ_TEXT_MODEL", "gpt")
IMAGE_MODEL = os.environ.get("GZ_IMAGE_MODEL", "vae")
STREAM_TOKENS = int(os.environ.get("GZ_STREAM_TOKENS", "32"))
TIMEOUT = float(os.environ.get("GZ_TIMEOUT", "60"))
IDS_FILE = os.environ.get("GZ_IDS_FILE")  # the ids that 200 responses returned, written at exit (zero-lost-records check)
OK_IDS: dict[str, list[int]] = {"feedback": [], "generations": []}
PROMPTS = ["The for statement", "def parse(", "A class definition", "The import statement", "Exceptions are raised"]


class ServeUser(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.client.headers["Authorization"] = f"Bearer {KEY}"
        self.plain = requests.Session()  # for the stream: locust's session would time the headers only
        self.plain.headers["Authorization"] = f"Bearer {KEY}"
        self.rng = random.Random()

    def _refused(self, r) -> None:
        """Honour Retry-After on 503 / 429 (after the failure was counted)."""
        if r.status_code in (429, 503):
            gevent.sleep(float(r.headers.get("Retry-After", "1")))

    def _checked(self, r, ok) -> None:
        if r.status_code != 200:
            r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
        elif not ok(r):
            r.failure(f"unexpected body: {r.text[:200]}")
        else:
            r.success()

    def _search(self, mode: str) -> None:
        q = self.rng.choice(QUERIES)
        with self.client.get("/api/search", params={"q": q, "mode": mode, "k": 10}, name=f"/api/search {mode}",
                             catch_response=True, timeout=TIMEOUT) as r:
            self._checked(r, lambda r: len(r.json()["hits"]) > 0)
        self._refused(r)

    if SCENARIO == "search-keyword":
        @task
        def keyword(self):
            self._search("keyword")

    elif SCENARIO == "search-hybrid":
        @task
        def hybrid(self):
            self._search("hybrid")

    elif SCENARIO == "stream":
        @task
        def stream(self):
            self._stream()

    elif SCENARIO == "image":
        @task
        def image(self):
            with self.client.post("/v1/images/generations", json={"model": IMAGE_MODEL, "n": 4, "seed": self.rng.randrange(10**6)},
                                  name="/v1/images/generations n=4", catch_response=True, timeout=TIMEOUT) as r:
                self._checked(r, lambda r: len(r.json()["data"]) == 4)
                if r.status_code == 200 and r.json()["genzoo"]["generation_ids"]:
                    OK_IDS["generations"] += r.json()["genzoo"]["generation_ids"]
            self._refused(r)

    elif SCENARIO == "feedback":
        @task
        def feedback(self):
            gid = self.rng.randint(1, RECORDS)
            with self.client.post(f"/api/generations/{gid}/feedback", json={"rating": self.rng.randint(1, 5)},
                                  name="/api/generations/{id}/feedback", catch_response=True, timeout=TIMEOUT) as r:
                self._checked(r, lambda r: isinstance(r.json().get("feedback_id"), int))
                if r.status_code == 200:
                    OK_IDS["feedback"].append(r.json()["feedback_id"])
            self._refused(r)

    else:
        raise SystemExit(f"unknown GZ_SCENARIO {SCENARIO!r}")

    def _stream(self) -> None:
        """One streamed completion, read chunk by chunk; reports first token and whole stream itself."""
        body = {"model": TEXT_MODEL, "prompt": self.rng.choice(PROMPTS), "max_tokens": STREAM_TOKENS, "stream": True,
                "seed": self.rng.randrange(10**6)}
        fire = self.environment.events.request.fire
        t0 = time.perf_counter()
        first = None
        error = None
        chunks = 0
        size = 0
        try:
            r = self.plain.request("POST", self.host + "/v1/completions", json=body, stream=True, timeout=TIMEOUT)
            if r.status_code != 200:
                error = f"HTTP {r.status_code}: {r.text[:200]}"
                self._refused(r)
            else:
                done = False
                for line in r.iter_lines():
                    if not line:
                        continue
                    size += len(line)
                    if not line.startswith(b"data: "):
                        error = f"not an SSE data line: {line[:100]!r}"
                        break
                    data = line[6:]
                    if data == b"[DONE]":
                        done = True
                        break
                    obj = json.loads(data)
                    if "error" in obj:
                        error = f"error in stream: {obj['error'].get('message', '')[:200]}"
                        break
                    chunks += 1
                    if first is None and any(c.get("text") for c in obj.get("choices", [])):
                        first = time.perf_counter() - t0  # reported now: a stream cut off at the end still counts
                        fire(request_type="SSE", name="first token", response_time=first * 1000, response_length=0,
                             exception=None, context={})
                if error is None and not done:
                    error = "stream ended without data: [DONE]"
                if error is None and first is None:
                    error = "no text in the stream"
            r.close()
        except Exception as e:  # connection reset, timeout, bad JSON
            error = f"{type(e).__name__}: {str(e)[:200]}"
            gevent.sleep(0.5)  # no tight loop on a dead server
        whole = time.perf_counter() - t0
        exc = RuntimeError(error) if error else None
        fire(request_type="SSE", name=f"whole stream ({STREAM_TOKENS} tokens)", response_time=whole * 1000, response_length=size,
             exception=exc, context={})


@events.quitting.add_listener
def _write_ids(environment, **kw):
    if IDS_FILE:
        with open(IDS_FILE, "w") as f:
            json.dump(OK_IDS, f)
