"""Signature checks of the transactions peers gossip: off the event loop, and within a
budget per peer.

Theory of operation:
- A peer chooses how many transactions it sends, and each costs us a signature check
  (about 50 us). On the event loop, a frame of 25,000 blocked the API for a second. Here
  the checks run in a small thread pool (libsodium releases the GIL), a chunk of
  `chunk_txs_max` per job, and the loop admits each checked chunk before the next starts,
  so it serves everyone else between chunks.
- One peer's batches are checked one at a time, in arrival order (a lock per peer), and
  a batch has at most one chunk in the pool: peers take turns in the pool's queue.
- Each peer has a budget: a token bucket of `txs_per_s` checks, holding at most
  `txs_burst_max`. What a batch finds no token for is dropped unchecked and counted;
  gossip is best effort, and a genuine peer's rate is bounded by its own checks.
- A transaction that does not decode, names an unknown signer or carries a signature
  that does not verify is a fault: the sender's own mempool refused it, so no honest peer
  gossips one. The rest of its batch is dropped, and the caller closes the link.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.clock import Clock
from node.errors import TxRefused
from node.tx import Tx

__all__ = ["CheckedBatch", "TxVerifier", "VerifierLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifierLimits:
    txs_per_s: int = 20_000
    """Signature checks per second per peer, on average (about one core's worth)."""
    txs_burst_max: int = 40_000
    """Checks a peer may use at once after a quiet spell (two full frames of transfers)."""
    chunk_txs_max: int = 256
    """Checks per job in the pool: about 13 ms of one core."""
    workers: int = 2
    """Threads in the pool."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedBatch:
    checked_count: int
    """Transactions whose signatures verified and that were handed to `admit`."""
    refused_count: int
    """Of those, how many `admit` refused (duplicate, expired, mempool full, ...)."""
    over_budget_count: int
    """Transactions dropped unchecked: the peer had spent its budget."""
    fault: TxRefused | None
    """The first transaction no honest peer sends; the rest of the batch was dropped."""


def check_chunk(
    check_tx: Callable[[bytes], Tx], chunk: Sequence[bytes]
) -> tuple[list[Tx], TxRefused | None]:
    """In a worker thread: decode and verify until the first fault."""
    checked: list[Tx] = []
    for tx_bytes in chunk:
        try:
            checked.append(check_tx(tx_bytes))
        except TxRefused as exc:
            return checked, exc
    return checked, None


@dataclass(slots=True)
class _Bucket:
    credit: int
    """Checks available, times 1000: refilled by txs_per_s per ms, exactly."""
    updated_ms: int


class TxVerifier:
    """Checks peers' gossiped transactions in a thread pool, each peer within its budget.

    One owner: the node's event loop calls `check`; only `check_tx` runs in the pool, and
    it must read nothing that the loop changes (Ledger.check_tx reads the genesis keys).
    """

    def __init__(
        self, check_tx: Callable[[bytes], Tx], *, limits: VerifierLimits, clock: Clock
    ) -> None:
        assert limits.txs_per_s >= 1
        assert limits.txs_burst_max >= limits.chunk_txs_max >= 1
        assert limits.workers >= 1
        self._check_tx = check_tx
        self.limits = limits
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="tx-verify"
        )
        self._locks: dict[str, asyncio.Lock] = {}  # peers are genesis ids: bounded
        self._buckets: dict[str, _Bucket] = {}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def check(
        self, peer_id: str, txs: Sequence[bytes], admit: Callable[[list[Tx]], int]
    ) -> CheckedBatch:
        """Check `txs` from `peer_id` and hand each verified chunk to `admit` (on the loop),
        in order. Waits for the peer's earlier batches first.

        Args:
            admit: admits verified transactions; returns how many it refused.
        """
        loop = asyncio.get_running_loop()
        checked_count = refused_count = 0
        fault: TxRefused | None = None
        index = 0
        async with self._locks.setdefault(peer_id, asyncio.Lock()):
            while index < len(txs) and fault is None:
                allowed = self._take(peer_id, min(self.limits.chunk_txs_max, len(txs) - index))
                if allowed == 0:
                    break
                chunk = txs[index : index + allowed]
                checked, fault = await loop.run_in_executor(
                    self._executor, check_chunk, self._check_tx, chunk
                )
                assert len(checked) + (fault is not None) <= len(chunk)
                index += allowed
                checked_count += len(checked)
                if checked:
                    refused_count += admit(checked)
        over_budget_count = 0 if fault is not None else len(txs) - index
        assert checked_count + over_budget_count <= len(txs)
        return CheckedBatch(
            checked_count=checked_count,
            refused_count=refused_count,
            over_budget_count=over_budget_count,
            fault=fault,
        )

    def _take(self, peer_id: str, wanted: int) -> int:
        """Up to `wanted` checks from the peer's bucket, refilled for the time since."""
        now_ms = self._clock.now_ms()
        capacity = self.limits.txs_burst_max * 1000
        bucket = self._buckets.setdefault(peer_id, _Bucket(credit=capacity, updated_ms=now_ms))
        elapsed_ms = max(0, now_ms - bucket.updated_ms)
        bucket.credit = min(capacity, bucket.credit + elapsed_ms * self.limits.txs_per_s)
        bucket.updated_ms = now_ms
        granted = min(wanted, bucket.credit // 1000)
        bucket.credit -= granted * 1000
        assert 0 <= bucket.credit <= capacity
        return granted
