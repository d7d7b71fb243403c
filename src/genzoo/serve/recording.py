"""Generations made through the API go into the store as the CLI records them (``genzoo.tasks.record``),
as the caller: a writer's or admin's are recorded; an anonymous reader's cannot be (ids: [])."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fastapi import Request

from genzoo.serve.deps import store_as
from genzoo.serve.security import Caller


def _wanted(request: Request, who: Caller) -> bool:
    return request.app.state.settings.record and who.can_write


async def record_texts(request: Request, who: Caller, served, job, outputs: list[dict]) -> list[int]:
    if not _wanted(request, who):
        return []
    from genzoo.tasks import record as recording

    options = job.options()

    def write():
        with request.app.state.pool.store_lock, store_as(request, who) as store:
            ids = []
            for o in outputs:
                manifest = recording.text_manifest(served.path, served.model, job.prompt, o["text"], job.seed, options)
                if o["guardrails"] or o["filled"]:
                    manifest["serve"] = {"guardrails": o["guardrails"], "filled": o["filled"]}
                ids.append(recording.record_text(store, manifest, o["text"], served.model))
            return ids

    return await asyncio.to_thread(write)


async def record_images(request: Request, who: Caller, served, drawn) -> list[int]:
    if not _wanted(request, who):
        return []
    from genzoo.tasks import record as recording

    def write():
        with tempfile.TemporaryDirectory(prefix="genzoo-serve-") as tmp:
            grid = Path(tmp) / "grid.png"
            grid.write_bytes(drawn.grid)
            with request.app.state.pool.store_lock, store_as(request, who) as store:
                return [recording.record_samples(store, drawn.manifest, grid, served.model, drawn.outputs)]

    return await asyncio.to_thread(write)
