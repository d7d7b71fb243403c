"""The store's schema as numbered migrations, applied in order, each in one transaction.

``PRAGMA user_version`` holds the version a file is at. Opening an older store upgrades it
(after a backup copy beside it); opening a store written by a newer genzoo is refused rather
than guessed at. A migration only adds: tables, columns, indexes, and derived data it can
rebuild from what is already stored (the full-text index), so an upgrade loses nothing.

Version 1 is the first released layout (records only); 2 adds search (full-text index and
embeddings); 3 adds documents and chunks (for RAG) and per-generation quality scores; 4 adds
what RAG needs to search chunks (sha256 for dedup, line spans, a full-text index, vectors) and the
relationship graph (entities, relations); 5 adds a covering index of the columns search filters on;
6 makes a document's identity per owner (owner, uri, sha256); 7 records the store's encryption policy.
Times are UTC seconds since the epoch (REAL): comparable, indexable, no time-zone parsing.
"""

from __future__ import annotations

from genzoo.store import schema_common as common

V1 = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'writer', 'reader')),
    created_at REAL NOT NULL
);
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    key_sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    family TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    config_sha256 TEXT,
    checkpoint_uri TEXT,
    checkpoint_sha256 TEXT,
    checkpoint_blob BLOB,
    metrics TEXT NOT NULL DEFAULT '{}',
    lineage TEXT NOT NULL DEFAULT '{}',
    parent_id INTEGER REFERENCES models(id),
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX models_identity ON models(name, IFNULL(checkpoint_sha256, ''), IFNULL(config_sha256, ''));
CREATE TABLE prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    session_id TEXT,
    conversation_id TEXT,
    turn INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    model_id INTEGER REFERENCES models(id),
    family TEXT,
    prompt_id INTEGER REFERENCES prompts(id),
    owner_id INTEGER NOT NULL REFERENCES users(id),
    visibility TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'shared')),
    session_id TEXT,
    conversation_id TEXT,
    parent_id INTEGER REFERENCES generations(id),
    text TEXT,
    content BLOB,
    content_type TEXT,
    content_sha256 TEXT,
    manifest TEXT NOT NULL DEFAULT '{}',
    seed INTEGER,
    synthetic INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation_id INTEGER NOT NULL REFERENCES generations(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    rating REAL,
    label TEXT,
    comment TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX feedback_generation ON feedback(generation_id);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user_id INTEGER,
    action TEXT NOT NULL,
    target TEXT,
    target_id INTEGER,
    detail TEXT NOT NULL DEFAULT '{}'
);
"""

# Full-text index: standalone (not over the generations table), so the store decides what is
# indexed: text fields marked sensitive are encrypted at rest and must not be indexed in clear.
V2 = """
CREATE VIRTUAL TABLE generations_fts USING fts5(prompt, text, family, tokenize = 'porter unicode61 remove_diacritics 2');
INSERT INTO generations_fts(rowid, prompt, text, family)
    SELECT g.id, IFNULL(p.text, ''), IFNULL(g.text, ''), IFNULL(g.family, '')
    FROM generations g LEFT JOIN prompts p ON p.id = g.prompt_id;
CREATE TABLE embeddings (
    generation_id INTEGER NOT NULL REFERENCES generations(id),
    space TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (space, generation_id)
) WITHOUT ROWID;
""" + common.GENERATION_INDEXES  # the filters' columns (shared with the other backend)

V3 = common.v3(common.SQLITE)

# RAG and the relationship graph (schema_common: the same tables on PostgreSQL but for types); the
# chunks' full-text index here is an FTS5 table (PostgreSQL: a tsvector table). Identical chunks
# are stored once per document (round trip) but searched once: ``duplicate_of`` points at the
# first copy, which alone has full-text and vector rows. A re-indexed, changed document
# supersedes the older row. Relations hold only edges no foreign key already gives (the graph
# derives those from the columns): user-given ones, extracted entities, and the chunks an answer cites.
V4 = common.v4(common.SQLITE, """
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, uri, tokenize = 'porter unicode61 remove_diacritics 2');
""")

# Keyword search joins each full-text match to its generation to apply the filters. A lookup in
# the table reads a page of wide rows (text, manifest) per match: ~4.7 of 7.5 ms for ~940 matches
# at 100,000 records; in this narrow index, ordered by id like the table, 1-2 ms
# (benchmarks/README.md, section 19). The search names it (INDEXED BY): the planner prefers the
# table's rowid for an id lookup whatever the row width.
V5 = """
CREATE INDEX generations_search ON generations(id, owner_id, visibility, model_id, family, kind, created_at, synthetic);
"""

# Document identity is per owner (schema_common.DOCUMENTS_PER_OWNER).
V6 = common.DOCUMENTS_PER_OWNER

# The encryption policy is the store's, not each opener's (schema_common.store_policy).
V7 = common.store_policy(common.SQLITE)

MIGRATIONS: dict[int, str] = {1: V1, 2: V2, 3: V3, 4: V4, 5: V5, 6: V6, 7: V7}
LATEST = max(MIGRATIONS)
