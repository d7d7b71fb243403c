"""What the SQLite and PostgreSQL backends do alike: reads whose SQL differs only by the parameter
placeholder, the metadata filters as SQL, the common-term cutoff's bookkeeping, and rows -> records.

A backend mixes ``SharedReads`` in and supplies ``PH`` (``?`` or ``%s``), ``_one(sql, params)``,
``_fetch(sql, params)`` and ``_dicts(sql, params)``, each on the connection it reads from
(PostgreSQL: the standby when one is set), and ``_count_term(term)`` for its full-text engine.
"""

from __future__ import annotations

import json

from genzoo.core.errors import GenzooError
from genzoo.store.records import AuditEntry, Feedback, Generation, ModelRecord
from genzoo.store.search import MAX_ID, Filters, rare_terms

# The common-term cutoff (see search.fts_with_cutoff), chosen by measurement at 100,000 pydocs
# records (benchmarks/store_fts_cutoff.py, 3-6 word queries): bm25 p50 3.3 ms at 1%, 4.0 ms at 2%,
# 9.4 ms at 5%, 29.4 ms for plain OR (benchmarks/README.md, section 19). Below CUTOFF_FROM records
# every query is fast as plain OR. Read at call time, so a measurement can switch it.
COMMON_SHARE = 0.01
CUTOFF_FROM = 20_000
# SQLite allows 32,766 parameters in a statement, psycopg 65,535: a long id list is read in parts.
IDS_PER_QUERY = 1_000
TABLES = ("generations", "prompts", "models", "feedback", "audit_log", "users", "api_keys", "embeddings", "documents", "chunks",
          "chunk_embeddings", "entities", "relations")


class SharedReads:
    PH = "?"
    _PROMPT_COLUMNS = "p.text AS prompt"  # PostgreSQL adds the sealed (encrypted) prompt column

    def _one(self, sql: str, params=()):
        raise NotImplementedError

    def _fetch(self, sql: str, params=()) -> list:
        raise NotImplementedError

    def _dicts(self, sql: str, params=()) -> list[dict]:
        raise NotImplementedError

    def _count_term(self, term: str) -> int:
        """Records whose full-text row holds ``term``."""
        raise NotImplementedError

    def _param(self, value, what: str):
        """A filter value as the driver gets it (PostgreSQL refuses NUL characters with a clear error)."""
        return value

    # ---- records -------------------------------------------------------------------------------
    def _existing_model(self, m: ModelRecord) -> int | None:
        ph = self.PH
        row = self._one(f"SELECT id FROM models WHERE name = {ph} AND COALESCE(checkpoint_sha256, '') = {ph} "
                        f"AND COALESCE(config_sha256, '') = {ph}", (m.name, m.checkpoint_sha256 or "", m.config_sha256 or ""))
        return row[0] if row else None

    def get_model(self, model_id: int) -> ModelRecord | None:
        rows = self._dicts(f"SELECT * FROM models WHERE id = {self.PH}", (model_id,))
        if not rows:
            return None
        r = rows[0]
        return ModelRecord(name=r["name"], family=r["family"], variant=r["variant"], config=json.loads(r["config"]),
                           config_sha256=r["config_sha256"], checkpoint_uri=r["checkpoint_uri"],
                           checkpoint_sha256=r["checkpoint_sha256"], checkpoint_blob=r["checkpoint_blob"],
                           metrics=json.loads(r["metrics"]), lineage=json.loads(r["lineage"]), parent_id=r["parent_id"],
                           id=r["id"], created_at=r["created_at"])

    def get_generation(self, generation_id: int) -> Generation | None:
        return self.get_generations([generation_id]).get(generation_id)

    def get_generations(self, ids: list[int]) -> dict[int, Generation]:
        found: dict[int, Generation] = {}
        ids = list(ids)
        for start in range(0, len(ids), IDS_PER_QUERY):  # dedup reads every record: keep under the drivers' parameter limits
            part = ids[start:start + IDS_PER_QUERY]
            rows = self._dicts(
                f"SELECT g.*, u.name AS owner, {self._PROMPT_COLUMNS}, m.name AS model_name, "
                "(SELECT avg(f.rating) FROM feedback f WHERE f.generation_id = g.id) AS rating "
                "FROM generations g JOIN users u ON u.id = g.owner_id LEFT JOIN prompts p ON p.id = g.prompt_id "
                f"LEFT JOIN models m ON m.id = g.model_id WHERE g.id IN ({', '.join([self.PH] * len(part))})", part)
            found.update((r["id"], generation_from_row(r)) for r in rows)
        return found

    def visible(self, generation_id: int, viewer: int | None) -> bool:
        if not isinstance(generation_id, int) or isinstance(generation_id, bool) or not -MAX_ID - 1 <= generation_id <= MAX_ID:
            return False  # not a row id either database can hold (the drivers would raise): no such record
        row = self._one(f"SELECT owner_id, visibility FROM generations WHERE id = {self.PH}", (generation_id,))
        return row is not None and (viewer is None or row[1] == "shared" or row[0] == viewer)

    def feedback_for(self, generation_id: int) -> list[Feedback]:
        rows = self._fetch("SELECT f.id, f.generation_id, u.name, f.rating, f.label, f.comment, f.created_at FROM feedback f "
                           f"JOIN users u ON u.id = f.user_id WHERE f.generation_id = {self.PH} ORDER BY f.id", (generation_id,))
        return [Feedback(*r) for r in rows]

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = self._fetch("SELECT a.id, a.at, u.name, a.action, a.target, a.target_id, a.detail FROM audit_log a "
                           f"LEFT JOIN users u ON u.id = a.user_id ORDER BY a.id DESC LIMIT {self.PH}", (limit,))
        return [AuditEntry(*r[:6], json.loads(r[6])) for r in rows]

    # ---- administration: users and keys, encryption in use, consistency -----------------------
    # What differs by backend: the full-text tables (SQLite FTS5 rowid; PostgreSQL tsvector tables),
    # how a stored-encrypted field shows, and which vectors are malformed.
    _FTS = ("generations_fts", "rowid")
    _CHUNK_FTS = ("chunks_fts", "rowid")
    _HAS_TEXT = "g.text IS NOT NULL"
    SEALED_COLUMN = "text"  # where prompts and generations keep encrypted text: the text column itself (a BLOB)
    SEALED_WHERE = "typeof(text) = 'blob'"
    _SEALED = {"generations.text": "SELECT count(*) FROM generations WHERE typeof(text) = 'blob'",
               "prompts.text": "SELECT count(*) FROM prompts WHERE typeof(text) = 'blob'"}

    def users_with_keys(self) -> list[dict]:
        """Every user with their role, when made, and key counts (never a key or its hash)."""
        return self._dicts(
            "SELECT u.id, u.name, u.role, u.created_at, "
            "COALESCE(sum(CASE WHEN k.id IS NOT NULL AND k.revoked_at IS NULL THEN 1 ELSE 0 END), 0) AS active_keys, "
            "count(k.id) AS keys, max(k.created_at) AS last_key_at "
            "FROM users u LEFT JOIN api_keys k ON k.user_id = u.id GROUP BY u.id, u.name, u.role, u.created_at ORDER BY u.id")

    def sealed_counts(self) -> dict[str, int]:
        """How many stored values are encrypted, per field (manifests are sealed whole)."""
        counts = {field: int(self._one(sql)[0]) for field, sql in self._SEALED.items()}
        counts["generations.manifest"] = int(self._one(f"SELECT count(*) FROM generations WHERE manifest LIKE {self.PH}", ('{"sealed":%',))[0])
        counts["generations.quality"] = int(self._one(f"SELECT count(*) FROM generations WHERE quality LIKE {self.PH}", ('{"sealed":%',))[0])
        for table, column in (("generations", "session_id"), ("prompts", "session_id"), ("feedback", "label"), ("feedback", "comment")):
            counts[f"{table}.{column}"] = int(self._one(f"SELECT count(*) FROM {table} WHERE {column} LIKE {self.PH}", ("gze1:%",))[0])
        return counts

    def _bad_vectors(self) -> int:
        """Vectors whose size differs from their space's (SQLite: bytes; PostgreSQL: integrity_check)."""
        return self._one("SELECT count(*) FROM embeddings e WHERE length(e.vector) <> "
                         "(SELECT length(e2.vector) FROM embeddings e2 WHERE e2.space = e.space LIMIT 1)")[0]

    def consistency(self, space: str | None = None, kind: str = "text") -> dict[str, int]:
        """Counts of rows the indexes and the records disagree on (all 0 when consistent), plus
        ``unembedded``: ``kind`` records with text but no vector in ``space`` (not an error: the next
        vector search embeds them) and ``vectors:SPACE`` per space."""
        fts, col = self._FTS
        cfts, ccol = self._CHUNK_FTS
        one = lambda sql, params=(): int(self._one(sql, params)[0])  # noqa: E731
        out = {
            "generations without a full-text row": one(
                f"SELECT count(*) FROM generations g WHERE NOT EXISTS (SELECT 1 FROM {fts} t WHERE t.{col} = g.id)"),
            "full-text rows without a generation": one(
                f"SELECT count(*) FROM {fts} t WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = t.{col})"),
            "vectors without a generation": one(
                "SELECT count(*) FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = e.generation_id)"),
            "vectors of the wrong size": self._bad_vectors(),
            "chunks without a full-text row": one(
                f"SELECT count(*) FROM chunks c WHERE c.duplicate_of IS NULL AND NOT EXISTS (SELECT 1 FROM {cfts} t WHERE t.{ccol} = c.id)"),
            "chunk full-text rows without a chunk": one(
                f"SELECT count(*) FROM {cfts} t WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = t.{ccol})"),
            "chunk vectors without a chunk": one(
                "SELECT count(*) FROM chunk_embeddings e WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = e.chunk_id)"),
        }
        for s, n in self._fetch("SELECT space, count(*) FROM embeddings GROUP BY space ORDER BY space"):
            out[f"vectors:{s}"] = int(n)
        if space is not None:
            out["unembedded"] = one(
                f"SELECT count(*) FROM generations g WHERE g.kind = {self.PH} AND {self._HAS_TEXT} AND NOT EXISTS "
                f"(SELECT 1 FROM embeddings e WHERE e.space = {self.PH} AND e.generation_id = g.id)", (kind, space))
        return out

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise GenzooError(f"unknown table {table!r}")
        return self._one(f"SELECT count(*) FROM {table}")[0]

    # ---- filters and keyword search ---------------------------------------------------------------
    def _where(self, f: Filters, viewer: int | None) -> tuple[str, list]:
        """SQL conditions on ``g`` (generations) for the filters; values only ever as parameters."""
        ph, sql, params = self.PH, ["1 = 1"], []

        def add(condition: str, value) -> None:
            sql.append(condition)
            params.append(value)

        if viewer is not None:
            add(f"(g.visibility = 'shared' OR g.owner_id = {ph})", viewer)
        if isinstance(f.model, int):
            add(f"g.model_id = {ph}", f.model)
        elif f.model is not None:
            add(f"g.model_id IN (SELECT id FROM models WHERE name = {ph})", self._param(f.model, "filter model"))
        for col, value in (("g.family", f.family), ("g.kind", f.kind)):
            if value is not None:
                add(f"{col} = {ph}", self._param(value, "a filter"))
        if f.user is not None:
            add(f"g.owner_id = (SELECT id FROM users WHERE name = {ph})", self._param(f.user, "filter user"))
        if f.since is not None:
            add(f"g.created_at >= {ph}", f.since)
        if f.until is not None:
            add(f"g.created_at <= {ph}", f.until)
        if f.synthetic is not None:
            add(f"g.synthetic = {ph}", int(f.synthetic))
        if f.min_rating is not None:
            add(f"g.id IN (SELECT generation_id FROM feedback WHERE rating IS NOT NULL GROUP BY generation_id HAVING avg(rating) >= {ph})",
                f.min_rating)
        return " AND ".join(sql), params

    def _match_terms(self, terms: list[str]) -> tuple[list[str], list[str]]:
        """(the words that score, the words a record must hold one of to match). Above CUTOFF_FROM
        records, absent words are dropped and the common ones only score (search.rare_terms)."""
        n = self._one("SELECT COALESCE(max(id), 0) FROM generations")[0]
        if n < CUTOFF_FROM or not terms:
            return terms, terms
        counts = self._term_counts(terms, n)
        terms = [t for t in terms if counts[t] > 0]  # an absent word (or stop word) matches nothing and cannot anchor
        return terms, rare_terms(terms, counts, COMMON_SHARE * n)

    def _term_counts(self, terms: list[str], n: int) -> dict[str, int]:
        """Records holding each term, cached until the store grows by 20%."""
        if n > getattr(self, "_df_size", 0) * 1.2:
            self._df, self._df_size = {}, n
        for t in terms:
            if t not in self._df:
                self._df[t] = self._count_term(t)
        return {t: self._df[t] for t in terms}

    def latest(self, filters: Filters, viewer: int | None, k: int) -> list[int]:
        where, params = self._where(filters, viewer)
        return [r[0] for r in self._fetch(f"SELECT g.id FROM generations g WHERE {where} ORDER BY g.id DESC LIMIT {self.PH}", [*params, k])]


def generation_from_row(r: dict) -> Generation:
    """A ``Generation`` from a row of ``get_generations``' query. Encrypted fields arrive as bytes:
    in the text column on SQLite, in a ``*_sealed`` column on PostgreSQL (whose text cannot hold them)."""
    text = r["text_sealed"] if r.get("text_sealed") is not None else r["text"]
    prompt = r["prompt_sealed"] if r.get("prompt_sealed") is not None else r["prompt"]
    return Generation(
        id=r["id"], kind=r["kind"], owner=r["owner"], visibility=r["visibility"], created_at=r["created_at"], text=text,
        content=r["content"], content_type=r["content_type"], content_sha256=r["content_sha256"], prompt=prompt,
        prompt_id=r["prompt_id"], manifest=json.loads(r["manifest"] or "{}"), model_id=r["model_id"], model_name=r["model_name"],
        family=r["family"], session_id=r["session_id"], conversation_id=r["conversation_id"], parent_id=r["parent_id"],
        synthetic=bool(r["synthetic"]), quality=json.loads(r["quality"] or "{}"), seed=r["seed"],
        rating=None if r["rating"] is None else float(r["rating"]),
    )
