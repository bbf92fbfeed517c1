"""The record that crosses from the ledger to the store: what settling one block changes.

The ledger computes it in memory; the store writes all of it in one LMDB write
transaction, so a crash leaves either the previous block or this one, never half.
"""

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["NO_POOL_CHANGES", "AccountEntry", "BlockEffects", "PoolChanges", "SettledEvidence"]


class AccountEntry(NamedTuple):
    """One applied transaction's movement on one account: a line of its statement.

    A NamedTuple, not a dataclass: the ledger makes one per touched account per
    transaction on its hottest path. A payout whose legs credit one account twice moves
    it once, by the legs' sum (a transaction never debits and credits one account)."""

    account: str
    tx_index: int  # the transaction's position in its block
    tx_hash: bytes
    delta: int  # signed tyiyn: negative for a debit, positive for a credit, never 0
    balance_after: int  # the account's balance right after this transaction


class SettledEvidence(NamedTuple):
    """An applied evidence transaction: the API lists it with where it settled."""

    height: int  # of the conflicting votes
    voter: str  # the validator that signed both
    evidence_bytes: bytes  # consensus.wire.encode_evidence
    tx_hash: bytes  # the evidence transaction; the block is BlockEffects.height


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
    # Per applied transaction, in block order, one per account it moves: the statement
    # index (Store.load_account_entries). Refused transactions move nothing: none.
    account_entries: tuple[AccountEntry, ...]
    issued_total: int  # cumulative issued after this block
    redeemed_total: int  # cumulative redeemed after this block
    # The whole governance state record (node/governance.py GovernanceState.encode) when
    # this block changed it; None when it is the previous block's.
    governance: bytes | None = None
    evidence: tuple[SettledEvidence, ...] = ()  # applied evidence transactions, block order
    # The encoded validator set (ValidatorSet.encode) in force from height + 1, when it is
    # not this block's set: the header's next_validator_set_hash is its sha256.
    validator_set_change: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolChanges:
    """What a settled block changes among the transactions this node promised to keep
    (accepted through its API): written in the same write transaction as the block."""

    removed: tuple[bytes, ...] = ()  # tx hashes that left the durable pool
    dropped: tuple[tuple[bytes, bytes], ...] = ()  # (tx hash, encoded fate) never to settle


NO_POOL_CHANGES = PoolChanges()
