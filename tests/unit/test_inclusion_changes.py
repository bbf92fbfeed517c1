"""Inclusion proofs across changes of the validator set (issue 13): a verifier holding
genesis alone follows each change from a header certified by the set in force before it,
and refuses a proof whose chain of changes is cut, reordered, forged or badly certified."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from consensus.config import Validator, ValidatorSet
from consensus.messages import ValidatorId
from consensus.wire import encode_certificate
from node.check import check_store
from node.checksum import seal
from node.governance import SetValidators
from node.inclusion import (
    VALIDATOR_CHANGES_MAX,
    ProofCode,
    ProofRejected,
    ProofVerified,
    build_proof,
    proof_answer,
    verify,
)
from node.ledger import Ledger
from node.store import DB_NAMES, DB_VALIDATOR_SETS, Store, height_key
from node.tx import decode_tx
from tests.unit.ledger_support import (
    CHAIN_ID,
    VALIDATORS,
    Chain,
    admit_action,
    certify,
    govern,
    key_of,
    make_genesis,
    transfer,
)

GENESIS = make_genesis([("bank-e", 1_000)])
NEWCOMERS = ("val-g", "val-h", "val-i", "val-j")
FIVE = tuple(sorted((*VALIDATORS, "val-g")))
BEFORE = transfer("bank-e", "bank-e", "bank-f", 1)  # height 2, under the genesis set
AFTER = transfer("bank-e", "bank-e", "bank-f", 2)  # height 9, under the newcomers' set


def set_of(ids: tuple[str, ...]) -> SetValidators:
    return SetValidators(validators=tuple((v, 1) for v in ids), allow_below_four=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    store: Store
    chain: Chain

    def proof(self, tx: bytes) -> dict[str, Any]:
        proof = build_proof(self.store, CHAIN_ID, decode_tx(tx, CHAIN_ID).tx_hash)
        assert proof is not None
        return proof.to_document()


def settle_chain(store: Store) -> Chain:
    """Genesis's four, then five (decided at 2, in force from 4), then four newcomers
    that share no validator with the five (decided at 5, in force from 7)."""
    blocks = [
        [govern(admit_action(name, "validator")) for name in NEWCOMERS],  # 1
        [govern(set_of(FIVE)), BEFORE],  # 2
        [],
        [],
        [govern(set_of(NEWCOMERS))],  # 5
        [],
        [],
        [],
        [AFTER],  # 9
    ]
    chain = Chain(Ledger(GENESIS))
    for txs in blocks:
        store.commit_block(chain.settle(txs))
    assert [v.validator_id for v in chain.ledger.validator_set.validators] == list(NEWCOMERS)
    return chain


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settled]:
    path = tmp_path_factory.mktemp("inclusion-changes") / "data"
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        yield Settled(store=store, chain=settle_chain(store))


@pytest.fixture
def document(settled: Settled) -> dict[str, Any]:
    return settled.proof(AFTER)


def rejected(document: dict[str, Any]) -> ProofRejected:
    result = verify(document, GENESIS)
    assert isinstance(result, ProofRejected), result
    return result


def test_a_proof_follows_every_change_of_set_from_genesis(document: dict[str, Any]) -> None:
    assert [c["from_height"] for c in document["validator_changes"]] == [4, 7]
    result = verify(document, GENESIS)
    assert isinstance(result, ProofVerified), result
    assert result.height == 9
    assert [str(v) for v, _ in result.signers] == list(NEWCOMERS)  # none of them in genesis
    assert (result.signed_power, result.total_power) == (4, 4)


def test_a_proof_from_before_a_change_carries_none(settled: Settled) -> None:
    document = settled.proof(BEFORE)
    assert document["validator_changes"] == []
    assert isinstance(verify(document, GENESIS), ProofVerified)


def test_a_left_out_change_is_refused(document: dict[str, Any]) -> None:
    for kept in ([], document["validator_changes"][:1], document["validator_changes"][1:]):
        cut = document | {"validator_changes": kept}
        assert rejected(cut).code in (ProofCode.WRONG_CHAIN, ProofCode.VALIDATOR_CHANGE_INVALID)


def test_changes_out_of_order_or_past_the_proof_are_refused(document: dict[str, Any]) -> None:
    changes = document["validator_changes"]
    for damaged in (changes[::-1], [changes[0], changes[0], changes[1]]):
        result = rejected(document | {"validator_changes": damaged})
        assert result.code is ProofCode.VALIDATOR_CHANGE_INVALID, result
    late = copy.deepcopy(changes)
    late[1]["from_height"] = 10
    assert rejected(document | {"validator_changes": late}).code is (
        ProofCode.VALIDATOR_CHANGE_INVALID
    )


def test_a_forged_set_is_refused(document: dict[str, Any]) -> None:
    """An attacker's own set of four, named in place of the newcomers: the certified
    header names the newcomers' set as the next, not this one."""
    forged = ValidatorSet(
        tuple(
            Validator(
                validator_id=ValidatorId(f"evil-{n}"),
                public_key=bytes(key_of(f"evil-{n}").verify_key),
                voting_power=1,
            )
            for n in range(4)
        )
    )
    changes = copy.deepcopy(document["validator_changes"])
    changes[1]["validators"] = forged.encode().hex()
    result = rejected(document | {"validator_changes": changes})
    assert result.code is ProofCode.VALIDATOR_CHANGE_INVALID
    assert "next" in result.message


def test_a_change_certified_by_too_few_or_by_the_wrong_set_is_refused(
    settled: Settled, document: dict[str, Any]
) -> None:
    block_6 = settled.chain.blocks[5][0]  # the header the change to the newcomers stands on
    for voters, code in (
        (FIVE[:3], ProofCode.CERTIFICATE_NO_QUORUM),  # 3 of the five in force at 6
        (NEWCOMERS, ProofCode.UNKNOWN_VALIDATOR),  # the new set vouching for itself
    ):
        changes = copy.deepcopy(document["validator_changes"])
        changes[1]["certificate"] = encode_certificate(certify(block_6, voters)).hex()
        result = rejected(document | {"validator_changes": changes})
        assert result.code is code, result
        assert "height 6" in result.message


def test_a_change_on_the_wrong_header_is_refused(
    settled: Settled, document: dict[str, Any]
) -> None:
    block_5, certificate_5 = settled.chain.blocks[4]
    changes = copy.deepcopy(document["validator_changes"])
    changes[1]["header"] = block_5.header.encode().hex()
    changes[1]["certificate"] = encode_certificate(certificate_5).hex()
    assert rejected(document | {"validator_changes": changes}).code is (
        ProofCode.VALIDATOR_CHANGE_INVALID
    )


def test_somnet_check_finds_a_forged_change_of_set(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=1 << 24) as store:
        settle_chain(store)
    with Store.open_readonly(path, chain_id=CHAIN_ID) as store:
        report = check_store(store, GENESIS)
        assert report.ok, report.problems
    forged = ValidatorSet(tuple(v for v in GENESIS.validator_set().validators)).encode()
    key = height_key(7)
    env = lmdb.open(str(path), max_dbs=len(DB_NAMES), subdir=True)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(DB_VALIDATOR_SETS, txn=txn, create=False)
            txn.put(key, seal(DB_VALIDATOR_SETS, key, forged), db=db)  # a valid checksum
    finally:
        env.close()
    with Store.open_readonly(path, chain_id=CHAIN_ID) as store:
        report = check_store(store, GENESIS)
    assert [p.subject for p in report.problems] == ["validator set from 7"]


def test_a_proof_past_what_a_verifier_accepts_is_refused_by_the_node(tmp_path: Path) -> None:
    """A set that flips between four and five at every height: past VALIDATOR_CHANGES_MAX
    changes the node answers 409 PROOF_TOO_LONG instead of a proof `verify` refuses."""
    chain = Chain(Ledger(GENESIS))
    with Store.open(tmp_path / "data", chain_id=CHAIN_ID, map_size_bytes=1 << 26) as store:
        store.commit_block(chain.settle([govern(admit_action("val-g", "validator")), BEFORE]))
        for flip in range(VALIDATOR_CHANGES_MAX + 3):  # flip 0 keeps the genesis set
            action = set_of(FIVE if flip % 2 else VALIDATORS)
            expiry = chain.ledger.height + 10
            store.commit_block(chain.settle([govern(action, expiry_height=expiry)]))
        for _ in range(3):
            store.commit_block(chain.settle([]))
        late = transfer("bank-e", "bank-e", "bank-f", 3, expiry_height=chain.ledger.height + 10)
        store.commit_block(chain.settle([late]))
        answers = {
            tx: proof_answer(
                store,
                CHAIN_ID,
                decode_tx(tx, CHAIN_ID).tx_hash.hex(),
                in_mempool=lambda _: False,
                caught_up=lambda: True,
            )
            for tx in (BEFORE, late)
        }
    assert answers[BEFORE].status == 200
    assert (answers[late].status, answers[late].body["code"]) == (409, "PROOF_TOO_LONG")
