"""The ledger's input to the proposer order: the signers of the certificates carried in
blocks (which every node holds alike), never the certificate this node decided a block
with, and the same after a restart from the store."""

from __future__ import annotations

from pathlib import Path

from consensus.config import PROPOSER_WINDOW_HEIGHTS
from consensus.wire import encode_certificate
from node.ledger import Ledger, open_ledger
from node.store import Store
from tests.unit.ledger_support import CHAIN_ID, VALIDATORS, Chain, certify, make_genesis

EVERYONE = list(VALIDATORS)
WITHOUT_D = [v for v in VALIDATORS if v != "val-d"]


def settle_blocks(chain: Chain, count: int, store: Store | None = None) -> None:
    """Each block is decided with all four precommits (this node's own certificate), but
    the next block carries another quorum of them, without val-d (as another proposer
    may hold): only the carried one may count."""
    for _ in range(count):
        block = chain.next_block([])
        chain.ledger.validate_block(block)
        effects = chain.ledger.apply_block(block, encode_certificate(certify(block, EVERYONE)))
        if store is not None:
            store.commit_block(effects)
        chain.certificate = certify(block, WITHOUT_D)


def test_a_validator_absent_from_every_carried_certificate_of_the_window_is_passed_over() -> None:
    chain = Chain(Ledger(make_genesis()))
    # Block 1 carries nothing; blocks 2..k carry the certificates of 1..k-1.
    settle_blocks(chain, PROPOSER_WINDOW_HEIGHTS)
    assert len(chain.ledger.carried_signers) == PROPOSER_WINDOW_HEIGHTS - 1
    assert chain.ledger.passed_over_next() == frozenset()
    settle_blocks(chain, 1)
    assert chain.ledger.passed_over_next() == {"val-d"}
    # val-d signs a certificate that a block carries: it is back for the next height.
    block = chain.next_block([])
    chain.ledger.validate_block(block)
    chain.ledger.apply_block(block, encode_certificate(certify(block, WITHOUT_D)))
    chain.certificate = certify(block, ["val-b", "val-c", "val-d"])
    assert chain.ledger.passed_over_next() == {"val-d"}  # not carried yet
    settle_blocks(chain, 1)
    assert chain.ledger.passed_over_next() == frozenset()


def test_a_restarted_node_computes_the_same_input_from_its_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    chain = Chain(Ledger(make_genesis()))
    with Store.open(path, chain_id=CHAIN_ID) as store:
        settle_blocks(chain, PROPOSER_WINDOW_HEIGHTS + 5, store)
    with Store.open(path, chain_id=CHAIN_ID) as store:
        restored = open_ledger(make_genesis(), store)
    assert list(restored.carried_signers) == list(chain.ledger.carried_signers)
    assert restored.passed_over_next() == chain.ledger.passed_over_next() == {"val-d"}
    # A short chain restores what it has, and nobody is passed over yet.
    short = Chain(Ledger(make_genesis()))
    with Store.open(tmp_path / "short", chain_id=CHAIN_ID) as store:
        settle_blocks(short, 3, store)
        reopened = open_ledger(make_genesis(), store)
    assert list(reopened.carried_signers) == list(short.ledger.carried_signers)
    assert len(reopened.carried_signers) == 2
    assert reopened.passed_over_next() == frozenset()
