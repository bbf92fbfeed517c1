"""LMDB meta pages read without mapping the file, and record checksums."""

from __future__ import annotations

import os
from pathlib import Path

import lmdb
import pytest

from node.checksum import CHECKSUM_SIZE, ChecksumMismatch, seal, unseal
from node.lmdb_header import LmdbHeaderError, read_lmdb_meta


def make_env(path: Path, records: int) -> dict[str, int]:
    env = lmdb.open(str(path), map_size=1 << 24, max_dbs=4, sync=True, readahead=False)
    db = env.open_db(b"x")
    for i in range(records):
        with env.begin(write=True) as txn:
            txn.put(b"k%05d" % i, bytes([i % 251]) * 3000, db=db)
    info = env.info()
    psize = env.stat()["psize"]
    env.close()
    return {"last_pgno": info["last_pgno"], "last_txnid": info["last_txnid"], "psize": psize}


def test_meta_matches_what_lmdb_reports(tmp_path: Path) -> None:
    info = make_env(tmp_path, 40)
    meta = read_lmdb_meta(tmp_path / "data.mdb")
    assert meta.page_size == info["psize"]
    assert meta.last_page == info["last_pgno"]
    assert meta.txn_id == info["last_txnid"]
    assert meta.main_entries == 1  # the one named database
    assert meta.file_size >= meta.file_size_needed
    assert meta.file_size_needed > 40 * 3000


def test_truncation_below_last_page_is_caught(tmp_path: Path) -> None:
    make_env(tmp_path, 40)
    data = tmp_path / "data.mdb"
    meta = read_lmdb_meta(data)
    os.truncate(data, meta.file_size_needed - meta.page_size)
    with pytest.raises(LmdbHeaderError, match=r"truncated.*needs"):
        read_lmdb_meta(data)


@pytest.mark.parametrize("size", [0, 100, 4096])
def test_file_shorter_than_meta_pages_is_caught(tmp_path: Path, size: int) -> None:
    make_env(tmp_path, 3)
    os.truncate(tmp_path / "data.mdb", size)
    with pytest.raises(LmdbHeaderError, match=r"truncated|no valid"):
        read_lmdb_meta(tmp_path / "data.mdb")


def test_missing_file_and_bad_magic(tmp_path: Path) -> None:
    with pytest.raises(LmdbHeaderError, match="missing"):
        read_lmdb_meta(tmp_path / "data.mdb")
    (tmp_path / "data.mdb").write_bytes(b"\x00" * 3 * 4096)
    with pytest.raises(LmdbHeaderError, match="no valid LMDB meta page"):
        read_lmdb_meta(tmp_path / "data.mdb")


def test_one_damaged_meta_page_falls_back_to_the_other(tmp_path: Path) -> None:
    info = make_env(tmp_path, 5)
    data = tmp_path / "data.mdb"
    raw = bytearray(data.read_bytes())
    psize = info["psize"]
    current = 1 if read_lmdb_meta(data).txn_id % 2 else 0  # LMDB writes meta txnid % 2
    raw[current * psize + 16] ^= 0xFF  # the magic of the current meta page
    data.write_bytes(bytes(raw))
    meta = read_lmdb_meta(data)
    assert meta.txn_id == info["last_txnid"] - 1


def test_checksum_round_trip_and_detection() -> None:
    record = seal(b"balances", b"bank-a", b"\x00\x01")
    assert len(record) == 2 + CHECKSUM_SIZE
    assert unseal(b"balances", b"bank-a", record) == b"\x00\x01"
    flipped = bytes([record[0] ^ 1]) + record[1:]
    for db, key, rec in [
        (b"balances", b"bank-a", flipped),
        (b"balances", b"bank-b", record),  # moved to another key
        (b"balances", b"bank-a\x00", record),  # moved to a longer key
        (b"tx_index", b"bank-a", record),  # moved to another database
        (b"balances", b"bank-a", record[:-1]),
        (b"balances", b"bank-a", record[1:]),
        (b"balances", b"bank-a", bytes(len(record))),  # zeroed
        (b"balances", b"bank-a", b""),
    ]:
        with pytest.raises(ChecksumMismatch):
            unseal(db, key, rec)


def test_every_flipped_bit_and_byte_is_detected() -> None:
    """CRC-32 detects every error within 32 consecutive bits: try them all on a balance
    record (value and checksum), as single bits and as whole bytes."""
    record = seal(b"balances", b"acct-0000017", (123_456_789).to_bytes(8, "big"))
    for position in range(len(record)):
        for mask in (*(1 << bit for bit in range(8)), 0xFF):
            damaged = bytearray(record)
            damaged[position] ^= mask
            with pytest.raises(ChecksumMismatch):
                unseal(b"balances", b"acct-0000017", bytes(damaged))


def test_swapped_values_of_two_keys_are_detected() -> None:
    """A misdirected write: each record is valid, but under the other key."""
    first = seal(b"balances", b"acct-0000001", (5).to_bytes(8, "big"))
    second = seal(b"balances", b"acct-0000002", (7).to_bytes(8, "big"))
    with pytest.raises(ChecksumMismatch):
        unseal(b"balances", b"acct-0000001", second)
    with pytest.raises(ChecksumMismatch):
        unseal(b"balances", b"acct-0000002", first)
