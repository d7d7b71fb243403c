import os
import sqlite3
import stat

import pytest

from genzoo.core.errors import GenzooError
from genzoo.store.crypto import (HEADER_BYTES, NONCE_BYTES, DecryptionError, Keyring, StoreKeyError, generate_key,
                                 is_encrypted, key_id, load_keyring, new_key)

SECRET = "patient Jane Roe, card 4111 1111 1111 1111, asked about dosage"


@pytest.fixture
def ring():
    return Keyring.from_keys([new_key()])


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("GENZOO_STORE_KEY", raising=False)
    monkeypatch.delenv("GENZOO_STORE_KEY_FILE", raising=False)


def test_round_trip_text_and_bytes(ring):
    blob = ring.encrypt(SECRET, context=b"generations.prompt")
    assert is_encrypted(blob) and SECRET.encode() not in blob
    assert ring.decrypt_text(blob, context=b"generations.prompt") == SECRET
    raw = os.urandom(1000)
    assert ring.decrypt(ring.encrypt(raw)) == raw
    assert ring.decrypt_text(ring.encrypt("")) == ""
    # a fresh nonce each time: equal plaintexts do not give equal ciphertexts
    assert ring.encrypt(SECRET) != ring.encrypt(SECRET)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "version"])
def test_any_flipped_bit_is_detected(ring, where):
    blob = bytearray(ring.encrypt(SECRET))
    index = {"version": 3, "nonce": HEADER_BYTES, "ciphertext": HEADER_BYTES + NONCE_BYTES + 5, "tag": len(blob) - 1}[where]
    blob[index] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.decrypt(bytes(blob))


def test_truncated_or_foreign_values_are_refused(ring):
    blob = ring.encrypt(SECRET)
    for bad in (blob[:-1], blob[:HEADER_BYTES + 3], b"plain text", SECRET.encode()):
        with pytest.raises(DecryptionError):
            ring.decrypt(bad)
    with pytest.raises(DecryptionError, match="bytes"):
        ring.decrypt(SECRET)


def test_a_value_moved_to_another_field_does_not_decrypt(ring):
    blob = ring.encrypt(SECRET, context=b"generations.prompt:7")
    with pytest.raises(DecryptionError, match="another field"):
        ring.decrypt(blob, context=b"generations.prompt:8")


def test_wrong_key_says_which_key_is_missing(ring):
    blob = ring.encrypt(SECRET)
    other = Keyring.from_keys([new_key()])
    with pytest.raises(StoreKeyError, match=ring.primary.hex()):
        other.decrypt(blob)
    assert issubclass(StoreKeyError, GenzooError) and issubclass(DecryptionError, GenzooError)
    # a forged header naming the right key id with the wrong key's ciphertext fails authentication
    forged = bytearray(other.encrypt(SECRET))
    forged[4:HEADER_BYTES] = ring.primary
    with pytest.raises(DecryptionError):
        ring.decrypt(bytes(forged))


def test_rotation_keeps_old_values_readable_and_moves_them(tmp_path, no_env, monkeypatch):
    path = tmp_path / "keys" / "store.key"
    first = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("GENZOO_STORE_KEY_FILE", str(path))
    old_ring = load_keyring()
    assert old_ring.primary.hex() == first
    blob = old_ring.encrypt(SECRET, context=b"c")
    with pytest.raises(StoreKeyError, match="already exists"):
        generate_key(path)
    second = generate_key(path, rotate=True)
    ring = load_keyring()
    assert ring.primary.hex() == second and set(k.hex() for k in ring.keys) == {first, second}
    assert ring.decrypt_text(blob, context=b"c") == SECRET
    moved = ring.reencrypt(blob, context=b"c")
    assert ring.key_id_of(moved) == ring.primary and ring.decrypt_text(moved, context=b"c") == SECRET
    assert ring.reencrypt(moved, context=b"c") == moved  # already under the primary key


def test_keys_from_the_environment(no_env, monkeypatch):
    a, b = new_key(), new_key()
    monkeypatch.setenv("GENZOO_STORE_KEY", f"{a}, {b}")
    ring = load_keyring()
    assert len(ring.keys) == 2 and ring.primary == key_id(__import__("base64").urlsafe_b64decode(a))
    monkeypatch.setenv("GENZOO_STORE_KEY", "too-short")
    with pytest.raises(StoreKeyError, match="URL-safe base64"):
        load_keyring()


def test_missing_or_exposed_key_gets_a_clear_error(tmp_path, no_env):
    with pytest.raises(StoreKeyError, match="GENZOO_STORE_KEY"):
        load_keyring()
    with pytest.raises(StoreKeyError, match="does not exist"):
        load_keyring(tmp_path / "nope.key")
    path = tmp_path / "store.key"
    generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(StoreKeyError, match="chmod 600"):
        load_keyring(path)
    os.chmod(path, 0o600)
    empty = tmp_path / "empty.key"
    empty.write_text("# nothing here\n")
    os.chmod(empty, 0o600)
    with pytest.raises(StoreKeyError, match="holds no key"):
        load_keyring(empty)
    assert load_keyring(path).primary


def test_plaintext_is_absent_from_the_raw_sqlite_file(ring, tmp_path):
    db = tmp_path / "store.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE generations (id INTEGER PRIMARY KEY, model TEXT, prompt BLOB)")
    for i in range(20):
        con.execute("INSERT INTO generations VALUES (?, ?, ?)",
                    (i, "gpt-tiny", ring.encrypt(f"{SECRET} #{i}", context=f"generations.prompt:{i}".encode())))
    con.commit()
    con.close()
    raw = db.read_bytes()
    assert b"gpt-tiny" in raw  # the unencrypted column is there in clear: the check can see plaintext
    for needle in (b"Jane Roe", b"4111 1111", b"dosage", SECRET.encode("utf-16-le")[:20]):
        assert needle not in raw
    con = sqlite3.connect(db)
    blob = con.execute("SELECT prompt FROM generations WHERE id = 3").fetchone()[0]
    con.close()
    assert ring.decrypt_text(blob, context=b"generations.prompt:3") == f"{SECRET} #3"
