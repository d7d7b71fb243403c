"""The SQLite backend: one file, WAL journal, every write one atomic transaction.

WAL lets searches read while a writer commits; ``synchronous=NORMAL`` in WAL mode loses no
committed transaction when the *process* dies (SIGKILL included: the log is in the OS page
cache), only possibly the last ones on a power cut, at a fraction of FULL's fsync cost.
``BEGIN IMMEDIATE`` takes the write lock up front, so two writers queue (``busy_timeout``)
instead of failing halfway; it also makes ids grow in commit order, which the vector index
relies on to catch up incrementally.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from genzoo.core.atomic import write_atomic_with
from genzoo.core.errors import GenzooError
from genzoo.store import schema
from genzoo.store.records import ModelRecord, User
from genzoo.store.sql_common import SharedReads
from genzoo.store.search import Filters, fts_any, fts_match
from genzoo.store.vectors import VectorIndex

BUSY_TIMEOUT_S = 30.0


def _statements(script: str):
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""


def migrate(conn: sqlite3.Connection, target: int = schema.LATEST) -> int:
    """Apply the migrations above the file's version up to ``target``, each in its own transaction.
    Returns the version reached. Safe when another process migrates at the same time."""
    for version in range(1, target + 1):
        if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < version:  # another process may have done it
                for stmt in _statements(schema.MIGRATIONS[version]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return conn.execute("PRAGMA user_version").fetchone()[0]


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class _SharedIndexes:
    """The vector indexes of one store file, shared by every ``SqliteBackend`` that opens it in this
    process: a server opens the store per request, and rebuilding the index of 100,000 vectors took
    7.5-12.4 s each time (benchmarks/serve_load/results.md); shared, a request only appends what was
    committed since the last one. ``first`` (the first generation's id and time) tells a file that
    was deleted and made again at the same path (and inode) from the one the index was built on."""

    def __init__(self):
        self.indexes: dict[str, VectorIndex] = {}
        self.lock = threading.RLock()
        self.first = None

    def check(self, conn) -> None:
        row = conn.execute("SELECT id, created_at FROM generations ORDER BY id LIMIT 1").fetchone()
        first = None if row is None else (row[0], row[1])
        if first != self.first:
            self.indexes.clear()
            self.first = first


SHARED_FILES = 8  # stores whose indexes a process keeps (least recently opened dropped first)
_shared: "OrderedDict[tuple, _SharedIndexes]" = OrderedDict()
_shared_lock = threading.Lock()


def _shared_indexes(path: Path) -> _SharedIndexes:
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino)
    with _shared_lock:
        found = _shared.pop(key, None) or _SharedIndexes()
        _shared[key] = found
        while len(_shared) > SHARED_FILES:
            _shared.popitem(last=False)
    return found


class SqliteBackend(SharedReads):
    PH = "?"

    def __init__(self, path: str | Path):
        path = Path(path).expanduser()
        if path.is_dir():
            raise GenzooError(f"{path} is a folder; give the store a file path such as {path / 'store.db'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.url = path, f"sqlite:///{path}"
        try:
            self.conn = connect(path)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise GenzooError(f"{path} is not a genzoo store (SQLite says: {e}); give another --store path") from e
        if version > schema.LATEST:
            self.conn.close()
            raise GenzooError(f"{path} has store schema version {version}, newer than this genzoo's {schema.LATEST}; upgrade genzoo to open it")
        if 0 < version < schema.LATEST:
            self._backup(version)
        migrate(self.conn)
        self._depth = 0
        self._shared = _shared_indexes(path)
        self._indexes: dict[str, VectorIndex] = self._shared.indexes  # shared by every opening of this file in the process
        self._private: dict[str, VectorIndex] = {}  # this opening's own (see vector())
        self._df: dict[str, int] = {}  # document count per query term (for the common-term cutoff)
        self._df_size = 0

    def _backup(self, version: int) -> None:
        """A copy of the store as it was, before an upgrade touches it."""
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if target.exists():
            return
        def copy_into(tmp: Path) -> None:
            dst = sqlite3.connect(str(tmp))
            try:
                self.conn.backup(dst)
            finally:
                dst.close()

        write_atomic_with(target, copy_into)

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def write(self):
        if self._depth:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def _one(self, sql: str, params=()):
        return self.conn.execute(sql, params).fetchone()

    def _fetch(self, sql: str, params=()) -> list:
        return self.conn.execute(sql, params).fetchall()

    def _dicts(self, sql: str, params=()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, params)]

    # ---- users and keys ---------------------------------------------------------------------
    def add_user(self, name: str, role: str) -> User:
        now = time.time()
        cur = self.conn.execute("INSERT INTO users(name, role, created_at) VALUES (?, ?, ?)", (name, role, now))
        return User(cur.lastrowid, name, role, now)

    def user_by_name(self, name: str) -> User | None:
        row = self._one("SELECT id, name, role, created_at FROM users WHERE name = ?", (name,))
        return User(*row) if row else None

    def user_by_key(self, key_sha256: str) -> User | None:
        row = self._one("SELECT u.id, u.name, u.role, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id "
                        "WHERE k.key_sha256 = ? AND k.revoked_at IS NULL", (key_sha256,))
        return User(*row) if row else None

    def add_key(self, user_id: int, key_sha256: str, prefix: str) -> int:
        return self.conn.execute("INSERT INTO api_keys(user_id, key_sha256, prefix, created_at) VALUES (?, ?, ?, ?)",
                                 (user_id, key_sha256, prefix, time.time())).lastrowid

    def revoke_keys(self, user_id: int) -> int:
        return self.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                                 (time.time(), user_id)).rowcount

    # ---- records -------------------------------------------------------------------------------
    def add_model(self, m: ModelRecord) -> int:
        existing = self._existing_model(m)
        if existing is not None:
            return existing
        return self.conn.execute(
            "INSERT INTO models(name, family, variant, config, config_sha256, checkpoint_uri, checkpoint_sha256, checkpoint_blob, "
            "metrics, lineage, parent_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.name, m.family, m.variant, json.dumps(m.config), m.config_sha256, m.checkpoint_uri, m.checkpoint_sha256,
             m.checkpoint_blob, json.dumps(m.metrics), json.dumps(m.lineage), m.parent_id, time.time()),
        ).lastrowid

    def add_prompt(self, text, sha256: str, owner_id: int, session_id, conversation_id, turn, at: float) -> int:
        return self.conn.execute(
            "INSERT INTO prompts(text, sha256, owner_id, session_id, conversation_id, turn, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (text, sha256, owner_id, session_id, conversation_id, turn, at)).lastrowid

    GENERATION_COLUMNS = ("kind", "model_id", "family", "prompt_id", "owner_id", "visibility", "session_id", "conversation_id",
                          "parent_id", "text", "content", "content_type", "content_sha256", "manifest", "seed", "synthetic",
                          "created_at", "quality")

    def add_generation(self, row: dict) -> int:
        cols = self.GENERATION_COLUMNS
        values = [row.get(c) for c in cols]
        return self.conn.execute(f"INSERT INTO generations({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values).lastrowid

    def index_text(self, generation_id: int, prompt: str, text: str, family: str) -> None:
        self.conn.execute("INSERT INTO generations_fts(rowid, prompt, text, family) VALUES (?, ?, ?, ?)",
                          (generation_id, prompt, text, family))

    def put_embeddings(self, space: str, rows: list[tuple[int, bytes]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO embeddings(space, generation_id, vector) VALUES (?, ?, ?)",
                              [(space, gid, vec) for gid, vec in rows])

    def add_feedback(self, generation_id: int, user_id: int, rating, label, comment, at: float) -> int:
        return self.conn.execute("INSERT INTO feedback(generation_id, user_id, rating, label, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                                 (generation_id, user_id, rating, label, comment, at)).lastrowid

    def audit(self, user_id, action, target, target_id, detail, at) -> None:
        self.conn.execute("INSERT INTO audit_log(at, user_id, action, target, target_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                          (at, user_id, action, target, target_id, json.dumps(detail, default=str)))

    # ---- reading -------------------------------------------------------------------------------
    def keyword(self, terms: list[str], filters: Filters, viewer: int | None, k: int) -> list[tuple[int, float]]:
        terms, anchor = self._match_terms(terms)
        if not terms:
            return []
        return self._bm25(fts_match(terms, anchor), filters, viewer, k)

    def _bm25(self, match: str, filters: Filters, viewer: int | None, k: int) -> list[tuple[int, float]]:
        # bm25 column weights: prompt and text count fully, the family name (one word) a little
        if viewer is None and not filters.any():  # nothing to check against the generation: the full-text index alone
            rows = self.conn.execute("SELECT rowid, bm25(generations_fts, 1.0, 1.0, 0.2) AS s FROM generations_fts "
                                     "WHERE generations_fts MATCH ? ORDER BY s LIMIT ?", (match, k)).fetchall()
        else:  # filters read the narrow covering index, not the wide rows (schema.V5)
            where, params = self._where(filters, viewer)
            rows = self.conn.execute(
                "SELECT g.id, bm25(generations_fts, 1.0, 1.0, 0.2) AS s FROM generations_fts "
                "JOIN generations g INDEXED BY generations_search ON g.id = generations_fts.rowid "
                f"WHERE generations_fts MATCH ? AND {where} ORDER BY s LIMIT ?", [match, *params, k]).fetchall()
        return [(r[0], -r[1]) for r in rows]  # bm25() is lower-is-better

    def _count_term(self, term: str) -> int:
        return self._one("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH ?", (f'"{term}"',))[0]

    def _sync(self, space: str, pending, kind: str | None) -> VectorIndex:
        """Append to the space's index every generation committed since the last search."""
        index = self._indexes.setdefault(space, VectorIndex())
        rows = self.conn.execute(
            "SELECT g.id, g.owner_id, g.visibility, g.model_id, g.family, g.kind, g.created_at, g.synthetic, e.vector, "
            "CASE WHEN e.vector IS NULL AND g.kind = ? THEN g.text END AS text FROM generations g "
            "LEFT JOIN embeddings e ON e.space = ? AND e.generation_id = g.id WHERE g.id > ? ORDER BY g.id",
            (kind, space, index.last_id)).fetchall()
        if not rows:
            return index
        todo = [(r["id"], r["text"]) for r in rows if r["vector"] is None and r["text"] is not None]
        made = {}
        if todo and pending is not None:
            made = dict(zip((i for i, _ in todo), np.asarray(pending(todo), np.float32)))
        keep = [r for r in rows if r["vector"] is not None or r["id"] in made]
        if keep:
            vecs = np.stack([np.frombuffer(r["vector"], np.float32) if r["vector"] is not None else made[r["id"]] for r in keep])
            index.add([r["id"] for r in keep], vecs, [dict(r) for r in keep])
        index.last_id = rows[-1]["id"]
        return index

    def vector(self, space: str, query, filters: Filters, viewer: int | None, k: int, pending=None, kind=None) -> list[tuple[int, float]]:
        # Shared only where every row can get its vector (``pending`` embeds the ones without): an index
        # built without it would skip those rows for good. Inside a write, uncommitted rows must not
        # reach an index other openings share.
        if self._depth or pending is None:
            shared, self._indexes = self._indexes, self._private
            try:
                return self._vector(space, query, filters, viewer, k, pending, kind)
            finally:
                self._indexes = shared
        with self._shared.lock:  # one sync at a time; a search never sees a half-added batch
            self._shared.check(self.conn)
            return self._vector(space, query, filters, viewer, k, pending, kind)

    def _vector(self, space: str, query, filters: Filters, viewer: int | None, k: int, pending=None, kind=None) -> list[tuple[int, float]]:
        index = self._sync(space, pending, kind)
        if index.n == 0:
            return []
        model_ids = owner_id = allowed = None
        if isinstance(filters.model, int):
            model_ids = [filters.model]
        elif filters.model is not None:
            model_ids = [r[0] for r in self.conn.execute("SELECT id FROM models WHERE name = ?", (filters.model,))]
        if filters.user is not None:
            user = self.user_by_name(filters.user)
            owner_id = user.id if user else -1
        if filters.min_rating is not None:
            allowed = [r[0] for r in self.conn.execute(
                "SELECT generation_id FROM feedback WHERE rating IS NOT NULL GROUP BY generation_id HAVING avg(rating) >= ?",
                (filters.min_rating,))]
        keep = index.mask(viewer=viewer, model_ids=model_ids, family=filters.family, owner_id=owner_id, kind=filters.kind,
                          since=filters.since, until=filters.until, synthetic=filters.synthetic, allowed_ids=allowed)
        try:
            return index.search(query, k, keep)
        except ValueError as e:
            raise GenzooError(f"vector search in space {space!r}: {e}; embed the query with the encoder that filled this store") from e

    # ---- portable SQL for the RAG, graph, stats and export modules ---------------------------
    # They write plain SQL with ``?`` placeholders and call only these (a backend whose driver
    # uses another placeholder style translates it here).
    def rows(self, sql: str, params=()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, list(params))]

    def execute(self, sql: str, params=()) -> int:
        """Run a statement (inside ``write()``); the number of rows it changed."""
        return self.conn.execute(sql, list(params)).rowcount

    def insert(self, table: str, row: dict) -> int:
        """Insert one row (inside ``write()``); its id. Table and column names are the caller's
        constants, never user input."""
        cols = list(row)
        return self.conn.execute(f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [row[c] for c in cols]).lastrowid

    def index_chunk(self, chunk_id: int, text: str, uri: str) -> None:
        self.conn.execute("INSERT INTO chunks_fts(rowid, text, uri) VALUES (?, ?, ?)", (chunk_id, text, uri))

    def chunk_keyword(self, terms: list[str], viewer: int | None, k: int) -> list[tuple[int, float]]:
        """BM25 over the searchable chunks: first copies (the only ones indexed) of which some copy
        belongs to a current document the viewer may see."""
        if not terms:
            return []
        # The indexed uri is the first copy's: it matches only where the viewer may see that document
        # (a copy in a document they may see must not make another user's private file name findable).
        admin, me = int(viewer is None), -1 if viewer is None else viewer
        rows = self.conn.execute(
            "SELECT c.id, bm25(chunks_fts, 1.0, 0.3) AS s FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d0 ON d0.id = c.document_id "
            "WHERE chunks_fts MATCH ? AND EXISTS (SELECT 1 FROM chunks c2 JOIN documents d ON d.id = c2.document_id "
            "WHERE (c2.id = c.id OR c2.duplicate_of = c.id) AND d.superseded_by IS NULL "
            "AND (? = 1 OR d.visibility = 'shared' OR d.owner_id = ?)) "
            "AND (? = 1 OR d0.visibility = 'shared' OR d0.owner_id = ? OR c.id IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?)) "
            "ORDER BY s LIMIT ?",
            (fts_any(terms), admin, me, admin, me, f"text : ({fts_any(terms)})", k)).fetchall()
        return [(r[0], -r[1]) for r in rows]

    def integrity_check(self) -> str:
        result = "; ".join(r[0] for r in self.conn.execute("PRAGMA integrity_check"))
        try:
            self.conn.execute("INSERT INTO generations_fts(generations_fts) VALUES ('integrity-check')")
        except sqlite3.DatabaseError as e:
            return f"{result}; full-text index: {e}"
        return result

