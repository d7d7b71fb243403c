"""The store's encryption policy: which fields are sealed and under which key, kept in the store.

Before, each ``Store.open`` said which fields it encrypted: an opening without ``sensitive=`` (and
every CLI write) stored plaintext in an "encrypted" store. Now the first admin who asks for
encryption records the policy in the store (table ``store_policy``), and every later opening,
Python or CLI, follows it:

- a write into a store whose policy seals fields needs the store's key; without it the write is
  refused (``StoreKeyError``), never made in clear;
- a read that returns records needs the key too: a missing or wrong key is one clear error, never
  empty results (keyword search cannot see sealed fields, so it would answer ``[]``);
- the key is named by its id (``crypto.key_id``: a hash, not the key), so a wrong key is told
  apart from a missing one; during ``rotate-key`` values under the old and the new key are both
  readable (``rotating_to``).

>>> Policy(frozenset({"prompt", "text"}), "ab12").describe()
'prompt, text sealed under key ab12'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from genzoo.core.errors import GenzooError

# Fields a policy may seal. prompt and text are BLOBs (SQLite) or BYTEA twins (PostgreSQL); the
# others are text columns and hold ``crypto.seal_text`` values. The manifest, which repeats the
# prompt and hashes the output, is sealed whole whenever any field is.
FIELDS = ("prompt", "text", "session_id", "label", "comment", "quality")


@dataclass(frozen=True)
class Policy:
    sensitive: frozenset[str]
    key_id: str | None  # hex id of the key that seals new values
    rotating_to: str | None = None  # hex id of the next key while a rotation runs

    @property
    def readable_ids(self) -> set[str]:
        """Ids of the keys a reader may need: values are under one of them."""
        return {k for k in (self.key_id, self.rotating_to) if k}

    def describe(self) -> str:
        if not self.sensitive:
            return "nothing sealed"
        out = f"{', '.join(sorted(self.sensitive))} sealed under key {self.key_id}"
        return out + (f" (rotating to key {self.rotating_to})" if self.rotating_to else "")


def check_fields(fields) -> frozenset[str]:
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    bad = sorted(set(fields) - set(FIELDS))
    if bad:
        raise GenzooError(f"fields {bad} cannot be sealed; choose from {', '.join(FIELDS)}")
    return frozenset(fields)


def read(backend) -> Policy | None:
    """The recorded policy, or None for a store that never asked for encryption."""
    rows = backend.rows("SELECT sensitive, key_id, rotating_to FROM store_policy WHERE id = 1")
    if not rows:
        return None
    r = rows[0]
    return Policy(frozenset(json.loads(r["sensitive"])), r["key_id"], r["rotating_to"])


def write(backend, policy: Policy) -> None:
    """Replace the policy (inside ``backend.write()``)."""
    backend.execute("DELETE FROM store_policy WHERE id = 1")
    backend.insert("store_policy", {"id": 1, "sensitive": json.dumps(sorted(policy.sensitive)), "key_id": policy.key_id,
                                    "rotating_to": policy.rotating_to, "updated_at": time.time()})
