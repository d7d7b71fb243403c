"""Key rotation: every sealed value re-encrypted under a new key, in place, surviving a SIGKILL.

The order is what makes it crash-safe:

1. the new key is written to the key file first, above the old key(s) (atomically, mode 0600,
   fsynced): from then on the file decrypts values under either key;
2. the policy records ``rotating_to`` = the new key's id: openings accept either key meanwhile;
3. values are re-encrypted in batches, one transaction each (a value is either wholly old or
   wholly new; a killed run leaves a mix, all of it readable with the key file);
4. the policy's ``key_id`` becomes the new id, in the transaction that ends the rotation.

Running ``rotate-key`` again after a crash resumes at step 3 with the key file's new key (it does
not make a third key). The old key stays in the file, below the new one, for backups made before.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from genzoo.core.atomic import write_atomic_file
from genzoo.core.errors import GenzooError
from genzoo.store import policy as P
from genzoo.store.crypto import (TEXT_PREFIX, Keyring, StoreKeyError, encode_key, is_sealed_text, keyring_from_file, new_key,
                                 open_text, seal_text)

MANIFEST_CONTEXT = b"generations.manifest"


@dataclass
class RotationReport:
    old_key_id: str
    new_key_id: str
    key_file: str
    reencrypted: dict[str, int]
    resumed: bool

    @property
    def total(self) -> int:
        return sum(self.reencrypted.values())


def rotate_key(store, key_file, *, batch: int = 500, progress=None) -> RotationReport:
    """Re-seal every encrypted value of ``store`` under a new key kept in ``key_file`` (admin)."""
    store._require("rotate the store key", ("admin",), "store_policy")
    if not isinstance(batch, int) or batch < 1:
        raise GenzooError(f"batch must be a positive whole number, got {batch!r}")
    policy = store._policy
    if policy is None or not policy.sensitive:
        raise GenzooError("this store seals nothing, so there is no key to rotate; set a policy first "
                          "(`genzoo store policy --seal prompt,text`)")
    path = Path(key_file).expanduser()
    resumed = policy.rotating_to is not None
    if resumed:
        ring = keyring_from_file(path)
        if ring.primary.hex() != policy.rotating_to:
            raise StoreKeyError(f"a rotation to key {policy.rotating_to} was interrupted, and {path} does not start with that "
                                "key; give the key file the interrupted run wrote")
    else:
        ring = _write_new_key(path, store._ring())
        policy = P.Policy(policy.sensitive, policy.key_id, ring.primary.hex())
        with store.backend.write():
            P.write(store.backend, policy)
    store.keyring, store._key_problem = ring, None
    counts = _reseal_all(store.backend, ring, batch, progress)
    done = P.Policy(policy.sensitive, ring.primary.hex(), None)
    with store.backend.write():
        P.write(store.backend, done)
        store.backend.audit(store.user.id, "rotate_key", "store_policy", None,
                            {"from": policy.key_id, "to": done.key_id, "values": sum(counts.values()), "resumed": resumed}, time.time())
    store._policy = done
    return RotationReport(policy.key_id, done.key_id, str(path), counts, resumed)


def _write_new_key(path: Path, current: Keyring) -> Keyring:
    """The key file with a new primary key above every key of ``current`` (and of the file, if it exists)."""
    old = [encode_key(current.keys[current.primary])] + [encode_key(k) for kid, k in current.keys.items() if kid != current.primary]
    if path.exists():
        kept = keyring_from_file(path)  # refuses a file others can read
        old += [encode_key(k) for k in kept.keys.values() if encode_key(k) not in old]
    header = "# genzoo store keys: the first seals new values, the others read older ones; keep this file secret\n"
    write_atomic_file(path, header + "\n".join([new_key()] + old) + "\n", private=True)
    return keyring_from_file(path)


def _reseal_all(b, ring: Keyring, batch: int, progress) -> dict[str, int]:
    col, where = b.SEALED_COLUMN, b.SEALED_WHERE
    blob = lambda v, ctx: ring.reencrypt(bytes(v), context=ctx)  # noqa: E731
    manifest = lambda v, ctx: json.dumps({"sealed": ring.reencrypt(bytes.fromhex(json.loads(v)["sealed"]), context=ctx).hex()})  # noqa: E731
    quality = lambda v, ctx: json.dumps({"sealed": _retext(ring, json.loads(v)["sealed"], ctx)})  # noqa: E731
    text = lambda v, ctx: _retext(ring, v, ctx)  # noqa: E731
    like_text = f"LIKE '{TEXT_PREFIX}%'"
    jobs = [  # (name, table, column, which rows, context, re-seal)
        ("generations.text", "generations", col, where, b"generations.text", blob),
        ("prompts.text", "prompts", col, where, b"generations.prompt", blob),
        ("generations.manifest", "generations", "manifest", "manifest LIKE '{\"sealed\":%'", MANIFEST_CONTEXT, manifest),
        ("generations.quality", "generations", "quality", "quality LIKE '{\"sealed\":%'", b"generations.quality", quality),
        ("generations.session_id", "generations", "session_id", f"session_id {like_text}", b"generations.session_id", text),
        ("prompts.session_id", "prompts", "session_id", f"session_id {like_text}", b"generations.session_id", text),
        ("feedback.label", "feedback", "label", f"label {like_text}", b"feedback.label", text),
        ("feedback.comment", "feedback", "comment", f"comment {like_text}", b"feedback.comment", text),
    ]
    counts: dict[str, int] = {}
    for name, table, column, cond, ctx, reseal in jobs:
        counts[name], last = 0, 0
        while True:
            with b.write():  # one batch, one transaction: a SIGKILL loses at most this batch's work, never a value
                rows = b.rows(f"SELECT id, {column} AS v FROM {table} WHERE {cond} AND id > ? ORDER BY id LIMIT ?", (last, batch))
                for r in rows:
                    new = reseal(r["v"], ctx)
                    if new != (bytes(r["v"]) if isinstance(r["v"], (bytes, memoryview)) else r["v"]):
                        b.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (new, r["id"]))
                        counts[name] += 1
            if not rows:
                break
            last = rows[-1]["id"]
            if progress is not None:
                progress(name, counts[name])
    return counts


def _retext(ring: Keyring, value: str, ctx: bytes) -> str:
    """A ``seal_text`` value under the primary key (unchanged if it already is)."""
    if not is_sealed_text(value):
        return value
    envelope = base64.urlsafe_b64decode(value[len(TEXT_PREFIX):].encode("ascii"))
    if ring.key_id_of(envelope) == ring.primary:
        return value
    return seal_text(ring, open_text(ring, value, context=ctx), context=ctx)
