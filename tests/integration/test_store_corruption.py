"""Damaged store files are detected with a clear error, never served or taken as empty.

Bytes are flipped in the real data.mdb where a known, unique value lives. LMDB copies
pages on write, so stale copies of a record may sit in free pages: every occurrence is
flipped, which is sure to hit the live one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from node.store import DATA_NAME, MARKER_NAME, Store, StoreCorrupted
from tests.unit.test_store import CHAIN_ID, ChainBuilder, commit, digest

MAP_SIZE = 1 << 24
RESULT_PATTERN = b"UNIQUE-TX-RESULT-%03d"
HEIGHTS = 6


def build_store(path: Path) -> list[bytes]:
    """A store with HEIGHTS blocks, tx results and balances; returns the block hashes."""
    chain = ChainBuilder()
    hashes = []
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE) as store:
        for height in range(1, HEIGHTS + 1):
            effects = commit(
                store,
                chain,
                balances=((f"bank-account-{height:04d}", height),),
                tx_results=tuple(
                    (digest(height, i), RESULT_PATTERN % (height * 100 + i)) for i in range(50)
                ),
                issued_total=sum(range(1, height + 1)),
            )
            hashes.append(effects.block_hash)
    return hashes


def flip_everywhere(path: Path, pattern: bytes) -> int:
    data = path / DATA_NAME
    raw = bytearray(data.read_bytes())
    count = 0
    start = raw.find(pattern)
    while start != -1:
        raw[start + len(pattern) // 2] ^= 0x20
        count += 1
        start = raw.find(pattern, start + 1)
    assert count >= 1, "pattern not found in data.mdb"
    data.write_bytes(bytes(raw))
    return count


def open_store(path: Path) -> Store:
    return Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE)


def test_flipped_tx_result_is_detected_on_read(tmp_path: Path) -> None:
    """A height's results are one sealed record: a flip fails every lookup into it."""
    build_store(tmp_path)
    flip_everywhere(tmp_path, RESULT_PATTERN % 317)
    with open_store(tmp_path) as store:
        assert store.load_tx_result(digest(2, 17)) == RESULT_PATTERN % 217
        height_3 = (3).to_bytes(8, "big").hex()
        for i in (16, 17):
            with pytest.raises(StoreCorrupted, match=f"'tx_results' key {height_3}"):
                store.load_tx_result(digest(3, i))


def rewrite_index_entry(path: Path, tx_hash: bytes, change: Callable[[bytes], bytes]) -> None:
    """Replace a tx_index entry in the real LMDB file, as a damaged page would."""
    env = lmdb.open(str(path), max_dbs=16, map_size=MAP_SIZE)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"tx_index", txn=txn, create=False)
            entry = txn.get(tx_hash, db=db)
            assert entry is not None
            txn.put(tx_hash, change(entry), db=db)
    finally:
        env.close()


def flip_byte(at: int) -> Callable[[bytes], bytes]:
    return lambda entry: entry[:at] + bytes([entry[at] ^ 0x01]) + entry[at + 1 :]


@pytest.mark.parametrize(
    "change",
    [
        flip_byte(7),  # height 3 -> 2: another height's entry 17
        flip_byte(11),  # index 17 -> 16: a neighbour in the same height
        flip_byte(6),  # height 3 -> 259: beyond the tip
        flip_byte(10),  # index 17 -> 273: beyond the block's transactions
        lambda entry: entry[:-1],  # a short entry
    ],
)
def test_damaged_tx_index_entry_is_detected_on_read(
    tmp_path: Path, change: Callable[[bytes], bytes]
) -> None:
    """The index is not sealed: each lookup checks the entry it points at carries the
    same tx hash, so a damaged entry never serves another transaction's result."""
    build_store(tmp_path)
    rewrite_index_entry(tmp_path, digest(3, 17), change)
    with open_store(tmp_path) as store:
        assert store.load_tx_result(digest(3, 16)) == RESULT_PATTERN % 316
        with pytest.raises(StoreCorrupted, match=f"'tx_index' key {digest(3, 17).hex()}"):
            store.load_tx_result(digest(3, 17))


def test_flipped_account_key_is_detected(tmp_path: Path) -> None:
    """A flipped key byte leaves a valid value under another key: the tag covers the key."""
    build_store(tmp_path)
    flip_everywhere(tmp_path, b"bank-account-0004")
    with open_store(tmp_path) as store, pytest.raises(StoreCorrupted, match="'balances'"):
        store.load_balances()


def test_flipped_tip_block_is_detected_at_open(tmp_path: Path) -> None:
    build_store(tmp_path)
    flip_everywhere(tmp_path, digest("app", HEIGHTS - 1))  # inside the tip block's header
    with pytest.raises(StoreCorrupted, match="'blocks'"):
        open_store(tmp_path)


def test_flipped_old_block_is_detected_on_read_and_by_full_verify(tmp_path: Path) -> None:
    build_store(tmp_path)
    flip_everywhere(tmp_path, digest("app", 1))  # inside block 2's header
    with open_store(tmp_path) as store:
        assert store.load_block(3) is not None
        with pytest.raises(StoreCorrupted, match=f"'blocks' key {(2).to_bytes(8, 'big').hex()}"):
            store.load_block(2)
        with pytest.raises(StoreCorrupted, match="'blocks'"):
            store.verify(full=True)


def test_flipped_block_hash_breaks_the_chain_at_open(tmp_path: Path) -> None:
    hashes = build_store(tmp_path)
    flip_everywhere(tmp_path, hashes[2])
    with pytest.raises(StoreCorrupted, match="'chain'"):
        open_store(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_truncated_data_file_is_detected_before_mapping(tmp_path: Path, fraction: float) -> None:
    build_store(tmp_path)
    data = tmp_path / DATA_NAME
    size = int(data.stat().st_size * fraction)
    os.truncate(data, size)
    with pytest.raises(StoreCorrupted, match=r"initialised store is damaged: .* is truncated"):
        open_store(tmp_path)
    assert data.stat().st_size == size  # never mapped: LMDB did not regrow or rewrite it


def test_deleted_data_file_is_detected(tmp_path: Path) -> None:
    build_store(tmp_path)
    (tmp_path / DATA_NAME).unlink()
    with pytest.raises(StoreCorrupted, match=r"data\.mdb is missing"):
        open_store(tmp_path)
    assert not (tmp_path / DATA_NAME).exists()  # nothing was created in its place


def test_data_file_replaced_by_empty_environment_is_detected(tmp_path: Path) -> None:
    build_store(tmp_path)
    (tmp_path / DATA_NAME).unlink()
    lmdb.open(str(tmp_path), map_size=MAP_SIZE).close()  # a fresh, empty LMDB file
    with pytest.raises(StoreCorrupted, match="initialised store is empty"):
        open_store(tmp_path)


def test_garbled_marker_is_detected(tmp_path: Path) -> None:
    build_store(tmp_path)
    (tmp_path / MARKER_NAME).write_bytes(b"\xff\x00 not json")
    with pytest.raises(StoreCorrupted, match=r"marker .* is unreadable"):
        open_store(tmp_path)
