"""The one way in for transactions: from this node's API, from peers, and back from the
store after a restart.

The promise to a bank: a transaction this node answered `pending` is kept. `submit`
admits it to the mempool, then writes it to the store's pool in a synced LMDB write
before the answer leaves; the submissions of one loop turn, and all of one batch
(`submit_many`), share that one write. It is
gossiped once kept. After a restart `restore` re-admits every kept transaction (or
records why it can no longer settle) and gossips it again. A kept transaction leaves the
store's pool only in the write transaction of the block that settles it, or with its
`Dropped` fate (expired, or its UETR consumed by another transaction).

Gossip is best effort all the way (a full send queue drops, a peer over its check budget
or with its mempool share full refuses, a validator restarts and forgets its mempool), so
kept is not enough: a kept transaction must also reach a proposer. Each gossip payload is
at most `gossip_bytes_max` (half a frame: a payload no frame can hold was dropped whole,
which stranded 844 of 1,000 large payouts submitted at once). And what this node kept is
gossiped again while it still waits (`relay_again`, every RELAY_AGAIN_TICK_MS), once it is
due (RELAY_AGAIN_FIRST_MS after it was last sent, then at doubling intervals up to
RELAY_AGAIN_MAX_MS) and looks lost:
- overtaken: a transaction this node gossiped after it has settled. Every validator gets
  this node's gossip in the order it was sent and proposes in arrival order, so one left
  behind was dropped somewhere (a full queue, a peer's check budget or mempool share);
- or passed by: a block settled empty since it came due (its proposer had nothing);
- or stalled: none of this node's kept transactions settled for RELAY_AGAIN_STALL_MS while
  some waited (the validators restarted and forgot them all, and others' keep them busy).
A transaction merely waiting in a long backlog (a national payout) is neither, so it is
not sent again while the validators drain it. Each tick sends at most one payload's bytes
and RELAY_AGAIN_TXS_PER_TICK transactions, the longest due first; a validator that holds
one already answers PENDING at the cost of one signature check. The schedule forgets a
transaction when it settles (`note_settled`) or, when it comes due, once it was dropped.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.block import TX_FRAMING_BYTES_MAX
from node.clock import Clock, SystemClock
from node.effects import PoolChanges
from node.errors import RefusalCode, TxRefused
from node.mempool import Admission, Dropped, Mempool
from node.protocol import Txs, encode_payload
from node.store import Store
from node.tx import Tx, decode_tx

__all__ = ["GOSSIP_BYTES_MAX", "GOSSIP_TXS_MAX", "Intake"]

log = logging.getLogger(__name__)

GOSSIP_TXS_MAX = 1000  # transactions per gossip payload
# Bytes of transactions per gossip payload: half the default frame (the node passes its
# own block budget, half its frame), so a payload always fits a frame.
GOSSIP_BYTES_MAX = 2 * 1024 * 1024
GOSSIP_PAYLOAD_OVERHEAD_BYTES = 64  # the payload's own type and array headers
# Kept transactions still waiting are sent to the validators again (module docstring).
# A healthy network settles in about a second; ten leave a backlog time to drain first.
RELAY_AGAIN_FIRST_MS = 10_000
RELAY_AGAIN_MAX_MS = 60_000
# The last resort: a backlog of 1,000 full payouts took 10 s to its first block here.
RELAY_AGAIN_STALL_MS = 30_000
RELAY_AGAIN_TICK_MS = 1_000
RELAY_AGAIN_TXS_PER_TICK = 5_000  # a quarter of a validator's check budget per peer
# Signature checks of a batch between two turns of the event loop: about 3 ms of one core.
ADMIT_CHUNK_TXS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class _Relayed:
    """A kept transaction gossiped and still waiting."""

    order: int  # when it was last sent, in the order of sending
    interval_ms: int  # after which it is due again


class Intake:
    """Admits transactions to the mempool; keeps the API's durably; gossips them."""

    def __init__(
        self,
        *,
        mempool: Mempool,
        store: Store,
        broadcast: Callable[[bytes], None],
        wake: Callable[[], None],
        caught_up: Callable[[], bool],
        proposes: bool,
        gossip_bytes_max: int = GOSSIP_BYTES_MAX,
        clock: Clock | None = None,
    ) -> None:
        """Args:
        broadcast: sends a payload to the validators, the only nodes that propose.
        proposes: this node is a validator; a node that never proposes does not hold
            other participants' transactions (nothing it holds could ever leave).
        gossip_bytes_max: transaction bytes per payload; at most half a peer frame."""
        assert gossip_bytes_max > GOSSIP_PAYLOAD_OVERHEAD_BYTES
        self.mempool = mempool
        self._proposes = proposes
        self._store = store
        self._broadcast = broadcast
        self._wake = wake
        self._caught_up = caught_up
        # Refusals by code, of this node's API submissions and of peers' gossip: counted
        # only when a transaction is refused, read when metrics are scraped.
        self.api_refusals: collections.Counter[RefusalCode] = collections.Counter()
        self.gossip_refusals: collections.Counter[RefusalCode] = collections.Counter()
        self._batch: list[Tx] = []
        self._batch_kept: asyncio.Future[None] | None = None
        self._gossip_bytes_max = gossip_bytes_max
        self._clock = clock if clock is not None else SystemClock()
        # The kept transactions gossiped and still waiting: by hash, the order in which
        # each was last sent and its next interval; and a heap of (due ms, order, hash),
        # one entry per waiting transaction (one that settled leaves the heap when due).
        self._relayed: dict[bytes, _Relayed] = {}
        self._relay_due: list[tuple[int, int, bytes]] = []
        self._relay_order = itertools.count()
        self._settled_order_max = -1  # the latest-sent kept transaction that settled
        # When a kept transaction last settled (or the first of those waiting was sent),
        # and when a block last settled empty.
        self._settled_ms = self._clock.now_ms()
        self._empty_ms = -1
        self.relayed_again_count = 0  # transactions sent again: read when metrics are scraped

    async def submit(self, tx_bytes: bytes) -> bytes:
        """Admit a transaction from this node's API and keep it durably.

        Returns:
            The tx hash; its status (pending, final, refused, expired) is now stored.
        Raises:
            TxRefused: the code the client sees; nothing was kept.
            StoreError: the store could not keep it (the node's fault, not the client's).
        """
        tx_hash, unkept = self._admit_local(tx_bytes)
        if unkept is not None:
            await self._keep([unkept])
        return tx_hash

    async def submit_many(self, txs: Sequence[bytes]) -> list[bytes | TxRefused]:
        """Admit a batch from this node's API and keep every admitted one in ONE synced
        write (with whatever else this loop turn submits), as `submit` does for one.

        The signature checks run on the event loop, so the loop serves other requests
        between chunks of ADMIT_CHUNK_TXS; nothing is kept before the whole batch is judged.

        Returns:
            One result per transaction, in order: its hash (its status is now stored), or
            the refusal the client sees for it (nothing was kept for that one).
        Raises:
            StoreError: the store could not keep them (the node's fault, not the client's).
        """
        results: list[bytes | TxRefused] = []
        unkept: list[Tx] = []
        for start in range(0, len(txs), ADMIT_CHUNK_TXS):
            if start:
                await asyncio.sleep(0)  # a turn for everyone else between chunks
            for tx_bytes in txs[start : start + ADMIT_CHUNK_TXS]:
                try:
                    tx_hash, tx = self._admit_local(tx_bytes)
                except TxRefused as exc:
                    results.append(exc)
                    continue
                results.append(tx_hash)
                if tx is not None:
                    unkept.append(tx)
        if unkept:
            await self._keep(unkept)
        assert len(results) == len(txs)
        return results

    def _admit_local(self, tx_bytes: bytes) -> tuple[bytes, Tx | None]:
        """Admit one transaction of this node's API: its hash, and the transaction itself
        if it still has to be kept (None: settled, already kept, or its fate is known).

        Raises:
            TxRefused: the code the client sees.
        """
        try:
            admitted = self.mempool.add(tx_bytes, catching_up=not self._caught_up())
        except TxRefused as exc:
            fate = self._known_fate(tx_bytes, exc.code)
            if fate is None:
                self.api_refusals[exc.code] += 1
                raise
            return fate, None
        tx = admitted.tx
        if admitted.admission is not Admission.SETTLED and tx.tx_hash not in self.mempool.kept:
            return tx.tx_hash, tx
        return tx.tx_hash, None

    def _known_fate(self, tx_bytes: bytes, code: RefusalCode) -> bytes | None:
        """The hash of these very bytes if this node already recorded that they will never
        settle: the same bytes get their first answer, not a new refusal."""
        if code not in (RefusalCode.EXPIRED, RefusalCode.DUPLICATE):
            return None
        tx_hash = decode_tx(tx_bytes, self.mempool.chain_id).tx_hash
        return tx_hash if self._store.load_dropped(tx_hash) is not None else None

    async def _keep(self, txs: Sequence[Tx]) -> None:
        """Returns once `txs` are in the store: in the one write of this loop turn."""
        loop = asyncio.get_running_loop()
        if self._batch_kept is None:
            self._batch_kept = loop.create_future()
            loop.call_soon(self._flush)
        self._batch.extend(txs)
        await asyncio.shield(self._batch_kept)

    def _flush(self) -> None:
        """Keep the loop turn's submissions in one synced write, then gossip them."""
        batch, self._batch = self._batch, []
        kept, self._batch_kept = self._batch_kept, None
        assert kept is not None
        mempool = self.mempool
        # A transaction settled or dropped since it was admitted needs no keeping.
        waiting = {tx.tx_hash: tx for tx in batch if tx.tx_hash in mempool}
        fresh = [tx for tx_hash, tx in waiting.items() if tx_hash not in mempool.kept]
        try:
            if fresh:
                self._store.save_pool([(tx.tx_hash, tx.raw) for tx in fresh])
        except Exception as exc:
            kept.set_exception(exc)
            raise
        mempool.kept.update(tx.tx_hash for tx in fresh)
        kept.set_result(None)
        self._relay(fresh)
        if fresh:
            self._wake()

    @property
    def proposes(self) -> bool:
        """Whether this node holds peers' transactions at all (a validator)."""
        return self._proposes

    def admit_verified(self, peer_id: str, txs: Sequence[Tx]) -> int:
        """Admit a peer's gossip whose signatures node.verifier checked off the event loop;
        returns how many were refused (all, on a node that does not propose)."""
        if not self._proposes:
            return len(txs)
        refused = 0
        added = False
        for tx in txs:
            try:
                added |= self.mempool.add_verified(tx, source=peer_id).admission is Admission.ADDED
            except TxRefused as exc:
                self.gossip_refusals[exc.code] += 1
                refused += 1
        if added:
            self._wake()
        return refused

    def restore(self) -> int:
        """Re-admit what the store kept before a restart, and record the fate of what can
        no longer settle; gossip the rest again. Returns how many are pending again."""
        mempool = self.mempool
        removed: list[bytes] = []
        dropped: list[tuple[bytes, bytes]] = []
        again: list[Tx] = []
        height = mempool.height
        for raw in self._store.load_pool():
            tx = decode_tx(raw, mempool.chain_id)  # it decoded when it was kept
            try:
                admission = mempool.add(raw).admission
            except TxRefused as exc:
                removed.append(tx.tx_hash)
                fate = _fate_of_refusal(exc, height, mempool.holder_of(tx))
                if fate is not None:
                    dropped.append((tx.tx_hash, fate.encode()))
                else:
                    log.warning("kept tx %s is refused after restart: %s", tx.tx_hash.hex(), exc)
                continue
            if admission is Admission.SETTLED:
                removed.append(tx.tx_hash)
            else:
                mempool.kept.add(tx.tx_hash)
                again.append(tx)
        if removed:
            self._store.save_pool_changes(
                PoolChanges(removed=tuple(removed), dropped=tuple(dropped))
            )
        self._relay(again)
        return len(again)

    def _relay(self, txs: Sequence[Tx]) -> None:
        """Gossip kept transactions now, and schedule each to be sent again while waiting."""
        now_ms = self._clock.now_ms()
        for tx in txs:
            self._schedule(tx.tx_hash, now_ms, RELAY_AGAIN_FIRST_MS)
        self._gossip([tx.raw for tx in txs])

    def _schedule(self, tx_hash: bytes, now_ms: int, interval_ms: int) -> None:
        if not self._relayed:
            self._settled_ms = now_ms  # the first to wait: no stall before it
        order = next(self._relay_order)
        self._relayed[tx_hash] = _Relayed(order=order, interval_ms=interval_ms)
        heapq.heappush(self._relay_due, (now_ms + interval_ms, order, tx_hash))

    def note_settled(self, tx_hashes: Sequence[bytes]) -> None:
        """A block settled these: the ones this node relayed no longer wait."""
        if not tx_hashes:
            self._empty_ms = self._clock.now_ms()
        relayed = self._relayed
        for tx_hash in tx_hashes:
            entry = relayed.pop(tx_hash, None)
            if entry is not None:
                self._settled_order_max = max(self._settled_order_max, entry.order)
                self._settled_ms = self._clock.now_ms()

    def relay_again(self) -> int:
        """Gossip again the kept transactions that are due and look lost (module
        docstring), the longest due first, within one tick's bounds; returns how many."""
        now_ms = self._clock.now_ms()
        stalled = now_ms - self._settled_ms >= RELAY_AGAIN_STALL_MS
        mempool = self.mempool
        due = self._relay_due
        again: list[bytes] = []
        size = 0
        bytes_max = self._gossip_bytes_max - GOSSIP_PAYLOAD_OVERHEAD_BYTES  # one payload
        while due and due[0][0] <= now_ms and len(again) < RELAY_AGAIN_TXS_PER_TICK:
            due_ms, order, tx_hash = due[0]
            entry = self._relayed.get(tx_hash)
            if entry is None or entry.order != order:  # settled
                heapq.heappop(due)
                continue
            tx = mempool.get(tx_hash)
            if tx is None or tx_hash not in mempool.kept:  # dropped (expired, duplicate)
                heapq.heappop(due)
                del self._relayed[tx_hash]
                continue
            if not (stalled or order < self._settled_order_max or self._empty_ms >= due_ms):
                # Waiting its turn. The heap is in the order of sending but for backoff,
                # so the rest are very likely waiting too.
                break
            if again and size + len(tx.raw) + TX_FRAMING_BYTES_MAX > bytes_max:
                break  # the rest next tick
            heapq.heappop(due)
            self._schedule(tx_hash, now_ms, min(2 * entry.interval_ms, RELAY_AGAIN_MAX_MS))
            again.append(tx.raw)
            size += len(tx.raw) + TX_FRAMING_BYTES_MAX
        self._gossip(again)
        self.relayed_again_count += len(again)
        return len(again)

    async def relay_again_forever(self) -> None:
        """`relay_again` every RELAY_AGAIN_TICK_MS, until cancelled."""
        while True:
            await asyncio.sleep(RELAY_AGAIN_TICK_MS / 1000)
            self.relay_again()

    def _gossip(self, txs: list[bytes]) -> None:
        """Broadcast `txs` in payloads of at most GOSSIP_TXS_MAX transactions and
        `gossip_bytes_max` bytes (one larger transaction travels alone)."""
        bytes_max = self._gossip_bytes_max - GOSSIP_PAYLOAD_OVERHEAD_BYTES
        payload: list[bytes] = []
        size = 0
        for raw in txs:
            framed = len(raw) + TX_FRAMING_BYTES_MAX
            if payload and (len(payload) == GOSSIP_TXS_MAX or size + framed > bytes_max):
                self._broadcast(encode_payload(Txs(txs=tuple(payload))))
                payload, size = [], 0
            payload.append(raw)
            size += framed
        if payload:
            self._broadcast(encode_payload(Txs(txs=tuple(payload))))


def _fate_of_refusal(exc: TxRefused, height: int, holder: bytes | None) -> Dropped | None:
    """The fate of a kept transaction that the restored chain refuses, if it is final."""
    if exc.code is RefusalCode.EXPIRED:
        return Dropped(code=RefusalCode.EXPIRED, height=height, first_tx_hash=None)
    if exc.code is RefusalCode.DUPLICATE and holder is not None:
        return Dropped(code=RefusalCode.DUPLICATE, height=height, first_tx_hash=holder)
    return None
