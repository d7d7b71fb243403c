"""OpenAI-compatible routes under /v1, so the official ``openai`` client works unchanged:
models, completions, chat completions (streamed as server-sent events), embeddings, images."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from genzoo.core.errors import GenzooError
from genzoo.serve import guard
from genzoo.serve.deps import caller
from genzoo.serve.errors import ApiError, error_body
from genzoo.serve.pool import EMBEDDING_MODEL
from genzoo.serve.recording import record_images, record_texts
from genzoo.serve.security import Caller
from genzoo.serve.textgen import TextJob, generate, relay, render_chat

router = APIRouter(prefix="/v1", tags=["openai"])
CHAT_STOP = "\nuser:"  # a small GPT goes on to write the user's next turn: end the answer there


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI's other fields (user, logit_bias ...) are accepted and ignored


class _Sampling(_Open):
    model: str
    max_tokens: Optional[int] = Field(None, ge=1, le=4096)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=8)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    stream: bool = False

    def job(self, prompt: str, json_schema: dict | None = None, extra_stop: list[str] = ()) -> TextJob:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return TextJob(prompt=prompt, max_tokens=self.max_tokens or self.max_completion_tokens or 16, temperature=self.temperature,
                       top_p=self.top_p, stop=stops + [s for s in extra_stop if s not in stops], seed=self.seed or 0, n=self.n,
                       json_schema=json_schema)


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]] = ""


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(..., min_length=1)
    response_format: Optional[dict[str, Any]] = None


class EmbeddingRequest(_Open):
    model: str
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"


class ImageRequest(_Open):
    model: str
    prompt: str = ""
    n: int = Field(1, ge=1, le=16)
    response_format: Literal["b64_json"] = "b64_json"
    seed: Optional[int] = None


@router.get("/models")
def list_models(request: Request, who: Caller = Depends(caller)) -> dict:
    pool = request.app.state.pool
    data = [{"id": s.name, "object": "model", "created": s.created, "owned_by": "genzoo", "genzoo": {"kind": s.kind}}
            for s in pool.models.values()]
    if pool.encoder is not None:
        data.append({"id": EMBEDDING_MODEL, "object": "model", "created": 0, "owned_by": "genzoo", "genzoo": {"kind": "embedding"}})
    return {"object": "list", "data": data}


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, who: Caller = Depends(caller)):
    prompt = body.prompt if isinstance(body.prompt, str) else _one(body.prompt)
    return await _text(request, who, body, body.job(prompt), chat=False)


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, who: Caller = Depends(caller)):
    try:
        prompt = render_chat(body.messages)
    except GenzooError as e:
        raise ApiError(400, str(e), "invalid_messages") from None
    return await _text(request, who, body, body.job(prompt, _schema(body.response_format), [CHAT_STOP]), chat=True)


def _one(prompts: list[str]) -> str:
    if len(prompts) != 1:
        raise ApiError(400, "give one prompt per request (use n for several completions of it)", "one_prompt")
    return prompts[0]


def _schema(fmt: dict | None) -> dict | None:
    """OpenAI's response_format as a JSON schema for genzoo's constrained decoding."""
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "response_format.json_schema.schema must be a JSON schema object", "invalid_schema")
        return schema
    raise ApiError(400, f"response_format.type must be text, json_object or json_schema, got {fmt.get('type')!r}", "invalid_value")


async def _text(request: Request, who: Caller, body: _Sampling, job: TextJob, *, chat: bool):
    pool = request.app.state.pool
    served = pool.get(body.model, "text")
    ticket = pool.gate.admit()  # before the response starts: a full queue is a 503, not a broken stream
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    shape = _Shape(ident, served.name, chat)
    policy = request.app.state.guardrails
    if body.stream:
        return StreamingResponse(_stream(request, who, pool, served, job, ticket, shape, policy), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    results = await pool.run(lambda check: generate(served, job, check), ticket)
    outputs = [_checked(policy, r, job.prompt) for r in results]
    ids = await record_texts(request, who, served, job, outputs)
    return shape.whole(outputs, results, len(served.tokenizer.encode(job.prompt)), ids)


def _checked(policy, result, prompt):
    text, override, verdict = guard.apply(policy, result.text, prompt)
    return {"text": text, "finish_reason": override or result.finish_reason, "guardrails": verdict, "filled": result.filled}


class _Shape:
    """OpenAI's response and chunk objects for completions (text) or chat (message / delta)."""

    def __init__(self, ident: str, model: str, chat: bool):
        self.ident, self.model, self.chat, self.created = ident, model, chat, int(time.time())

    def _base(self, obj: str) -> dict:
        return {"id": self.ident, "object": obj, "created": self.created, "model": self.model, "system_fingerprint": "genzoo"}

    def whole(self, outputs: list[dict], results, prompt_tokens: int, ids: list[int]) -> dict:
        choices = []
        for i, o in enumerate(outputs):
            c = {"index": i, "finish_reason": o["finish_reason"], "logprobs": None}
            c.update({"message": {"role": "assistant", "content": o["text"]}} if self.chat else {"text": o["text"]})
            c["genzoo"] = {k: o[k] for k in ("guardrails", "filled") if o[k]}
            choices.append(c)
        done = sum(r.tokens for r in results)
        return {**self._base("chat.completion" if self.chat else "text_completion"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done},
                "genzoo": {"generation_ids": ids}}

    def chunk(self, row: int, text: str | None = None, finish: str | None = None, first: bool = False) -> str:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text is not None else {})
            choice = {"index": row, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": row, "text": text or "", "finish_reason": finish, "logprobs": None}
        return _sse({**self._base("chat.completion.chunk" if self.chat else "text_completion"), "choices": [choice]})


def _sse(data) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def _stream(request: Request, who: Caller, pool, served, job: TextJob, ticket, shape: _Shape, policy):
    """Server-sent events: a role chunk, one chunk per piece of new text, a finish chunk per row, [DONE].
    With guardrails the text is checked whole before any of it is sent (a check cannot take back tokens)."""
    try:
        if shape.chat:
            for row in range(job.n):
                yield shape.chunk(row, first=True)
        async for row, item in relay(request, pool, served, job, ticket, stream_pieces=policy is None):
            if row is not None:
                yield shape.chunk(row, item)
            elif isinstance(item, Exception):
                yield _sse(error_body(504 if "timeout" in str(item) else 400, str(item), "generation_failed"))
                yield "data: [DONE]\n\n"
            else:
                outputs = [_checked(policy, r, job.prompt) for r in item]
                for r, o in enumerate(outputs):
                    if policy is not None and o["text"]:
                        yield shape.chunk(r, o["text"])
                    yield shape.chunk(r, finish=o["finish_reason"])
                await record_texts(request, who, served, job, outputs)
                yield "data: [DONE]\n\n"
    finally:
        ticket.cancel.set()  # also when the client left before the generation started


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request, who: Caller = Depends(caller)):
    pool = request.app.state.pool
    if body.model != EMBEDDING_MODEL or pool.encoder is None:
        raise ApiError(404, f"the embedding model {body.model!r} is not served here; "
                            f"{'use ' + EMBEDDING_MODEL if pool.encoder is not None else 'this server has no embedding model'}", "model_not_found")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > 256 or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "input must be a string or a list of 1 to 256 strings", "invalid_value")
    vectors = await pool.run(lambda check: pool.encoder.encode(texts))
    data = []
    for i, v in enumerate(vectors):
        emb = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else [float(x) for x in v]
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/images/generations")
async def images(body: ImageRequest, request: Request, who: Caller = Depends(caller)):
    from genzoo.serve.images import draw

    pool = request.app.state.pool
    served = pool.get(body.model, "image")
    drawn = await pool.run(lambda check: draw(served, body.prompt, body.n, body.seed or 0))
    ids = await record_images(request, who, served, drawn)
    return {"created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": body.prompt} for png in drawn.pngs],
            "genzoo": {"manifest": drawn.manifest, "generation_ids": ids}}
