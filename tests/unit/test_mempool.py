"""The mempool: one signature check on entry, idempotent resubmission, bounded."""

from __future__ import annotations

import pytest

from node.effects import PoolChanges
from node.errors import RefusalCode, TxRefused
from node.ledger import EXPIRY_HEIGHTS_MAX, Ledger
from node.mempool import Admission, Dropped, Mempool, decode_dropped
from node.tx import decode_tx
from tests.unit.ledger_support import CHAIN_ID, Chain, make_genesis, new_uetr, transfer

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
    mempool.remove_settled(effects.references_added)
    assert len(mempool) == 0
    assert mempool.add(tx).admission is Admission.SETTLED
    assert chain.ledger.balances["bank-e"] == 9_900  # debited once


def test_the_same_bytes_get_their_first_result_after_expiry() -> None:
    """Finding 6 of issue 7: resubmitting a final transaction's bytes after its expiry
    answered EXPIRED, which reads as "it never happened"."""
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    tx = transfer("bank-e", "bank-e", "bank-f", 100, expiry_height=1)
    mempool.add(tx)
    mempool.remove_settled(chain.settle(mempool.take(10, 1 << 20)).references_added)
    for _ in range(3):
        mempool.remove_settled(chain.settle([]).references_added)
    assert mempool.add(tx).admission is Admission.SETTLED


def test_same_uetr_with_other_content_is_refused_pending_and_settled() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    uetr = new_uetr()
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 1, uetr=uetr))
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr)) == (
        RefusalCode.DUPLICATE
    )
    effects = chain.settle(mempool.take(10, 1 << 20))
    mempool.remove_settled(effects.references_added)
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 3, uetr=uetr)) == (
        RefusalCode.DUPLICATE
    )


def test_a_too_far_expiry_is_refused_at_admission() -> None:
    """Finding 3 of issue 7: the pool admitted what the ledger then refused as
    EXPIRY_TOO_FAR without consuming the UETR, and the bytes settled later."""
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    too_far = transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2 + EXPIRY_HEIGHTS_MAX)
    assert code_of(mempool, too_far) == RefusalCode.EXPIRY_TOO_FAR
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=1 + EXPIRY_HEIGHTS_MAX))
    assert code_of(mempool, transfer("bank-e", "bank-e", "nobody", 1)) == (
        RefusalCode.UNKNOWN_ACCOUNT
    )
    assert len(mempool) == 1


def test_kept_transactions_that_can_never_settle_get_a_fate() -> None:
    """Finding 5 of issue 7: a kept transaction that expired went from pending to
    unknown; one whose UETR another transaction consumed, likewise."""
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    uetr = new_uetr()
    kept = [
        mempool.add(transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=2)).tx,
        mempool.add(transfer("bank-e", "bank-e", "bank-f", 2, uetr=uetr)).tx,
        mempool.add(transfer("bank-e", "bank-e", "bank-f", 3)).tx,
    ]
    mempool.kept.update(tx.tx_hash for tx in kept)
    elsewhere = transfer("bank-e", "bank-e", "bank-f", 9, uetr=uetr)  # another node's
    changes = mempool.remove_settled(chain.settle([elsewhere, kept[2].raw]).references_added)
    assert set(changes.removed) == {kept[1].tx_hash, kept[2].tx_hash}
    [(tx_hash, fate)] = changes.dropped
    assert tx_hash == kept[1].tx_hash
    holder = decode_tx(elsewhere, CHAIN_ID).tx_hash
    assert decode_dropped(fate) == Dropped(
        code=RefusalCode.DUPLICATE, height=1, first_tx_hash=holder
    )
    changes = mempool.remove_settled(chain.settle([]).references_added)
    assert changes == PoolChanges(
        removed=(kept[0].tx_hash,),
        dropped=(
            (
                kept[0].tx_hash,
                Dropped(code=RefusalCode.EXPIRED, height=2, first_tx_hash=None).encode(),
            ),
        ),
    )
    assert len(mempool) == 0
    assert mempool.kept == set()


def test_a_node_catching_up_refuses_what_it_cannot_judge() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=10)
    waiting = transfer("bank-e", "bank-e", "bank-f", 1)
    settled = transfer("bank-e", "bank-e", "bank-f", 2)
    mempool.add(waiting)
    chain.settle([settled])
    assert mempool.add(waiting, catching_up=True).admission is Admission.PENDING
    assert mempool.add(settled, catching_up=True).admission is Admission.SETTLED
    new = transfer("bank-e", "bank-e", "bank-f", 3)
    with pytest.raises(TxRefused) as info:
        mempool.add(new, catching_up=True)
    assert info.value.code is RefusalCode.CATCHING_UP
    assert len(mempool) == 1


@pytest.mark.parametrize(
    ("tx", "code"),
    [
        (b"junk", RefusalCode.MALFORMED),
        (bytes(64) + transfer("bank-e", "bank-e", "bank-f", 1)[64:], RefusalCode.BAD_SIGNATURE),
    ],
    ids=["junk", "bad-signature"],  # stable ids: every xdist worker must collect the same
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
    mempool.remove_settled(chain.settle(txs[:1]).references_added)
    assert len(mempool) == 4
    mempool.remove_settled(chain.settle([]).references_added)
    assert len(mempool) == 0  # settled one and four that expired at height 2


def test_a_settled_transaction_leaves_the_expiry_index_at_once() -> None:
    """The index of expiry heights held every settled hash until its expiry height:
    up to EXPIRY_HEIGHTS_MAX heights of traffic in memory (about 70 MB at 1,400/s)."""
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=100)
    far = chain.ledger.height + EXPIRY_HEIGHTS_MAX
    txs = [transfer("bank-e", "bank-e", "bank-f", 1, expiry_height=far) for _ in range(5)]
    for tx in txs:
        mempool.add(tx)
    mempool.remove_settled(chain.settle(txs[:3]).references_added)
    assert sum(map(len, mempool._by_expiry.values())) == 2  # the two still pooled
    mempool.remove_settled(chain.settle(txs[3:]).references_added)
    assert mempool._by_expiry == {}


def test_the_pool_is_bounded_in_bytes() -> None:
    ledger = Ledger(make_genesis(START))
    first = transfer("bank-e", "bank-e", "bank-f", 1)
    mempool = Mempool(ledger, txs_max=100, bytes_max=len(first) * 2)
    mempool.add(first)
    mempool.add(transfer("bank-e", "bank-e", "bank-f", 2))
    assert code_of(mempool, transfer("bank-e", "bank-e", "bank-f", 3)) == RefusalCode.MEMPOOL_FULL


def test_no_signer_and_no_peer_can_fill_the_pool_for_the_others() -> None:
    """Issue 8 finding 4: any participant pinned a bank node's mempool full for ever."""
    genesis = make_genesis([("bank-e", 10**9), ("bank-f", 10**9), ("nbkr", 10**9)])
    mempool = Mempool(Ledger(genesis), txs_max=8)
    assert mempool.signer_share_max == 2
    for amount in (1, 2):
        mempool.add(transfer("bank-e", "bank-e", "bank-f", amount), source="val-b")
    assert code_of_from(mempool, transfer("bank-e", "bank-e", "bank-f", 3), "val-b") == (
        RefusalCode.MEMPOOL_FULL
    )  # bank-e's share
    mempool.add(transfer("bank-f", "bank-f", "bank-e", 1), source="val-c")
    mempool.add(transfer("nbkr", "nbkr", "bank-e", 1), source="val-c")
    mempool.add(transfer("val-b", "val-b", "bank-e", 1), source="val-d")
    mempool.add(transfer("val-c", "val-c", "bank-e", 1), source="val-d")
    # Peers hold 6 of 8: the rest is for this node's own clients.
    assert code_of_from(mempool, transfer("val-d", "val-d", "bank-e", 1), "bank-f") == (
        RefusalCode.MEMPOOL_FULL
    )
    for amount in (1, 2):  # this node's own clients are not held to a share
        mempool.add(transfer("bank-e", "bank-e", "bank-f", 10 + amount))
    assert len(mempool) == 8


def test_the_shares_are_given_back_when_transactions_leave() -> None:
    chain = Chain(Ledger(make_genesis(START)))
    mempool = Mempool(chain.ledger, txs_max=8)
    txs = [transfer("bank-e", "bank-e", "bank-f", amount) for amount in (1, 2)]
    for tx in txs:
        mempool.add(tx, source="val-b")
    mempool.remove_settled(chain.settle(mempool.take(10, 1 << 20)).references_added)
    for amount in (3, 4):
        mempool.add(transfer("bank-e", "bank-e", "bank-f", amount), source="val-b")
    assert len(mempool) == 2


def code_of_from(mempool: Mempool, tx: bytes, source: str) -> RefusalCode:
    with pytest.raises(TxRefused) as info:
        mempool.add(tx, source=source)
    return info.value.code
