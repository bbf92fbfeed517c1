"""Evidence on chain (issue 13): the rules of an evidence transaction, with real
signatures, and what settling one records (the block's effects, the store, the API's
source, the count)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.crypto import Signer
from consensus.messages import Evidence, ValidatorId
from consensus.wire import decode_evidence, encode_evidence
from node.effects import BlockEffects
from node.errors import RefusalCode, TxRefused
from node.ledger import Ledger, decode_tx_result, open_ledger
from node.store import Store
from node.tx import EvidenceTx, decode_tx, sign_evidence
from tests.unit.ledger_support import (
    ACCUSED,
    CHAIN_ID,
    REPORTER,
    VALIDATORS,
    Chain,
    equivocation,
    evidence_tx,
    make_genesis,
    new_uetr,
    seed_of,
    vote,
)


def codes_of(effects: BlockEffects) -> list[RefusalCode | None]:
    return [decode_tx_result(encoded).code for _, encoded in effects.tx_results]


@pytest.fixture
def chain() -> Chain:
    chain = Chain(Ledger(make_genesis()))
    chain.settle([])  # height 1: the votes' height is settled, its set still known
    return chain


def test_the_encoding_round_trips_and_is_canonical() -> None:
    evidence = equivocation()
    tx = decode_tx(evidence_tx(evidence), CHAIN_ID)
    assert type(tx) is EvidenceTx
    assert tx.evidence == evidence
    assert decode_evidence(tx.evidence_bytes) == evidence
    assert tx.evidence_bytes == encode_evidence(evidence)


def test_valid_evidence_is_accepted_once(chain: Chain) -> None:
    evidence = equivocation()
    first = evidence_tx(evidence)
    chain.ledger.check_admission(chain.ledger.check_tx(first))
    effects = chain.settle([first])
    assert codes_of(effects) == [None]
    assert chain.ledger.evidence_settled == 1
    (settled,) = effects.evidence
    assert (settled.height, settled.voter) == (1, ACCUSED)
    assert settled.evidence_bytes == encode_evidence(evidence)
    # Its slot is a consumed reference, besides the transaction's own.
    assert len(effects.references_added) == 2
    # Another validator reports the same slot (even the votes swapped): a duplicate.
    again = evidence_tx(Evidence(first=evidence.second, second=evidence.first), signer="val-c")
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(chain.ledger.check_tx(again))
    assert info.value.code is RefusalCode.EVIDENCE_DUPLICATE
    assert codes_of(chain.settle([again])) == [RefusalCode.EVIDENCE_DUPLICATE]
    assert chain.ledger.evidence_settled == 1


def test_the_same_slot_twice_in_one_block_settles_once(chain: Chain) -> None:
    evidence = equivocation()
    effects = chain.settle([evidence_tx(evidence), evidence_tx(evidence, signer="val-c")])
    assert codes_of(effects) == [None, RefusalCode.EVIDENCE_DUPLICATE]
    assert len(effects.evidence) == 1


def test_another_round_is_another_slot(chain: Chain) -> None:
    effects = chain.settle([evidence_tx(equivocation()), evidence_tx(equivocation(round_=1))])
    assert codes_of(effects) == [None, None]


def test_votes_that_do_not_conflict_are_refused(chain: Chain) -> None:
    same = vote(b"\x01" * 32)
    other_round = vote(b"\x02" * 32, round_=1)
    other_voter = vote(b"\x02" * 32, voter="val-c")
    for first, second in ((same, same), (same, other_round), (same, other_voter)):
        tx = evidence_tx(Evidence(first=first, second=second))  # type: ignore[arg-type]
        assert codes_of(chain.settle([tx])) == [RefusalCode.EVIDENCE_NO_CONFLICT]
    assert chain.ledger.evidence_settled == 0


def test_a_bad_vote_signature_is_refused(chain: Chain) -> None:
    evidence = equivocation()
    forged = vote(b"\x02" * 32, voter="val-c")  # signed by another key, claimed by val-d
    bad = Evidence(
        first=evidence.first,
        second=type(evidence.second)(
            vote_type=evidence.second.vote_type,
            height=evidence.second.height,
            round=evidence.second.round,
            value_id=evidence.second.value_id,
            voter=evidence.second.voter,
            signature=forged.signature,  # type: ignore[attr-defined]
        ),
    )
    tx = evidence_tx(bad)
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(chain.ledger.check_tx(tx))
    assert info.value.code is RefusalCode.EVIDENCE_INVALID
    assert codes_of(chain.settle([tx])) == [RefusalCode.EVIDENCE_INVALID]


def test_a_vote_of_no_validator_is_refused(chain: Chain) -> None:
    tx = evidence_tx(equivocation(voter="bank-e"))
    assert codes_of(chain.settle([tx])) == [RefusalCode.EVIDENCE_INVALID]


def test_a_bank_submitting_evidence_is_not_authorized(chain: Chain) -> None:
    tx = evidence_tx(equivocation(), signer="bank-e")
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(chain.ledger.check_tx(tx))
    assert info.value.code is RefusalCode.NOT_AUTHORIZED
    assert codes_of(chain.settle([tx])) == [RefusalCode.NOT_AUTHORIZED]


def test_evidence_of_a_height_whose_set_is_forgotten_is_too_old(chain: Chain) -> None:
    for _ in range(3):
        chain.settle([])
    assert chain.ledger.height == 4
    tx = evidence_tx(equivocation(height=1), expiry_height=20)
    assert codes_of(chain.settle([tx])) == [RefusalCode.EVIDENCE_TOO_OLD]


def test_the_store_keeps_settled_evidence_with_where_it_settled(tmp_path: Path) -> None:
    genesis = make_genesis()
    evidence = equivocation()
    tx = evidence_tx(evidence)
    with Store.open(tmp_path / "store", chain_id=CHAIN_ID) as store:
        chain = Chain(Ledger(genesis))
        store.commit_block(chain.settle([]))
        store.commit_block(chain.settle([tx]))
        assert store.load_evidence(0, 10) == [encode_evidence(evidence)]
        assert store.load_evidence_on_chain(1, ACCUSED) == (2, decode_tx(tx, CHAIN_ID).tx_hash)
        assert store.load_evidence_on_chain(1, "val-c") is None
        # The duplicate rule survives a restart: the slot is a stored reference.
        ledger = open_ledger(genesis, store)
        again = ledger.check_tx(evidence_tx(evidence, signer="val-c"))
        with pytest.raises(TxRefused) as info:
            ledger.check_admission(again)
        assert info.value.code is RefusalCode.EVIDENCE_DUPLICATE


def test_validators_sign_evidence_with_their_consensus_signer() -> None:
    signer = Signer(CHAIN_ID, ValidatorId(REPORTER), seed_of(REPORTER))
    tx = sign_evidence(
        signer.sign_application,
        CHAIN_ID,
        signer=REPORTER,
        uetr=new_uetr(),
        expiry_height=5,
        evidence=equivocation(),
    )
    ledger = Ledger(make_genesis())
    assert type(ledger.check_tx(tx)) is EvidenceTx
    assert REPORTER in VALIDATORS
