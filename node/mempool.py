"""The mempool: verified transactions waiting for a block.

A transaction's signature is checked once, when it enters; from then on it is known by
its hash (sha256 of the signed content). The pool admits only what the next block may
carry: it applies every rule of the ledger that no other transaction can change
(`Ledger.check_admission`: expiry, accounts, owner, issuer), refuses a (signer, UETR)
that is consumed or already waiting, and leaves balances to the block, where the result
is recorded deterministically. So a proposer building from the pool never builds a block
that it or anyone else would refuse for its transactions.

After each settled block the pool drops what can no longer settle: the block's own
transactions, a waiting transaction whose (signer, UETR) the block consumed with another
transaction, and those whose expiry height the chain has reached. Each costs O(its
count), never a scan of the pool. `kept` names the transactions this node accepted
through its API and keeps in its store until they settle or are dropped; for those, a
drop is a `Dropped` fate the API reports for ever.
"""

from __future__ import annotations

import collections
import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.clock import Clock, SystemClock
from node.effects import PoolChanges
from node.errors import NodeError, RefusalCode, TxRefused
from node.ledger import Ledger
from node.tx import Tx, decode_tx

__all__ = ["BYTES_MAX", "Admission", "Admitted", "Dropped", "Mempool", "decode_dropped"]

BYTES_MAX = 256 * 1024 * 1024  # with txs_max, bounds the pool's memory
LOCAL = ""  # the source of a transaction submitted through this node's own API
# Shares of the pool (of txs_max) for what peers send, so that no participant can fill it
# for the others: one signer, or one peer, may hold at most a quarter; everything peers
# sent at most three quarters, so this node's own clients always find room.
SIGNER_SHARE_DIVISOR = 4
PEER_SHARE_DIVISOR = 4
PEERS_SHARE_NUMERATOR = 3
HASH_SIZE = 32
_DROPPED = struct.Struct(">BQ")


class Admission(enum.Enum):
    ADDED = "added"  # new: verified and queued for a block
    PENDING = "pending"  # the same transaction is already waiting
    SETTLED = "settled"  # the same transaction is already in a block


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    admission: Admission
    tx: Tx


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """Why an accepted transaction left the pool without a block, for ever: EXPIRED (the
    chain reached its expiry height; it never settled and is safe to send again with a
    new UETR) or DUPLICATE (another transaction consumed its (signer, UETR)).

    Encoding: code (1 byte), height (8 bytes, the chain height when it was dropped),
    then for DUPLICATE the 32-byte hash of the transaction holding the UETR."""

    code: RefusalCode
    height: int
    first_tx_hash: bytes | None

    def encode(self) -> bytes:
        assert self.code in (RefusalCode.EXPIRED, RefusalCode.DUPLICATE)
        assert (self.first_tx_hash is None) == (self.code is RefusalCode.EXPIRED)
        encoded = _DROPPED.pack(int(self.code), self.height)
        return encoded if self.first_tx_hash is None else encoded + self.first_tx_hash


def decode_dropped(data: bytes) -> Dropped:
    """Decode a stored fate. Raises NodeError if the record is corrupt."""
    if len(data) not in (_DROPPED.size, _DROPPED.size + HASH_SIZE):
        raise NodeError(f"corrupt dropped record: {len(data)} bytes")
    code, height = _DROPPED.unpack_from(data)
    if code not in (RefusalCode.EXPIRED, RefusalCode.DUPLICATE):
        raise NodeError(f"corrupt dropped record: code {code}")
    first = data[_DROPPED.size :] or None
    if (first is None) != (code == RefusalCode.EXPIRED):
        raise NodeError("corrupt dropped record: first tx hash does not fit its code")
    return Dropped(code=RefusalCode(code), height=height, first_tx_hash=first)


class Mempool:
    """Insertion-ordered, bounded, verified transactions. One owner: the node's loop."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        txs_max: int,
        bytes_max: int = BYTES_MAX,
        clock: Clock | None = None,
    ) -> None:
        """Args:
        clock: when each transaction was admitted (`now_ms`), for the finality latency
            the node reports (`admitted_ms`)."""
        assert txs_max >= 1
        assert bytes_max >= 1
        self._ledger = ledger
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        self._bytes = 0
        self._clock = SystemClock() if clock is None else clock
        self._txs: dict[bytes, Tx] = {}  # tx hash -> tx, in arrival order
        self._admitted_ms: dict[bytes, int] = {}  # tx hash -> clock.now_ms() at admission
        self._keys: dict[bytes, bytes] = {}  # (signer, UETR) key -> tx hash
        # expiry height -> the pooled tx hashes that expire there, in arrival order; a
        # settled one leaves at once (kept until its expiry, settled hashes were up to
        # EXPIRY_HEIGHTS_MAX heights of traffic, about 45 bytes each: 70 MB at 1,400/s)
        self._by_expiry: dict[int, dict[bytes, None]] = {}
        self._expired_below = ledger.height + 1  # every smaller expiry was dropped
        self.kept: set[bytes] = set()  # accepted through this node's API, in the store
        self._source: dict[bytes, str] = {}  # tx hash -> the peer it came from, or LOCAL
        self._by_signer: collections.Counter[str] = collections.Counter()
        self._by_source: collections.Counter[str] = collections.Counter()  # LOCAL included
        self.signer_share_max = max(1, txs_max // SIGNER_SHARE_DIVISOR)
        self.peer_share_max = max(1, txs_max // PEER_SHARE_DIVISOR)
        self.peers_share_max = max(1, txs_max * PEERS_SHARE_NUMERATOR // 4)

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> Tx | None:
        return self._txs.get(tx_hash)

    @property
    def size_bytes(self) -> int:
        """The waiting transactions' encoded size in all."""
        return self._bytes

    def admitted_ms(self, tx_hashes: Iterable[bytes]) -> list[int]:
        """When each of these transactions that waits here was admitted (`now_ms`); those
        it never held (another node's, in a block) are left out."""
        admitted = self._admitted_ms
        return [admitted[tx_hash] for tx_hash in tx_hashes if tx_hash in admitted]

    @property
    def chain_id(self) -> str:
        return self._ledger.chain_id

    @property
    def height(self) -> int:
        """The height of the last settled block, the one admission judges against."""
        return self._ledger.height

    def holder_of(self, tx: Tx) -> bytes | None:
        """The hash of the settled transaction that consumed tx's (signer, UETR)."""
        return self._ledger.lookup_reference(tx)

    def add(self, tx_bytes: bytes, *, source: str = LOCAL, catching_up: bool = False) -> Admitted:
        """Admit a transaction from a client or a peer.

        Args:
            source: the peer that sent it, or LOCAL for this node's API; each peer and
                each signer may hold only its share of the pool.
            catching_up: this node is behind the network and cannot judge a new
                transaction yet; what it knows for certain (pending here, or settled)
                is still answered.
        Raises:
            TxRefused: with the code a bank sees (MALFORMED, WRONG_CHAIN, BAD_SIGNATURE,
                NOT_AUTHORIZED, UNKNOWN_ACCOUNT, DUPLICATE, EXPIRED, EXPIRY_TOO_FAR,
                MEMPOOL_FULL, CATCHING_UP, ...).
        """
        tx = decode_tx(tx_bytes, self._ledger.chain_id)  # cheap; MALFORMED, WRONG_CHAIN
        return self._admit(tx, source=source, catching_up=catching_up, signature_checked=False)

    def add_verified(self, tx: Tx, *, source: str) -> Admitted:
        """Admit a peer's transaction that `Ledger.check_tx` already decoded and verified,
        off the event loop (node.verifier). Raises TxRefused as `add` does."""
        return self._admit(tx, source=source, catching_up=False, signature_checked=True)

    def _admit(
        self, tx: Tx, *, source: str, catching_up: bool, signature_checked: bool
    ) -> Admitted:
        ledger = self._ledger
        if tx.tx_hash in self._txs:
            return Admitted(admission=Admission.PENDING, tx=tx)
        # Before expiry: the same bytes always get their first result, even once expired.
        holder = ledger.lookup_reference(tx)
        if holder is not None:
            if holder == tx.tx_hash:
                return Admitted(admission=Admission.SETTLED, tx=tx)
            raise TxRefused(RefusalCode.DUPLICATE, "this UETR was already used by the signer")
        key = tx.uetr + tx.signer.encode()
        if key in self._keys:
            raise TxRefused(RefusalCode.DUPLICATE, "this UETR is already used by a pending tx")
        if catching_up:
            raise TxRefused(
                RefusalCode.CATCHING_UP,
                f"this node is at height {ledger.height} and catching up with the network; "
                "it cannot judge a new transaction yet: retry shortly or use another node",
            )
        ledger.check_admission(tx)
        if len(self._txs) >= self.txs_max or self._bytes + len(tx.raw) > self.bytes_max:
            raise TxRefused(RefusalCode.MEMPOOL_FULL, "the mempool is full; retry later")
        self._check_shares(tx.signer, source)
        if not signature_checked:
            ledger.check_signature(tx)  # the one signature check this transaction gets here
        self._txs[tx.tx_hash] = tx
        self._bytes += len(tx.raw)
        self._keys[key] = tx.tx_hash
        self._source[tx.tx_hash] = source
        self._admitted_ms[tx.tx_hash] = self._clock.now_ms()
        self._by_signer[tx.signer] += 1
        self._by_source[source] += 1
        self._by_expiry.setdefault(tx.expiry_height, {})[tx.tx_hash] = None
        assert len(self._txs) == len(self._keys)
        return Admitted(admission=Admission.ADDED, tx=tx)

    def _check_shares(self, signer: str, source: str) -> None:
        """Shares bound what peers bring; this node's own clients are bounded by the pool."""
        if source == LOCAL:
            return
        if self._by_signer[signer] >= self.signer_share_max:
            raise TxRefused(RefusalCode.MEMPOOL_FULL, f"{signer!r} holds its share of the mempool")
        if self._by_source[source] >= self.peer_share_max:
            raise TxRefused(RefusalCode.MEMPOOL_FULL, f"peer {source!r} holds its share")
        if len(self._txs) - self._by_source[LOCAL] >= self.peers_share_max:
            raise TxRefused(RefusalCode.MEMPOOL_FULL, "peers hold their share of the mempool")

    def verified_hashes(self) -> dict[bytes, Tx]:
        """Hashes whose signatures this pool has checked (for block validation)."""
        return self._txs

    def take(self, count_max: int, bytes_max: int, framing_bytes: int = 0) -> list[bytes]:
        """The oldest transactions for a proposal, without removing them: at most
        `count_max`, costing at most `bytes_max` with `framing_bytes` added per
        transaction. One that does not fit is passed over, never blocking the rest."""
        taken: list[bytes] = []
        size = 0
        for tx in self._txs.values():
            if len(taken) == count_max or size >= bytes_max:
                break
            cost = len(tx.raw) + framing_bytes
            if size + cost <= bytes_max:
                taken.append(tx.raw)
                size += cost
        return taken

    def remove_settled(self, consumed: Sequence[tuple[bytes, bytes]]) -> PoolChanges:
        """Forget what the block just settled and what can no longer settle.

        Args:
            consumed: the block's (reference key, tx hash) pairs (`references_added`);
                the ledger has already settled it.
        Returns:
            What the store must change for the kept transactions, in the block's write.
        """
        height = self._ledger.height
        removed: list[bytes] = []
        dropped: list[tuple[bytes, bytes]] = []
        for key, tx_hash in consumed:
            waiting = self._keys.get(key)
            if waiting is None:
                continue
            if self._remove(waiting, removed) and waiting != tx_hash:
                fate = Dropped(code=RefusalCode.DUPLICATE, height=height, first_tx_hash=tx_hash)
                dropped.append((waiting, fate.encode()))
        for expiry in range(self._expired_below, height + 1):
            for waiting in list(self._by_expiry.get(expiry, ())):
                if self._remove(waiting, removed):
                    fate = Dropped(code=RefusalCode.EXPIRED, height=height, first_tx_hash=None)
                    dropped.append((waiting, fate.encode()))
        self._expired_below = max(self._expired_below, height + 1)
        assert len(self._txs) == len(self._keys)
        assert self._bytes >= 0
        return PoolChanges(removed=tuple(removed), dropped=tuple(dropped))

    def _remove(self, tx_hash: bytes, removed: list[bytes]) -> bool:
        """Forget one transaction; if it was kept, note it in `removed` and say so."""
        tx = self._txs.pop(tx_hash)
        del self._keys[tx.uetr + tx.signer.encode()]
        expiring = self._by_expiry[tx.expiry_height]
        del expiring[tx_hash]
        if not expiring:
            del self._by_expiry[tx.expiry_height]
        source = self._source.pop(tx_hash)
        del self._admitted_ms[tx_hash]
        for counter, key in ((self._by_signer, tx.signer), (self._by_source, source)):
            counter[key] -= 1
            if not counter[key]:
                del counter[key]  # the counters stay as small as the pool's variety
        self._bytes -= len(tx.raw)
        if tx_hash not in self.kept:
            return False
        self.kept.discard(tx_hash)
        removed.append(tx_hash)
        return True
