"""The SQL condition "the caller may see this row", shared by the RAG, graph, stats and export
queries. Written so every backend can run it: both parameters are plain integers (PostgreSQL
cannot infer the type of a bare ``? IS NULL`` parameter), and values never enter the SQL text."""

from __future__ import annotations


def seen_by(viewer: int | None, alias: str) -> tuple[str, list]:
    """(SQL, params) true for a row of ``alias`` (with visibility and owner_id columns) that
    ``viewer`` may see; ``viewer`` None is an admin, who sees every row. ``alias`` is the caller's
    constant, never user input."""
    return (f"(? = 1 OR {alias}.visibility = 'shared' OR {alias}.owner_id = ?)",
            [1 if viewer is None else 0, -1 if viewer is None else viewer])
