"""The right to be forgotten: remove a user's records (or every record older than a time) from the
store, and leave no readable trace of them in the database files.

``forget(store, user="alice")`` (admins only) removes, in one transaction:

- the user's generations: text, content (images and arrays are BLOBs in the generations table: the
  store keeps no files of its own beside the database), manifest, their full-text rows and vectors;
- their prompts, and the prompts of those generations;
- feedback they gave, and every feedback on their generations (whoever gave it);
- their documents and the documents' chunks, with the chunks' full-text rows and vectors. A chunk
  of another user's document that was stored as a copy of one of theirs (``duplicate_of``) becomes
  a first copy itself (indexed and given the vector again), so the other user's document stays whole;
- graph relations that touch any of those records or that the user added, and the entities that
  only those relations used;
- what the audit log keeps of those records: the detail of every audit row the user wrote or that
  names one of the forgotten records is cut down to its numbers (a feedback label, a document's
  URI, a content hash are dropped), so the log still says who did what and when, never the text.

``older_than`` (seconds since the epoch) does the same for the records created before that time,
of every user or, with ``user``, of that user only. The user's account and API keys stay (revoke
them with ``Store.revoke_keys``); one audit row records the forgetting: who, which user, the cutoff
and the counts, never the forgotten text.

Then the files. SQLite overwrites deleted content with zeros while the deletion runs
(``PRAGMA secure_delete``), the full-text tables are merged (``optimize``: an FTS5 delete only adds a
tombstone, the term stays in the index segments until a merge), the WAL is checkpointed and
truncated, the file rebuilt (``VACUUM``: it needs free disk space for a copy of the store, and
time in proportion to its size) and the WAL truncated again, so none of the forgotten text
remains in ``store.db``, ``store.db-wal`` or ``store.db-shm``. A reader holding a transaction open in
another process can keep the checkpoint from finishing: the report says so (``files_clean`` False)
and running ``forget`` again once it is gone (nothing left to delete) finishes the cleaning.
PostgreSQL: the rows are deleted, then the tables that held them are rewritten (``VACUUM FULL``,
outside the transaction; it locks each table for the time it takes), which drops the dead tuples
from the heap, TOAST and indexes.

Out of reach of both: copies outside the database files. On SQLite the upgrade backups beside the
store (``store.db.vN.bak``), exports and the source files that were indexed; blocks the file system
freed when the file shrank (until reused) and any file-system snapshots. On PostgreSQL the WAL
segments written before the VACUUM (until the server recycles them; archived WAL and base backups
for as long as they are kept), a standby's own files until it has replayed the deletion and the
rewrite, and pg_dump backups. And the memory of other processes that have the store open (their
vector indexes hold vectors, never text, until they reopen it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from genzoo.core.errors import GenzooError

BATCH = 500  # ids per statement: under SQLite's bound-parameter limit
FORGETTABLE_NODES = ("generation", "prompt", "document", "chunk")


@dataclass
class ForgetReport:
    user: str | None
    older_than: float | None
    dry_run: bool = False
    generations: int = 0
    prompts: int = 0
    feedback: int = 0
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    relations: int = 0
    entities: int = 0
    chunks_promoted: int = 0  # other users' chunk copies that became first copies
    audit_redacted: int = 0
    files_clean: bool | None = None  # SQLite: every WAL checkpoint completed (None: nothing was done to the files)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and not isinstance(v, bool)}

    def summary(self) -> str:
        who = f"user {self.user!r}" if self.user else "every user"
        when = "" if self.older_than is None else f", created before {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.older_than))}"
        verb = "would remove" if self.dry_run else "removed"
        parts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.counts().items())
        return f"{verb} the records of {who}{when}: {parts}"


def forget(store, *, user: str | None = None, older_than: float | None = None, dry_run: bool = False) -> ForgetReport:
    """Remove ``user``'s records, or every record created before ``older_than`` (seconds since the
    epoch), or the user's records older than that; admins only. ``dry_run``: count, change nothing."""
    if user is None and older_than is None:
        raise GenzooError("say what to forget: a user, a time (older_than), or both")
    if older_than is not None and (isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or older_than != older_than):
        raise GenzooError(f"older_than is seconds since the epoch, got {older_than!r}")
    store._require("forget records", ("admin",), "users")  # AccessDenied (audited) for anyone else
    b = store.backend
    uid = None
    if user is not None:
        u = b.user_by_name(user)
        if u is None:
            raise GenzooError(f"no user {user!r} in {b.url}")
        uid = u.id
    report = ForgetReport(user=user, older_than=None if older_than is None else float(older_than), dry_run=dry_run)
    sqlite = _is_sqlite(b)
    if sqlite and not dry_run:
        was = b.conn.execute("PRAGMA secure_delete").fetchone()[0]
        b.conn.execute("PRAGMA secure_delete = ON")  # freed cells and pages are zeroed as they are freed
    try:
        with b.write():
            found = _select(b, uid, report.older_than)
            _count(report, found)
            if dry_run:
                report.vectors = (len(_ids_in(b, "SELECT space FROM embeddings WHERE generation_id IN ({marks})", found["generations"]))
                                  + len(_ids_in(b, "SELECT space FROM chunk_embeddings WHERE chunk_id IN ({marks})", found["chunks"])))
            else:
                deleting_xid = None if sqlite else b.w.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
                _delete(b, found, report, sqlite)
                _redact_audit(b, found, uid, report)
                b.audit(store.user.id, "forget", "users", uid,
                        {"user": user, "older_than": report.older_than, **report.counts()}, time.time())
    finally:
        if sqlite and not dry_run:
            b.conn.execute(f"PRAGMA secure_delete = {int(was)}")
    if not dry_run:
        _forget_caches(b)
        if sqlite:
            report.files_clean = _compact_sqlite(b, report)
        else:
            report.files_clean = _compact_postgres(b, report, deleting_xid)
    return report


# ---- what goes ---------------------------------------------------------------------------------

def _is_sqlite(b) -> bool:
    from genzoo.store.sqlite import SqliteBackend

    return isinstance(b, SqliteBackend)


def _cond(uid, cutoff, owner: str, at: str = "created_at") -> tuple[str, list]:
    sql, params = [], []
    if uid is not None:
        sql.append(f"{owner} = ?")
        params.append(uid)
    if cutoff is not None:
        sql.append(f"{at} < ?")
        params.append(cutoff)
    return " AND ".join(sql), params


def _ids_in(b, sql: str, ids, params=()) -> list[dict]:
    """Rows of ``sql`` (with ``{marks}`` for the id list, after ``params``) over ``ids`` in parts."""
    ids, out = sorted(ids), []
    for i in range(0, len(ids), BATCH):
        part = ids[i:i + BATCH]
        out += b.rows(sql.format(marks=", ".join("?" * len(part))), [*params, *part])
    return out


def _exec_in(b, sql: str, ids, params=()) -> int:
    ids, n = sorted(ids), 0
    for i in range(0, len(ids), BATCH):
        part = ids[i:i + BATCH]
        n += max(b.execute(sql.format(marks=", ".join("?" * len(part))), [*params, *part]), 0)
    return n


def _select(b, uid, cutoff) -> dict[str, set[int]]:
    where, p = _cond(uid, cutoff, "owner_id")
    gens = {r["id"] for r in b.rows(f"SELECT id FROM generations WHERE {where}", p)}
    prompts = {r["id"] for r in b.rows(f"SELECT id FROM prompts WHERE {where}", p)}
    prompts |= {r["prompt_id"] for r in _ids_in(b, "SELECT prompt_id FROM generations WHERE prompt_id IS NOT NULL AND id IN ({marks})", gens)}
    fw, fp = _cond(uid, cutoff, "user_id")
    feedback = {r["id"] for r in b.rows(f"SELECT id FROM feedback WHERE {fw}", fp)}
    feedback |= {r["id"] for r in _ids_in(b, "SELECT id FROM feedback WHERE generation_id IN ({marks})", gens)}
    docs = {r["id"] for r in b.rows(f"SELECT id FROM documents WHERE {where}", p)}
    chunks = {r["id"] for r in _ids_in(b, "SELECT id FROM chunks WHERE document_id IN ({marks})", docs)}
    relations: set[int] = set()
    for kind, ids in (("generation", gens), ("prompt", prompts), ("document", docs), ("chunk", chunks)):
        for end in ("src", "dst"):
            relations |= {r["id"] for r in _ids_in(b, f"SELECT id FROM relations WHERE {end}_type = ? AND {end}_id IN ({{marks}})",
                                                   ids, [kind])}
    if uid is not None:
        relations |= {r["id"] for r in b.rows(f"SELECT id FROM relations WHERE {where}", p)}
    touched = set()
    for r in _ids_in(b, "SELECT src_type, src_id, dst_type, dst_id FROM relations WHERE id IN ({marks})", relations):
        touched |= {r[f"{e}_id"] for e in ("src", "dst") if r[f"{e}_type"] == "entity"}
    still_used = _entities_used_elsewhere(b, touched, relations)
    return {"generations": gens, "prompts": prompts, "feedback": feedback, "documents": docs, "chunks": chunks,
            "relations": relations, "entities": touched - still_used}


def _entities_used_elsewhere(b, entities: set[int], relations: set[int]) -> set[int]:
    used = set()
    for end in ("src", "dst"):
        for r in _ids_in(b, f"SELECT id, {end}_id AS eid FROM relations WHERE {end}_type = 'entity' AND {end}_id IN ({{marks}})", entities):
            if r["id"] not in relations:
                used.add(r["eid"])
    return used


def _count(report: ForgetReport, found: dict[str, set[int]]) -> None:
    for k in ("generations", "prompts", "feedback", "documents", "chunks", "relations", "entities"):
        setattr(report, k, len(found[k]))


# ---- removing ----------------------------------------------------------------------------------

def _delete(b, found: dict[str, set[int]], report: ForgetReport, sqlite: bool) -> None:
    gens, prompts, docs, chunks = found["generations"], found["prompts"], found["documents"], found["chunks"]
    report.chunks_promoted = _promote_copies(b, chunks)
    _exec_in(b, "DELETE FROM relations WHERE id IN ({marks})", found["relations"])
    _exec_in(b, "DELETE FROM entities WHERE id IN ({marks})", found["entities"])
    _exec_in(b, "DELETE FROM feedback WHERE id IN ({marks})", found["feedback"])
    vectors = _exec_in(b, "DELETE FROM embeddings WHERE generation_id IN ({marks})", gens)
    if sqlite:
        _exec_in(b, "DELETE FROM generations_fts WHERE rowid IN ({marks})", gens)
        _exec_in(b, "DELETE FROM chunks_fts WHERE rowid IN ({marks})", chunks)
    else:
        _exec_in(b, "DELETE FROM generation_text WHERE generation_id IN ({marks})", gens)
        _exec_in(b, "DELETE FROM embed_queue WHERE generation_id IN ({marks})", gens)
        _exec_in(b, "DELETE FROM chunk_text WHERE chunk_id IN ({marks})", chunks)
    # references from what stays (and within what goes) to what goes, so no foreign key is left dangling
    _exec_in(b, "UPDATE generations SET parent_id = NULL WHERE parent_id IN ({marks})", gens)
    _exec_in(b, "UPDATE generations SET prompt_id = NULL WHERE prompt_id IN ({marks})", prompts)
    _exec_in(b, "DELETE FROM generations WHERE id IN ({marks})", gens)
    _exec_in(b, "DELETE FROM prompts WHERE id IN ({marks})", prompts)
    vectors += _exec_in(b, "DELETE FROM chunk_embeddings WHERE chunk_id IN ({marks})", chunks)
    _exec_in(b, "UPDATE chunks SET duplicate_of = NULL WHERE id IN ({marks})", chunks)
    _exec_in(b, "DELETE FROM chunks WHERE id IN ({marks})", chunks)
    _exec_in(b, "UPDATE documents SET superseded_by = NULL WHERE superseded_by IN ({marks})", docs)
    _exec_in(b, "DELETE FROM documents WHERE id IN ({marks})", docs)
    report.vectors = vectors
    if sqlite:  # an FTS5 delete adds a tombstone; the term stays in the index segments until they are merged
        for table in ("generations_fts", "chunks_fts"):
            b.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")


def _promote_copies(b, chunks: set[int]) -> int:
    """Copies (in documents that stay) of a first-copy chunk that goes: the oldest becomes the first
    copy (full-text row, vector), the others point at it."""
    firsts = {r["id"]: r for r in _ids_in(b, "SELECT id FROM chunks WHERE duplicate_of IS NULL AND id IN ({marks})", chunks)}
    copies: dict[int, list[int]] = {}
    for r in _ids_in(b, "SELECT id, duplicate_of FROM chunks WHERE duplicate_of IN ({marks}) ORDER BY id", firsts):
        if r["id"] not in chunks:
            copies.setdefault(r["duplicate_of"], []).append(r["id"])
    for old, ids in copies.items():
        new, rest = ids[0], ids[1:]
        b.execute("UPDATE chunks SET duplicate_of = NULL WHERE id = ?", (new,))
        _exec_in(b, "UPDATE chunks SET duplicate_of = ? WHERE id IN ({marks})", rest, [new])
        row = b.rows("SELECT c.text, d.uri FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?", (new,))[0]
        b.index_chunk(new, row["text"], row["uri"])
        b.execute("UPDATE chunk_embeddings SET chunk_id = ? WHERE chunk_id = ?", (new, old))
    return len(copies)


def _redact_audit(b, found: dict[str, set[int]], uid, report: ForgetReport) -> None:
    """Cut to its numbers the detail of every audit row the user wrote (before the cutoff, if any)
    or that names a forgotten record: a label, a URI, a content hash may be the forgotten text."""
    rows = {}
    if uid is not None:
        where, p = _cond(uid, report.older_than, "user_id", at="at")
        rows.update((r["id"], r) for r in b.rows(f"SELECT id, detail FROM audit_log WHERE {where}", p))
    for target, ids in (("generations", found["generations"]), ("feedback", found["generations"]),
                        ("documents", found["documents"]), ("relations", found["relations"])):
        rows.update((r["id"], r) for r in _ids_in(b, "SELECT id, detail FROM audit_log WHERE target = ? AND target_id IN ({marks})",
                                                  ids, [target]))
    if found["feedback"]:  # feedback on a record that stays, given before the cutoff
        for r in b.rows("SELECT id, detail FROM audit_log WHERE action = 'feedback'"):
            if r["id"] not in rows and _detail(r["detail"]).get("feedback_id") in found["feedback"]:
                rows[r["id"]] = r
    n = 0
    for aid, r in rows.items():
        detail = _detail(r["detail"])
        kept = {k: v for k, v in detail.items() if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
        kept["forgotten"] = True
        if detail.get("forgotten") is True and kept == detail:
            continue
        b.execute("UPDATE audit_log SET detail = ? WHERE id = ?", (json.dumps(kept), aid))
        n += 1
    report.audit_redacted = n


def _detail(text) -> dict:
    try:
        d = json.loads(text or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _forget_caches(b) -> None:
    """This process's in-memory indexes hold vectors (never text) of what went: rebuilt on next use."""
    for name in ("_indexes", "_private", "_pending", "_df"):
        cache = getattr(b, name, None)
        if isinstance(cache, dict):
            cache.clear()
    if hasattr(b, "_df_size"):
        b._df_size = 0


# ---- cleaning the files ------------------------------------------------------------------------

def _compact_sqlite(b, report: ForgetReport) -> bool:
    """Checkpoint and truncate the WAL (it holds the pages as they were before the deletion), rebuild
    the file without free pages, then truncate the WAL again (VACUUM writes through it)."""
    conn, clean = b.conn, True
    for step in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
        row = conn.execute(step).fetchone()
        if row is not None and row[0]:  # busy: a reader in another connection holds an old snapshot
            clean = False
    if not clean:
        report.notes.append("another connection kept the WAL checkpoint from finishing: the WAL may still hold the "
                            "forgotten records; close other users of the store and run forget again")
    return clean


TABLES_REWRITTEN = ("generations", "prompts", "feedback", "documents", "chunks", "embeddings", "chunk_embeddings",
                    "generation_text", "chunk_text", "embed_queue", "relations", "entities", "audit_log")


def _compact_postgres(b, report: ForgetReport, deleting_xid: str, wait_s: float = 30.0) -> bool:
    """VACUUM FULL rewrites each table (heap, TOAST, indexes) without the dead tuples; it cannot run
    inside a transaction (the backend's connection is in autocommit outside ``write()``).

    It copies a dead row into the new files while any snapshot might still see it: a standby's
    ``hot_standby_feedback`` (its horizon moves past the deletion only after it has replayed the
    commit and reported back, which takes longer than the commit takes to return here), a
    replication slot, or an open transaction in another session. Measured (benchmarks/store/
    forget_drill.md): with a standby, every row forgotten stayed in the files of both servers
    until a second run. So wait (up to ``wait_s``) until no horizon is at or before the deleting
    transaction, then rewrite; if one still is, say so (``files_clean`` False: run forget again)."""
    deadline = time.monotonic() + wait_s
    while (blockers := _older_horizons(b, deleting_xid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for table in TABLES_REWRITTEN:
        b.w.execute(f"VACUUM FULL {table}")
    report.notes.append("PostgreSQL: WAL segments (and a standby's WAL) keep the old rows until the server recycles them")
    if blockers:
        report.notes.append(f"PostgreSQL: {', '.join(blockers)} still held a snapshot from before the deletion, so the rewritten "
                            "files may keep the forgotten rows; run forget again once it has ended")
        return False
    return True


def _older_horizons(b, deleting_xid: str) -> list[str]:
    """What could still see rows deleted by ``deleting_xid``: standbys' feedback, slots, other sessions."""
    del_xid = int(deleting_xid) & 0xFFFFFFFF  # xid8 -> the 32-bit xid the catalog views show
    checks = {
        "a standby (hot_standby_feedback)": "SELECT backend_xmin FROM pg_stat_replication WHERE backend_xmin IS NOT NULL",
        "a replication slot": "SELECT xmin FROM pg_replication_slots WHERE xmin IS NOT NULL",
        "another session": "SELECT backend_xmin FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()",
    }
    found = []
    for what, sql in checks.items():
        # an xmin at or before the deletion blocks; compare by age, which is wraparound-safe
        for (xmin,) in b.w.execute(sql).fetchall():
            if int(b.w.execute("SELECT age(%s::xid) >= age(%s::text::xid)", (str(xmin), str(del_xid))).fetchone()[0]):
                found.append(what)
                break
    return found