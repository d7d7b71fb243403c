"""genzoo's own routes under /api: search, RAG ask, feedback, stats, reproduce, generations by id.
Every store call runs as the caller (their role and visibility), in a worker thread."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Literal, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from genzoo.serve.deps import caller, store_as
from genzoo.serve.errors import ApiError
from genzoo.serve.security import Caller

router = APIRouter(prefix="/api", tags=["genzoo"])


def generation_dict(g, *, full: bool = True) -> dict:
    d = {"id": g.id, "kind": g.kind, "owner": g.owner, "visibility": g.visibility, "created_at": g.created_at,
         "family": g.family, "model": g.model_name, "prompt": g.prompt, "text": g.text, "seed": g.seed, "rating": g.rating,
         "content_type": g.content_type, "has_content": g.content is not None, "parent_id": g.parent_id}
    if full:
        d.update(manifest=g.manifest, quality=g.quality, conversation_id=g.conversation_id)
    return d


async def _with_store(request: Request, who: Caller, work):
    def run():
        with store_as(request, who) as store:
            return work(store)

    return await asyncio.to_thread(run)


@router.get("/search")
async def search(request: Request, q: str = "", mode: Literal["hybrid", "keyword", "vector"] = "hybrid", k: int = Query(10, ge=1, le=100),
                 family: Optional[str] = None, kind: Optional[str] = None, model: Optional[str] = None,
                 user: Optional[str] = None, min_rating: Optional[float] = None, who: Caller = Depends(caller)):
    filters = {name: v for name, v in (("family", family), ("kind", kind), ("model", model), ("user", user), ("min_rating", min_rating))
               if v is not None}
    hits = await _with_store(request, who, lambda s: s.search(q, mode=mode, k=k, **filters))
    return {"query": q, "mode": mode, "hits": [{"score": h.score, "keyword_rank": h.keyword_rank, "vector_rank": h.vector_rank,
                                                "generation": generation_dict(h.generation, full=False)} for h in hits]}


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., min_length=1, max_length=10_000)
    model: Optional[str] = None  # a served text model; none: an extractive answer (quotes from the sources)
    k: int = Field(4, ge=1, le=20)
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid"
    max_tokens: int = Field(128, ge=1, le=1024)


@router.post("/ask")
async def ask(body: AskRequest, request: Request, who: Caller = Depends(caller)):
    from genzoo.tasks.rag import ask as rag_ask

    pool = request.app.state.pool
    loaded = None
    if body.model is not None:
        served = pool.get(body.model, "text")
        loaded = (served.model, served.tokenizer)

    def work(check):
        with store_as(request, who) as store:
            return rag_ask(store, body.question, loaded=loaded, k=body.k, mode=body.mode, max_tokens=body.max_tokens,
                           record=who.can_write and request.app.state.settings.record)

    a = await pool.run(work)
    return {"answer": a.text, "kind": a.kind, "generation_id": a.generation_id, "notes": a.notes,
            "sources": [_plain(s) for s in a.sources]}


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items() if not isinstance(v, (bytes, bytearray))}
    return obj


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Optional[float] = None
    label: Optional[str] = Field(None, max_length=200)
    comment: Optional[str] = Field(None, max_length=10_000)


@router.post("/generations/{generation_id}/feedback")
async def feedback(generation_id: int, body: FeedbackRequest, request: Request, who: Caller = Depends(caller)):
    fid = await _with_store(request, who, lambda s: s.feedback(generation_id, rating=body.rating, label=body.label, comment=body.comment))
    return {"feedback_id": fid, "generation_id": generation_id}


@router.get("/generations/{generation_id}")
async def generation(generation_id: int, request: Request, who: Caller = Depends(caller)):
    return generation_dict(await _with_store(request, who, lambda s: _found(s, generation_id)))


@router.get("/generations/{generation_id}/content")
async def content(generation_id: int, request: Request, who: Caller = Depends(caller)):
    g = await _with_store(request, who, lambda s: _found(s, generation_id))
    if g.content is None:
        raise ApiError(404, f"generation {generation_id} has no content bytes (a text generation: see its text)", "no_content")
    media = g.content_type if g.content_type in ("image/png",) else "application/octet-stream"  # never HTML or script
    return Response(g.content, media_type=media, headers={"Content-Disposition": f'inline; filename="generation-{generation_id}"'})


def _found(store, generation_id: int):
    from genzoo.core.errors import GenzooError

    try:
        return store.get(generation_id)
    except GenzooError as e:
        if str(e).startswith("no generation"):
            raise ApiError(404, str(e), "not_found") from None
        raise


@router.get("/stats")
async def stats(request: Request, by: Literal["day", "week"] = "day", model: Optional[str] = None, who: Caller = Depends(caller)):
    from genzoo.store.stats import usage

    rows = await _with_store(request, who, lambda s: usage(s, by=by, model=model))
    return {"by": by, "rows": [{"period": r.period, "model": r.model, "generations": r.generations, "ratings": r.ratings,
                                "mean_rating": r.mean_rating, "labels": dict(r.labels)} for r in rows]}


@router.post("/generations/{generation_id}/reproduce")
async def reproduce(generation_id: int, request: Request, who: Caller = Depends(caller)):
    """Replay a stored generation; only from a served model's weights (never a path the record or request names)."""
    from genzoo.tasks.record import reproduce_generation

    if not who.can_write:
        raise ApiError(403, f"user {who.name!r} has role {who.role!r}; reproducing (model work on the server) needs writer or admin",
                       "access_denied")
    pool = request.app.state.pool

    def work(check):
        with store_as(request, who) as store:
            g = _found(store, generation_id)
            folder = Path(str(g.manifest.get("checkpoint", "")))
            served = [s for s in pool.models.values() if _inside(folder, s.path)]
            if not served:
                raise ApiError(400, f"generation {generation_id} was made by a model this server does not serve; "
                                    "reproduce it with `genzoo reproduce ID`", "model_not_served")
            return reproduce_generation(store, generation_id)

    return _plain(await pool.run(work))


def _inside(folder: Path, root: Path) -> bool:
    try:
        folder.resolve().relative_to(root.resolve() if root.name not in ("best", "checkpoint") else root.resolve().parent)
        return True
    except (ValueError, OSError):
        return False
