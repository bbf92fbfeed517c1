"""The record that crosses from the ledger to the store: what settling one block changes.

The ledger computes it in memory; the store writes all of it in one LMDB write
transaction, so a crash leaves either the previous block or this one, never half.
"""

from dataclasses import dataclass

__all__ = ["NO_POOL_CHANGES", "BlockEffects", "PoolChanges"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockEffects:
    """Everything that settling one decided block changes.

    The store writes it in ONE LMDB write transaction.
    """

    height: int
    block_hash: bytes  # 32 bytes, = consensus value_id of the block
    block_bytes: bytes  # encoded block (header, transactions, previous block's certificate)
    certificate_bytes: (
        bytes  # this block's own commit certificate, consensus.wire.encode_certificate
    )
    app_hash: bytes  # 32 bytes: application hash after this block
    changes_hash: bytes  # 32 bytes: hash of this block's changes, one input of app_hash
    balances: tuple[tuple[str, int], ...]  # (account id, new balance) for changed accounts only
    tx_results: tuple[tuple[bytes, bytes], ...]  # (tx hash, encoded TxResult) for every tx
    references_added: tuple[tuple[bytes, bytes], ...]  # (reference key, tx hash), one per tx
    issued_total: int  # cumulative issued after this block
    redeemed_total: int  # cumulative redeemed after this block


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolChanges:
    """What a settled block changes among the transactions this node promised to keep
    (accepted through its API): written in the same write transaction as the block."""

    removed: tuple[bytes, ...] = ()  # tx hashes that left the durable pool
    dropped: tuple[tuple[bytes, bytes], ...] = ()  # (tx hash, encoded fate) never to settle


NO_POOL_CHANGES = PoolChanges()
