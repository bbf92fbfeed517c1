"""The node's durable store: chain, ledger state and consensus state in one LMDB file.

Theory of operation.
- One LMDB environment, sync and metasync on: a write transaction is on disk when
  `commit` returns. `commit_block` writes everything one decided block changes in ONE
  write transaction, so after a crash the store holds the previous block or the new one.
  Inside `batch`, several blocks share one write transaction (a node catching up): a
  crash then leaves the tip from before the batch or its last block.
- Every value but the tx_index entries (below) is sealed with a 4-byte CRC-32 over
  (database, key, value) (node/checksum.py says why a CRC) and checked on every read.
  A mismatch raises `StoreCorrupted`, which names the database and key: the node stops
  rather than serve wrong data.
- A sidecar marker file (`somnet.store`) is written, fsynced, after the store's first
  transaction. If the marker exists, the store must exist and be non-empty: a missing,
  truncated or emptied data.mdb is `StoreCorrupted`, never a fresh empty chain. The size
  check reads LMDB's meta pages before the file is mapped (node/lmdb_header.py).
- Transaction results: one sealed `tx_results` record per height holds every result of
  that block, in block order (layout at `_encode_tx_results`), written with append=True.
  The `tx_index` maps a tx hash to (height, index) and is NOT sealed: every lookup
  cross-checks it against the sealed per-block record, whose entry must carry the same
  tx hash, so a damaged index entry is `StoreCorrupted` naming its key. This saves a
  seal and a larger random-key record per transaction, the store's hottest path.
- At open the hash chain is verified over all heights from the small `chain` records
  (height -> block hash, previous hash), and the sub-databases' entry counts and ends
  must agree with the tip.
- Account entries (`account_entries`): one sealed record per (account, applied
  transaction that moves it), written in the block's own write transaction, so an
  account's statement of any height range is one cursor scan. Key: the account id
  (length-prefixed) then height (8 bytes) and tx index (4 bytes), big-endian, so each
  account's entries are contiguous in (height, index) order and a new block's entries go
  to the end of each account's range. Value: tx hash, signed amount, balance after.
- Governance state (issue 13): one sealed record in `meta` under "governance", the
  whole state, rewritten in the write transaction of each block that changes it (rare:
  governance actions, and pruning of validator sets no longer needed).
- Validator-set changes (`validator_sets`): height -> the encoded set in force from that
  height, written in the write transaction of the block before it (whose header names
  the new set's hash). The ledger forgets old sets; proofs need the whole chain of them.
- The map size is a hard bound. A write that does not fit raises `StoreFull` and writes
  nothing.

Keys: heights are 8-byte big-endian, so LMDB's byte order is height order and appends
go to the end of the tree.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import crc32

import lmdb
import msgpack

from node.block import ZERO_HASH, decode_block_header
from node.checksum import CHECKSUM_SIZE, KEY_PREFIXES, ChecksumMismatch, crc_start, seal, unseal
from node.effects import NO_POOL_CHANGES, AccountEntry, BlockEffects, PoolChanges
from node.errors import BlockError, NodeError
from node.lmdb_header import LmdbHeaderError, read_lmdb_meta

__all__ = [
    "ACCOUNT_ENTRY",
    "MAP_SIZE_BYTES_DEFAULT",
    "MARKER_NAME",
    "Store",
    "StoreCorrupted",
    "StoreError",
    "StoreFull",
    "StoreTip",
    "account_entry_key",
    "decode_account_entry_key",
]

MAP_SIZE_BYTES_DEFAULT = 64 * 1024**3
MARKER_NAME = "somnet.store"
DATA_NAME = "data.mdb"
# 2: tx results per height, unsealed tx index; 3: CRC-32 checksums; 4: references kept for
# ever, the durable pool and the fates of dropped transactions; 5: anchors (node/anchor.py);
# 6: account entries (the statement index).
FORMAT_VERSION = 7
HASH_SIZE = 32
HEIGHT_MAX = 2**63 - 1
BALANCE_MAX = 2**63 - 1
TOTAL_MAX = 2**128 - 1
MARKER_SIZE_MAX = 4096
MAX_DBS = 32  # named databases an environment may open (LMDB max_dbs)
MAX_READERS = 126

DB_META = b"meta"
DB_BLOCKS = b"blocks"
DB_CERTIFICATES = b"certificates"
DB_BLOCK_HASHES = b"block_hashes"
DB_CHAIN = b"chain"
DB_TX_INDEX = b"tx_index"
DB_TX_RESULTS = b"tx_results"
DB_BALANCES = b"balances"
DB_REFERENCES = b"references"
DB_CONSENSUS = b"consensus"
DB_POOL = b"pool"
DB_DROPPED = b"dropped"
DB_EVIDENCE = b"evidence"
# (votes' height, validator) -> [block height, tx hash] of the evidence settled on chain
DB_EVIDENCE_ON_CHAIN = b"evidence_on_chain"
DB_ANCHORS = b"anchors"  # height -> this node's anchor record, kept before it is sent
DB_ACCOUNT_ENTRIES = b"account_entries"  # (account, height, index) -> statement entry
# height -> the encoded validator set in force from that height, for every change of set
# (none for genesis's): the chain of changes a proof carries (node/inclusion.py)
DB_VALIDATOR_SETS = b"validator_sets"
DB_NAMES = (
    DB_META,
    DB_BLOCKS,
    DB_CERTIFICATES,
    DB_BLOCK_HASHES,
    DB_CHAIN,
    DB_TX_INDEX,
    DB_TX_RESULTS,
    DB_BALANCES,
    DB_REFERENCES,
    DB_CONSENSUS,
    DB_POOL,
    DB_DROPPED,
    DB_EVIDENCE,
    DB_EVIDENCE_ON_CHAIN,
    DB_ANCHORS,
    DB_ACCOUNT_ENTRIES,
    DB_VALIDATOR_SETS,
)
assert len(DB_NAMES) < MAX_DBS

KEY_CHAIN_ID = b"chain_id"
KEY_FORMAT = b"format"
KEY_TIP = b"tip"
KEY_DURABLE = b"durable"
# The governance state record (node/governance.py), rewritten whole by a block that
# changes it; absent while the state is genesis's.
KEY_GOVERNANCE = b"governance"

TIP_SIZE = 8 + HASH_SIZE + HASH_SIZE + HASH_SIZE + 16 + 16
CHAIN_SIZE = HASH_SIZE + HASH_SIZE
TX_POSITION = struct.Struct(">QI")  # tx_index value: height, index in the block
TX_COUNT = struct.Struct(">I")
TX_COUNT_MAX = 2**32 - 1
ACCOUNT_ENTRY = struct.Struct(">32sqQ")  # account_entries value: tx hash, delta, balance after
ENTRY_POSITION = struct.Struct(">QI")  # the end of an account_entries key: height, index
ACCOUNT_CHARS_MAX = 255  # its length prefix is one byte (node.ids allows 64)


class StoreError(NodeError):
    """The store cannot do what was asked (environment or operator fault)."""

    code = "store_error"


class StoreCorrupted(StoreError):
    """Stored bytes are not what was written: the node must stop."""

    code = "store_corrupted"


class StoreFull(StoreError):
    """The write does not fit in the configured map size; nothing was written."""

    code = "store_full"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTip:
    """The last stored block; before the first block, height 0 and ZERO_HASH (what block 1
    names as its previous hash)."""

    height: int
    block_hash: bytes
    app_hash: bytes
    changes_hash: bytes  # with the state, what the app hash is recomputed from at open
    issued_total: int
    redeemed_total: int


def height_key(height: int) -> bytes:
    assert 0 <= height <= HEIGHT_MAX
    return height.to_bytes(8, "big")


def _encode_tip(tip: StoreTip) -> bytes:
    assert len(tip.block_hash) == HASH_SIZE
    assert len(tip.app_hash) == HASH_SIZE
    assert len(tip.changes_hash) == HASH_SIZE
    assert 0 <= tip.issued_total <= TOTAL_MAX
    assert 0 <= tip.redeemed_total <= TOTAL_MAX
    return b"".join(
        (
            height_key(tip.height),
            tip.block_hash,
            tip.app_hash,
            tip.changes_hash,
            tip.issued_total.to_bytes(16, "big"),
            tip.redeemed_total.to_bytes(16, "big"),
        )
    )


def _decode_tip(data: bytes) -> StoreTip:
    assert len(data) == TIP_SIZE  # checksummed: a wrong size is our own bug
    return StoreTip(
        height=int.from_bytes(data[0:8], "big"),
        block_hash=data[8:40],
        app_hash=data[40:72],
        changes_hash=data[72:104],
        issued_total=int.from_bytes(data[104:120], "big"),
        redeemed_total=int.from_bytes(data[120:136], "big"),
    )


def _encode_tx_results(results: Sequence[tuple[bytes, bytes]]) -> bytes:
    """One height's results: count n (4 bytes), the n tx hashes (32 bytes each), the n
    end offsets of the results (4 bytes each, cumulative), then the results themselves.
    Fixed-size parts first, so entry i is found without scanning."""
    count = len(results)
    assert count <= TX_COUNT_MAX
    if not count:
        return TX_COUNT.pack(0)
    hashes, values = zip(*results, strict=True)
    joined_hashes = b"".join(hashes)
    assert len(joined_hashes) == HASH_SIZE * count and all(len(h) == HASH_SIZE for h in hashes)
    joined_values = b"".join(values)
    ends = struct.pack(f">{count}I", *itertools.accumulate(map(len, values)))
    return b"".join((TX_COUNT.pack(count), joined_hashes, ends, joined_values))


def _tx_result_at(record: bytes, index: int) -> tuple[bytes, bytes] | None:
    """(tx hash, result) of entry `index` of a per-height record; None if out of range."""
    (count,) = TX_COUNT.unpack_from(record)
    if index >= count:
        return None
    hashes_at = TX_COUNT.size
    ends_at = hashes_at + HASH_SIZE * count
    values_at = ends_at + TX_COUNT.size * count
    tx_hash = record[hashes_at + HASH_SIZE * index : hashes_at + HASH_SIZE * (index + 1)]
    end = TX_COUNT.unpack_from(record, ends_at + TX_COUNT.size * index)[0]
    start = TX_COUNT.unpack_from(record, ends_at + TX_COUNT.size * (index - 1))[0] if index else 0
    return tx_hash, record[values_at + start : values_at + end]


def account_entry_key(account: str, height: int, index: int) -> bytes:
    """The key of one account entry: len(account) (1 byte), account, height, index."""
    name = account.encode("ascii")
    assert 0 < len(name) <= ACCOUNT_CHARS_MAX
    return bytes((len(name),)) + name + ENTRY_POSITION.pack(height, index)


def decode_account_entry_key(key: bytes) -> tuple[str, int, int] | None:
    """(account, height, index) of an account entry key; None if it has not that form."""
    if not key or len(key) != 1 + key[0] + ENTRY_POSITION.size:
        return None
    height, index = ENTRY_POSITION.unpack_from(key, 1 + key[0])
    return key[1 : 1 + key[0]].decode("ascii", "backslashreplace"), height, index


def _sealed_account_entries(
    height: int, entries: Sequence[AccountEntry]
) -> tuple[list[bytes], list[bytes]]:
    """(keys, sealed values) of a block's account entries, in key order."""
    start = crc_start(DB_ACCOUNT_ENTRIES)
    prefixes = KEY_PREFIXES
    pack = ACCOUNT_ENTRY.pack
    position = ENTRY_POSITION.pack
    records: list[tuple[bytes, bytes]] = []
    for entry in entries:
        assert entry.delta != 0
        assert 0 <= entry.balance_after <= BALANCE_MAX, entry
        name = entry.account.encode("ascii")
        key = bytes((len(name),)) + name + position(height, entry.tx_index)
        value = pack(entry.tx_hash, entry.delta, entry.balance_after)
        crc = crc32(prefixes[len(key)] + key + value, start)
        records.append((key, value + crc.to_bytes(CHECKSUM_SIZE, "big")))
    records.sort()
    return [key for key, _ in records], [value for _, value in records]


def _sealed_balances(balances: Sequence[tuple[str, int]]) -> tuple[list[bytes], list[bytes]]:
    """(accounts, sealed 8-byte balances): encoded and sealed in one pass (the store's
    hottest loop; the same checksums as node.checksum.seal)."""
    start = crc_start(DB_BALANCES)
    prefixes = KEY_PREFIXES
    keys: list[bytes] = []
    values: list[bytes] = []
    for account, balance in balances:
        assert 0 <= balance <= BALANCE_MAX, (account, balance)
        key = account.encode("ascii")
        value = balance.to_bytes(8, "big")
        keys.append(key)
        crc = crc32(prefixes[len(key)] + key + value, start)
        values.append(value + crc.to_bytes(CHECKSUM_SIZE, "big"))
    return keys, values


def _sealed_references(added: Sequence[tuple[bytes, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """(reference keys, sealed tx hashes), in key order, like balances."""
    start = crc_start(DB_REFERENCES)
    prefixes = KEY_PREFIXES
    keys: list[bytes] = []
    values: list[bytes] = []
    for key, tx_hash in sorted(added):
        assert len(tx_hash) == HASH_SIZE
        keys.append(key)
        crc = crc32(prefixes[len(key)] + key + tx_hash, start)
        values.append(tx_hash + crc.to_bytes(CHECKSUM_SIZE, "big"))
    return keys, values


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(path: Path, chain_id: str) -> None:
    """Write the marker atomically and durably: temp file, fsync, rename, fsync dir."""
    record = {
        "format": FORMAT_VERSION,
        "chain_id": chain_id,
        "created_unix_ms": int(time.time() * 1000),
        "lmdb_version": ".".join(str(v) for v in lmdb.version()),
    }
    tmp = path / (MARKER_NAME + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path / MARKER_NAME)
    _fsync_directory(path)


def _read_marker(path: Path) -> dict[str, Any]:
    marker = path / MARKER_NAME
    try:
        text = marker.read_bytes()[:MARKER_SIZE_MAX].decode("utf-8")
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreCorrupted(f"store marker {marker} is unreadable: {exc}") from exc
    if not isinstance(record, dict) or type(record.get("format")) is not int:
        raise StoreCorrupted(f"store marker {marker} is not a format {FORMAT_VERSION} marker")
    if record["format"] != FORMAT_VERSION:
        # Formats change with the chain's own encodings (format 7: headers name the next
        # validator set), so an older store is another chain's: there is no migration.
        raise StoreCorrupted(
            f"store marker {marker}: a format {record['format']} store; this version keeps"
            f" format {FORMAT_VERSION} and reads no other (no migration: a new chain needs"
            " a new store)"
        )
    return record


def _check_data_file(path: Path) -> None:
    """An initialised store's data.mdb must exist, be whole, and hold our databases."""
    try:
        meta = read_lmdb_meta(path / DATA_NAME)
    except LmdbHeaderError as exc:
        raise StoreCorrupted(f"initialised store is damaged: {exc}") from exc
    if meta.main_entries < len(DB_NAMES):
        raise StoreCorrupted(
            f"initialised store is empty: {path / DATA_NAME} holds "
            f"{meta.main_entries} of {len(DB_NAMES)} databases"
        )


def _open_env(path: Path, map_size_bytes: int, *, readonly: bool = False) -> lmdb.Environment:
    """The LMDB environment with every option explicit. Read-only still takes the lock
    file, so a running node's writes cannot tear a read."""
    assert map_size_bytes > 0
    try:
        return lmdb.open(
            str(path),
            map_size=map_size_bytes,
            subdir=True,
            readonly=readonly,
            metasync=True,
            sync=True,
            map_async=False,
            mode=0o600,
            create=not readonly,
            readahead=False,
            # writemap=True was measured (issue 12, 4+1 network at 1,500 transfers/s): it
            # replaces LMDB's pwrite per dirty page (and lseek+writev per run of pages)
            # with memory writes and one msync, so a bank node's syscalls per transfer
            # fall from 2.3 to 0.4, yet CPU per transfer did not change measurably (the
            # kernel copies the same pages either way). Against it: data.mdb is sized to
            # the whole map (8 GB apparent), and a full disk becomes SIGBUS instead of
            # an error this store can report. So: off.
            writemap=False,
            meminit=False,
            max_readers=MAX_READERS,
            max_dbs=MAX_DBS,
            max_spare_txns=1,
            lock=True,
        )
    except lmdb.Error as exc:
        raise StoreError(f"cannot open LMDB environment at {path}: {exc}") from exc


class Store:
    """The open store. Create or open it with `Store.open`; close it with `close`.

    Not thread-safe: one owner (the node's driver task) calls it.
    """

    def __init__(
        self,
        *,
        path: Path,
        env: lmdb.Environment,
        chain_id: str,
        map_size_bytes: int,
    ) -> None:
        self.path = path
        self.chain_id = chain_id
        self.map_size_bytes = map_size_bytes
        self.write_count = 0  # committed write transactions since opening; for tests, metrics
        self._batch: lmdb.Transaction | None = None  # the open `batch`, if any
        self._env = env
        try:
            self._dbs = {name: env.open_db(name, create=False) for name in DB_NAMES}
        except lmdb.NotFoundError as exc:
            env.close()
            raise StoreCorrupted(f"store at {path} lacks a database: {exc}") from exc
        except lmdb.Error as exc:
            env.close()
            raise StoreCorrupted(f"store at {path} cannot open its databases: {exc}") from exc
        self._tip = self._load_tip()

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        chain_id: str,
        map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT,
    ) -> Store:
        """Open the store at `path`, creating it if the directory holds no store.

        Args:
            path: the store directory (data.mdb, lock.mdb and the marker live in it).
            chain_id: must match the chain id the store was created with.
            map_size_bytes: the bound on the data file; writes beyond it raise StoreFull.

        Raises:
            StoreCorrupted: the store is damaged (missing, truncated or emptied data file,
                a checksum mismatch, a broken hash chain).
            StoreError: the store belongs to another chain, or LMDB cannot open it.
        """
        assert chain_id
        if not (path / MARKER_NAME).exists():
            if (path / DATA_NAME).exists():
                raise StoreCorrupted(
                    f"{path / DATA_NAME} exists but the store marker {MARKER_NAME} does not: "
                    "an interrupted creation or a deleted marker; refusing to guess"
                )
            cls._create(path, chain_id, map_size_bytes)
        marker = _read_marker(path)
        if marker.get("chain_id") != chain_id:
            raise StoreError(
                f"store at {path} belongs to chain {marker.get('chain_id')!r}, not {chain_id!r}"
            )
        _check_data_file(path)
        env = _open_env(path, map_size_bytes)
        store = cls(
            path=path,
            env=env,
            chain_id=chain_id,
            map_size_bytes=map_size_bytes,
        )
        try:
            store._check_identity()
            store.verify()
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def _create(path: Path, chain_id: str, map_size_bytes: int) -> None:
        """Create the databases and the empty tip in one transaction, then the marker."""
        path.mkdir(parents=True, exist_ok=True)
        env = _open_env(path, map_size_bytes)
        try:
            with env.begin(write=True) as txn:
                dbs = {name: env.open_db(name, txn=txn, create=True) for name in DB_NAMES}
                meta = dbs[DB_META]
                genesis_tip = StoreTip(
                    height=0,
                    block_hash=ZERO_HASH,
                    app_hash=bytes(HASH_SIZE),
                    changes_hash=bytes(HASH_SIZE),
                    issued_total=0,
                    redeemed_total=0,
                )
                for key, value in (
                    (KEY_FORMAT, str(FORMAT_VERSION).encode()),
                    (KEY_CHAIN_ID, chain_id.encode("utf-8")),
                    (KEY_TIP, _encode_tip(genesis_tip)),
                ):
                    txn.put(key, seal(DB_META, key, value), db=meta)
            env.sync(True)
        except lmdb.MapFullError as exc:
            raise StoreFull(
                f"map_size_bytes={map_size_bytes} is too small for an empty store"
            ) from exc
        except lmdb.Error as exc:
            raise StoreError(f"cannot create a store at {path}: {exc}") from exc
        finally:
            env.close()
        _write_marker(path, chain_id)

    def _check_identity(self) -> None:
        with self._read() as txn:
            chain_id = self._get(txn, DB_META, KEY_CHAIN_ID)
        if chain_id != self.chain_id.encode("utf-8"):
            raise StoreCorrupted(
                f"store at {self.path}: its meta database names chain {chain_id!r}, "
                f"its marker {self.chain_id!r}"
            )

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def batch(self, what: str) -> Iterator[None]:
        """Writes made inside (several `commit_block`s) share one synced write
        transaction: a node catching up stores a sync answer's blocks with one fsync
        instead of one per block. Reads inside see the batch's writes (the ledger looks
        up the references that the batch's earlier blocks consumed). All or nothing, as a
        single write is: after a crash or an error the store holds the tip from before
        the batch or the batch's last block, never part of one."""
        assert self._batch is None, "batches do not nest"
        tip = self._tip
        try:
            with self._write(what) as txn:
                self._batch = txn
                try:
                    yield
                finally:
                    self._batch = None
        except BaseException:
            self._tip = tip
            raise

    @contextmanager
    def _write(self, what: str) -> Iterator[lmdb.Transaction]:
        """One write transaction: committed (and synced) on success, aborted otherwise.
        Inside a `batch`, the batch's transaction, which the batch commits."""
        if self._batch is not None:
            yield self._batch
            return
        txn = self._env.begin(write=True)
        try:
            yield txn
            txn.commit()
            self.write_count += 1
        except lmdb.MapFullError as exc:
            txn.abort()
            raise StoreFull(
                f"{what} does not fit in the store: the map size setting map_size_bytes="
                f"{self.map_size_bytes} is reached; nothing was written. Raise map_size_bytes."
            ) from exc
        except lmdb.Error as exc:
            txn.abort()
            raise StoreError(f"{what} failed, nothing was written: {exc}") from exc
        except BaseException:
            txn.abort()
            raise

    @contextmanager
    def _read(self) -> Iterator[lmdb.Transaction]:
        try:
            if self._batch is not None:
                yield self._batch  # sees the batch's writes
                return
            with self._env.begin(write=False, buffers=False) as txn:
                yield txn
        except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError) as exc:
            raise StoreCorrupted(f"LMDB reports a damaged store at {self.path}: {exc}") from exc
        except lmdb.Error as exc:
            raise StoreError(f"read from the store at {self.path} failed: {exc}") from exc

    def _unseal(self, db_name: bytes, key: bytes, record: bytes) -> bytes:
        try:
            return unseal(db_name, key, record)
        except ChecksumMismatch as exc:
            raise StoreCorrupted(
                f"store at {self.path}: {exc} in database {db_name.decode()!r} "
                f"key {key.hex()}; the node must stop"
            ) from exc

    def _get(self, txn: lmdb.Transaction, db_name: bytes, key: bytes) -> bytes | None:
        record = txn.get(key, db=self._dbs[db_name])
        if record is None:
            return None
        assert isinstance(record, bytes)
        return self._unseal(db_name, key, record)

    def _records(self, txn: lmdb.Transaction, db_name: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a database in key order, each checksum verified."""
        for key, record in txn.cursor(db=self._dbs[db_name]):
            assert isinstance(key, bytes)
            assert isinstance(record, bytes)
            yield key, self._unseal(db_name, key, record)

    def _require(self, txn: lmdb.Transaction, db_name: bytes, key: bytes) -> bytes:
        value = self._get(txn, db_name, key)
        if value is None:
            raise StoreCorrupted(
                f"store at {self.path}: database {db_name.decode()!r} lacks key {key.hex()}"
            )
        return value

    def _load_tip(self) -> StoreTip:
        with self._read() as txn:
            return _decode_tip(self._require(txn, DB_META, KEY_TIP))

    # -- writes ---------------------------------------------------------------------------

    def commit_block(self, effects: BlockEffects, pool: PoolChanges = NO_POOL_CHANGES) -> None:
        """Write everything one decided block changes in one synced write transaction,
        with what it changes in this node's durable pool.

        Returns once the transaction is on disk. Raises StoreFull (nothing written) when
        the map size is reached, StoreError on other LMDB failures.
        """
        tip = self._tip
        assert effects.height == tip.height + 1, (effects.height, tip.height)
        assert len(effects.block_hash) == HASH_SIZE
        assert len(effects.app_hash) == HASH_SIZE
        header = decode_block_header(effects.block_bytes)
        assert header.height == effects.height
        assert header.hash() == effects.block_hash
        previous_hash = header.prev_block_hash
        assert previous_hash == tip.block_hash, "block does not link to the stored tip"
        new_tip = StoreTip(
            height=effects.height,
            block_hash=effects.block_hash,
            app_hash=effects.app_hash,
            changes_hash=effects.changes_hash,
            issued_total=effects.issued_total,
            redeemed_total=effects.redeemed_total,
        )
        with self._write(f"block {effects.height}") as txn:
            self._put_block(txn, effects, previous_hash)
            self._put_ledger_state(txn, effects)
            self._put_pool_changes(txn, pool)
            self._put_settled_evidence(txn, effects)
            if effects.validator_set_change is not None:
                change = effects.validator_set_change
                assert hashlib.sha256(change).digest() == header.next_validator_set_hash
                key = height_key(effects.height + 1)
                record = seal(DB_VALIDATOR_SETS, key, change)
                added = txn.put(key, record, db=self._dbs[DB_VALIDATOR_SETS], append=True)
                assert added, ("validator_sets", effects.height)
            if effects.governance is not None:
                record = seal(DB_META, KEY_GOVERNANCE, effects.governance)
                txn.put(KEY_GOVERNANCE, record, db=self._dbs[DB_META])
            txn.put(KEY_TIP, seal(DB_META, KEY_TIP, _encode_tip(new_tip)), db=self._dbs[DB_META])
        self._tip = new_tip

    def _put_block(self, txn: lmdb.Transaction, effects: BlockEffects, previous: bytes) -> None:
        key = height_key(effects.height)
        # Heights only grow, so append=True puts each record at the tree's end.
        for db_name, value in (
            (DB_BLOCKS, effects.block_bytes),
            (DB_CERTIFICATES, effects.certificate_bytes),
            (DB_CHAIN, effects.block_hash + previous),
        ):
            added = txn.put(key, seal(db_name, key, value), db=self._dbs[db_name], append=True)
            assert added, (db_name, effects.height)
        hash_record = seal(DB_BLOCK_HASHES, effects.block_hash, key)
        added = txn.put(
            effects.block_hash, hash_record, db=self._dbs[DB_BLOCK_HASHES], overwrite=False
        )
        assert added, "a block hash is stored twice"

    def _put_tx_results(self, txn: lmdb.Transaction, effects: BlockEffects) -> None:
        key = height_key(effects.height)
        record = seal(DB_TX_RESULTS, key, _encode_tx_results(effects.tx_results))
        added = txn.put(key, record, db=self._dbs[DB_TX_RESULTS], append=True)
        assert added, ("tx_results", effects.height)
        count = len(effects.tx_results)
        if not count:
            return
        hashes = [tx_hash for tx_hash, _ in effects.tx_results]
        # Sorted keys fill leaf pages in order. Sorting positions by their hash compares
        # bytes, not (hash, position) tuples.
        order = sorted(range(count), key=hashes.__getitem__)
        positions = map(TX_POSITION.pack, itertools.repeat(effects.height), order)
        index = zip(map(hashes.__getitem__, order), positions, strict=True)
        with txn.cursor(db=self._dbs[DB_TX_INDEX]) as cursor:
            _, indexed = cursor.putmulti(index, overwrite=False)
        # A transaction settles at most once (the ledger's block validity rule), so a
        # stored result is never overwritten; a repeat here is our own bug.
        assert indexed == count, ("a tx result is stored twice", indexed, count)

    def _put_ledger_state(self, txn: lmdb.Transaction, effects: BlockEffects) -> None:
        self._put_tx_results(txn, effects)
        # Sorted keys fill leaf pages in order, so LMDB touches each page once: the ledger
        # hands balances over in account order, references are sorted above. zip() hands
        # putmulti one reused pair at a time: no tuple per record for the GC to track.
        # Balances are overwritten; a reference is consumed once and never overwritten.
        # An account entry is written once: a repeat here is our own bug.
        for db_name, (keys, values), overwrite in (
            (DB_BALANCES, _sealed_balances(effects.balances), True),
            (DB_REFERENCES, _sealed_references(effects.references_added), False),
            (
                DB_ACCOUNT_ENTRIES,
                _sealed_account_entries(effects.height, effects.account_entries),
                False,
            ),
        ):
            if keys:
                with txn.cursor(db=self._dbs[db_name]) as cursor:
                    pairs = zip(keys, values, strict=True)
                    consumed, stored = cursor.putmulti(pairs, overwrite=overwrite)
                assert consumed == len(keys), (db_name, consumed, len(keys))
                assert overwrite or stored == len(keys), (db_name, "stored twice")

    def _put_pool_changes(self, txn: lmdb.Transaction, pool: PoolChanges) -> None:
        pool_db = self._dbs[DB_POOL]
        for tx_hash in pool.removed:
            txn.delete(tx_hash, db=pool_db)  # a missing key is not an error
        dropped_db = self._dbs[DB_DROPPED]
        for tx_hash, fate in pool.dropped:
            added = txn.put(
                tx_hash, seal(DB_DROPPED, tx_hash, fate), db=dropped_db, overwrite=False
            )
            assert added, "a dropped transaction's fate is stored twice"

    def _put_settled_evidence(self, txn: lmdb.Transaction, effects: BlockEffects) -> None:
        """Evidence the block settled: kept like the evidence this node saw (the first
        proof per height and validator), with where it settled on chain."""
        for settled in effects.evidence:
            key = height_key(settled.height) + settled.voter.encode("ascii")
            record = seal(DB_EVIDENCE, key, settled.evidence_bytes)
            txn.put(key, record, db=self._dbs[DB_EVIDENCE], overwrite=False)
            where = msgpack.packb([effects.height, settled.tx_hash], use_bin_type=True)
            record = seal(DB_EVIDENCE_ON_CHAIN, key, where)
            txn.put(key, record, db=self._dbs[DB_EVIDENCE_ON_CHAIN], overwrite=False)

    def load_evidence_on_chain(self, height: int, voter: str) -> tuple[int, bytes] | None:
        """(block height, tx hash) of the evidence of (height, validator) settled on
        chain; None if none settled."""
        key = height_key(height) + voter.encode("ascii")
        with self._read() as txn:
            record = txn.get(key, db=self._dbs[DB_EVIDENCE_ON_CHAIN])
            if record is None:
                return None
            assert isinstance(record, bytes)
            block_height, tx_hash = msgpack.unpackb(self._unseal(DB_EVIDENCE_ON_CHAIN, key, record))
        assert type(block_height) is int and type(tx_hash) is bytes
        return block_height, tx_hash

    def save_evidence(self, height: int, voter: str, evidence: bytes) -> bool:
        """Keep one proof of equivocation per (height, validator); False if one is kept."""
        key = height_key(height) + voter.encode("ascii")
        with self._write("evidence") as txn:
            record = seal(DB_EVIDENCE, key, evidence)
            added = txn.put(key, record, db=self._dbs[DB_EVIDENCE], overwrite=False)
        return bool(added)

    def load_evidence(self, from_height: int, count_max: int) -> list[bytes]:
        """Stored proofs of equivocation from `from_height` on, in height order."""
        assert count_max >= 1
        found: list[bytes] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self._dbs[DB_EVIDENCE])
            if not cursor.set_range(height_key(from_height)):
                return found
            for key, record in cursor:
                assert isinstance(key, bytes) and isinstance(record, bytes)
                found.append(self._unseal(DB_EVIDENCE, key, record))
                if len(found) == count_max:
                    break
        return found

    def save_anchor(self, height: int, record: bytes) -> None:
        """Keep (or update) the anchor record of `height`; on disk when this returns, so a
        signed EVM transaction is stored before it is sent (node/anchor.py)."""
        assert record
        key = height_key(height)
        with self._write(f"anchor {height}") as txn:
            txn.put(key, seal(DB_ANCHORS, key, record), db=self._dbs[DB_ANCHORS])

    def load_anchor(self, height: int) -> bytes | None:
        with self._read() as txn:
            return self._get(txn, DB_ANCHORS, height_key(height))

    def load_anchors(self, count_max: int) -> list[tuple[int, bytes]]:
        """The newest `count_max` anchor records, (height, record), newest first."""
        assert count_max >= 1
        found: list[tuple[int, bytes]] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self._dbs[DB_ANCHORS])
            if not cursor.last():
                return found
            for key, record in cursor.iterprev():
                assert isinstance(key, bytes) and isinstance(record, bytes)
                found.append((int.from_bytes(key, "big"), self._unseal(DB_ANCHORS, key, record)))
                if len(found) == count_max:
                    break
        return found

    def save_pool_changes(self, pool: PoolChanges) -> None:
        """Apply pool changes outside a block (after a restart); on disk when this returns."""
        with self._write("pool changes") as txn:
            self._put_pool_changes(txn, pool)

    def save_pool(self, txs: Sequence[tuple[bytes, bytes]]) -> None:
        """Keep (tx hash, wire bytes) of accepted transactions; on disk when this returns.
        One synced write transaction for the whole burst."""
        assert txs
        pool_db = self._dbs[DB_POOL]
        with self._write(f"{len(txs)} accepted transactions") as txn:
            for tx_hash, raw in txs:
                assert len(tx_hash) == HASH_SIZE
                txn.put(tx_hash, seal(DB_POOL, tx_hash, raw), db=pool_db)

    def save_durable_state(self, data: bytes) -> None:
        """Persist the consensus core's durable state; on disk when this returns."""
        assert data
        with self._write("durable consensus state") as txn:
            txn.put(KEY_DURABLE, seal(DB_CONSENSUS, KEY_DURABLE, data), db=self._dbs[DB_CONSENSUS])

    # -- reads ----------------------------------------------------------------------------

    @property
    def tip(self) -> StoreTip:
        return self._tip

    def load_durable_state(self) -> bytes | None:
        with self._read() as txn:
            return self._get(txn, DB_CONSENSUS, KEY_DURABLE)

    def load_block(self, height: int) -> bytes | None:
        with self._read() as txn:
            return self._get(txn, DB_BLOCKS, height_key(height))

    def load_certificate(self, height: int) -> bytes | None:
        with self._read() as txn:
            return self._get(txn, DB_CERTIFICATES, height_key(height))

    def load_height_of(self, block_hash: bytes) -> int | None:
        with self._read() as txn:
            key = self._get(txn, DB_BLOCK_HASHES, block_hash)
        return None if key is None else int.from_bytes(key, "big")

    def load_block_by_hash(self, block_hash: bytes) -> bytes | None:
        height = self.load_height_of(block_hash)
        return None if height is None else self.load_block(height)

    def load_tx_result(self, tx_hash: bytes) -> bytes | None:
        """The stored result of a transaction, None if no block carries it.

        Raises:
            StoreCorrupted: the (unsealed) index entry does not point at a result of
                this very transaction, or the per-height record fails its checksum.
        """
        with self._read() as txn:
            position = txn.get(tx_hash, db=self._dbs[DB_TX_INDEX])
            if position is None:
                return None
            assert isinstance(position, bytes)
            found = None
            if len(position) == TX_POSITION.size:
                height, index = TX_POSITION.unpack(position)
                if 1 <= height <= self._tip.height:
                    record = self._require(txn, DB_TX_RESULTS, height_key(height))
                    found = _tx_result_at(record, index)
        if found is None or found[0] != tx_hash:
            raise StoreCorrupted(
                f"store at {self.path}: database 'tx_index' key {tx_hash.hex()} does not "
                f"point at this transaction's result (entry {position.hex()}); the node must stop"
            )
        return found[1]

    def load_governance(self) -> bytes | None:
        """The governance state record the last block that changed it wrote; None while
        the state is genesis's."""
        with self._read() as txn:
            return self._get(txn, DB_META, KEY_GOVERNANCE)

    def load_validator_set_changes(self, height_max: int) -> list[tuple[int, bytes]]:
        """(from height, encoded set) of every change of validator set in force at or
        before `height_max`, ascending."""
        with self._read() as txn:
            changes = []
            for key, value in self._records(txn, DB_VALIDATOR_SETS):
                from_height = int.from_bytes(key, "big")
                if from_height > height_max:
                    break
                changes.append((from_height, value))
            return changes

    def load_balance(self, account: str) -> int | None:
        """The stored balance, or None if the account was never written (genesis value)."""
        with self._read() as txn:
            value = self._get(txn, DB_BALANCES, account.encode("ascii"))
        return None if value is None else int.from_bytes(value, "big")

    def load_balances(self) -> dict[str, int]:
        """Every balance ever written, the latest value per account."""
        with self._read() as txn:
            return {
                key.decode("ascii"): int.from_bytes(value, "big")
                for key, value in self._records(txn, DB_BALANCES)
            }

    def load_account_entries(
        self,
        account: str,
        *,
        from_height: int,
        from_index: int,
        to_height: int,
        count_max: int,
    ) -> list[tuple[int, AccountEntry]]:
        """(height, entry) of the account's entries from (from_height, from_index) on,
        up to and including height `to_height`, ascending, at most `count_max`: one
        cursor scan in one read transaction.

        Raises:
            StoreCorrupted: a record fails its checksum or has not its size.
        """
        assert 1 <= from_height and to_height <= HEIGHT_MAX
        assert 0 <= from_index <= TX_COUNT_MAX
        assert count_max >= 1
        name = account.encode("ascii")
        prefix = bytes((len(name),)) + name
        end = prefix + height_key(to_height + 1) if to_height < HEIGHT_MAX else None
        found: list[tuple[int, AccountEntry]] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self._dbs[DB_ACCOUNT_ENTRIES])
            if not cursor.set_range(prefix + ENTRY_POSITION.pack(from_height, from_index)):
                return found
            for key, record in cursor:
                assert isinstance(key, bytes) and isinstance(record, bytes)
                if not key.startswith(prefix) or (end is not None and key >= end):
                    break
                value = self._unseal(DB_ACCOUNT_ENTRIES, key, record)
                if (
                    len(key) != len(prefix) + ENTRY_POSITION.size
                    or len(value) != ACCOUNT_ENTRY.size
                ):
                    raise StoreCorrupted(
                        f"store at {self.path}: database 'account_entries' key {key.hex()} "
                        "has not the size of an account entry; the node must stop"
                    )
                height, index = ENTRY_POSITION.unpack_from(key, len(prefix))
                tx_hash, delta, balance_after = ACCOUNT_ENTRY.unpack(value)
                found.append((height, AccountEntry(account, index, tx_hash, delta, balance_after)))
                if len(found) == count_max:
                    break
        return found

    def load_references(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The tx hash holding each (signer, UETR) key, None where it is not consumed;
        one read transaction for all of them."""
        with self._read() as txn:
            return [self._get(txn, DB_REFERENCES, key) for key in keys]

    def load_all_references(self) -> dict[bytes, bytes]:
        """Every consumed reference (for `somnet check`): key -> tx hash."""
        with self._read() as txn:
            return dict(self._records(txn, DB_REFERENCES))

    def load_pool(self) -> list[bytes]:
        """The wire bytes of every accepted transaction not yet settled or dropped."""
        with self._read() as txn:
            return [raw for _, raw in self._records(txn, DB_POOL)]

    def load_dropped(self, tx_hash: bytes) -> bytes | None:
        """The encoded fate of an accepted transaction that will never settle."""
        with self._read() as txn:
            return self._get(txn, DB_DROPPED, tx_hash)

    def reference_count(self) -> int:
        """How many (signer, UETR) references were ever consumed."""
        with self._read() as txn:
            return int(txn.stat(self._dbs[DB_REFERENCES])["entries"])

    def entry_counts(self) -> dict[str, int]:
        with self._read() as txn:
            return {name.decode(): int(txn.stat(self._dbs[name])["entries"]) for name in DB_NAMES}

    # -- verification ---------------------------------------------------------------------

    def verify(self, *, full: bool = False) -> None:
        """Check the hash chain over all heights and that the indexes agree with the tip.

        With full=True also read every block, certificate and block-hash record.

        Raises:
            StoreCorrupted: naming the first inconsistency found.
        """
        tip = self._tip
        counts = self.entry_counts()
        for name in ("blocks", "certificates", "chain", "block_hashes", "tx_results"):
            if counts[name] != tip.height:
                raise StoreCorrupted(
                    f"store at {self.path}: database {name!r} holds {counts[name]} "
                    f"records but the tip is at height {tip.height}"
                )
        with self._read() as txn:
            last_hash = self._verify_hash_chain(txn, tip)
            if last_hash != tip.block_hash:
                raise StoreCorrupted(f"store at {self.path}: tip hash disagrees with the chain")
            first = 1 if full else max(1, tip.height)
            for height in range(first, tip.height + 1):
                self._verify_height(txn, height)

    def _verify_hash_chain(self, txn: lmdb.Transaction, tip: StoreTip) -> bytes:
        previous = ZERO_HASH
        expected_height = 1
        for key, value in self._records(txn, DB_CHAIN):
            height = int.from_bytes(key, "big")
            if height != expected_height:
                raise StoreCorrupted(
                    f"store at {self.path}: chain jumps from height {expected_height - 1} "
                    f"to {height}"
                )
            assert len(value) == CHAIN_SIZE
            if value[HASH_SIZE:] != previous:
                raise StoreCorrupted(
                    f"store at {self.path}: hash chain broken at height {height}: its "
                    f"previous hash {value[HASH_SIZE:].hex()} is not {previous.hex()}"
                )
            previous = value[:HASH_SIZE]
            expected_height += 1
        assert expected_height - 1 == tip.height  # the counts matched above
        return previous

    def _verify_height(self, txn: lmdb.Transaction, height: int) -> None:
        key = height_key(height)
        chain = self._require(txn, DB_CHAIN, key)
        block = self._require(txn, DB_BLOCKS, key)
        self._require(txn, DB_CERTIFICATES, key)
        self._require(txn, DB_TX_RESULTS, key)
        if self._require(txn, DB_BLOCK_HASHES, chain[:HASH_SIZE]) != key:
            raise StoreCorrupted(f"store at {self.path}: block hash index wrong at {height}")
        try:
            header = decode_block_header(block)
        except BlockError as exc:
            raise StoreCorrupted(f"store at {self.path}: block {height}: {exc}") from exc
        if header.hash() != chain[:HASH_SIZE] or header.prev_block_hash != chain[HASH_SIZE:]:
            raise StoreCorrupted(
                f"store at {self.path}: block {height}'s header disagrees with its chain record"
            )

    # -- read-only access for `somnet check` (node/check.py) ------------------------------

    @classmethod
    def open_readonly(
        cls,
        path: Path,
        *,
        chain_id: str,
        map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT,
    ) -> Store:
        """Open an existing store without writing to it: LMDB read-only, nothing created
        but LMDB's lock file if it is missing. Only the marker and the data file's header
        are checked; the caller checks, and reports, everything else (`open` would stop
        at the first fault).

        Raises:
            StoreCorrupted: a damaged marker, or a missing, truncated or emptied data file.
            StoreError: no store at `path`, another chain's store, or LMDB cannot open it.
        """
        assert chain_id
        if not (path / MARKER_NAME).exists():
            if (path / DATA_NAME).exists():
                raise StoreCorrupted(
                    f"{path / DATA_NAME} exists but the store marker {MARKER_NAME} does not"
                )
            raise StoreError(f"no store at {path}: the node has not stored anything yet")
        marker = _read_marker(path)
        if marker.get("chain_id") != chain_id:
            raise StoreError(
                f"store at {path} belongs to chain {marker.get('chain_id')!r}, not {chain_id!r}"
            )
        _check_data_file(path)
        env = _open_env(path, map_size_bytes, readonly=True)
        return cls(path=path, env=env, chain_id=chain_id, map_size_bytes=map_size_bytes)

    def load_record(self, db_name: bytes, key: bytes) -> bytes | None:
        """One record of any sealed database, its checksum verified; None if absent."""
        assert db_name != DB_TX_INDEX  # not sealed
        with self._read() as txn:
            return self._get(txn, db_name, key)

    def scan(self, db_name: bytes) -> Iterator[tuple[bytes, bytes | StoreCorrupted]]:
        """Every record of a sealed database in key order, in one read transaction: its
        value, or the StoreCorrupted its checksum raised, so that a caller can report
        every damaged record rather than the first."""
        assert db_name != DB_TX_INDEX  # not sealed
        with self._read() as txn:
            for key, record in txn.cursor(db=self._dbs[db_name]):
                assert isinstance(key, bytes)
                assert isinstance(record, bytes)
                value: bytes | StoreCorrupted
                try:
                    value = self._unseal(db_name, key, record)
                except StoreCorrupted as exc:
                    value = exc
                yield key, value

    def load_tx_results(self, height: int) -> list[tuple[bytes, bytes]] | None:
        """Every (tx hash, encoded result) of one height's record, in block order; None
        if the store holds no record for `height`.

        Raises:
            StoreCorrupted: the checksum fails, or the layout does not add up.
        """
        key = height_key(height)
        with self._read() as txn:
            record = self._get(txn, DB_TX_RESULTS, key)
        if record is None:
            return None
        if not self._tx_results_layout_fits(record):
            raise StoreCorrupted(
                f"store at {self.path}: database 'tx_results' key {key.hex()}: the "
                "record's layout does not add up"
            )
        (count,) = TX_COUNT.unpack_from(record)
        entries = [_tx_result_at(record, index) for index in range(count)]
        assert all(entry is not None for entry in entries)
        return [entry for entry in entries if entry is not None]

    @staticmethod
    def _tx_results_layout_fits(record: bytes) -> bool:
        """True if a per-height record's parts fit `_encode_tx_results`' layout: its
        offsets never run backwards and the last one ends the record."""
        if len(record) < TX_COUNT.size:
            return False
        count = int(TX_COUNT.unpack_from(record)[0])
        values_at = TX_COUNT.size + (HASH_SIZE + TX_COUNT.size) * count
        if len(record) < values_at:
            return False
        ends = struct.unpack_from(f">{count}I", record, TX_COUNT.size + HASH_SIZE * count)
        starts = (0, *ends)[:-1]
        if any(start > end for start, end in zip(starts, ends, strict=True)):
            return False
        return (ends[-1] if count else 0) == len(record) - values_at
