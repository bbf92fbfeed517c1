"""Read LMDB's two meta pages with plain file reads, before the file is memory-mapped.

Why: LMDB maps data.mdb and trusts it. A file truncated by a bad copy or a full disk then
opens as an empty environment (size zero) or faults on first touch (pages past the end).
Reading the meta pages first turns both into a clear error.

Layout (lmdb 0.9.x, mdb.c, 64-bit little-endian builds; checked against a real file in
tests/unit/test_store_header.py). Pages 0 and 1 are meta pages. Each page starts with a
16-byte header (pgno u64, pad u16, flags u16, lower/upper u16 u16), then MDB_meta:

    offset  field
    16      mm_magic u32 = 0xBEEFC0DE
    20      mm_version u32 = 1
    24      mm_address u64
    32      mm_mapsize u64
    40      mm_dbs[FREE_DBI]: md_pad u32 (= page size), md_flags u16, md_depth u16,
            branch, leaf, overflow pages u64, md_entries u64, md_root u64 (48 bytes)
    88      mm_dbs[MAIN_DBI] (same 48 bytes; md_entries at 88 + 32 = 120)
    136     mm_last_pg u64: the last page in use
    144     mm_txnid u64: the transaction that wrote this meta page

The meta page with the larger txnid is current; every page up to mm_last_pg must be in
the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LMDB_MAGIC", "LmdbHeaderError", "LmdbMeta", "read_lmdb_meta"]

LMDB_MAGIC = 0xBEEFC0DE
LMDB_DATA_VERSION = 1
PAGE_HEADER_SIZE = 16
META_END_OFFSET = PAGE_HEADER_SIZE + 136  # end of mm_txnid
PAGE_SIZE_MIN = 512
PAGE_SIZE_MAX = 65536

_MAGIC_VERSION = struct.Struct("<II")
_PAGE_SIZE = struct.Struct("<I")
_MAIN_ENTRIES = struct.Struct("<Q")
_LAST_PAGE_TXNID = struct.Struct("<QQ")


class LmdbHeaderError(Exception):
    """The file is not a complete LMDB data file; the message says what is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LmdbMeta:
    """The current meta page of an LMDB data file."""

    page_size: int
    last_page: int
    txn_id: int
    main_entries: int  # keys in the main database: one per named sub-database
    file_size: int

    @property
    def file_size_needed(self) -> int:
        return (self.last_page + 1) * self.page_size


def _parse_meta(page: bytes) -> tuple[int, int, int, int] | None:
    """(page size, last page, txn id, main entries) of one meta page, or None if invalid."""
    if len(page) < META_END_OFFSET:
        return None
    magic, version = _MAGIC_VERSION.unpack_from(page, PAGE_HEADER_SIZE)
    if magic != LMDB_MAGIC or version != LMDB_DATA_VERSION:
        return None
    (page_size,) = _PAGE_SIZE.unpack_from(page, 40)
    (main_entries,) = _MAIN_ENTRIES.unpack_from(page, 120)
    last_page, txn_id = _LAST_PAGE_TXNID.unpack_from(page, 136)
    return page_size, last_page, txn_id, main_entries


def read_lmdb_meta(data_path: Path) -> LmdbMeta:
    """Read and check the meta pages of data.mdb without mapping it.

    Raises:
        LmdbHeaderError: missing file, too short, no valid meta page, or truncated
            below what the current meta page says is in use.
    """
    try:
        with data_path.open("rb") as f:
            file_size = f.seek(0, 2)
            f.seek(0)
            first = f.read(META_END_OFFSET)
            meta0 = _parse_meta(first)
            page_size = meta0[0] if meta0 is not None else 4096
            if not PAGE_SIZE_MIN <= page_size <= PAGE_SIZE_MAX:
                raise LmdbHeaderError(f"{data_path}: implausible page size {page_size}")
            f.seek(page_size)
            meta1 = _parse_meta(f.read(META_END_OFFSET))
    except FileNotFoundError as exc:
        raise LmdbHeaderError(f"{data_path} is missing") from exc
    except OSError as exc:
        raise LmdbHeaderError(f"{data_path} cannot be read: {exc}") from exc
    if file_size < 2 * page_size:
        raise LmdbHeaderError(
            f"{data_path} is truncated: {file_size} bytes, less than its two meta pages"
        )
    candidates = [m for m in (meta0, meta1) if m is not None and m[0] == page_size]
    if not candidates:
        raise LmdbHeaderError(f"{data_path} has no valid LMDB meta page")
    page_size, last_page, txn_id, main_entries = max(candidates, key=lambda m: m[2])
    meta = LmdbMeta(
        page_size=page_size,
        last_page=last_page,
        txn_id=txn_id,
        main_entries=main_entries,
        file_size=file_size,
    )
    if file_size < meta.file_size_needed:
        raise LmdbHeaderError(
            f"{data_path} is truncated: {file_size} bytes, but LMDB's meta page (txn "
            f"{txn_id}) uses pages up to {last_page}, which needs {meta.file_size_needed} bytes"
        )
    return meta
