"""The store as a graph: which prompts, models, documents and parent generations led to which
outputs, plus entities and relations that users give or that are extracted from the text.

A node is ``(type, id)`` with type one of generation, prompt, model, document, chunk, entity.
Edges point from cause to effect. Most come from columns the records already have and are
derived on the fly, never copied (a copy could disagree with its source):

    prompt -prompted-> generation          model -generated-> generation
    generation -parent_of-> generation     model -parent_of-> model
    document -contains-> chunk             chunk -same_text-> chunk (a copy -> its first copy)
    document -superseded_by-> document

The ``relations`` table holds the rest: ``chunk -grounded-> generation`` written by RAG (weight:
the source's rank), ``generation -mentions-> entity`` written by ``extract_entities``, and any
edge a user adds with ``relate``. Queries follow edges forwards (``descendants``: what did this
model or document lead to), backwards (``lineage``: what led to this output) or both ways
(``path``). A node the caller may not see (another user's private generation or document) is
left out of every answer, as if it did not exist. An entity has no owner: the caller sees it only
through a relation they added or one from a node they may see, so an entity that only others'
private records mention does not exist for them either.
"""

from __future__ import annotations

import ast
import re
import time
from collections import deque
from dataclasses import dataclass

from genzoo.core.errors import GenzooError
from genzoo.store.search import MAX_ID, check_text
from genzoo.store.visibility import seen_by

NODE_TYPES = ("generation", "prompt", "model", "document", "chunk", "entity")
ORIGINS = ("user", "extracted", "rag")
DERIVED = "derived"
MAX_NODES = 10_000  # a traversal stops after this many nodes (a popular model leads to many outputs)
_RELATION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TABLE = {"generation": "generations", "prompt": "prompts", "model": "models", "document": "documents", "chunk": "chunks",
          "entity": "entities"}

Node = tuple  # (type, id)


@dataclass(frozen=True)
class Edge:
    src: Node
    relation: str
    dst: Node
    origin: str = DERIVED
    weight: float | None = None


def node(value) -> Node:
    """A node from ``("generation", 5)`` or ``"generation:5"``."""
    if isinstance(value, str):
        kind, _, ident = value.partition(":")
        value = (kind, int(ident) if ident.isdigit() else ident)
    if (not isinstance(value, tuple) or len(value) != 2 or value[0] not in NODE_TYPES or not isinstance(value[1], int)
            or isinstance(value[1], bool) or not -MAX_ID - 1 <= value[1] <= MAX_ID):  # beyond a row id: the drivers would raise
        raise GenzooError(f"a node is TYPE:ID with TYPE one of {', '.join(NODE_TYPES)} (e.g. generation:12), got {value!r}")
    return value


# ---- visibility ----------------------------------------------------------------------------------

def visible(store, n: Node) -> bool:
    kind, ident = n
    b, viewer = store.backend, store.viewer
    if kind == "generation":
        return b.visible(ident, viewer)
    seen, params = seen_by(viewer, "d")
    if kind == "document":
        return bool(b.rows(f"SELECT 1 FROM documents d WHERE d.id = ? AND {seen}", (ident, *params)))
    if kind == "chunk":
        return bool(b.rows(f"SELECT 1 FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ? AND {seen}", (ident, *params)))
    if kind == "prompt":
        return bool(b.rows("SELECT 1 FROM prompts p WHERE p.id = ? AND (? = 1 OR p.owner_id = ? OR EXISTS (SELECT 1 FROM "
                           "generations g WHERE g.prompt_id = p.id AND g.visibility = 'shared'))", (ident, *params)))
    if kind == "entity":
        return _entity_visible(store, ident, viewer)
    return bool(b.rows(f"SELECT 1 FROM {_TABLE[kind]} WHERE id = ?", (ident,)))


def _entity_visible(store, ident: int, viewer) -> bool:
    """An entity has no owner: its name is seen only through something the caller may see, i.e. a
    relation the caller added, or one whose other end (not an entity: that would go round in
    circles) is visible to them. An entity only others' private records mention does not exist
    for the caller."""
    b = store.backend
    if not b.rows("SELECT 1 FROM entities WHERE id = ?", (ident,)):
        return False
    if viewer is None or ident in getattr(store, "_named_entities", ()):
        return True
    rows = b.rows("SELECT src_type, src_id, dst_type, dst_id, owner_id FROM relations WHERE (src_type = 'entity' AND src_id = ?) "
                  "OR (dst_type = 'entity' AND dst_id = ?) ORDER BY id", (ident, ident))
    for r in rows:
        if r["owner_id"] == viewer:
            return True
        other = (r["dst_type"], r["dst_id"]) if (r["src_type"], r["src_id"]) == ("entity", ident) else (r["src_type"], r["src_id"])
        if other[0] in NODE_TYPES and other[0] != "entity" and visible(store, other):
            return True
    return False


# ---- edges ---------------------------------------------------------------------------------------

# (node type, direction) -> (SQL giving the other end's id for this node's id, other type, relation)
_DERIVED_EDGES = {
    ("generation", "in"): [("SELECT prompt_id AS id FROM generations WHERE id = ?", "prompt", "prompted"),
                           ("SELECT model_id AS id FROM generations WHERE id = ?", "model", "generated"),
                           ("SELECT parent_id AS id FROM generations WHERE id = ?", "generation", "parent_of")],
    ("generation", "out"): [("SELECT id FROM generations WHERE parent_id = ?", "generation", "parent_of")],
    ("prompt", "out"): [("SELECT id FROM generations WHERE prompt_id = ?", "generation", "prompted")],
    ("model", "out"): [("SELECT id FROM generations WHERE model_id = ?", "generation", "generated"),
                       ("SELECT id FROM models WHERE parent_id = ?", "model", "parent_of")],
    ("model", "in"): [("SELECT parent_id AS id FROM models WHERE id = ?", "model", "parent_of")],
    ("document", "out"): [("SELECT id FROM chunks WHERE document_id = ?", "chunk", "contains"),
                          ("SELECT superseded_by AS id FROM documents WHERE id = ?", "document", "superseded_by")],
    ("document", "in"): [("SELECT id FROM documents WHERE superseded_by = ?", "document", "superseded_by")],
    ("chunk", "in"): [("SELECT document_id AS id FROM chunks WHERE id = ?", "document", "contains"),
                      ("SELECT id FROM chunks WHERE duplicate_of = ?", "chunk", "same_text")],
    ("chunk", "out"): [("SELECT duplicate_of AS id FROM chunks WHERE id = ?", "chunk", "same_text")],
}


def edges(store, n, direction: str = "both") -> list[Edge]:
    """Edges at a node that the caller may see: ``out`` (to effects), ``in`` (from causes) or both."""
    n = node(n)
    if direction not in ("in", "out", "both"):
        raise GenzooError(f"direction must be in, out or both, got {direction!r}")
    if not visible(store, n):
        raise GenzooError(f"no {n[0]} {n[1]} in this store (or it is not visible to you)")
    return _edges(store, n, direction)


def _edges(store, n: Node, direction: str) -> list[Edge]:
    b, out = store.backend, []
    for d in (("in", "out") if direction == "both" else (direction,)):
        for sql, other, relation in _DERIVED_EDGES.get((n[0], d), []):
            for r in b.rows(sql, (n[1],)):
                if r["id"] is not None:
                    m = (other, r["id"])
                    out.append(Edge(m, relation, n) if d == "in" else Edge(n, relation, m))
        mine, theirs = ("dst", "src") if d == "in" else ("src", "dst")
        for r in b.rows(f"SELECT src_type, src_id, relation, dst_type, dst_id, origin, weight FROM relations "
                        f"WHERE {mine}_type = ? AND {mine}_id = ? ORDER BY id", n):
            out.append(Edge((r["src_type"], r["src_id"]), r["relation"], (r["dst_type"], r["dst_id"]), r["origin"], r["weight"]))
    seen, kept = set(), []
    for e in out:
        other = e.src if e.dst == n else e.dst
        if e not in seen and visible(store, other):
            seen.add(e)
            kept.append(e)
    return kept


def _walk(store, start, direction: str, types=None, max_nodes: int = MAX_NODES) -> list[tuple[Node, int]]:
    start = node(start)
    if not visible(store, start):
        raise GenzooError(f"no {start[0]} {start[1]} in this store (or it is not visible to you)")
    depth, queue, found = {start: 0}, deque([start]), []
    while queue and len(depth) < max_nodes:
        n = queue.popleft()
        for e in _edges(store, n, direction):
            m = e.src if direction == "in" else e.dst
            if m not in depth:
                depth[m] = depth[n] + 1
                queue.append(m)
                if types is None or m[0] in types:
                    found.append((m, depth[m]))
    return found


def lineage(store, n, types=None) -> list[tuple[Node, int]]:
    """Every node that led to ``n`` (its prompt, model, parent generations, cited chunks and their
    documents, ...), with its distance, nearest first. ``types``: keep only these node types."""
    return _walk(store, n, "in", types)


def descendants(store, n, types=None) -> list[tuple[Node, int]]:
    """Every node ``n`` led to (e.g. the generations a model or a document led to), nearest first."""
    return _walk(store, n, "out", types)


def path(store, a, b, max_depth: int = 8) -> list[Edge] | None:
    """A shortest chain of edges between two nodes, in either direction; None when none exists."""
    a, b = node(a), node(b)
    for n in (a, b):
        if not visible(store, n):
            raise GenzooError(f"no {n[0]} {n[1]} in this store (or it is not visible to you)")
    came: dict[Node, Edge | None] = {a: None}
    frontier = [a]
    for _ in range(max_depth):
        nxt = []
        for n in frontier:
            for e in _edges(store, n, "both"):
                m = e.dst if e.src == n else e.src
                if m not in came:
                    came[m] = e
                    nxt.append(m)
                    if m == b:
                        chain, cur = [], b
                        while came[cur] is not None:
                            chain.append(came[cur])
                            cur = came[cur].src if came[cur].dst == cur else came[cur].dst
                        return chain[::-1]
        if not nxt or len(came) > MAX_NODES:
            return None
        frontier = nxt
    return None


# ---- writing -------------------------------------------------------------------------------------

def relate(store, src, relation: str, dst, *, origin: str = "user", weight: float | None = None) -> int:
    """Add an edge (kept once: adding it again returns the existing id)."""
    store._require("add relations", ("admin", "writer"), "relations")
    src, dst = node(src), node(dst)
    if not isinstance(relation, str) or not _RELATION.match(relation):
        raise GenzooError(f"a relation name is lower-case letters, digits and _ (at most 64), starting with a letter; got {relation!r}")
    if origin not in ORIGINS:
        raise GenzooError(f"origin must be one of {', '.join(ORIGINS)}, got {origin!r}")
    b = store.backend
    with b.write():
        for n in (src, dst):
            if not visible(store, n):
                raise GenzooError(f"no {n[0]} {n[1]} in this store (or it is not visible to you)")
        have = b.rows("SELECT id FROM relations WHERE src_type = ? AND src_id = ? AND relation = ? AND dst_type = ? AND dst_id = ?",
                      (*src, relation, *dst))
        if have:
            return have[0]["id"]
        now = time.time()
        rid = b.insert("relations", {"src_type": src[0], "src_id": src[1], "relation": relation, "dst_type": dst[0], "dst_id": dst[1],
                                     "origin": origin, "weight": weight, "owner_id": store.user.id, "created_at": now})
        b.audit(store.user.id, "relate", "relations", rid, {"src": list(src), "relation": relation, "dst": list(dst)}, now)
    return rid


def entity(store, kind: str, name: str) -> Node:
    """The entity node for (kind, name), created on first use."""
    store._require("add entities", ("admin", "writer"), "entities")
    for what, v in (("kind", kind), ("name", name)):
        if not isinstance(v, str) or not v.strip() or len(v) > 200 or "\x00" in v:
            raise GenzooError(f"an entity {what} is non-empty text of at most 200 characters, got {v!r}")
        check_text(v, f"an entity {what}")
    b = store.backend
    with b.write():
        have = b.rows("SELECT id FROM entities WHERE kind = ? AND name = ?", (kind, name))
        ident = have[0]["id"] if have else b.insert("entities", {"kind": kind, "name": name, "created_at": time.time()})
    # the caller named it, so may relate it (and then sees it through that relation), in this session
    if not isinstance(getattr(store, "_named_entities", None), set):
        store._named_entities = set()
    store._named_entities.add(ident)
    return ("entity", ident)


_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z0-9]+(?:\s+[A-Z][a-z0-9]+)+|[A-Z]{2,}[a-z]*\d*)\b", re.M)
_BACKTICKED = re.compile(r"`([A-Za-z_][\w.]*)(?:\(\))?`")
_DEFINED = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.M)


def find_entities(text: str) -> list[tuple[str, str]]:
    """(kind, name) pairs: ``python`` for identifiers a Python text defines or a prose text quotes
    in backticks, ``term`` for capitalised multi-word terms and acronyms not at a sentence start."""
    found: dict[tuple[str, str], None] = {}
    names = _DEFINED.findall(text) + _BACKTICKED.findall(text)
    try:
        tree = ast.parse(text)
        names += [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    except (SyntaxError, ValueError):
        pass
    for name in names:
        found[("python", name)] = None
    for term in _CAPITALISED.findall(text):
        found[("term", " ".join(term.split()))] = None
    return list(found)


def extract_entities(store, generation_id: int) -> list[Node]:
    """Find entities in a generation's text and add ``generation -mentions-> entity`` edges."""
    g = store.get(generation_id)
    nodes = []
    with store.backend.write():
        for kind, name in find_entities(g.text or ""):
            e = entity(store, kind, name)
            relate(store, ("generation", g.id), "mentions", e, origin="extracted")
            nodes.append(e)
    return nodes


def label(store, n: Node, width: int = 60) -> str:
    """A short human description of a node."""
    kind, ident = node(n)
    if not visible(store, (kind, ident)):
        raise GenzooError(f"no {kind} {ident} in this store (or it is not visible to you)")
    b = store.backend
    queries = {
        "generation": "SELECT substr(COALESCE(text, content_type, ''), 1, 200) AS s FROM generations WHERE id = ?",
        "prompt": "SELECT substr(text, 1, 200) AS s FROM prompts WHERE id = ?",
        "model": "SELECT name AS s FROM models WHERE id = ?",
        "document": "SELECT uri AS s FROM documents WHERE id = ?",
        "chunk": "SELECT d.uri || ':' || c.start_line || '-' || c.end_line AS s FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
        "entity": "SELECT kind || ':' || name AS s FROM entities WHERE id = ?",
    }
    rows = b.rows(queries[kind], (ident,))
    s = rows[0]["s"] if rows else ""
    s = " ".join(str(s if not isinstance(s, bytes) else "(encrypted)").split())
    if len(s) > width:  # paths keep their end (the file name and lines), texts their start
        s = "…" + s[-(width - 1):] if kind in ("document", "chunk") else s[: width - 1] + "…"
    return f"{kind}:{ident} {s}"
