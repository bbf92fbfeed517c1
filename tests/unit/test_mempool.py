"""The mempool: one signature check on entry, idempotent resubmission, bounded."""

from __future__ import annotations

import pytest

from node.errors import RefusalCode, TxRefused
from node.ledger import Ledger
from node.mempool import Admission, Mempool
from tests.unit.ledger_support import Chain, make_genesis, new_uetr, transfer

START = [("bank-e", 10_000), ("bank-f", 10_000)]


def code_of(mempool: Mempool, tx: bytes) -> RefusalCode:
    with pytest.raises(TxRefused) as info:
        mempool.add(tx)
    return info.value.code


def test_resubmission_is_idempotent_until_and_after_settlement() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    tx = transfer("bank-e", "bank-e", "bank-f", 100)
    first = mempool.add(tx)
    assert first.admission is Admission.ADDED
    assert mempool.add(tx).admission is Admission.PENDING
    assert len(mempool) == 1
    effects = chain.settle(mempool.take(10, 1 << 20))
    mempool.remove_settled(h for h, _ in effects.tx_results)
    assert len(mempool) == 0
    assert mempool.add(tx).admission is Admission.SETTLED
    assert chain.ledger.balances["bank-e"] == 9_900  # debited once


def test_same_uetr_with_other_content_is_refused_pending_and_settled() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    uetr = new_uetr()
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr))
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr)) == (
        RefusalCode.DUPLICATE
    )
    effects = chain.settle(mempool.take(10, 1 << 20))
    mempool.remove_settled(h for h, _ in effects.tx_results)
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 3, uetr=uetr)) == (
        RefusalCode.DUPLICATE
    )


@pytest.mark.parametrize(
    ("tx", "code"),
    [
        (b"junk", RefusalCode.MALFORMED),
        (bytes(64) + transfer("bank-e", "bank-e", "bank-f", 1)[64:], RefusalCode.BAD_SIGNATURE),
    ],
)
def test_bad_transactions_are_refused_and_nothing_is_kept(tx: bytes, code: RefusalCode) -> None:
    mempool = Mempool(Ledger(make_genesis(START)), txs_max=10)
    assert code_of(mempool, tx) == code
    assert len(mempool) == 0


def test_expired_and_full_are_refused() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    chain.settle([])
    mempool = Mempool(chain.ledger, txs_max=1)
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1)) == (
        RefusalCode.EXPIRED
    )
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 1))
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 2)) == RefusalCode.MEMPOOL_FULL


def test_take_is_bounded_and_settlement_drops_stale() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=100)
    txs = [transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2) for _ in range(5)]
    for tx in txs:
        mempool.add(tx)
    assert mempool.take(3, 1 << 20) == txs[:3]
    assert mempool.take(100, len(txs[0]) * 2) == txs[:2]
    chain.settle(txs[:1])
    chain.settle([])
    mempool.remove_settled([])
    assert len(mempool) == 0  # settled one and four that expired at height 2


def test_the_pool_is_bounded_in_bytes() -> None:
    ledger = Ledger(make_genesis(START))
    first = transfer("bank-e", "bank-e", "bank-f", 1)
    mempool = Mempool(ledger, txs_max=100, bytes_max=len(first) * 2)
    mempool.add(first)
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 2))
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 3)) == RefusalCode.MEMPOOL_FULL
