"""Record checksums for the store: every LMDB value carries a 16-byte BLAKE2b tag.

The tag covers (database name, key, value): BLAKE2b's personalisation holds the database
name, and the key is length-prefixed before the value, so a flipped bit, a value copied to
another key, or a record moved to another database all fail verification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["CHECKSUM_SIZE", "ChecksumMismatch", "seal", "seal_many", "unseal"]

CHECKSUM_SIZE = 16
DB_NAME_SIZE_MAX = 16  # BLAKE2b's personalisation is at most 16 bytes
KEY_SIZE_MAX = 511  # LMDB's default maximum key size

_hashers: dict[bytes, hashlib.blake2b] = {}
_KEY_PREFIXES = tuple(size.to_bytes(2, "big") for size in range(KEY_SIZE_MAX + 1))


class ChecksumMismatch(Exception):
    """A record whose tag does not match its (database, key, value)."""


def _hasher(db_name: bytes) -> hashlib.blake2b:
    """The personalised, empty hasher of a database; copied for each record."""
    base = _hashers.get(db_name)
    if base is None:
        assert 0 < len(db_name) <= DB_NAME_SIZE_MAX
        base = hashlib.blake2b(digest_size=CHECKSUM_SIZE, person=db_name)
        _hashers[db_name] = base
    return base


def _tag(db_name: bytes, key: bytes, value: bytes) -> bytes:
    h = _hasher(db_name).copy()
    h.update(_KEY_PREFIXES[len(key)] + key)  # IndexError beyond LMDB's key size
    h.update(value)
    return h.digest()


def seal(db_name: bytes, key: bytes, value: bytes) -> bytes:
    """Return the record to store: value followed by its tag."""
    return value + _tag(db_name, key, value)


def seal_many(db_name: bytes, items: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`seal` for a batch: [(key, sealed record)], the store's hot write path.

    Same tags as `seal`, with the per-record lookups hoisted out of the loop.
    """
    copy = _hasher(db_name).copy
    prefixes = _KEY_PREFIXES
    sealed: list[tuple[bytes, bytes]] = []
    append = sealed.append
    for key, value in items:
        h = copy()
        h.update(prefixes[len(key)] + key)
        h.update(value)
        append((key, value + h.digest()))
    return sealed


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
