"""node.verifier: peers' gossip is checked off the event loop, in order per peer, within
a budget per peer; the first transaction no honest peer sends ends the batch."""

from __future__ import annotations

import asyncio
import threading

from node.errors import RefusalCode, TxRefused
from node.verifier import TxVerifier, VerifierLimits


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_000

    def now_ms(self) -> int:
        return self.ms

    def unix_ms(self) -> int:
        return self.ms


class Checks:
    """A stand-in for Ledger.check_tx: b"bad..." does not verify; records its threads."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.count = 0

    def __call__(self, tx_bytes: bytes) -> bytes:
        self.threads.add(threading.get_ident())
        self.count += 1
        if tx_bytes.startswith(b"bad"):
            raise TxRefused(RefusalCode.BAD_SIGNATURE, "not signed by its signer")
        return tx_bytes


def txs(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(count)]


async def test_signatures_are_checked_in_a_worker_thread_and_admitted_in_order() -> None:
    checks = Checks()
    verifier = TxVerifier(checks, limits=VerifierLimits(chunk_txs_max=10), clock=FakeClock())  # type: ignore[arg-type]
    admitted: list[bytes] = []
    batch = await verifier.check("b", txs("t", 95), lambda chunk: admitted.extend(chunk) or 0)
    verifier.close()
    assert admitted == txs("t", 95)
    assert threading.get_ident() not in checks.threads  # never on the event loop's thread
    assert (batch.checked_count, batch.over_budget_count, batch.fault) == (95, 0, None)


async def test_the_first_bad_transaction_ends_the_batch() -> None:
    checks = Checks()
    verifier = TxVerifier(checks, limits=VerifierLimits(chunk_txs_max=10), clock=FakeClock())  # type: ignore[arg-type]
    admitted: list[bytes] = []
    batch = await verifier.check(
        "b", [*txs("t", 13), b"bad", *txs("u", 25_000)], lambda c: admitted.extend(c) or 0
    )
    verifier.close()
    assert admitted == txs("t", 13)
    assert batch.fault is not None and batch.fault.code is RefusalCode.BAD_SIGNATURE
    assert checks.count == 14  # not 25,014: the rest was never looked at
    assert batch.over_budget_count == 0


async def test_a_peer_over_its_budget_has_the_rest_dropped_and_counted() -> None:
    clock = FakeClock()
    limits = VerifierLimits(txs_per_s=1_000, txs_burst_max=500, chunk_txs_max=100)
    verifier = TxVerifier(Checks(), limits=limits, clock=clock)  # type: ignore[arg-type]
    batch = await verifier.check("b", txs("t", 1_200), lambda chunk: 0)
    assert (batch.checked_count, batch.over_budget_count) == (500, 700)
    # Another peer has its own budget.
    other = await verifier.check("c", txs("t", 300), lambda chunk: 0)
    assert (other.checked_count, other.over_budget_count) == (300, 0)
    # The budget refills at txs_per_s: 50 ms later, 50 more.
    clock.ms += 50
    batch = await verifier.check("b", txs("t", 200), lambda chunk: 0)
    assert (batch.checked_count, batch.over_budget_count) == (50, 150)
    clock.ms += 60_000  # never beyond the burst
    batch = await verifier.check("b", txs("t", 1_000), lambda chunk: 0)
    assert (batch.checked_count, batch.over_budget_count) == (500, 500)
    verifier.close()


async def test_a_peers_batches_take_their_turn() -> None:
    verifier = TxVerifier(Checks(), limits=VerifierLimits(chunk_txs_max=7), clock=FakeClock())  # type: ignore[arg-type]
    admitted: list[bytes] = []

    def admit(chunk: list[bytes]) -> int:
        admitted.extend(chunk)
        return 1

    first, second = await asyncio.gather(
        verifier.check("b", txs("first", 50), admit),
        verifier.check("b", txs("second", 50), admit),
    )
    verifier.close()
    assert admitted == txs("first", 50) + txs("second", 50)  # never interleaved
    assert first.refused_count == second.refused_count == 8  # what admit said, per chunk
