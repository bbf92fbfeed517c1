"""The mempool: verified transactions waiting for a block.

A transaction's signature is checked once, when it enters; from then on it is known by
its hash (sha256 of the signed content). The pool refuses what the ledger would refuse
for certain (bad signature, unknown signer, a (signer, UETR) already used by another
transaction, already expired); business rules that depend on balances are left to the
block, where the result is recorded deterministically.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from node.errors import RefusalCode, TxRefused
from node.ledger import Ledger
from node.tx import Tx, decode_tx

__all__ = ["BYTES_MAX", "Admission", "Mempool"]

BYTES_MAX = 256 * 1024 * 1024  # with txs_max, bounds the pool's memory


class Admission(enum.Enum):
    ADDED = "added"  # new: verified and queued for a block
    PENDING = "pending"  # the same transaction is already waiting
    SETTLED = "settled"  # the same transaction is already in a block


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    admission: Admission
    tx_hash: bytes


class Mempool:
    """Insertion-ordered, bounded, verified transactions. One owner: the node's loop."""

    def __init__(self, ledger: Ledger, *, txs_max: int, bytes_max: int = BYTES_MAX) -> None:
        assert txs_max >= 1
        assert bytes_max >= 1
        self._ledger = ledger
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        self._bytes = 0
        self._txs: dict[bytes, Tx] = {}  # tx hash -> tx, in arrival order
        self._references: dict[bytes, bytes] = {}  # (signer, UETR) key -> tx hash

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def add(self, tx_bytes: bytes) -> Admitted:
        """Admit a transaction from a client or a peer.

        Raises:
            TxRefused: with the code a bank sees (MALFORMED, WRONG_CHAIN, BAD_SIGNATURE,
                NOT_AUTHORIZED, DUPLICATE, EXPIRED, MEMPOOL_FULL, ...).
        """
        ledger = self._ledger
        tx = decode_tx(tx_bytes, ledger.chain_id)  # cheap; raises MALFORMED / WRONG_CHAIN
        if tx.tx_hash in self._txs:
            return Admitted(admission=Admission.PENDING, tx_hash=tx.tx_hash)
        key = tx.uetr + tx.signer.encode()
        settled = ledger.references.get(key)
        if settled is not None:
            if settled[0] == tx.tx_hash:
                return Admitted(admission=Admission.SETTLED, tx_hash=tx.tx_hash)
            raise TxRefused(RefusalCode.DUPLICATE, "this UETR was already used by the signer")
        waiting = self._references.get(key)
        if waiting is not None:
            raise TxRefused(RefusalCode.DUPLICATE, "this UETR is already used by a pending tx")
        if tx.expiry_height <= ledger.height:
            raise TxRefused(RefusalCode.EXPIRED, f"expiry height {tx.expiry_height} has passed")
        if len(self._txs) >= self.txs_max or self._bytes + len(tx.raw) > self.bytes_max:
            raise TxRefused(RefusalCode.MEMPOOL_FULL, "the mempool is full; retry later")
        ledger.check_signature(tx)  # the one signature check this transaction gets here
        self._txs[tx.tx_hash] = tx
        self._bytes += len(tx.raw)
        self._references[key] = tx.tx_hash
        assert len(self._txs) == len(self._references)
        return Admitted(admission=Admission.ADDED, tx_hash=tx.tx_hash)

    def verified_hashes(self) -> dict[bytes, Tx]:
        """Hashes whose signatures this pool has checked (for block validation)."""
        return self._txs

    def take(self, count_max: int, bytes_max: int) -> list[bytes]:
        """The oldest transactions for a proposal, without removing them."""
        taken: list[bytes] = []
        size = 0
        for tx in self._txs.values():
            if len(taken) == count_max or size + len(tx.raw) > bytes_max:
                break
            taken.append(tx.raw)
            size += len(tx.raw)
        return taken

    def remove_settled(self, tx_hashes: Iterable[bytes]) -> None:
        """Forget the transactions of a settled block, and any that can no longer apply."""
        for tx_hash in tx_hashes:
            tx = self._txs.pop(tx_hash, None)
            if tx is not None:
                del self._references[tx.uetr + tx.signer.encode()]
                self._bytes -= len(tx.raw)
        height = self._ledger.height
        references = self._ledger.references
        stale = [
            tx
            for tx in self._txs.values()
            if tx.expiry_height <= height or (tx.uetr + tx.signer.encode()) in references
        ]
        for tx in stale:
            del self._txs[tx.tx_hash]
            del self._references[tx.uetr + tx.signer.encode()]
            self._bytes -= len(tx.raw)
        assert len(self._txs) == len(self._references)
        assert self._bytes >= 0
