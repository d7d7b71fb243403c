"""The PostgreSQL backend: the same ``Backend`` as SQLite, on PostgreSQL + pgvector.

    Store.open("postgresql://user:pw@host/db")                                # one server
    Store.open("postgresql://...primary/db", read_url="postgresql://...standby/db")  # + a read replica

- Writes: every ``write()`` is one transaction on the primary (committed whole or rolled back),
  and a record is in the GIN and HNSW indexes when its transaction commits.
- Keyword search: PostgreSQL full-text search. Each query word becomes its own
  ``plainto_tsquery('english', %s)`` parameter, OR-ed with ``||``: no user text is ever parsed as
  tsquery syntax (hostile strings cannot raise a syntax error) or as SQL. Ranked by ``ts_rank``
  with length normalisation 1 (rank / (1 + log(length))).
- Vector search: pgvector HNSW (cosine), one partial index per embedding space. Filters are SQL
  conditions; ``hnsw.iterative_scan = strict_order`` keeps the index scanning past rows a filter
  rejects (without it a filtered top-k could come back short); when the planner estimates that
  few rows pass (``EXACT_BELOW``), those rows are scanned exactly instead.
- Read replica: with ``read_url`` the reads and searches go to a hot standby and writes (and
  anything read inside a write) to the primary. API keys are checked on the primary: a key
  revoked there must stop working at once, whatever the replica's lag.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import contextmanager

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store import pg_schema as schema
from genzoo.store.records import ModelRecord, User
from genzoo.store.sql_common import SharedReads
from genzoo.store.search import Filters

RANK_NORMALIZATION = 1  # ts_rank: divide by 1 + log(document length)
# HNSW candidate list (pgvector default 40). Measured at 100,000 MiniLM vectors (benchmarks/README.md,
# section 21): recall@10 against an exact scan 0.47 / 0.60 / 0.72 / 0.80 at 40 / 100 / 200 / 400,
# for 0.9 / 1.1 / 1.9 / 3.3 ms per query: 400 buys recall for ~2 ms.
EF_SEARCH = 400
# Filters that let few rows through make the HNSW walk slow (it visits rows in similarity order and
# drops those the filter rejects: 51.8 ms p50 at 100,000 records with ~3% passing, section 21),
# while an exact scan of the few rows that pass is cheap and misses nothing. Below this many rows
# (the planner's estimate for the filters) the search is exact.
EXACT_BELOW = 5_000
MIGRATION_LOCK = 0x67656E7A6F6F  # "genzoo": pg_advisory_xact_lock key for migrations


def _psycopg():
    try:
        import psycopg
    except ImportError as e:
        raise GenzooError("a postgresql:// store needs the psycopg driver: pip install 'genzoo[postgres]'") from e
    return psycopg


def safe_url(url: str) -> str:
    """The URL without its password, for messages and ``backend.url``."""
    return re.sub(r"(://[^:/@?]*):[^@/?]*@", r"\1:***@", url)


def connect(url: str):
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="genzoo")
    except psycopg.Error as e:
        raise GenzooError(f"cannot connect to the PostgreSQL server at {safe_url(url)}: {str(e).strip()}; "
                          "check the URL and that the server is running") from e
    return conn


def _version(conn) -> int | None:
    if conn.execute("SELECT to_regclass('genzoo_schema')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM genzoo_schema").fetchone()
    return row[0] if row else 0


def migrate(conn, target: int = schema.LATEST) -> int:
    """Apply the migrations above the database's version up to ``target``, each in one transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        if _version(conn) is None:
            if conn.execute("SELECT to_regclass('generations')").fetchone()[0] is not None:
                raise GenzooError("this database holds a 'generations' table but no genzoo_schema: it is not a genzoo store; "
                                  "give genzoo a database of its own")
            conn.execute("CREATE TABLE genzoo_schema (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO genzoo_schema VALUES (0)")
    for version in range(1, target + 1):
        if _version(conn) >= version:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if _version(conn) < version:  # another process may have done it meanwhile
                conn.execute(schema.MIGRATIONS[version])
                conn.execute("UPDATE genzoo_schema SET version = %s", (version,))
    return _version(conn)


def _vector_text(v) -> str:
    return "[" + ",".join("%.8g" % x for x in np.asarray(v, np.float32).reshape(-1).tolist()) + "]"


def _plain(value, what: str):
    """PostgreSQL text cannot hold NUL; say so rather than let the driver fail obscurely."""
    if isinstance(value, str) and "\x00" in value:
        raise GenzooError(f"{what} holds a NUL character (\\x00), which PostgreSQL text cannot store; remove it "
                          "(or store the output as content bytes)")
    return value


def _split(value, what: str) -> tuple[str | None, bytes | None]:
    """(clear text, sealed bytes): the store hands encrypted fields over as bytes."""
    if isinstance(value, (bytes, bytearray)):
        return None, bytes(value)
    return _plain(value, what), None


class PostgresBackend(SharedReads):
    PH = "%s"
    _PROMPT_COLUMNS = "p.text AS prompt, p.text_sealed AS prompt_sealed"
    _FTS = ("generation_text", "generation_id")
    _CHUNK_FTS = ("chunk_text", "chunk_id")
    _HAS_TEXT = "(g.text IS NOT NULL OR g.text_sealed IS NOT NULL)"
    SEALED_COLUMN = "text_sealed"  # encrypted text lives in a BYTEA twin of the text column
    SEALED_WHERE = "text_sealed IS NOT NULL"
    _SEALED = {"generations.text": "SELECT count(*) FROM generations WHERE text_sealed IS NOT NULL",
               "prompts.text": "SELECT count(*) FROM prompts WHERE text_sealed IS NOT NULL"}

    def _bad_vectors(self) -> int:
        return self._one("SELECT count(*) FROM embeddings e JOIN vector_spaces s ON s.space = e.space WHERE vector_dims(e.vector) <> s.dim")[0]

    def __init__(self, url: str, read_url: str | None = None):
        psycopg = _psycopg()
        self.url = safe_url(url)
        self.read_url = safe_url(read_url) if read_url else None
        self._errors = psycopg.errors
        self.w = connect(url)
        self.r = self.w
        try:
            self.read_only = bool(self.w.execute("SELECT pg_is_in_recovery()").fetchone()[0])
            version = _version(self.w)
            if version is not None and version > schema.LATEST:
                raise GenzooError(f"{self.url} has store schema version {version}, newer than this genzoo's {schema.LATEST}; "
                                  "upgrade genzoo to open it")
            if self.read_only:
                if version != schema.LATEST:
                    raise GenzooError(f"{self.url} is a read-only standby holding store schema version {version or 0}, not "
                                      f"{schema.LATEST}; open the primary once (it upgrades the store) and let it replicate")
            else:
                migrate(self.w)
            self._session(self.w)
            if read_url:
                self.r = connect(read_url)
                self._session(self.r)
                self._await_replica_schema()
        except BaseException:
            self.close()
            raise
        self._depth = 0
        self._unembedded: list[int] = []  # text generations of the open write still without a vector
        self._pending: dict[str, dict[int, np.ndarray]] = {}  # vectors made for records still without a stored one
        self._dims: dict[str, int] = {}
        self._df: dict[str, int] = {}
        self._df_size = 0

    def _session(self, conn) -> None:
        conn.execute(f"SET hnsw.ef_search = {int(EF_SEARCH)}")
        conn.execute("SET hnsw.iterative_scan = strict_order")

    def _await_replica_schema(self, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while (v := _version(self.r)) != schema.LATEST:
            if time.time() > deadline:
                raise GenzooError(f"the read replica {self.read_url} is at store schema version {v}, the primary at "
                                  f"{schema.LATEST}; is it a replica of {self.url}?")
            time.sleep(0.05)

    def close(self) -> None:
        for conn in {id(c): c for c in (getattr(self, "w", None), getattr(self, "r", None)) if c is not None}.values():
            conn.close()

    def schema_version(self) -> int:
        return _version(self.w) or 0

    @property
    def _rd(self):
        """Reads inside a write see that write: the primary. Others go to the replica if any."""
        return self.w if self._depth else self.r

    @contextmanager
    def write(self):
        if self._depth:
            yield
            return
        self._depth = 1
        try:
            with self.w.transaction():
                yield
                if self._unembedded:
                    self.w.cursor().executemany("INSERT INTO embed_queue VALUES (%s) ON CONFLICT DO NOTHING",
                                                [(i,) for i in self._unembedded])
        except self._errors.ReadOnlySqlTransaction as e:
            raise GenzooError(f"{self.url} is a read-only standby: writes go to the primary (open the store with the "
                              "primary's URL, and this one as read_url)") from e
        except self._errors.DataError as e:
            raise GenzooError(f"PostgreSQL refused a value: {str(e).strip()}") from e
        finally:
            self._depth = 0
            self._unembedded = []

    def _one(self, sql: str, params=(), conn=None):
        return (conn or self._rd).execute(sql, params).fetchone()

    def _fetch(self, sql: str, params=()) -> list:
        return self._rd.execute(sql, params).fetchall()

    def _dicts(self, sql: str, params=(), conn=None) -> list[dict]:
        from psycopg.rows import dict_row

        cur = (conn or self._rd).cursor(row_factory=dict_row)
        return cur.execute(sql, params).fetchall()

    def _param(self, value, what: str):
        return _plain(value, what)

    # ---- users and keys ---------------------------------------------------------------------
    def add_user(self, name: str, role: str) -> User:
        now = time.time()
        uid = self._one("INSERT INTO users(name, role, created_at) VALUES (%s, %s, %s) RETURNING id",
                        (_plain(name, "a user name"), role, now), self.w)[0]
        return User(uid, name, role, now)

    def user_by_name(self, name: str) -> User | None:
        row = self._one("SELECT id, name, role, created_at FROM users WHERE name = %s", (_plain(name, "a user name"),))
        return User(*row) if row else None

    def user_by_key(self, key_sha256: str) -> User | None:
        row = self._one("SELECT u.id, u.name, u.role, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id "
                        "WHERE k.key_sha256 = %s AND k.revoked_at IS NULL", (key_sha256,), self.w)  # the primary: see above
        return User(*row) if row else None

    def add_key(self, user_id: int, key_sha256: str, prefix: str) -> int:
        return self._one("INSERT INTO api_keys(user_id, key_sha256, prefix, created_at) VALUES (%s, %s, %s, %s) RETURNING id",
                         (user_id, key_sha256, prefix, time.time()), self.w)[0]

    def revoke_keys(self, user_id: int) -> int:
        return self.w.execute("UPDATE api_keys SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL",
                              (time.time(), user_id)).rowcount

    # ---- records -------------------------------------------------------------------------------
    def add_model(self, m: ModelRecord) -> int:
        existing = self._existing_model(m)  # inside the write: on the primary
        if existing is not None:
            return existing
        return self._one(
            "INSERT INTO models(name, family, variant, config, config_sha256, checkpoint_uri, checkpoint_sha256, checkpoint_blob, "
            "metrics, lineage, parent_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (_plain(m.name, "a model name"), _plain(m.family, "a family"), _plain(m.variant, "a variant"), json.dumps(m.config),
             m.config_sha256, _plain(m.checkpoint_uri, "a checkpoint URI"), m.checkpoint_sha256, m.checkpoint_blob,
             json.dumps(m.metrics), json.dumps(m.lineage), m.parent_id, time.time()), self.w)[0]

    def add_prompt(self, text, sha256: str, owner_id: int, session_id, conversation_id, turn, at: float) -> int:
        clear, sealed = _split(text, "the prompt")
        return self._one(
            "INSERT INTO prompts(text, text_sealed, sha256, owner_id, session_id, conversation_id, turn, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (clear, sealed, sha256, owner_id, _plain(session_id, "session_id"), _plain(conversation_id, "conversation_id"),
             turn, at), self.w)[0]

    COLUMNS = ("kind", "model_id", "family", "prompt_id", "owner_id", "visibility", "session_id", "conversation_id",
               "parent_id", "text", "text_sealed", "content", "content_type", "content_sha256", "manifest", "seed", "synthetic",
               "created_at", "quality")

    def add_generation(self, row: dict) -> int:
        row = dict(row)
        row["text"], row["text_sealed"] = _split(row.get("text"), "the text")
        row["synthetic"] = int(bool(row.get("synthetic", True)))
        for c in ("family", "session_id", "conversation_id", "content_type", "manifest", "quality"):
            _plain(row.get(c), c)
        values = [row.get(c) for c in self.COLUMNS]
        gid = self._one(f"INSERT INTO generations({', '.join(self.COLUMNS)}) VALUES ({', '.join(['%s'] * len(self.COLUMNS))}) "
                        "RETURNING id", values, self.w)[0]
        if row["text"] is not None or row["text_sealed"] is not None:
            self._unembedded.append(gid)  # queued at commit unless a vector arrives in this write
        return gid

    def index_text(self, generation_id: int, prompt: str, text: str, family: str) -> None:
        n = schema.INDEXED_CHARS
        self.w.execute("INSERT INTO generation_text(generation_id, prompt, text, family) VALUES (%s, %s, %s, %s)",
                       (generation_id, _plain(prompt or "", "the prompt")[:n], _plain(text or "", "the text")[:n], family or ""))

    def _space_dim(self, space: str, conn) -> int | None:
        if space not in self._dims:
            row = self._one("SELECT dim FROM vector_spaces WHERE space = %s", (space,), conn)
            if row is None:
                return None
            self._dims[space] = row[0]
        return self._dims[space]

    def _ensure_space(self, space: str, dim: int) -> None:
        """Register a new embedding space and its HNSW index (in the current write)."""
        from psycopg import sql

        known = self._space_dim(space, self.w)
        if known is not None:
            if known != dim:
                raise GenzooError(f"vectors of dimension {dim} for space {space!r}, which holds dimension {known}; "
                                  "name the space after the encoder that made them")
            return
        _plain(space, "a space name")
        name = "embeddings_hnsw_" + hashlib.sha256(space.encode()).hexdigest()[:16]
        self.w.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK + 1,))
        self.w.execute("INSERT INTO vector_spaces(space, dim, index_name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                       (space, dim, name))
        # m=16, ef_construction=64: pgvector's defaults (recall measured in benchmarks/README.md, section 21)
        self.w.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON embeddings USING hnsw ((vector::vector({})) vector_cosine_ops) "
                               "WHERE space = {}").format(sql.Identifier(name), sql.Literal(int(dim)), sql.Literal(space)))
        self._dims.pop(space, None)
        if self._space_dim(space, self.w) != dim:
            raise GenzooError(f"space {space!r} was registered with another dimension meanwhile")

    def put_embeddings(self, space: str, rows: list[tuple[int, bytes]]) -> None:
        if not rows:
            return
        vecs = [np.frombuffer(v, np.float32) for _, v in rows]
        for v in vecs:
            if not np.all(np.isfinite(v)):
                raise GenzooError(f"a vector for space {space!r} holds NaN or infinity")
        self._ensure_space(space, len(vecs[0]))
        if len({len(v) for v in vecs}) != 1:
            raise GenzooError(f"vectors of several dimensions for space {space!r}")
        ids = [gid for gid, _ in rows]
        self.w.cursor().executemany(
            "INSERT INTO embeddings(space, generation_id, vector) VALUES (%s, %s, %s::vector) "
            "ON CONFLICT (space, generation_id) DO UPDATE SET vector = EXCLUDED.vector",
            [(space, gid, _vector_text(v)) for gid, v in zip(ids, vecs)])
        done = set(ids)
        self._unembedded = [i for i in self._unembedded if i not in done]
        self.w.execute("DELETE FROM embed_queue WHERE generation_id = ANY(%s)", (ids,))

    def add_feedback(self, generation_id: int, user_id: int, rating, label, comment, at: float) -> int:
        return self._one("INSERT INTO feedback(generation_id, user_id, rating, label, comment, created_at) "
                         "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                         (generation_id, user_id, rating, _plain(label, "the label"), _plain(comment, "the comment"), at), self.w)[0]

    def audit(self, user_id, action, target, target_id, detail, at) -> None:
        self.w.execute("INSERT INTO audit_log(at, user_id, action, target, target_id, detail) VALUES (%s, %s, %s, %s, %s, %s)",
                       (at, user_id, action, target, target_id, json.dumps(detail, default=str)))

    # ---- reading -------------------------------------------------------------------------------
    def _estimate(self, where: str, params: list) -> float:
        """The planner's estimate of the generations passing the filters (one EXPLAIN, no scan)."""
        plan = self._rd.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM generations g WHERE {where}", params).fetchone()[0]
        return float(plan[0]["Plan"]["Plan Rows"])

    @staticmethod
    def _tsquery(terms: list[str]) -> str:
        """Any of the words: one plainto_tsquery per word, each a parameter (never tsquery syntax)."""
        return "(" + " || ".join(["plainto_tsquery('english', %s)"] * len(terms)) + ")"

    def keyword(self, terms: list[str], filters: Filters, viewer: int | None, k: int) -> list[tuple[int, float]]:
        terms, anchor = self._match_terms([t for t in terms if _encodable(t)])
        if not terms:
            return []
        where, params = self._where(filters, viewer)
        rows = self._rd.execute(
            f"SELECT t.generation_id, ts_rank(t.tsv, {self._tsquery(terms)}, {int(RANK_NORMALIZATION)}) AS s "
            f"FROM generation_text t JOIN generations g ON g.id = t.generation_id "
            f"WHERE t.tsv @@ {self._tsquery(anchor)} AND {where} ORDER BY s DESC, t.generation_id LIMIT %s",
            [*terms, *anchor, *params, k]).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def _count_term(self, term: str) -> int:
        return self._one("SELECT count(*) FROM generation_text WHERE tsv @@ plainto_tsquery('english', %s)", (term,))[0]

    def _embed_pending(self, space: str, pending, kind: str | None) -> dict[int, np.ndarray]:
        """Vectors for committed text generations of ``kind`` with none stored in ``space``
        (recorded without the encoder): made once, kept here, stored by ``pending`` if it may."""
        rows = self._rd.execute(
            "SELECT q.generation_id, g.text, g.text_sealed FROM embed_queue q JOIN generations g ON g.id = q.generation_id "
            "WHERE g.kind = %s AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.space = %s AND e.generation_id = q.generation_id) "
            "ORDER BY q.generation_id", (kind, space)).fetchall()
        cache = self._pending.setdefault(space, {})
        todo = [(gid, sealed if sealed is not None else text) for gid, text, sealed in rows if gid not in cache]
        if todo and pending is not None:
            for (gid, _), v in zip(todo, np.asarray(pending(todo), np.float32)):
                cache[gid] = v
        waiting = {gid for gid, _, _ in rows}
        for gid in [g for g in cache if g not in waiting]:
            del cache[gid]  # stored (and replicated) since: the index has it now
        return {gid: cache[gid] for gid in waiting if gid in cache}

    def vector(self, space: str, query, filters: Filters, viewer: int | None, k: int, pending=None, kind=None) -> list[tuple[int, float]]:
        from psycopg import sql

        q = np.asarray(query, np.float32).reshape(-1)
        extra = self._embed_pending(space, pending, kind) if kind is not None else {}
        dim = self._space_dim(space, self._rd)
        if dim is None and extra:
            dim = len(next(iter(extra.values())))
        if dim is None:
            return []
        if q.shape[0] != dim:
            raise GenzooError(f"vector search in space {space!r}: a query vector of dimension {q.shape[0]} for an index of "
                              f"dimension {dim}; embed the query with the encoder that filled this store")
        where, params = self._where(filters, viewer)
        found: dict[int, float] = {}
        if self._space_dim(space, self._rd) is not None and (filters.any() or viewer is not None) and \
                self._estimate(where, params) <= EXACT_BELOW:
            stmt = sql.SQL(
                "WITH c AS MATERIALIZED (SELECT g.id FROM generations g WHERE " + where + ") "
                "SELECT e.generation_id, 1 - ((e.vector::vector({dim})) <=> %s::vector({dim})) AS sim FROM c "
                "JOIN embeddings e ON e.space = {space} AND e.generation_id = c.id ORDER BY sim DESC, e.generation_id LIMIT %s"
            ).format(dim=sql.Literal(int(dim)), space=sql.Literal(space))  # 1 - distance: no index matches, so exact
            found = {r[0]: float(r[1]) for r in self._rd.execute(stmt, [*params, _vector_text(q), k])}
        elif self._space_dim(space, self._rd) is not None:
            vec = _vector_text(q)
            stmt = sql.SQL(
                "SELECT e.generation_id, 1 - ((e.vector::vector({dim})) <=> %s::vector({dim})) FROM embeddings e "
                "JOIN generations g ON g.id = e.generation_id WHERE e.space = {space} AND " + where +
                " ORDER BY (e.vector::vector({dim})) <=> %s::vector({dim}) LIMIT %s"
            ).format(dim=sql.Literal(int(dim)), space=sql.Literal(space))
            found = {r[0]: float(r[1]) for r in self._rd.execute(stmt, [vec, *params, vec, k])}
        if extra:  # not in the index yet: filter them in SQL, rank them here
            ok = [r[0] for r in self._rd.execute(f"SELECT g.id FROM generations g WHERE g.id = ANY(%s) AND {where}",
                                                  [list(extra), *params])]
            qn = q / max(float(np.linalg.norm(q)), 1e-12)
            for gid in ok:
                v = extra[gid]
                found[gid] = max(found.get(gid, -2.0), float(v @ qn / max(float(np.linalg.norm(v)), 1e-12)))
        return sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    # ---- portable SQL for the RAG, graph, stats and export modules ---------------------------
    # They write SQL with ``?`` placeholders; here each becomes a client-side-bound parameter
    # (psycopg quotes it), which also lets ``? IS NULL`` work without a declared type.
    def rows(self, sql: str, params=()) -> list[dict]:
        from psycopg import ClientCursor
        from psycopg.rows import dict_row

        cur = ClientCursor(self._rd, row_factory=dict_row)
        return cur.execute(portable(sql), [_plain(p, "a value") for p in params]).fetchall()

    def execute(self, sql: str, params=()) -> int:
        """Run a statement (inside ``write()``); the number of rows it changed."""
        from psycopg import ClientCursor

        return ClientCursor(self.w).execute(portable(sql), [_plain(p, "a value") for p in params]).rowcount

    def insert(self, table: str, row: dict) -> int:
        """Insert one row (inside ``write()``); its id (0 for a table without one). Table and column
        names are the caller's constants, never user input."""
        from psycopg import sql

        cols = list(row)
        has_id = self._one("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                           "AND table_name = %s AND column_name = 'id'", (table,), self.w)[0]
        stmt = sql.SQL("INSERT INTO {}({}) VALUES ({}) RETURNING " + ("id" if has_id else "0")).format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join([sql.Placeholder()] * len(cols)))
        return self._one(stmt, [_plain(row[c], c) for c in cols], self.w)[0]  # identifiers quoted: chunks has a column "end"

    def index_chunk(self, chunk_id: int, text: str, uri: str) -> None:
        n = schema.INDEXED_CHARS
        self.w.execute("INSERT INTO chunk_text(chunk_id, text, uri) VALUES (%s, %s, %s)",
                       (chunk_id, _plain(text or "", "chunk text")[:n], _plain(uri or "", "a URI")))

    def chunk_keyword(self, terms: list[str], viewer: int | None, k: int) -> list[tuple[int, float]]:
        """ts_rank over the searchable chunks (as the SQLite backend's BM25: first copies of which
        some copy belongs to a current document the viewer may see)."""
        terms = [t for t in terms if _encodable(t)]
        if not terms:
            return []
        q = self._tsquery(terms)
        rows = self._rd.execute(
            f"SELECT c.id, ts_rank(t.tsv, {q}, {int(RANK_NORMALIZATION)}) AS s FROM chunk_text t JOIN chunks c ON c.id = t.chunk_id "
            "JOIN documents d0 ON d0.id = c.document_id "
            f"WHERE t.tsv @@ {q} AND EXISTS (SELECT 1 FROM chunks c2 JOIN documents d ON d.id = c2.document_id "
            "WHERE (c2.id = c.id OR c2.duplicate_of = c.id) AND d.superseded_by IS NULL "
            "AND (%s::bigint IS NULL OR d.visibility = 'shared' OR d.owner_id = %s)) "
            # the uri (weight C) is the first copy's: it matches only where the viewer may see that document
            f"AND (%s::bigint IS NULL OR d0.visibility = 'shared' OR d0.owner_id = %s OR ts_filter(t.tsv, '{{a}}') @@ {q}) "
            "ORDER BY s DESC, c.id LIMIT %s",
            [*terms, *terms, viewer, viewer, viewer, viewer, *terms, k]).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def integrity_check(self) -> str:
        """"ok", or what is wrong: B-tree and GIN indexes checked by amcheck where it is installed,
        and the store's own invariants (every generation has its full-text row; vectors match
        their space's dimension)."""
        problems = []
        conn = self._rd
        missing = self._one("SELECT count(*) FROM generations g WHERE NOT EXISTS "
                            "(SELECT 1 FROM generation_text t WHERE t.generation_id = g.id)", (), conn)[0]
        if missing:
            problems.append(f"{missing} generation(s) without a full-text row")
        bad_dim = self._one("SELECT count(*) FROM embeddings e JOIN vector_spaces s ON s.space = e.space "
                            "WHERE vector_dims(e.vector) <> s.dim", (), conn)[0]
        if bad_dim:
            problems.append(f"{bad_dim} vector(s) of the wrong dimension")
        has_amcheck = self._one("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'", (), conn)[0]
        if not has_amcheck and conn is self.w and not self.read_only:
            try:
                with self.w.transaction():
                    self.w.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
                has_amcheck = 1
            except self._errors.Error:
                pass  # not installed on this server: the invariants above still run
        if has_amcheck:
            indexes = conn.execute(
                "SELECT c.relname, a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
                "WHERE n.nspname = current_schema() AND a.amname IN ('btree', 'gin')").fetchall()
            for name, am in indexes:
                check = "bt_index_check" if am == "btree" else "gin_index_check"
                try:
                    conn.execute(f"SELECT {check}(%s::regclass)", (name,))
                except self._errors.UndefinedFunction:
                    continue
                except self._errors.Error as e:
                    problems.append(f"index {name}: {str(e).strip()}")
        return "; ".join(problems) or "ok"


def portable(sql: str) -> str:
    """SQLite-style SQL for psycopg: ``?`` outside quotes -> ``%s``; a literal ``%`` -> ``%%``."""
    out, quote = [], None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append("%%" if ch == "%" else ch)
    return "".join(out)


def _encodable(term: str) -> bool:
    try:
        term.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no word of any stored text
        return False
    return "\x00" not in term

