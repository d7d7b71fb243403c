"""Retrieval-augmented generation over documents kept in the store.

``index_paths`` reads text, Markdown and Python files, cuts them (``genzoo.store.chunking``) and
stores documents and chunks with their sha256. Re-indexing an unchanged file does nothing; a
changed file becomes a new document that supersedes the old one (and a file changed back makes
its earlier version current again). A document is its owner's: another user indexing the same path
or URI stores a document of their own and never replaces, hides or reveals one they may not see.
A chunk whose text is already stored (same sha256) where the caller may see it (in a document
they may see; a chunk only others' private documents hold is stored as new, and never reported
as a copy) is kept as a copy pointing at the first one (``duplicate_of``) and is not
indexed or embedded again: repeated boilerplate is searched once, and re-indexing an edited file
only embeds the chunks that changed. A stored chunk is retrievable while any copy of it belongs to
a current document the caller may see; it is shown by that copy's ``path:lines``.

``retrieve`` fuses BM25 over the chunks with a cosine search over their vectors by reciprocal rank
fusion (k=60), as ``Store.search`` does for generations. ``record_answer`` records the question (a
prompt), the answer (a generation) and ``grounded`` relations from each source chunk to the answer,
in one transaction. Asking a model (the prompt, the generation, its manifest) is
``genzoo.tasks.rag.ask``: this module loads no model and takes the manifest as plain data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store import search as S
from genzoo.store.chunking import CHUNK_CHARS, OVERLAP, chunk_document, kind_for
from genzoo.store.files import read_documents
from genzoo.store.records import ModelRecord, NewGeneration, sha256_hex
from genzoo.store.vectors import VectorIndex
from genzoo.store.visibility import seen_by

INDEXED_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".py")
MAX_FILE_BYTES = 20_000_000
CANDIDATES = 50


@dataclass
class Source:
    chunk_id: int
    uri: str
    start_line: int
    end_line: int
    text: str
    score: float = 0.0
    keyword_rank: int | None = None
    vector_rank: int | None = None

    @property
    def where(self) -> str:
        return f"{self.uri}:{self.start_line}-{self.end_line}"


@dataclass
class IndexReport:
    documents: int = 0  # new or changed documents stored
    unchanged: int = 0
    chunks: int = 0  # chunk rows written
    duplicate_chunks: int = 0  # of which copies of an already stored chunk
    embedded: int = 0
    skipped: list[str] = field(default_factory=list)


def index_paths(store, paths, *, chunk_chars: int = CHUNK_CHARS, overlap: int = OVERLAP, visibility: str = "private") -> IndexReport:
    """Index files and folders (recursively: .txt, .md, .rst, .py; hidden ones skipped)."""
    report = IndexReport()
    for f, text in read_documents(paths, INDEXED_SUFFIXES, MAX_FILE_BYTES, report.skipped):  # regular files only, size checked first
        index_text(store, str(f.resolve()), text, kind=kind_for(f), chunk_chars=chunk_chars, overlap=overlap,
                   visibility=visibility, report=report)
    return report


def index_text(store, uri: str, text: str, *, kind: str = "text", chunk_chars: int = CHUNK_CHARS, overlap: int = OVERLAP,
               visibility: str = "private", title: str | None = None, report: IndexReport | None = None) -> int:
    """Store one document and its chunks; its id (the existing one when unchanged)."""
    store._require("index documents", ("admin", "writer"), "documents")
    if visibility not in ("private", "shared"):
        raise GenzooError(f"visibility must be private or shared, got {visibility!r}")
    report = report if report is not None else IndexReport()
    if store.redact is not None:  # documents are stored like generations: PII replaced before anything is kept
        text = store.redact(text)
    b, sha, me = store.backend, sha256_hex(text), store.user.id
    # a document is its owner's: another user's document at the same uri is never replaced, hidden or revealed
    same = b.rows("SELECT id, superseded_by FROM documents WHERE owner_id = ? AND uri = ? AND sha256 = ?", (me, uri, sha))
    if same and same[0]["superseded_by"] is None:
        report.unchanged += 1
        return same[0]["id"]
    if same:  # the file went back to a version stored before: that version becomes current again
        old = same[0]["id"]
        with b.write():
            b.execute("UPDATE documents SET superseded_by = ? WHERE owner_id = ? AND uri = ? AND id <> ? AND superseded_by IS NULL",
                      (old, me, uri, old))
            b.execute("UPDATE documents SET superseded_by = NULL WHERE id = ?", (old,))
            b.audit(me, "restore_document", "documents", old, {"uri": uri, "sha256": sha}, time.time())
        report.documents += 1
        return old
    chunks = chunk_document(text, kind, chunk_chars, overlap)
    shas = [sha256_hex(c.text) for c in chunks]
    known = _first_copies(b, set(shas), store.viewer)
    fresh = list(dict.fromkeys(s for s in shas if s not in known))  # chunks to index and embed: first copies only
    vectors = {}
    encoder = store.encoder
    if fresh and encoder is not None and encoder.kind == "text":
        by_sha = {s: c.text for s, c in zip(shas, chunks)}
        vectors = dict(zip(fresh, np.asarray(encoder.encode([by_sha[s] for s in fresh]), np.float32)))
    now = time.time()
    with b.write():
        doc_id = b.insert("documents", {"uri": uri, "title": title or Path(uri).name, "sha256": sha, "owner_id": store.user.id,
                                        "visibility": visibility, "meta": json.dumps({"kind": kind, "chunk_chars": chunk_chars,
                                                                                     "overlap": overlap, "chars": len(text)}),
                                        "created_at": now})
        b.execute("UPDATE documents SET superseded_by = ? WHERE owner_id = ? AND uri = ? AND id <> ? AND superseded_by IS NULL",
                  (doc_id, me, uri, doc_id))
        for ord_, (c, s) in enumerate(zip(chunks, shas)):
            first = known.get(s)
            cid = b.insert("chunks", {"document_id": doc_id, "ord": ord_, "text": c.text, "start": c.start, "end": c.end,
                                      "sha256": s, "start_line": c.start_line, "end_line": c.end_line, "duplicate_of": first})
            report.chunks += 1
            if first is not None:
                report.duplicate_chunks += 1
                continue
            known[s] = cid
            b.index_chunk(cid, c.text, uri)
            if s in vectors:
                b.insert("chunk_embeddings", {"chunk_id": cid, "space": encoder.space, "vector": vectors[s].tobytes()})
                report.embedded += 1
        b.audit(store.user.id, "index_document", "documents", doc_id, {"uri": uri, "sha256": sha, "chunks": len(chunks)}, now)
    report.documents += 1
    return doc_id


def _first_copies(backend, shas: set[str], viewer) -> dict[str, int]:
    """The stored first copy of each chunk text that ``viewer`` may see (a copy of it is in a
    document they may see). A chunk only others' private documents hold is not counted as known:
    the caller stores it as new, so indexing never tells them what others keep."""
    out: dict[str, int] = {}
    shas_list = sorted(shas)
    seen, params = seen_by(viewer, "d")
    for i in range(0, len(shas_list), 500):  # stay under SQLite's bound-parameter limit
        part = shas_list[i : i + 500]
        marks = ", ".join("?" * len(part))
        for r in backend.rows(f"SELECT c.sha256, min(c.id) AS id FROM chunks c WHERE c.duplicate_of IS NULL AND c.sha256 IN ({marks}) "
                              "AND EXISTS (SELECT 1 FROM chunks c2 JOIN documents d ON d.id = c2.document_id "
                              f"WHERE (c2.id = c.id OR c2.duplicate_of = c.id) AND {seen}) GROUP BY c.sha256", [*part, *params]):
            out[r["sha256"]] = r["id"]
    return out


# ---- retrieval -----------------------------------------------------------------------------------

_LIVE_COPY = ("SELECT c.id AS first_id, c2.id AS copy_id, d.uri, c2.start_line, c2.end_line, c.text FROM chunks c "
              "JOIN chunks c2 ON (c2.id = c.id OR c2.duplicate_of = c.id) JOIN documents d ON d.id = c2.document_id "
              "WHERE d.superseded_by IS NULL AND {seen} AND c.id IN ({marks}) "
              "ORDER BY c2.id DESC")


class ChunkVectors:
    """Exact cosine search over the vectors of the searchable chunks (first copies) in one space,
    loaded once and then extended with chunks stored since (chunk ids only grow). A chunk stored
    without a vector (indexed ``--keyword-only``, or in another space) is embedded here on first
    need, and the vector kept when the caller may write, as the store does for generations."""

    def __init__(self):
        self.index, self.space = VectorIndex(), None

    def sync(self, store) -> VectorIndex:
        encoder, b = store.encoder, store.backend
        if encoder.space != self.space:
            self.index, self.space = VectorIndex(), encoder.space
        rows = b.rows("SELECT c.id, c.text, e.vector FROM chunks c LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id AND e.space = ? "
                      "WHERE c.duplicate_of IS NULL AND c.id > ? ORDER BY c.id", (encoder.space, self.index.last_id))
        if not rows:
            return self.index
        missing = [r for r in rows if r["vector"] is None]
        made = {}
        if missing:
            vecs = np.asarray(encoder.encode([r["text"] for r in missing]), np.float32)
            made = {r["id"]: v for r, v in zip(missing, vecs)}
            if store.user.role in ("admin", "writer"):
                with b.write():
                    for cid, v in made.items():
                        b.insert("chunk_embeddings", {"chunk_id": cid, "space": encoder.space, "vector": v.tobytes()})
                    b.audit(store.user.id, "embed_chunks", "chunks", None, {"space": encoder.space, "count": len(made)}, time.time())
        meta = [{"owner_id": 0, "visibility": "shared", "model_id": None, "family": None, "kind": "chunk", "created_at": 0.0,
                 "synthetic": 0}] * len(rows)  # visibility is checked in SQL on the candidates (_live_copies)
        vectors = np.stack([made[r["id"]] if r["vector"] is None else np.frombuffer(r["vector"], np.float32) for r in rows])
        self.index.add([r["id"] for r in rows], vectors, meta)
        self.index.last_id = rows[-1]["id"]
        return self.index


def retrieve(store, question: str, k: int = 4, *, mode: str = "hybrid", vectors: ChunkVectors | None = None) -> list[Source]:
    """The k chunks that best match ``question``: keyword, vector or both fused (RRF, k=60)."""
    question, k = S.check_query(question), S.check_k(k)
    if mode not in S.MODES:
        raise GenzooError(f"mode must be one of {', '.join(S.MODES)}, got {mode!r}")
    if not question.strip():
        raise GenzooError("ask a question: the text is empty")
    b, viewer, n = store.backend, store.viewer, max(CANDIDATES, 5 * k)
    keyword = b.chunk_keyword(S.query_terms(question), viewer, n) if mode != "vector" else []
    vector: list[tuple[int, float]] = []
    if mode != "keyword":
        if store.encoder is None:
            if mode == "vector":
                raise GenzooError("vector retrieval needs a text encoder; open the store with one, or use mode='keyword'")
        else:
            index = (vectors or ChunkVectors()).sync(store)
            if index.n:
                vector = index.search(store.encoder.encode([question])[0], n)
    if mode == "hybrid":
        fused = S.rrf([[i for i, _ in keyword], [i for i, _ in vector]])
    else:
        fused = dict(keyword if mode == "keyword" else vector)
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    kw_rank = {cid: r for r, (cid, _) in enumerate(keyword, 1)}
    vec_rank = {cid: r for r, (cid, _) in enumerate(vector, 1)}
    live = _live_copies(b, [cid for cid, _ in ranked], viewer)  # drops chunks of superseded or hidden documents
    out, texts = [], set()
    for cid, score in ranked:
        # the same text may be stored as a first copy more than once (per owner who could not see the other)
        if cid in live and live[cid]["text"] not in texts:
            r = live[cid]
            texts.add(r["text"])
            out.append(Source(cid, r["uri"], r["start_line"], r["end_line"], r["text"], score, kw_rank.get(cid), vec_rank.get(cid)))
            if len(out) == k:
                break
    return out


def _live_copies(backend, ids: list[int], viewer) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        seen, params = seen_by(viewer, "d")
        for r in backend.rows(_LIVE_COPY.format(seen=seen, marks=", ".join("?" * len(part))), [*params, *part]):
            out.setdefault(r["first_id"], r)  # newest live copy
    return out


# ---- recording an answer -------------------------------------------------------------------------
# Generating the answer is genzoo.tasks.rag's (it loads the model); the store receives plain data.

def check_can_record(store) -> None:
    """Refuse a reader before the model work that would end in a refused write."""
    store._require("record answers (ask with record=False / --no-store to only read)", ("admin", "writer"), "generations")


def record_answer(store, question: str, answer: str, sources: list[Source], *, manifest: dict, model: ModelRecord,
                  seed: int | None = None) -> int:
    """Record a question (a prompt), its answer (a synthetic text generation of ``model``) and a
    ``grounded`` relation from each source chunk to the answer (weight: the source's rank), in one
    transaction; the answer's id. ``manifest``: plain JSON values (how the answer was made)."""
    from genzoo.store.graph import relate

    check_can_record(store)
    with store.backend.write():  # the answer and its links commit together
        mid = store.register_model(model)
        gid = store.record(NewGeneration(kind="text", text=answer, prompt=question, manifest=manifest, model_id=mid,
                                         family=model.family, seed=seed, synthetic=True))
        for rank, s in enumerate(sources, 1):
            relate(store, ("chunk", s.chunk_id), "grounded", ("generation", gid), origin="rag", weight=float(rank))
    return gid
