"""Encryption at rest for fields marked sensitive: AES-256-GCM in a versioned envelope with a key id.

>>> import base64, os
>>> ring = Keyring.from_keys([os.urandom(32)])
>>> blob = ring.encrypt("the prompt", context=b"generations.prompt")
>>> ring.decrypt_text(blob, context=b"generations.prompt")
'the prompt'

Envelope (bytes, stored as a BLOB)::

    b"GZE" | version (1 byte, =1) | key id (8 bytes) | nonce (12 bytes) | AES-GCM ciphertext + 16-byte tag

- AES-256-GCM (``cryptography``'s AEAD) authenticates as well as encrypts: a
  flipped bit anywhere, a truncated blob or the wrong key fails loudly
  instead of decrypting to garbage.
- The header (magic, version, key id) is bound into the tag as associated
  data, and so is the caller's ``context`` (e.g. ``b"generations.prompt"`` or
  a row id): a ciphertext copied into another column or row does not
  decrypt there.
- Nonces are 96 random bits per message. NIST SP 800-38D caps random-nonce
  GCM at 2**32 messages per key; rotate keys long before that.
- The key id is the first 8 bytes of SHA-256("genzoo-store-key-id" | key):
  it names the key without revealing it, so a keyring can hold old keys for
  reading while new writes use the first (primary) key; ``reencrypt`` moves a
  value to the primary key.

Keys: 32 random bytes, written as URL-safe base64. ``load_keyring`` takes
them from ``GENZOO_STORE_KEY`` (one key, or several separated by commas,
primary first), else from a key file (``GENZOO_STORE_KEY_FILE`` or the path
given; one key per line, primary first, ``#`` comments). ``generate_key``
writes a new key file with mode 0600 and refuses to read one that others can
read, as ssh does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.core.atomic import write_atomic_file

MAGIC = b"GZE"
VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES
ENV_KEY = "GENZOO_STORE_KEY"
ENV_KEY_FILE = "GENZOO_STORE_KEY_FILE"


class StoreKeyError(GenzooError):
    """No key, a malformed key, or a ciphertext written under a key the keyring lacks."""


class DecryptionError(GenzooError):
    """A ciphertext that fails authentication: tampered, truncated, or moved to another field."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"genzoo-store-key-id" + key).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class Keyring:
    """Keys by id; the first key given is the primary one that new writes use."""

    keys: dict[bytes, bytes]
    primary: bytes

    @classmethod
    def from_keys(cls, keys) -> "Keyring":
        keys = [_check_key(k) for k in keys]
        if not keys:
            raise StoreKeyError(_missing_key_message())
        return cls({key_id(k): k for k in keys}, key_id(keys[0]))

    def encrypt(self, plaintext: str | bytes, *, context: bytes = b"") -> bytes:
        """The envelope for ``plaintext`` (a str is stored as UTF-8) under the primary key, bound to ``context``."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if isinstance(plaintext, str):
            plaintext = plaintext.encode("utf-8")
        if not isinstance(plaintext, (bytes, bytearray)):
            raise GenzooError(f"only str or bytes can be encrypted, got {type(plaintext).__name__}")
        header = MAGIC + bytes([VERSION]) + self.primary
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary]).encrypt(nonce, bytes(plaintext), header + context)
        return header + nonce + sealed

    def decrypt(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        """The plaintext bytes; ``StoreKeyError`` for an unknown key, ``DecryptionError`` for anything tampered."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(envelope, (bytes, bytearray, memoryview)):
            raise DecryptionError(f"expected an encrypted envelope (bytes), got {type(envelope).__name__}")
        envelope = bytes(envelope)
        if len(envelope) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or not envelope.startswith(MAGIC):
            raise DecryptionError("not a genzoo encrypted value (bad header or too short): the field is corrupted "
                                  "or was never encrypted")
        version = envelope[len(MAGIC)]
        if version != VERSION:
            raise DecryptionError(f"encrypted with envelope version {version}, this genzoo reads version {VERSION}; "
                                  "upgrade genzoo")
        kid = envelope[len(MAGIC) + 1:HEADER_BYTES]
        key = self.keys.get(kid)
        if key is None:
            raise StoreKeyError(f"this value was encrypted with key id {kid.hex()}, which is not in the keyring "
                                f"(it holds {', '.join(k.hex() for k in self.keys)}); set {ENV_KEY} or the key file to "
                                "include the key that wrote it")
        nonce = envelope[HEADER_BYTES:HEADER_BYTES + NONCE_BYTES]
        try:
            return AESGCM(key).decrypt(nonce, envelope[HEADER_BYTES + NONCE_BYTES:], envelope[:HEADER_BYTES] + context)
        except InvalidTag:
            raise DecryptionError("encrypted value failed authentication: it was tampered with, truncated, or copied "
                                  "from another field; nothing was decrypted") from None

    def decrypt_text(self, envelope: bytes, *, context: bytes = b"") -> str:
        return self.decrypt(envelope, context=context).decode("utf-8")

    def key_id_of(self, envelope: bytes) -> bytes:
        """The id of the key that wrote ``envelope`` (to find values still under an old key)."""
        envelope = bytes(envelope)
        if len(envelope) < HEADER_BYTES or not envelope.startswith(MAGIC):
            raise DecryptionError("not a genzoo encrypted value (bad header)")
        return envelope[len(MAGIC) + 1:HEADER_BYTES]

    def reencrypt(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        """``envelope`` under the primary key (unchanged if it already is): the step of a key rotation."""
        if self.key_id_of(envelope) == self.primary:
            return bytes(envelope)
        return self.encrypt(self.decrypt(envelope, context=context), context=context)


def is_encrypted(value) -> bool:
    """Whether ``value`` looks like an envelope (magic and length; authenticity is checked only by decrypt)."""
    return isinstance(value, (bytes, bytearray)) and len(value) >= HEADER_BYTES + NONCE_BYTES + TAG_BYTES \
        and bytes(value[:len(MAGIC)]) == MAGIC


TEXT_PREFIX = "gze1:"  # a sealed value in a TEXT column: the envelope in URL-safe base64 behind this prefix


def seal_text(ring: Keyring, value: str, *, context: bytes) -> str:
    """``value`` encrypted as text, for columns that hold only text on every backend (session ids,
    feedback labels and comments, quality scores)."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(ring.encrypt(value, context=context)).decode("ascii")


def is_sealed_text(value) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def open_text(ring: Keyring, value: str, *, context: bytes) -> str:
    """The plaintext of a ``seal_text`` value."""
    try:
        envelope = base64.urlsafe_b64decode(value[len(TEXT_PREFIX):].encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DecryptionError("a sealed text value is not valid base64: the field is corrupted") from None
    return ring.decrypt_text(envelope, context=context)


# --- keys ------------------------------------------------------------------------------------------------------

def new_key() -> str:
    """A fresh random 256-bit key as URL-safe base64 (what the environment variable and key file hold)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def generate_key(path: str | os.PathLike, *, rotate: bool = False) -> str:
    """Write a new key file readable by its owner only (0600) and return the new key's id (hex).

    An existing file is refused unless ``rotate``: then the new key becomes the primary (first line) and the
    old keys stay below it, so values they wrote still decrypt. Written to a temporary file, then renamed."""
    path = Path(path)
    old: list[str] = []
    if path.exists():
        if not rotate:
            raise StoreKeyError(f"{path} already exists; pass rotate=True to add a new primary key to it "
                                "(old keys are kept for reading), or choose another path")
        old = _read_key_lines(path)
    key = new_key()
    header = "# genzoo store keys: the first is used for new writes; keep this file secret\n"
    write_atomic_file(path, (header + "\n".join([key] + old) + "\n").encode("utf-8"), private=True)
    return key_id(_decode_key(key)).hex()


def load_keyring(key_file: str | os.PathLike | None = None) -> Keyring:
    """The keyring from ``GENZOO_STORE_KEY``, else from ``key_file`` / ``GENZOO_STORE_KEY_FILE``."""
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        return Keyring.from_keys([_decode_key(k.strip(), ENV_KEY) for k in env.split(",") if k.strip()])
    key_file = key_file or os.environ.get(ENV_KEY_FILE)
    if not key_file:
        raise StoreKeyError(_missing_key_message())
    path = Path(key_file)
    if not path.is_file():
        raise StoreKeyError(f"key file {path} does not exist. {_missing_key_message()}")
    return Keyring.from_keys([_decode_key(k, str(path)) for k in _read_key_lines(path)])


def keyring_from_file(path: str | os.PathLike) -> Keyring:
    """The keyring in a key file, whatever the environment says (key rotation writes and then reads one)."""
    path = Path(path)
    if not path.is_file():
        raise StoreKeyError(f"key file {path} does not exist")
    return Keyring.from_keys([_decode_key(k, str(path)) for k in _read_key_lines(path)])


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _read_key_lines(path: Path) -> list[str]:
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreKeyError(f"key file {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
                            f"run `chmod 600 {path}`")
    lines = [ln.strip() for ln in path.read_text(encoding="ascii", errors="replace").splitlines()]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise StoreKeyError(f"key file {path} holds no key; create one with genzoo.store.crypto.generate_key")
    return keys


def _decode_key(text: str, where: str = "key") -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise StoreKeyError(f"{where}: a store key is {KEY_BYTES} random bytes in URL-safe base64 (44 characters); "
                            "make one with genzoo.store.crypto.new_key() or generate_key(PATH)")
    return raw


def _check_key(key) -> bytes:
    if isinstance(key, str):
        return _decode_key(key)
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise StoreKeyError(f"a store key must be {KEY_BYTES} bytes (or their URL-safe base64)")
    return bytes(key)


def _missing_key_message() -> str:
    return (f"no store encryption key: set {ENV_KEY} to a key (python -c 'from genzoo.store.crypto import new_key; "
            f"print(new_key())'), or point {ENV_KEY_FILE} at a key file made with "
            "genzoo.store.crypto.generate_key(PATH)")
