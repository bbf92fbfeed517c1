"""Governance (issue 13): every action's rules, refusals and effects, the state in the
app hash and the store, and the decoding of hostile govern transactions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.effects import BlockEffects
from node.errors import BlockError, RefusalCode, TxRefused
from node.governance import (
    Admit,
    Freeze,
    Reinstate,
    SetValidators,
    Suspend,
    Unfreeze,
    approval_message,
    approve,
    decode_action,
    decode_governance_state,
    encode_action,
)
from node.ledger import Ledger, open_ledger
from node.store import KEY_GOVERNANCE, Store, StoreCorrupted
from node.tx import Govern, decode_tx, sign_govern
from tests.unit.ledger_support import (
    CHAIN_ID,
    ISSUER,
    OFFICERS,
    VALIDATORS,
    Chain,
    admit_action,
    govern,
    issue,
    key_of,
    make_genesis,
    new_uetr,
    payout,
    redeem,
    rotate,
    transfer,
)

START = [("bank-e", 10_000), ("bank-f", 10_000), ("nbkr", 10_000)]


def codes_of(effects: BlockEffects) -> list[RefusalCode | None]:
    from node.ledger import decode_tx_result

    return [decode_tx_result(encoded).code for _, encoded in effects.tx_results]


@pytest.fixture
def chain() -> Chain:
    return Chain(Ledger(make_genesis(START)))


def settle_one(chain: Chain, tx: bytes) -> RefusalCode | None:
    return codes_of(chain.settle([tx]))[0]


# -- authorisation and approvals -------------------------------------------------------


def test_a_bank_trying_to_govern_is_not_authorized(chain: Chain) -> None:
    tx = govern(Suspend(participant_id="bank-f"), signer="bank-e")
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(chain.ledger.check_tx(tx))
    assert info.value.code is RefusalCode.NOT_AUTHORIZED
    assert settle_one(chain, tx) is RefusalCode.NOT_AUTHORIZED
    assert not chain.ledger.participants["bank-f"].suspended


def test_one_officer_signature_short_is_not_approved(chain: Chain) -> None:
    tx = govern(Suspend(participant_id="bank-f"), approvers=OFFICERS[:1])
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(chain.ledger.check_tx(tx))
    assert info.value.code is RefusalCode.GOV_NOT_APPROVED
    assert settle_one(chain, tx) is RefusalCode.GOV_NOT_APPROVED
    assert not chain.ledger.participants["bank-f"].suspended


def test_a_duplicated_officer_signature_does_not_count_twice(chain: Chain) -> None:
    action = Suspend(participant_id="bank-f")
    uetr = new_uetr()
    officer, signature = approve(
        action,
        chain_id=CHAIN_ID,
        uetr=uetr,
        expiry_height=100,
        officer_id=OFFICERS[0],
        officer_key=key_of(OFFICERS[0]),
    )
    # The same entry twice is malformed: approvals are distinct, ascending ids.
    with pytest.raises(TxRefused) as info:
        sign_govern(
            key_of(ISSUER),
            CHAIN_ID,
            signer=ISSUER,
            uetr=uetr,
            expiry_height=100,
            action=action,
            approvals=[(officer, signature), (officer, signature)],
        )
    assert info.value.code is RefusalCode.MALFORMED
    # One officer's signature under a second officer's id verifies for nobody else.
    tx = sign_govern(
        key_of(ISSUER),
        CHAIN_ID,
        signer=ISSUER,
        uetr=uetr,
        expiry_height=100,
        action=action,
        approvals=[(officer, signature), (OFFICERS[1], signature)],
    )
    assert settle_one(chain, tx) is RefusalCode.GOV_NOT_APPROVED


def test_an_approval_by_a_non_officer_does_not_count(chain: Chain) -> None:
    tx = govern(Suspend(participant_id="bank-f"), approvers=[OFFICERS[0], "val-b"])
    assert settle_one(chain, tx) is RefusalCode.GOV_NOT_APPROVED
    # A node key is not an officer key, even under an officer's id.
    action = Suspend(participant_id="bank-f")
    uetr = new_uetr()
    approvals = [
        approve(action, chain_id=CHAIN_ID, uetr=uetr, expiry_height=100,
                officer_id=OFFICERS[0], officer_key=key_of(OFFICERS[0])),
        approve(action, chain_id=CHAIN_ID, uetr=uetr, expiry_height=100,
                officer_id=OFFICERS[1], officer_key=key_of(ISSUER)),
    ]  # fmt: skip
    tx = sign_govern(key_of(ISSUER), CHAIN_ID, signer=ISSUER, uetr=uetr, expiry_height=100,
                     action=action, approvals=approvals)  # fmt: skip
    assert settle_one(chain, tx) is RefusalCode.GOV_NOT_APPROVED


def test_an_approval_is_bound_to_its_transaction(chain: Chain) -> None:
    """An approval of the same action in another transaction (UETR) does not count."""
    action = Suspend(participant_id="bank-f")
    other = approve(action, chain_id=CHAIN_ID, uetr=new_uetr(), expiry_height=100,
                    officer_id=OFFICERS[1], officer_key=key_of(OFFICERS[1]))  # fmt: skip
    uetr = new_uetr()
    mine = approve(action, chain_id=CHAIN_ID, uetr=uetr, expiry_height=100,
                   officer_id=OFFICERS[0], officer_key=key_of(OFFICERS[0]))  # fmt: skip
    tx = sign_govern(key_of(ISSUER), CHAIN_ID, signer=ISSUER, uetr=uetr, expiry_height=100,
                     action=action, approvals=[mine, other])  # fmt: skip
    assert settle_one(chain, tx) is RefusalCode.GOV_NOT_APPROVED


def test_the_same_govern_tx_settles_once(chain: Chain) -> None:
    tx = govern(Freeze(account="bank-e.payroll"))
    assert settle_one(chain, tx) is None
    with pytest.raises(BlockError, match="consumed"):
        chain.settle([tx])
    with pytest.raises(BlockError, match="share"):
        Chain(Ledger(make_genesis(START))).settle([tx, tx])


# -- admit -------------------------------------------------------------------------------


def test_an_admitted_bank_can_receive_and_send_at_once(chain: Chain) -> None:
    effects = chain.settle(
        [
            govern(admit_action("bank-g")),
            transfer("bank-e", "bank-e", "bank-g", 700),
        ]
    )
    assert codes_of(effects) == [None, None]
    assert chain.ledger.balances["bank-g"] == 700
    assert chain.ledger.owner_of("bank-g") == "bank-g"
    effects = chain.settle([transfer("bank-g", "bank-g", "bank-f", 200)])
    assert codes_of(effects) == [None]
    assert chain.ledger.balances["bank-g"] == 500
    chain.ledger.check_conservation()


def test_admit_refuses_a_used_id_or_key(chain: Chain) -> None:
    assert settle_one(chain, govern(admit_action("bank-e"))) is RefusalCode.GOV_PARTICIPANT_EXISTS
    taken = dataclasses.replace(admit_action("bank-g"), participant_id="bank-e.payroll")
    assert settle_one(chain, govern(taken)) is RefusalCode.GOV_PARTICIPANT_EXISTS
    officer = dataclasses.replace(admit_action("bank-g"), participant_id=OFFICERS[0])
    assert settle_one(chain, govern(officer)) is RefusalCode.GOV_PARTICIPANT_EXISTS
    node_key = dataclasses.replace(
        admit_action("bank-g"), public_key=bytes(key_of("bank-e").verify_key)
    )
    assert settle_one(chain, govern(node_key)) is RefusalCode.GOV_KEY_IN_USE
    officer_key = dataclasses.replace(
        admit_action("bank-g"), public_key=bytes(key_of(OFFICERS[2]).verify_key)
    )
    assert settle_one(chain, govern(officer_key)) is RefusalCode.GOV_KEY_IN_USE
    assert "bank-g" not in chain.ledger.participants


# -- suspend and reinstate ---------------------------------------------------------------


def test_a_suspended_bank_can_neither_send_nor_receive(chain: Chain) -> None:
    assert settle_one(chain, govern(Suspend(participant_id="bank-f"))) is None
    ledger = chain.ledger
    for tx in (
        transfer("bank-f", "bank-f", "bank-e", 1),
        transfer("bank-e", "bank-e", "bank-f.savings", 1),
        payout("bank-e", "bank-e", [("bank-e.payroll", 1), ("bank-f", 1)]),
        issue(ISSUER, "bank-f", 1),
        redeem(ISSUER, "bank-f", 1),
    ):
        with pytest.raises(TxRefused) as info:
            ledger.check_admission(ledger.check_tx(tx))
        assert info.value.code is RefusalCode.PARTICIPANT_SUSPENDED
        assert settle_one(chain, tx) is RefusalCode.PARTICIPANT_SUSPENDED
    assert ledger.balances["bank-f"] == 10_000
    assert settle_one(chain, govern(Reinstate(participant_id="bank-f"))) is None
    assert settle_one(chain, transfer("bank-f", "bank-f", "bank-e", 1)) is None


def test_a_suspended_banks_pending_tx_is_refused_at_block_time(chain: Chain) -> None:
    pending = transfer("bank-f", "bank-f", "bank-e", 5)
    chain.ledger.check_admission(chain.ledger.check_tx(pending))  # admitted before
    effects = chain.settle([govern(Suspend(participant_id="bank-f")), pending])
    assert codes_of(effects) == [None, RefusalCode.PARTICIPANT_SUSPENDED]
    assert chain.ledger.balances["bank-f"] == 10_000


def test_suspend_and_reinstate_rules(chain: Chain) -> None:
    code = settle_one(chain, govern(Suspend(participant_id="bank-z")))
    assert code is RefusalCode.GOV_UNKNOWN_PARTICIPANT
    assert settle_one(chain, govern(Suspend(participant_id=ISSUER))) is RefusalCode.GOV_NOT_ELIGIBLE
    assert (
        settle_one(chain, govern(Reinstate(participant_id="bank-e"))) is RefusalCode.GOV_NO_CHANGE
    )
    assert settle_one(chain, govern(Suspend(participant_id="bank-e"))) is None
    assert settle_one(chain, govern(Suspend(participant_id="bank-e"))) is RefusalCode.GOV_NO_CHANGE


# -- freeze and unfreeze -----------------------------------------------------------------


def test_a_frozen_accounts_debit_is_refused_and_credit_allowed(chain: Chain) -> None:
    assert settle_one(chain, govern(Freeze(account="bank-e"))) is None
    ledger = chain.ledger
    debit = transfer("bank-e", "bank-e", "bank-f", 1)
    with pytest.raises(TxRefused) as info:
        ledger.check_admission(ledger.check_tx(debit))
    assert info.value.code is RefusalCode.ACCOUNT_FROZEN
    assert settle_one(chain, debit) is RefusalCode.ACCOUNT_FROZEN
    assert settle_one(chain, payout("bank-e", "bank-e", [("bank-f", 1)])) is (
        RefusalCode.ACCOUNT_FROZEN
    )
    assert settle_one(chain, redeem(ISSUER, "bank-e", 1)) is RefusalCode.ACCOUNT_FROZEN
    # The owner's other accounts are not frozen; credits reach the frozen one.
    assert settle_one(chain, transfer("bank-e", "bank-e.payroll", "bank-f", 1)) is (
        RefusalCode.INSUFFICIENT_FUNDS
    )
    assert settle_one(chain, transfer("bank-f", "bank-f", "bank-e", 300)) is None
    assert ledger.balances["bank-e"] == 10_300
    assert settle_one(chain, govern(Unfreeze(account="bank-e"))) is None
    assert settle_one(chain, transfer("bank-e", "bank-e", "bank-f", 1)) is None


def test_freeze_rules(chain: Chain) -> None:
    assert settle_one(chain, govern(Freeze(account="nobody"))) is RefusalCode.UNKNOWN_ACCOUNT
    assert settle_one(chain, govern(Unfreeze(account="bank-e"))) is RefusalCode.GOV_NO_CHANGE


# -- rotate_key ----------------------------------------------------------------------------


def test_old_key_refused_after_rotation_new_key_accepted(chain: Chain) -> None:
    old_signed = transfer("bank-e", "bank-e", "bank-f", 1)
    chain.ledger.check_tx(old_signed)  # pooled before the rotation
    assert settle_one(chain, rotate("bank-e", "bank-e-2")) is None
    ledger = chain.ledger
    assert ledger.public_key_of("bank-e") == bytes(key_of("bank-e-2").verify_key)
    with pytest.raises(TxRefused) as info:
        ledger.check_tx(transfer("bank-e", "bank-e", "bank-f", 2))
    assert info.value.code is RefusalCode.BAD_SIGNATURE
    # A pending one signed before is refused BAD_SIGNATURE in the block, which stays valid.
    assert settle_one(chain, old_signed) is RefusalCode.BAD_SIGNATURE
    from node.tx import sign_transfer

    new_signed = sign_transfer(
        key_of("bank-e-2"), CHAIN_ID, signer="bank-e", uetr=new_uetr(), expiry_height=100,
        from_account="bank-e", to_account="bank-f", amount=3,
    )  # fmt: skip
    ledger.check_tx(new_signed)
    assert settle_one(chain, new_signed) is None
    assert ledger.balances["bank-f"] == 10_003


def test_a_rotation_in_a_block_applies_from_the_next_height(chain: Chain) -> None:
    """A transaction after the rotation in the same block was signed with the old key,
    which is still in force at this height."""
    effects = chain.settle(
        [rotate("bank-e", "bank-e-2"), transfer("bank-e", "bank-e", "bank-f", 4)]
    )
    assert codes_of(effects) == [None, None]


def test_a_rotation_without_the_new_keys_signature(chain: Chain) -> None:
    code = settle_one(chain, rotate("bank-e", "bank-e-2", new_key_signs=False))
    assert code is RefusalCode.GOV_NEW_KEY_UNSIGNED
    assert chain.ledger.public_key_of("bank-e") == bytes(key_of("bank-e").verify_key)


def test_a_rotation_to_a_used_key(chain: Chain) -> None:
    assert settle_one(chain, rotate("bank-e", "bank-f")) is RefusalCode.GOV_KEY_IN_USE
    assert settle_one(chain, rotate("bank-e", "bank-e-2")) is None
    assert settle_one(chain, rotate("bank-e", "bank-e")) is RefusalCode.GOV_KEY_IN_USE  # retired


# -- set_validators --------------------------------------------------------------------


def test_a_set_change_takes_effect_at_h_plus_2_exactly(chain: Chain) -> None:
    genesis_set = chain.ledger.validator_set
    chain.settle([govern(admit_action("val-g", "validator"))])  # height 1
    five = SetValidators(
        validators=tuple((v, 1) for v in sorted((*VALIDATORS, "val-g"))), allow_below_four=False
    )
    effects = chain.settle([govern(five)])  # decided at height 2
    assert codes_of(effects) == [None]
    ledger = chain.ledger
    assert ledger.validators_at(3) == genesis_set
    assert [v.validator_id for v in ledger.validators_at(4).validators] == sorted(
        (*VALIDATORS, "val-g")
    )
    block = chain.next_block([])
    assert block.header.validator_set_hash == genesis_set.hash()  # height 3
    chain.settle([])
    assert chain.ledger.validator_set == chain.ledger.validators_at(4)
    block = chain.next_block([])
    assert block.header.validator_set_hash == ledger.validators_at(4).hash()
    chain.settle([])  # height 4, certified by the five (Chain.voters)
    chain.settle([])
    with pytest.raises(Exception, match="not known"):
        ledger.validators_at(ledger.height + 3)


def test_a_block_naming_the_old_set_after_the_change_is_invalid(chain: Chain) -> None:
    chain.settle([govern(admit_action("val-g", "validator"))])
    five = SetValidators(
        validators=tuple((v, 1) for v in sorted((*VALIDATORS, "val-g"))), allow_below_four=False
    )
    chain.settle([govern(five)])
    chain.settle([])
    block = chain.next_block([])
    forged = dataclasses.replace(
        block,
        header=dataclasses.replace(
            block.header, validator_set_hash=make_genesis().validator_set().hash()
        ),
    )
    with pytest.raises(BlockError, match="validator_set_hash"):
        chain.ledger.validate_block(forged)


def test_a_set_below_four_needs_the_officers_to_allow_it(chain: Chain) -> None:
    three = tuple((v, 1) for v in VALIDATORS[:3])
    code = settle_one(chain, govern(SetValidators(validators=three, allow_below_four=False)))
    assert code is RefusalCode.GOV_TOO_FEW_VALIDATORS
    assert settle_one(chain, govern(SetValidators(validators=three, allow_below_four=True))) is None
    assert len(chain.ledger.validators_at(chain.ledger.height + 2).validators) == 3


def test_a_set_must_name_eligible_participants(chain: Chain) -> None:
    with_bank = tuple(sorted([(v, 1) for v in VALIDATORS] + [("bank-e", 1)]))
    code = settle_one(chain, govern(SetValidators(validators=with_bank, allow_below_four=False)))
    assert code is RefusalCode.GOV_NOT_ELIGIBLE
    unknown = tuple(sorted([(v, 1) for v in VALIDATORS] + [("val-z", 1)]))
    code = settle_one(chain, govern(SetValidators(validators=unknown, allow_below_four=False)))
    assert code is RefusalCode.GOV_UNKNOWN_PARTICIPANT
    assert settle_one(chain, govern(Suspend(participant_id="val-d"))) is None
    four = tuple((v, 1) for v in VALIDATORS)
    code = settle_one(chain, govern(SetValidators(validators=four, allow_below_four=False)))
    assert code is RefusalCode.GOV_NOT_ELIGIBLE


# -- the state commitment --------------------------------------------------------------


def test_the_app_hash_changes_with_each_governance_effect() -> None:
    actions = [
        admit_action("bank-g"),
        Suspend(participant_id="bank-f"),
        Freeze(account="bank-e.payroll"),
        SetValidators(validators=tuple((v, 2) for v in VALIDATORS), allow_below_four=False),
    ]
    plain = Chain(Ledger(make_genesis(START)))
    plain.settle([])
    roots = {plain.ledger.state_root()}
    for action in actions:
        chain = Chain(Ledger(make_genesis(START)))
        assert codes_of(chain.settle([govern(action)])) == [None]
        roots.add(chain.ledger.state_root())
    rotated = Chain(Ledger(make_genesis(START)))
    rotated.settle([rotate("bank-e", "bank-e-2")])
    roots.add(rotated.ledger.state_root())
    # One reference each, like the empty-block chain plus one: only governance differs...
    assert len(roots) == len(actions) + 2
    # ...and a refused action changes nothing but the references.
    refused = Chain(Ledger(make_genesis(START)))
    refused.settle([govern(Suspend(participant_id="bank-f"), approvers=OFFICERS[:1])])
    assert refused.ledger.governance == plain.ledger.governance


def settled_store(tmp_path: Path) -> tuple[Path, Chain]:
    path = tmp_path / "store"
    chain = Chain(Ledger(make_genesis(START)))
    with Store.open(path, chain_id=CHAIN_ID) as store:
        for txs in (
            [govern(admit_action("bank-g")), transfer("bank-e", "bank-e", "bank-g", 50)],
            [govern(Freeze(account="bank-f")), govern(Suspend(participant_id="bank-e"))],
            [rotate("bank-f", "bank-f-2")],
            [],
        ):
            store.commit_block(chain.settle(txs))
    return path, chain


def test_a_store_reopens_with_the_governance_state(tmp_path: Path) -> None:
    path, chain = settled_store(tmp_path)
    with Store.open(path, chain_id=CHAIN_ID) as store:
        restored = open_ledger(make_genesis(START), store)
    assert restored.app_hash == chain.ledger.app_hash
    assert restored.governance == chain.ledger.governance
    assert restored.balances["bank-g"] == 50
    assert restored.frozen == {"bank-f"}
    assert restored.participants["bank-e"].suspended
    assert restored.validator_set == chain.ledger.validator_set


@pytest.mark.parametrize("edit", ["unsuspend", "unfreeze", "rekey"])
def test_a_store_whose_governance_was_edited_is_refused_at_open(tmp_path: Path, edit: str) -> None:
    path, _ = settled_store(tmp_path)
    with Store.open(path, chain_id=CHAIN_ID) as store:
        state = decode_governance_state(store.load_governance() or b"")
    participants = list(state.participants)
    if edit == "unsuspend":
        participants = [dataclasses.replace(p, suspended=False) for p in participants]
        state = dataclasses.replace(state, participants=tuple(participants))
    elif edit == "unfreeze":
        state = dataclasses.replace(state, frozen=())
    else:
        participants = [
            dataclasses.replace(p, public_key=bytes(key_of("thief").verify_key))
            if p.participant_id == "bank-f" else p
            for p in participants
        ]  # fmt: skip
        state = dataclasses.replace(state, participants=tuple(participants))
    write_meta_record(path, KEY_GOVERNANCE, state.encode())  # checksum fixed up too
    with Store.open(path, chain_id=CHAIN_ID) as store, pytest.raises(StoreCorrupted):
        open_ledger(make_genesis(START), store)


def write_meta_record(path: Path, key: bytes, value: bytes) -> None:
    """Rewrite a sealed meta record the way an attacker with the file would: a valid
    checksum over the new value."""
    import lmdb

    from node.checksum import seal
    from node.store import DB_META

    env = lmdb.open(str(path), max_dbs=16, subdir=True)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(DB_META, txn=txn, create=False)
            txn.put(key, seal(DB_META, key, value), db=db)
    finally:
        env.close()


# -- decoding ----------------------------------------------------------------------------


def test_govern_tx_round_trips() -> None:
    action = admit_action("bank-g")
    tx = decode_tx(govern(action), CHAIN_ID)
    assert type(tx) is Govern
    assert tx.action == action
    assert [officer for officer, _ in tx.approvals] == list(OFFICERS[:2])
    assert decode_action(encode_action(action)) == action


@pytest.mark.parametrize(
    "action",
    [
        [],
        ["admit"],
        ["launch", "x"],
        ["suspend", "bad id"],
        ["suspend", b"bank-e"],
        ["freeze", "bank-e", "extra"],
        ["admit", "bank-g", "G", "issuer", bytes(32), "h:1", "h:2"],
        ["admit", "bank-g", "G", "bank", bytes(32), "h:1", "h:2"],  # small-order key
        ["admit", "bank-g", "", "bank", b"k" * 32, "h:1", "h:2"],
        ["rotate_key", "bank-e", bytes(key_of("x").verify_key), b"s" * 63],
        ["set_validators", [], False],
        ["set_validators", [["b", 1], ["a", 1]], False],
        ["set_validators", [["a", 1], ["a", 1]], False],
        ["set_validators", [["a", 0]], False],
        ["set_validators", [["a", True]], False],
        ["set_validators", [["a", 1]], 1],
        ["set_validators", [["a", 1000]] * 1, None],
    ],
)
def test_malformed_actions_are_refused(action: list[object]) -> None:
    with pytest.raises(TxRefused) as info:
        decode_action(action)
    assert info.value.code is RefusalCode.MALFORMED


def raw_govern(action: object, approvals: object) -> bytes:
    fields = [b"somnet/tx/govern/v1", CHAIN_ID, ISSUER, new_uetr(), 100, action, approvals]
    signed = msgpack.packb(fields, use_bin_type=True)
    return bytes(key_of(ISSUER).sign(signed))


@pytest.mark.parametrize(
    "approvals",
    [[], "x", [["officer-1"]], [["officer-2", b"s" * 64], ["officer-1", b"s" * 64]],
     [["officer-1", b"s" * 64], ["officer-1", b"s" * 64]], [["officer-1", b"s" * 63]],
     [["officer-1", "s" * 64]], [[f"o-{i:02d}", b"s" * 64] for i in range(33)]],
)  # fmt: skip
def test_malformed_approvals_are_refused(approvals: object) -> None:
    with pytest.raises(TxRefused) as info:
        decode_tx(raw_govern(["suspend", "bank-e"], approvals), CHAIN_ID)
    assert info.value.code is RefusalCode.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
    | st.binary(max_size=70),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
))  # fmt: skip
def test_hostile_actions_decode_or_are_malformed(action: object) -> None:
    try:
        tx = decode_tx(raw_govern(action, [["officer-1", b"s" * 64]]), CHAIN_ID)
    except TxRefused as exc:
        assert exc.code is RefusalCode.MALFORMED
    else:
        assert type(tx) is Govern
        assert encode_action(tx.action) == action


@settings(max_examples=30, deadline=None)
@given(
    approvers=st.lists(
        st.sampled_from([*OFFICERS, "val-b", "bank-e"]), unique=True, min_size=1, max_size=5
    ),
    target=st.sampled_from(["bank-e", "bank-f", "val-b", "nobody", ISSUER]),
)
def test_suspension_applies_exactly_when_the_rules_allow(approvers: list[str], target: str) -> None:
    """Property: the suspension applies iff two distinct officers approved and the target
    is a participant other than the issuer; otherwise nothing changes."""
    chain = Chain(Ledger(make_genesis(START)))
    before = chain.ledger.governance
    code = settle_one(chain, govern(Suspend(participant_id=target), approvers=approvers))
    officers = len(set(approvers) & set(OFFICERS))
    if officers < 2:
        assert code is RefusalCode.GOV_NOT_APPROVED
    elif target == "nobody":
        assert code is RefusalCode.GOV_UNKNOWN_PARTICIPANT
    elif target == ISSUER:
        assert code is RefusalCode.GOV_NOT_ELIGIBLE
    else:
        assert code is None
        assert chain.ledger.participants[target].suspended
    if code is not None:
        assert chain.ledger.governance == before


def test_the_approval_message_binds_chain_uetr_and_expiry() -> None:
    action = Suspend(participant_id="bank-e")
    uetr = new_uetr()
    base = approval_message(CHAIN_ID, uetr, 100, action)
    assert base != approval_message("som-other", uetr, 100, action)
    assert base != approval_message(CHAIN_ID, new_uetr(), 100, action)
    assert base != approval_message(CHAIN_ID, uetr, 101, action)
    assert base != approval_message(CHAIN_ID, uetr, 100, Admit(
        participant_id="bank-e", name="x", role="bank", public_key=bytes(32),
        peer_address="h:1", api_address="h:2"))  # fmt: skip


# -- somnet check, genesis and somnet init ----------------------------------------------


def test_somnet_check_replays_governance_and_finds_an_edit(tmp_path: Path) -> None:
    from node.check import check_store

    path, _ = settled_store(tmp_path)
    with Store.open_readonly(path, chain_id=CHAIN_ID) as store:
        report = check_store(store, make_genesis(START))
    assert report.ok, report.problems
    write_meta_record(path, KEY_GOVERNANCE, decode_governance_state_without_freezes(path))
    with Store.open_readonly(path, chain_id=CHAIN_ID) as store:
        report = check_store(store, make_genesis(START))
    assert not report.ok
    assert any(p.subject == "governance" for p in report.problems)


def decode_governance_state_without_freezes(path: Path) -> bytes:
    with Store.open(path, chain_id=CHAIN_ID) as store:
        state = decode_governance_state(store.load_governance() or b"")
    return dataclasses.replace(state, frozen=()).encode()


def test_genesis_requires_officers_apart_from_node_keys() -> None:
    import json

    from node.errors import GenesisError
    from node.genesis import parse_genesis
    from tests.unit.ledger_support import genesis_doc, public_hex

    genesis = make_genesis()
    assert [o.officer_id for o in genesis.officers] == list(OFFICERS)
    assert genesis.officer_threshold == 2
    for edit, message in (
        (lambda d: d.pop("officers"), "officers: expected a list"),
        (lambda d: d.update(officer_threshold=4), "officer_threshold"),
        (lambda d: d.update(officer_threshold=0), "officer_threshold"),
        (lambda d: d["officers"][0].update(public_key=public_hex("bank-e")), "reuses"),
        (lambda d: d["officers"][1].update(public_key=public_hex(OFFICERS[0])), "reuses"),
        (lambda d: d["officers"][0].update(id="bank-e"), "already"),
    ):
        doc = genesis_doc()
        edit(doc)
        with pytest.raises(GenesisError, match=message):
            parse_genesis(json.dumps(doc))


def test_somnet_init_writes_officer_keys_0600(tmp_path: Path) -> None:
    from cli.devnet import init_network
    from node.genesis import load_genesis
    from node.keys import load_key_file

    init_network(tmp_path / "net", validators=4, banks=1, chain_id="som-x", host="127.0.0.1",
                 base_port=30000, officers=4, officer_threshold=3)  # fmt: skip
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    assert genesis.officer_threshold == 3
    for officer in genesis.officers:
        path = tmp_path / "net" / "officers" / f"{officer.officer_id}.json"
        assert path.stat().st_mode & 0o777 == 0o600
        assert bytes(load_key_file(path).verify_key) == officer.public_key
    assert len(genesis.officers) == 4
