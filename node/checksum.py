"""Record checksums for the store: every LMDB value carries a 16-byte BLAKE2b tag.

The tag covers (database name, key, value): BLAKE2b's personalisation holds the database
name, and the key is length-prefixed before the value, so a flipped bit, a value copied to
another key, or a record moved to another database all fail verification.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "CHECKSUM_SIZE",
    "KEY_PREFIXES",
    "ChecksumMismatch",
    "hasher",
    "seal",
    "unseal",
]

CHECKSUM_SIZE = 16
DB_NAME_SIZE_MAX = 16  # BLAKE2b's personalisation is at most 16 bytes
KEY_SIZE_MAX = 511  # LMDB's default maximum key size

_hashers: dict[bytes, hashlib.blake2b] = {}
# The 2-byte big-endian length prefix of each key size, prebuilt for the hot path.
KEY_PREFIXES = tuple(size.to_bytes(2, "big") for size in range(KEY_SIZE_MAX + 1))


class ChecksumMismatch(Exception):
    """A record whose tag does not match its (database, key, value)."""


def hasher(db_name: bytes) -> hashlib.blake2b:
    """The personalised, empty hasher of a database; copied for each record.

    A record's tag is `hasher(db).copy()` updated with KEY_PREFIXES[len(key)] + key,
    then the value (in one or more updates), then digest(). The store's hot loops seal
    with this directly; everything they write is read back through `unseal`."""
    base = _hashers.get(db_name)
    if base is None:
        assert 0 < len(db_name) <= DB_NAME_SIZE_MAX
        base = hashlib.blake2b(digest_size=CHECKSUM_SIZE, person=db_name)
        _hashers[db_name] = base
    return base


def _tag(db_name: bytes, key: bytes, value: bytes) -> bytes:
    h = hasher(db_name).copy()
    h.update(KEY_PREFIXES[len(key)] + key)  # IndexError beyond LMDB's key size
    h.update(value)
    return h.digest()


def seal(db_name: bytes, key: bytes, value: bytes) -> bytes:
    """Return the record to store: value followed by its tag."""
    return value + _tag(db_name, key, value)


def unseal(db_name: bytes, key: bytes, record: bytes) -> bytes:
    """Return the value of a stored record after checking its tag.

    Raises:
        ChecksumMismatch: the record is shorter than a tag or its tag does not match.
    """
    if len(record) < CHECKSUM_SIZE:
        raise ChecksumMismatch(f"record of {len(record)} bytes is shorter than its checksum")
    value = record[:-CHECKSUM_SIZE]
    if _tag(db_name, key, value) != record[-CHECKSUM_SIZE:]:
        raise ChecksumMismatch("checksum mismatch")
    return value
