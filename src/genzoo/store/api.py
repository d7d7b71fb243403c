"""``Store``: the generation store's Python API (the CLI and, later, the server call only this).

    store = Store.open("~/.genzoo/store.db")                # the local admin (no key: the file's owner)
    store = Store.open(path, api_key="gz_...")              # acting as the key's user and role
    gid = store.record(kind="text", prompt="def f(", text="def f(x): ...", manifest=manifest)
    hits = store.search("parse a date", mode="hybrid", family="gpt", min_rating=4)

Policy lives here, storage in a backend (``genzoo.store.sqlite`` now):
- roles: ``reader`` reads and searches; ``writer`` also records and gives feedback; ``admin``
  also manages users and keys, reads every record and the audit log;
- ownership: a generation is ``private`` (its owner and admins see it) unless recorded
  ``shared``; a record another user cannot see answers exactly like one that does not exist;
- every write, and every write refused, goes to the audit log; a write and its audit entry
  commit together or not at all;
- write path: redact (PII) -> embed -> encrypt the fields the store's policy seals -> one
  transaction (prompt, generation, full-text row, vector, audit). Fields stored encrypted are not
  put in the full-text index (it would hold them in clear); they stay findable by vector.
- encryption is the store's own policy (``genzoo.store.policy``): recorded when an admin first
  opens it with ``sensitive=``, followed by every later opening; without the store's key a write is
  refused and a read that returns records is one clear error.
Without an API key the caller is the local admin: whoever can open the file can read it anyway;
keys are what separate users of a shared store (the Python API here, the REST API later).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Callable

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store import policy as P
from genzoo.store import search as S
from genzoo.store.crypto import StoreKeyError, is_sealed_text, load_keyring, open_text, seal_text
from genzoo.store.encoders import default_encoder
from genzoo.store.records import KINDS, ROLES, VISIBILITIES, Feedback, Generation, Hit, ModelRecord, NewGeneration, User, sha256_hex

LOCAL_ADMIN = "local"
ENV_STORE = "GENZOO_STORE"
ENV_KEY = "GENZOO_API_KEY"
ENV_READ_URL = "GENZOO_STORE_READ_URL"  # a PostgreSQL hot standby for reads and searches
SENSITIVE_FIELDS = P.FIELDS
SEALED = "sealed"  # a manifest stored encrypted: {"sealed": hex of the envelope}; quality: {"sealed": seal_text}
CANDIDATES = 50  # each list fused contributes at least this many candidates (then k x 5)
MAX_TEXT_CHARS = 10_000_000


class AccessDenied(GenzooError):
    """The caller's role or ownership does not allow this."""


def default_store_path() -> Path:
    """~/.genzoo/store.db: the store when neither an argument nor GENZOO_STORE (``open_backend``) names one."""
    return Path.home() / ".genzoo" / "store.db"


def _default_redactor() -> Callable[[str], str] | None:
    """genzoo's PII redaction (``genzoo.store.pii``: Presidio + spaCy NER + detect-secrets), loaded
    on the first write that needs it: a read-only opening never pays its 1-3 s start."""
    import importlib.util

    if importlib.util.find_spec("presidio_analyzer") is None:  # the engine's own dependency is missing
        return None

    def redact(text: str) -> str:
        from genzoo.store.pii import redact as engine

        return engine(text).text

    return redact


class Store:
    def __init__(self, backend, user: User, *, encoder=None, redact=None, keyring=None, policy: P.Policy | None = None,
                 embed_on_write=True):
        self.backend, self._user = backend, user
        self._key_sha256: str | None = None  # set by open() for a caller with an API key: re-checked on every use
        self._named_entities: set[int] = set()  # entities this caller named (genzoo.store.graph.entity)
        self.encoder, self.redact, self.embed_on_write = encoder, redact, embed_on_write
        self._policy = policy
        self.sensitive = policy.sensitive if policy is not None else frozenset()
        self.keyring = keyring
        self._key_problem: str | None = None  # why this opening cannot read or write sealed values
        if self.sensitive:
            self._key_problem = _key_problem(policy, keyring)

    # ---- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | Path | None = None, *, api_key: str | None = None, encoder="default", redact=True,
             keyring=None, sensitive=(), embed_on_write: bool = True, read_url: str | None = None) -> "Store":
        """Open (creating or upgrading) a store. ``encoder``: "default" (the registered default:
        all-MiniLM-L6-v2, loaded on first use, once ``genzoo.tasks`` is imported; see
        ``genzoo.store.encoders``), None (keyword search only) or an object with ``space``, ``dim``,
        ``kind`` and ``encode``.
        ``redact``: True (genzoo's PII redaction), False, or a callable str -> str.
        ``sensitive``: fields to seal (``genzoo.store.policy.FIELDS``), with ``keyring`` or the key
        from the environment (see ``genzoo.store.crypto``): given by an admin to a store without a
        policy, it becomes the store's policy; later openings follow the store's policy whatever
        they pass (a different non-empty set is refused). ``read_url`` (PostgreSQL): a hot standby
        that serves reads and searches while writes go to ``url_or_path``, the primary."""
        if isinstance(encoder, str) and encoder == "default":  # chosen by the layer above (genzoo.store.encoders)
            encoder = default_encoder()  # before the file is touched: a refusal leaves nothing behind
        backend = open_backend(url_or_path, read_url=read_url)
        key = api_key if api_key is not None else os.environ.get(ENV_KEY)
        try:
            user = _authenticate(backend, key)
            if redact is True:
                redact = _default_redactor()
            elif redact is False:
                redact = None
            elif redact is not None and not callable(redact):
                raise GenzooError("redact must be True, False or a callable that takes and returns text")
            policy = _settle_policy(backend, user, P.check_fields(sensitive), keyring)
            if policy is not None and policy.sensitive and keyring is None:
                try:
                    keyring = load_keyring()
                except StoreKeyError:
                    keyring = None  # reported, once, by the first call that needs the key (_key_problem)
            store = cls(backend, user, encoder=encoder, redact=redact, keyring=keyring, policy=policy, embed_on_write=embed_on_write)
            store._key_sha256 = None if key is None else sha256_hex(key)  # _authenticate accepted it: a gz_ key
            return store
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- access ----------------------------------------------------------------------------------
    @property
    def user(self) -> User:
        """The caller, as the store holds them now: a store opened with an API key looks the key up
        again on every use (one indexed read), so a revoked key or a changed role takes effect on
        stores already open at their next call, not only on the next open."""
        if self._key_sha256 is not None:
            fresh = self.backend.user_by_key(self._key_sha256)
            if fresh is None:
                raise AccessDenied(f"the API key this store was opened with (user {self._user.name!r}) has been revoked; "
                                   "ask an admin for a new one and open the store again")
            self._user = fresh
        return self._user

    @user.setter
    def user(self, value: User) -> None:
        self._user = value

    @property
    def viewer(self) -> int | None:
        """Whose private records this caller sees besides shared ones (None: all, as admin)."""
        return None if self.user.role == "admin" else self.user.id

    def _require(self, action: str, roles: tuple[str, ...], target: str | None = None, target_id: int | None = None) -> None:
        user = self.user
        if user.role in roles:
            return
        with self.backend.write():
            self.backend.audit(user.id, "denied", target, target_id, {"attempted": action, "role": user.role}, time.time())
        raise AccessDenied(f"user {user.name!r} has role {user.role!r}, which cannot {action}; "
                           f"it needs one of: {', '.join(roles)} (ask an admin for a key with that role)")

    def create_user(self, name: str, role: str) -> tuple[User, str]:
        """A new user and their first API key (shown once: the store keeps only its sha256)."""
        self._require("create users", ("admin",), "users")
        if role not in ROLES:
            raise GenzooError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise GenzooError(f"a user name must be non-empty text of at most 200 characters, got {name!r}")
        with self.backend.write():
            if self.backend.user_by_name(name):
                raise GenzooError(f"user {name!r} already exists; give another name, or a new key with new_key({name!r})")
            user = self.backend.add_user(name, role)
            key = self._add_key(user)
            self.backend.audit(self.user.id, "create_user", "users", user.id, {"name": name, "role": role}, time.time())
        return user, key

    def new_key(self, name: str) -> str:
        self._require("issue API keys", ("admin",), "api_keys")
        with self.backend.write():
            user = self.backend.user_by_name(name)
            if user is None:
                raise GenzooError(f"no user {name!r}; create it with create_user")
            key = self._add_key(user)
            self.backend.audit(self.user.id, "new_key", "users", user.id, {"name": name}, time.time())
        return key

    def revoke_keys(self, name: str) -> int:
        self._require("revoke API keys", ("admin",), "api_keys")
        me = self.user.id  # before: an admin may revoke their own keys
        with self.backend.write():
            user = self.backend.user_by_name(name)
            if user is None:
                raise GenzooError(f"no user {name!r}")
            n = self.backend.revoke_keys(user.id)
            self.backend.audit(me, "revoke_keys", "users", user.id, {"name": name, "revoked": n}, time.time())
        return n

    def _add_key(self, user: User) -> str:
        key = "gz_" + secrets.token_urlsafe(32)  # 256 random bits: a plain sha256 suffices to store it
        self.backend.add_key(user.id, sha256_hex(key), key[:10])
        return key

    # ---- writing ---------------------------------------------------------------------------------
    def register_model(self, model: ModelRecord) -> int:
        """The model's id (an existing one when name, checkpoint sha256 and config sha256 match)."""
        self._require("register models", ("admin", "writer"), "models")
        if not isinstance(model, ModelRecord) or not model.name or not model.family:
            raise GenzooError("register_model takes a ModelRecord with at least a name and a family")
        for what in ("config", "metrics", "lineage"):
            _check_json(getattr(model, what), f"model {what}")
        with self.backend.write():
            mid = self.backend.add_model(model)
            self.backend.audit(self.user.id, "register_model", "models", mid, {"name": model.name, "family": model.family,
                                                                             "checkpoint_sha256": model.checkpoint_sha256}, time.time())
        return mid

    def record(self, generation: NewGeneration | None = None, **fields) -> int:
        """Store one generation; returns its id. Searchable by keyword and vector once this returns."""
        return self.record_many([generation if generation is not None else NewGeneration(**fields)])[0]

    def record_many(self, generations: list[NewGeneration]) -> list[int]:
        """Store several generations in one transaction: all of them or, on any error, none."""
        self._require("record generations", ("admin", "writer"), "generations")
        if self.sensitive:
            self._ring(write=True)  # before any work: a store that seals refuses writes it cannot seal
        prepared = [self._prepare(g) for g in generations]
        vectors = self._embed_new(prepared)
        ids = []
        with self.backend.write():
            for (g, row, prompt), vec in zip(prepared, vectors):
                row["created_at"] = now = time.time()
                if g.parent_id is not None and not self.backend.visible(g.parent_id, self.viewer):
                    raise GenzooError(f"parent generation {g.parent_id} does not exist (or is not visible to you)")
                if g.model_id is not None and self.backend.get_model(g.model_id) is None:
                    raise GenzooError(f"model {g.model_id} is not in this store; register it first with register_model")
                if prompt is not None:
                    sealed = self._seal(prompt, "prompt")
                    # a plain sha256 of a short secret is a dictionary attack away from it: hash what is stored
                    row["prompt_id"] = self.backend.add_prompt(sealed, sha256_hex(sealed), self.user.id,
                                                               self._seal(g.session_id, "session_id"), g.conversation_id, g.turn, now)
                text = row["text"]
                row["text"] = self._seal(text, "text")
                if "text" in self.sensitive and row["content"] is None and text is not None:
                    row["content_sha256"] = sha256_hex(row["text"])
                row["session_id"] = self._seal(row["session_id"], "session_id")
                if "quality" in self.sensitive and row["quality"] != "{}":
                    row["quality"] = json.dumps({SEALED: self._seal(row["quality"], "quality")})
                if self.sensitive:  # manifests repeat the prompt and hash the output: sealed whole
                    row["manifest"] = json.dumps({SEALED: self._ring(write=True).encrypt(row["manifest"], context=b"generations.manifest").hex()})
                gid = self.backend.add_generation(row)
                self.backend.index_text(gid, "" if prompt is None or "prompt" in self.sensitive else prompt,
                                        "" if text is None or "text" in self.sensitive else text, g.family or "")
                if vec is not None:
                    self.backend.put_embeddings(vec[0], [(gid, np.asarray(vec[1], np.float32).tobytes())])
                self.backend.audit(self.user.id, "record", "generations", gid,
                                   {"kind": g.kind, "model_id": g.model_id, "content_sha256": row["content_sha256"]}, now)
                ids.append(gid)
        return ids

    def _prepare(self, g: NewGeneration) -> tuple[NewGeneration, dict, str | None]:
        if not isinstance(g, NewGeneration):
            raise GenzooError(f"record takes NewGeneration objects (or its fields as keywords), got {type(g).__name__}")
        if g.kind not in KINDS:
            raise GenzooError(f"kind must be one of {', '.join(KINDS)}, got {g.kind!r}")
        if g.visibility not in VISIBILITIES:
            raise GenzooError(f"visibility must be one of {', '.join(VISIBILITIES)}, got {g.visibility!r}")
        for what, value in (("text", g.text), ("prompt", g.prompt)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_CHARS):
                raise GenzooError(f"{what} must be text of at most {MAX_TEXT_CHARS:,} characters")
        if g.content is not None and not isinstance(g.content, (bytes, bytearray)):
            raise GenzooError(f"content must be bytes (e.g. PNG or .npy bytes), got {type(g.content).__name__}")
        if g.text is None and g.content is None:
            raise GenzooError("a generation needs its output: text=... or content=bytes")
        if not isinstance(g.synthetic, bool):
            raise GenzooError("synthetic must be True (model output) or False (real data)")
        for what in ("parent_id", "model_id", "seed", "turn"):
            _check_int(getattr(g, what), what)
        for what in ("family", "session_id", "conversation_id", "content_type", "space"):
            value = getattr(g, what)
            if value is not None:
                if not isinstance(value, str) or len(value) > 10_000:
                    raise GenzooError(f"{what} must be text of at most 10,000 characters, got {type(value).__name__}")
                S.check_text(value, what)
                if "\x00" in value:
                    raise GenzooError(f"{what} must not hold a NUL character")
        manifest, quality = _check_json(g.manifest, "manifest"), _check_json(g.quality, "quality")
        text, prompt = g.text, g.prompt
        if self.redact is not None:
            text = None if text is None else self.redact(text)
            prompt = None if prompt is None else self.redact(prompt)
            m = _redact_json(json.loads(manifest), self.redact)  # manifests repeat the prompt, the input, options ...
            if (text, prompt) != (g.text, g.prompt) or json.dumps(m, ensure_ascii=False) != manifest:
                manifest = json.dumps({**m, "redacted": True}, ensure_ascii=False)
        content = bytes(g.content) if g.content is not None else None
        row = {
            "kind": g.kind, "model_id": g.model_id, "family": g.family, "owner_id": self.user.id, "visibility": g.visibility,
            "session_id": g.session_id, "conversation_id": g.conversation_id, "parent_id": g.parent_id, "text": text,
            "content": content, "content_type": g.content_type,
            "content_sha256": sha256_hex(content) if content is not None else sha256_hex(text),
            "manifest": manifest, "seed": g.seed, "synthetic": int(g.synthetic), "quality": quality,
        }
        return g, row, prompt

    def _embed_new(self, prepared) -> list[tuple[str, object] | None]:
        out: list = [None] * len(prepared)
        todo = []
        for i, (g, row, _) in enumerate(prepared):
            if g.embedding is not None:
                space = g.space or (self.encoder.space if self.encoder is not None and g.kind == self.encoder.kind else None)
                if space is None:
                    raise GenzooError(f"an embedding for a {g.kind} generation needs space=... (the encoder's name, e.g. 'digits-cnn-64')")
                try:
                    vec = np.asarray(g.embedding, np.float32).reshape(-1)
                except (TypeError, ValueError, OverflowError):
                    raise GenzooError("embedding must be a list or array of numbers") from None
                if vec.size == 0 or not np.all(np.isfinite(vec)):
                    raise GenzooError("embedding must hold at least one number, all finite")
                out[i] = (space, vec)
            elif self.embed_on_write and self.encoder is not None and g.kind == self.encoder.kind and row["text"]:
                todo.append(i)
        if todo:
            vecs = self.encoder.encode([prepared[i][1]["text"] for i in todo])
            for i, v in zip(todo, vecs):
                out[i] = (self.encoder.space, v)
        return out

    def _ring(self, *, write: bool = False):
        """The keyring, or one clear ``StoreKeyError`` saying which key this store needs."""
        if self._key_problem:
            raise StoreKeyError(self._key_problem)
        if self.keyring is None:  # a store sealed before policies were recorded: the key comes from the environment
            self.keyring = load_keyring()
        if write and self._policy is not None and self.keyring.primary.hex() not in self._policy.readable_ids:
            raise StoreKeyError(f"this store seals new values under key {self._policy.key_id}, but the first key given is "
                                f"{self.keyring.primary.hex()}; put the store's key first, or change keys with "
                                "`genzoo store rotate-key`")
        return self.keyring

    def _need_key(self) -> None:
        """Reads that return records call this first: without the key they would fail on the first
        sealed record, or (keyword search) quietly find nothing."""
        if self.sensitive:
            self._ring()

    def _seal(self, value, field: str):
        if value is None or field not in self.sensitive:
            return value
        if field in ("prompt", "text"):  # BLOB / BYTEA columns
            return self._ring(write=True).encrypt(value, context=f"generations.{field}".encode())
        return seal_text(self._ring(write=True), value, context=_CONTEXTS[field])

    def _open(self, value, field: str):
        if isinstance(value, (bytes, bytearray)) and field in ("prompt", "text"):
            return self._ring().decrypt_text(value, context=f"generations.{field}".encode())
        if is_sealed_text(value):
            return open_text(self._ring(), value, context=_CONTEXTS[field])
        return value

    def feedback(self, generation_id: int, *, rating: float | None = None, label: str | None = None, comment: str | None = None) -> int:
        _check_int(generation_id, "a generation id", required=True)
        self._require("give feedback", ("admin", "writer"), "feedback", generation_id)
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float)) or not S._finite(rating)):
            raise GenzooError(f"rating must be a finite number, got {rating!r}")
        if rating is None and label is None and comment is None:
            raise GenzooError("feedback needs a rating, a label or a comment")
        for what, v in (("label", label), ("comment", comment)):
            if v is not None and (not isinstance(v, str) or len(v) > 100_000):
                raise GenzooError(f"{what} must be text of at most 100,000 characters")
        if self.redact is not None:
            label = None if label is None else self.redact(label)
            comment = None if comment is None else self.redact(comment)
        label, comment = self._seal(label, "label"), self._seal(comment, "comment")
        with self.backend.write():
            if not self.backend.visible(generation_id, self.viewer):
                raise GenzooError(f"no generation {generation_id} (or it is not visible to you)")
            fid = self.backend.add_feedback(generation_id, self.user.id, rating, label, comment, time.time())
            self.backend.audit(self.user.id, "feedback", "generations", generation_id,
                               {"feedback_id": fid, "rating": rating, "label": None if "label" in self.sensitive else label}, time.time())
        return fid

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, generation_id: int) -> Generation:
        if not isinstance(generation_id, int) or isinstance(generation_id, bool):
            raise GenzooError(f"a generation id is a whole number, got {generation_id!r}")
        self._need_key()
        g = self.backend.get_generation(generation_id) if self.backend.visible(generation_id, self.viewer) else None
        if g is None:
            raise GenzooError(f"no generation {generation_id} in {self.backend.url} (or it is not visible to you)")
        return self._decrypted(g)

    def _decrypted(self, g: Generation) -> Generation:
        g.text, g.prompt = self._open(g.text, "text"), self._open(g.prompt, "prompt")
        g.session_id = self._open(g.session_id, "session_id")
        if set(g.manifest) == {SEALED}:
            g.manifest = json.loads(self._ring().decrypt_text(bytes.fromhex(g.manifest[SEALED]), context=b"generations.manifest"))
        if set(g.quality) == {SEALED} and is_sealed_text(g.quality[SEALED]):
            g.quality = json.loads(self._open(g.quality[SEALED], "quality"))
        return g

    def feedback_for(self, generation_id: int) -> list[Feedback]:
        self.get(generation_id)  # visibility
        out = self.backend.feedback_for(generation_id)
        for f in out:
            f.label, f.comment = self._open(f.label, "label"), self._open(f.comment, "comment")
        return out

    def audit_log(self, limit: int = 100):
        self._require("read the audit log", ("admin",), "audit_log")
        return self.backend.audit_entries(limit)

    def forget(self, *, user: str | None = None, older_than: float | None = None, dry_run: bool = False):
        """Remove a user's records, or those created before ``older_than`` (seconds since the epoch),
        leaving no trace of their text in the database files; admins only (``genzoo.store.forget``)."""
        from genzoo.store.forget import forget

        return forget(self, user=user, older_than=older_than, dry_run=dry_run)

    def integrity_check(self) -> str:
        return self.backend.integrity_check()

    def users(self) -> list[dict]:
        """Every user: name, role, created_at, active_keys, keys, last_key_at (admin; never a key or its hash)."""
        self._require("list users and keys", ("admin",), "users")
        return self.backend.users_with_keys()

    def policy(self) -> dict:
        """How this store protects what it holds, read-only: the backend and schema version, whether
        redaction is on and which fields this opening encrypts, and how many stored values are
        encrypted per field (what earlier writers did, whatever this opening's settings)."""
        from genzoo.store.crypto import ENV_KEY as ENV_STORE_KEY, ENV_KEY_FILE

        self.user  # a revoked key is refused here too
        p = self._policy
        return {"backend": self.backend.url.split(":", 1)[0], "url": self.backend.url, "schema_version": self.backend.schema_version(),
                "redaction": self.redact is not None, "sensitive": sorted(self.sensitive),
                "key_id": p.key_id if p is not None else None, "rotating_to": p.rotating_to if p is not None else None,
                "key_configured": bool(os.environ.get(ENV_STORE_KEY, "").strip() or os.environ.get(ENV_KEY_FILE)),
                "key_problem": self._key_problem, "encrypted": self.backend.sealed_counts()}

    def set_policy(self, sensitive) -> P.Policy:
        """Change which fields new records seal (admin). Values already stored keep their form: a
        field dropped from the policy stays sealed where it was; ``rotate_key`` re-seals."""
        self._require("change the encryption policy", ("admin",), "store_policy")
        fields = P.check_fields(sensitive)
        ring = self._ring(write=True) if fields and self._policy is not None and self._policy.sensitive else None
        if fields and ring is None:
            ring = self.keyring or load_keyring()
        old = self._policy
        new = P.Policy(fields, ring.primary.hex() if ring is not None else (old.key_id if old else None), old.rotating_to if old else None)
        with self.backend.write():
            P.write(self.backend, new)
            self.backend.audit(self.user.id, "set_policy", "store_policy", None,
                               {"sensitive": sorted(fields), "before": sorted(old.sensitive) if old else [], "key_id": new.key_id}, time.time())
        self._policy, self.sensitive, self.keyring = new, new.sensitive, ring or self.keyring
        self._key_problem = _key_problem(new, self.keyring) if new.sensitive else None
        return new

    def rotate_key(self, key_file, *, batch: int = 500, progress=None):
        """Re-encrypt every sealed value under a new key, crash-safely (``genzoo.store.rotation``)."""
        from genzoo.store.rotation import rotate_key

        return rotate_key(self, key_file, batch=batch, progress=progress)

    def check(self, space: str | None = None, kind: str = "text") -> dict:
        """The store's integrity (admin, read-only): the database's own check and whether the
        full-text index, the vectors and the records agree. ``problems``: what is wrong (empty:
        consistent); ``counts``: every count checked; ``space``: also count ``kind`` records with no
        vector there yet (not a problem: the next vector search embeds them)."""
        self._require("check the store", ("admin",), "store")
        integrity = self.backend.integrity_check()
        counts = self.backend.consistency(space, kind)
        problems = [] if integrity == "ok" else [f"database integrity: {integrity}"]
        problems += [f"{n} {what}" for what, n in counts.items() if n and what != "unembedded" and not what.startswith("vectors:")]
        return {"integrity": integrity, "counts": counts, "problems": problems, "consistent": not problems}

    def search(self, query: str, *, mode: str = "hybrid", k: int = 10, fusion: str = "rrf", alpha: float = 0.5, **filters) -> list[Hit]:
        """Generations matching ``query``, best first. ``mode``: hybrid, keyword or vector; ``fusion``
        (hybrid): rrf (k=60) or weighted (``alpha`` on the vector side). Filters: model, family, user,
        kind, since, until, min_rating, synthetic. An empty query lists the newest matches."""
        query, k = S.check_query(query), S.check_k(k)
        self._need_key()
        if mode not in S.MODES:
            raise GenzooError(f"mode must be one of {', '.join(S.MODES)}, got {mode!r}")
        if fusion not in S.FUSIONS:
            raise GenzooError(f"fusion must be one of {', '.join(S.FUSIONS)}, got {fusion!r}")
        f = S.Filters.make(**filters)
        n = max(CANDIDATES, 5 * k)
        terms = S.query_terms(query)
        if not query.strip():
            return self._hits([(gid, 0.0) for gid in self.backend.latest(f, self.viewer, k)], {}, {})
        keyword = self.backend.keyword(terms, f, self.viewer, n) if mode != "vector" else []
        vector = self._vector(query, f, n) if mode != "keyword" else []
        if mode == "keyword":
            scored = keyword[:k]
        elif mode == "vector":
            scored = vector[:k]
        else:
            fused = S.rrf([[i for i, _ in keyword], [i for i, _ in vector]]) if fusion == "rrf" else S.weighted(keyword, vector, alpha)
            scored = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        kw_rank = {gid: r for r, (gid, _) in enumerate(keyword, 1)}
        vec_rank = {gid: r for r, (gid, _) in enumerate(vector, 1)}
        return self._hits(scored, kw_rank, vec_rank)

    def similar(self, vector, *, space: str, k: int = 10, **filters) -> list[Hit]:
        """Generations whose stored vector in ``space`` is nearest to ``vector`` (cosine), e.g. images
        by their ``DigitsImageEncoder`` features; the same filters and visibility as ``search``."""
        k, f = S.check_k(k), S.Filters.make(**filters)
        self._need_key()
        S.check_space(space)
        try:
            v = np.asarray(vector, np.float32).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise GenzooError("the query vector must be a list or array of numbers") from None
        if not np.all(np.isfinite(v)) or not v.any():
            raise GenzooError("the query vector must be finite and not all zeros")
        found = self.backend.vector(space, v, f, self.viewer, k)
        return self._hits(found, {}, {gid: r for r, (gid, _) in enumerate(found, 1)})

    def duplicates(self, kind: str = "text", *, threshold: float | None = None, space: str = "digits-cnn-64", **filters) -> dict:
        """Exact and near-duplicate clusters among the generations this caller may see (read-only):
        text by MinHash LSH (Jaccard, default 0.8), images by cosine of their vectors in ``space``
        (default 0.998); the same filters as ``search``. See ``genzoo.store.generation_dedup``."""
        from genzoo.store.generation_dedup import find_duplicates

        return find_duplicates(self, kind, threshold=threshold, space=space, **filters)

    def _vector(self, query: str, f: S.Filters, n: int):
        if self.encoder is None:
            raise GenzooError("vector search needs a text encoder; open the store with an encoder, or use mode='keyword'")
        q = self.encoder.encode([query])[0]
        return self.backend.vector(self.encoder.space, q, f, self.viewer, n, pending=self._embed_pending, kind=self.encoder.kind)

    def _embed_pending(self, rows: list[tuple[int, object]]):
        """Vectors for generations recorded without one (e.g. by the CLI, which does not load the
        encoder to write). Kept in the index; also stored when this caller may write."""
        vecs = np.asarray(self.encoder.encode([self._open(t, "text") for _, t in rows]), np.float32)
        if self.user.role in ("admin", "writer"):
            with self.backend.write():
                self.backend.put_embeddings(self.encoder.space, [(gid, v.tobytes()) for (gid, _), v in zip(rows, vecs)])
                self.backend.audit(self.user.id, "embed", "generations", None, {"space": self.encoder.space, "count": len(rows)}, time.time())
        return vecs

    def _hits(self, scored, kw_rank, vec_rank) -> list[Hit]:
        gens = self.backend.get_generations([gid for gid, _ in scored])
        return [Hit(self._decrypted(gens[gid]), float(s), kw_rank.get(gid), vec_rank.get(gid)) for gid, s in scored if gid in gens]


# Manifest values that are names of things, not free text: never PII, and a hex digest would only
# tempt a secrets detector.
_NOT_FREE_TEXT = ("sha256", "hash", "format", "family", "kind", "content_type", "dtype", "device", "checkpoint", "version")


def _redact_json(value, redact, key: str = ""):
    """``value`` with every free-text string in it redacted (dicts and lists walked)."""
    if isinstance(value, dict):
        return {k: _redact_json(v, redact, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, redact, key) for v in value]
    if isinstance(value, str) and value and not any(key.endswith(n) for n in _NOT_FREE_TEXT):
        return redact(value)
    return value


_CONTEXTS = {"session_id": b"generations.session_id", "quality": b"generations.quality",
             "label": b"feedback.label", "comment": b"feedback.comment"}


def _settle_policy(backend, user: User, wanted: frozenset[str], keyring) -> P.Policy | None:
    """The store's policy after this opening: the recorded one, or the one an admin asks for."""
    policy = P.read(backend)
    if not wanted or (policy is not None and wanted == policy.sensitive):
        return policy
    if policy is not None and policy.sensitive:
        raise GenzooError(f"this store's policy seals {', '.join(sorted(policy.sensitive))}; open it without sensitive= "
                          "(every opening follows the store's policy), or change the policy with `genzoo store policy --seal FIELDS` (admin)")
    if user.role != "admin":
        raise AccessDenied(f"user {user.name!r} cannot set the store's encryption policy (admins only); open it without sensitive=")
    ring = keyring if keyring is not None else load_keyring()
    policy = P.Policy(wanted, ring.primary.hex())
    with backend.write():
        P.write(backend, policy)
        backend.audit(user.id, "set_policy", "store_policy", None, {"sensitive": sorted(wanted), "before": [], "key_id": policy.key_id}, time.time())
    return policy


def _key_problem(policy: P.Policy, keyring) -> str | None:
    """Why ``keyring`` cannot serve a store under ``policy`` (None: it can)."""
    from genzoo.store.crypto import ENV_KEY as ENV_STORE_KEY, ENV_KEY_FILE

    if keyring is None:
        return (f"this store seals {', '.join(sorted(policy.sensitive))} under key {policy.key_id}, and no key is given: "
                f"set {ENV_STORE_KEY} to that key (or {ENV_KEY_FILE} to a file holding it)")
    held = {k.hex() for k in keyring.keys}
    if not held & policy.readable_ids:
        return (f"wrong store key: this store seals {', '.join(sorted(policy.sensitive))} under key {policy.key_id}, "
                f"and the key(s) given are {', '.join(sorted(held))}; set {ENV_STORE_KEY} to the store's key")
    return None


def _check_int(value, what: str, *, required: bool = False) -> None:
    """A whole number a database column can hold (None allowed unless ``required``)."""
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not -S.MAX_ID - 1 <= value <= S.MAX_ID:
        raise GenzooError(f"{what} must be a whole number within 64 bits, got {value!r}"[:300])


def _check_json(value, what: str) -> str:
    if not isinstance(value, dict):
        raise GenzooError(f"{what} must be a dict of plain values, got {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise GenzooError(f"{what} must hold only plain JSON values (numbers, strings, lists, dicts): {e}") from e


def open_backend(url_or_path, read_url: str | None = None):
    """A backend for a path or URL: ``sqlite:///PATH``, a file path (default: ``GENZOO_STORE`` or
    ~/.genzoo/store.db), or ``postgresql://...`` (with ``read_url``: a read replica of it)."""
    from genzoo.store.sqlite import SqliteBackend

    if url_or_path is None and os.environ.get(ENV_STORE):
        url_or_path = os.environ[ENV_STORE]  # a path or a URL, parsed below like an argument (a Path() of
        # "sqlite:////tmp/s.db" is the relative folder "sqlite:/tmp", which once put stores under the cwd)
    text = str(url_or_path) if url_or_path is not None else ""
    if text.startswith(("postgres://", "postgresql://")):
        from genzoo.store.postgres import PostgresBackend

        read_url = read_url or os.environ.get(ENV_READ_URL) or None  # e.g. the CLI searching on a standby
        if read_url is not None and not str(read_url).startswith(("postgres://", "postgresql://")):
            raise GenzooError(f"read_url must be a postgresql:// URL of a standby of the primary, got {read_url!r}")
        return PostgresBackend(text, read_url=read_url)
    if read_url is not None:
        raise GenzooError("read_url (a read replica) needs a PostgreSQL store; a SQLite file has no replicas")
    if url_or_path is None:
        return SqliteBackend(default_store_path())
    if text.startswith("sqlite:///"):
        return SqliteBackend(text[len("sqlite:///"):])
    if "://" in text:
        raise GenzooError(f"unknown store URL {text!r}; give a file path, sqlite:///PATH or postgresql://...")
    return SqliteBackend(text)


def _authenticate(backend, api_key: str | None) -> User:
    if api_key is None:
        with backend.write():
            user = backend.user_by_name(LOCAL_ADMIN)
            if user is None:
                user = backend.add_user(LOCAL_ADMIN, "admin")
                backend.audit(user.id, "create_user", "users", user.id, {"name": LOCAL_ADMIN, "role": "admin", "why": "first open"}, time.time())
        return user
    if not isinstance(api_key, str) or not api_key.startswith("gz_"):
        raise AccessDenied("that is not a genzoo API key (they start with 'gz_'); ask an admin for one")
    try:
        api_key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes that were never UTF-8 (no key we issue has one)
        raise AccessDenied("that is not a genzoo API key (it is not valid UTF-8 text); ask an admin for one") from None
    user = backend.user_by_key(sha256_hex(api_key))
    if user is None:
        raise AccessDenied("unknown or revoked API key; ask an admin for a new one")
    return user
