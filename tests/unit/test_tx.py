"""Transaction encodings: round trips, domain separation, limits, refusal codes."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import RefusalCode, TxRefused
from node.tx import (
    AMOUNT_MAX,
    PAYOUT_LEGS_MAX,
    TAG_ISSUE,
    TAG_PAYOUT,
    TAG_REDEEM,
    TAG_TRANSFER,
    Issue,
    Payout,
    Redeem,
    Transfer,
    _decode_checked,
    _valid_transfer,
    _valid_transfer_v2,
    decode_tx,
    open_remittance,
    reference_key,
    verify_tx_signature,
)
from tests.unit.ledger_support import (
    CHAIN_ID,
    issue,
    key_of,
    new_uetr,
    payout,
    redeem,
    transfer,
)


def signed(fields: list[object], signer: str = "bank-e") -> bytes:
    """Sign arbitrary fields, bypassing the builders' own checks."""
    return bytes(key_of(signer).sign(msgpack.packb(fields, use_bin_type=True)))


def transfer_fields(**overrides: object) -> list[object]:
    fields: dict[str, object] = {
        "tag": TAG_TRANSFER,
        "chain": CHAIN_ID,
        "signer": "bank-e",
        "uetr": bytes(16),
        "expiry": 10,
        "from": "bank-e",
        "to": "bank-f",
        "amount": 100,
        "remittance": "",
    }
    fields.update(overrides)
    return list(fields.values())


def refusal(data: bytes) -> RefusalCode:
    with pytest.raises(TxRefused) as info:
        decode_tx(data, CHAIN_ID)
    assert info.value.message
    return info.value.code


def test_every_kind_round_trips() -> None:
    t = decode_tx(transfer("bank-e", "bank-e", "bank-f", 5, remittance="inv 42"), CHAIN_ID)
    assert isinstance(t, Transfer)
    assert (t.from_account, t.to_account, t.amount) == ("bank-e", "bank-f", 5)
    assert open_remittance(t, "bank-f", key_of("bank-f")) == "inv 42"
    i = decode_tx(issue("nbkr", "bank-e", 7), CHAIN_ID)
    assert isinstance(i, Issue)
    assert (i.to_account, i.amount, i.reserve_reference) == ("bank-e", 7, "reserve/2024/001")
    r = decode_tx(redeem("nbkr", "bank-e", 8), CHAIN_ID)
    assert isinstance(r, Redeem)
    assert (r.from_account, r.amount) == ("bank-e", 8)
    p = decode_tx(payout("bank-e", "bank-e", [("bank-f", 1), ("val-b", 2)]), CHAIN_ID)
    assert isinstance(p, Payout)
    assert p.legs == (("bank-f", 1), ("val-b", 2))
    assert p.total == 3


def test_signature_verifies_only_with_the_signer_key() -> None:
    tx = decode_tx(transfer("bank-e", "bank-e", "bank-f", 5), CHAIN_ID)
    assert verify_tx_signature(tx, bytes(key_of("bank-e").verify_key))
    assert not verify_tx_signature(tx, bytes(key_of("bank-f").verify_key))


def test_hash_covers_content_not_signature() -> None:
    uetr = new_uetr()
    a = decode_tx(transfer("bank-e", "bank-e", "bank-f", 5, uetr=uetr), CHAIN_ID)
    b = decode_tx(transfer("bank-e", "bank-e", "bank-f", 6, uetr=uetr), CHAIN_ID)
    assert a.tx_hash != b.tx_hash
    malleated = decode_tx(bytes(64) + a.raw[64:], CHAIN_ID)
    assert malleated.tx_hash == a.tx_hash
    assert reference_key(a.signer, a.uetr) == reference_key(b.signer, b.uetr)


def test_kinds_are_domain_separated() -> None:
    # The same field values under another tag are another kind; shaped wrongly, malformed.
    as_issue = signed([TAG_ISSUE, CHAIN_ID, "bank-e", bytes(16), 10, "bank-f", 100, ""])
    assert refusal(as_issue) is RefusalCode.MALFORMED
    assert refusal(signed(transfer_fields(tag=b"somnet/consensus/prevote/v1"))) is (
        RefusalCode.MALFORMED
    )


def test_wrong_chain() -> None:
    assert refusal(signed(transfer_fields(chain="som-other"))) is RefusalCode.WRONG_CHAIN


@pytest.mark.parametrize("amount", [0, -1, AMOUNT_MAX + 1, 1.0, 100.5, True, False, "100", None])
def test_amount_must_be_a_positive_integer(amount: object) -> None:
    assert refusal(signed(transfer_fields(amount=amount))) is RefusalCode.INVALID_AMOUNT


@pytest.mark.parametrize("amount", [1.0, True, -5, 0])
def test_payout_leg_amount_must_be_a_positive_integer(amount: object) -> None:
    fields = [b"somnet/tx/payout/v1", CHAIN_ID, "bank-e", bytes(16), 10, "bank-e"]
    data = signed([*fields, [["bank-f", 1], ["val-b", amount]], ""])
    assert refusal(data) is RefusalCode.INVALID_AMOUNT


def test_payout_total_is_bounded() -> None:
    fields = [b"somnet/tx/payout/v1", CHAIN_ID, "bank-e", bytes(16), 10, "bank-e"]
    data = signed([*fields, [["bank-f", AMOUNT_MAX], ["val-b", 1]], ""])
    assert refusal(data) is RefusalCode.INVALID_AMOUNT


def test_payout_legs_are_bounded() -> None:
    legs = [(f"acct-{i}", 1) for i in range(PAYOUT_LEGS_MAX)]
    assert len(decode_tx(payout("bank-e", "bank-e", legs), CHAIN_ID).raw) > 1000
    with pytest.raises(TxRefused) as info:
        payout("bank-e", "bank-e", [*legs, ("bank-f", 1)])
    assert info.value.code is RefusalCode.TOO_MANY_LEGS
    with pytest.raises(TxRefused) as info:
        payout("bank-e", "bank-e", [])
    assert info.value.code is RefusalCode.TOO_MANY_LEGS


def test_self_transfer_is_refused() -> None:
    with pytest.raises(TxRefused) as info:
        transfer("bank-e", "bank-e", "bank-e", 1)
    assert info.value.code is RefusalCode.SELF_TRANSFER
    with pytest.raises(TxRefused) as info:
        payout("bank-e", "bank-e", [("bank-f", 1), ("bank-e", 1)])
    assert info.value.code is RefusalCode.SELF_TRANSFER


@pytest.mark.parametrize(
    "overrides",
    [
        {"uetr": bytes(15)},
        {"uetr": "0" * 16},
        {"expiry": 0},
        {"expiry": 1.5},
        {"signer": ""},
        {"signer": "x" * 65},
        {"from": b"bank-e"},
        {"remittance": "x" * 141},
        {"remittance": "x"},  # v1 carries no remittance: plaintext is refused (issue 8)
        {"remittance": b""},
        {"remittance": None},
        {"chain": 7},
    ],
)
def test_malformed_fields(overrides: dict[str, object]) -> None:
    assert refusal(signed(transfer_fields(**overrides))) is RefusalCode.MALFORMED


@pytest.mark.parametrize("bad_id", ["bank-e/payroll", "..", ".", "bank e", "bank-é", "-bank"])
def test_an_id_that_needs_escaping_in_a_url_is_malformed(bad_id: str) -> None:
    """Genesis refuses such ids, so no account or participant has one (see test_genesis)."""
    common = [CHAIN_ID, "bank-e", bytes(16), 10]
    for fields in (
        transfer_fields(**{"from": bad_id}),
        transfer_fields(to=bad_id),
        transfer_fields(signer=bad_id),
        [TAG_PAYOUT, *common, "bank-e", [["bank-f", 1], [bad_id, 1]], ""],
        [TAG_PAYOUT, *common, bad_id, [["bank-f", 1]], ""],
        [TAG_ISSUE, *common, bad_id, 5, "reserve 1"],
        [TAG_REDEEM, *common, bad_id, 5, "reserve 1"],
    ):
        assert refusal(signed(fields)) is RefusalCode.MALFORMED, fields
    with pytest.raises(TxRefused) as info:
        transfer("bank-e", "bank-e", bad_id, 5)  # a client cannot build one either
    assert info.value.code is RefusalCode.MALFORMED


def test_a_plaintext_remittance_is_refused_in_every_v1_kind() -> None:
    """Issue 8: a remittance travels sealed (v2, tests/unit/test_remittance.py)."""
    assert refusal(signed(transfer_fields(remittance="salary"))) is RefusalCode.MALFORMED
    common = [CHAIN_ID, "bank-e", bytes(16), 10, "bank-e", [["bank-f", 1]]]
    assert refusal(signed([TAG_PAYOUT, *common, "salary"])) is RefusalCode.MALFORMED
    assert isinstance(decode_tx(signed([TAG_PAYOUT, *common, ""]), CHAIN_ID), Payout)


def test_non_canonical_encoding_is_refused() -> None:
    canonical = msgpack.packb(transfer_fields(), use_bin_type=True)
    # The same array with the amount 100 as a uint32 (0xce) instead of a positive fixint.
    padded = canonical[:-2] + b"\xce\x00\x00\x00\x64" + canonical[-1:]
    assert msgpack.unpackb(padded) == msgpack.unpackb(canonical)
    data = bytes(key_of("bank-e").sign(padded))
    assert refusal(data) is RefusalCode.MALFORMED


def test_maps_and_extra_fields_are_refused() -> None:
    assert refusal(signed({"amount": 1})) is RefusalCode.MALFORMED  # type: ignore[arg-type]
    assert refusal(signed([*transfer_fields(), "extra"])) is RefusalCode.MALFORMED
    assert refusal(b"") is RefusalCode.MALFORMED
    assert refusal(bytes(64)) is RefusalCode.MALFORMED


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_tx_refused(data: bytes) -> None:
    try:
        decode_tx(data, CHAIN_ID)
    except TxRefused as exc:
        assert isinstance(exc.code, RefusalCode)


@settings(max_examples=200)
@given(st.data())
def test_mutated_transactions_raise_only_tx_refused(data: st.DataObject) -> None:
    raw = bytearray(payout("bank-e", "bank-e", [("bank-f", 1), ("val-b", 2)]))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_tx(bytes(raw[:cut]), CHAIN_ID)
    except TxRefused as exc:
        assert isinstance(exc.code, RefusalCode)


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2**64 - 1),
    st.sampled_from([AMOUNT_MAX, AMOUNT_MAX + 1, 2**63 - 1, 2**63]),
    st.text(max_size=70),
    st.sampled_from(["", "bank-e", "bank-f", "x" * 64, "x" * 65, "я" * 140, "я" * 141]),
    st.sampled_from(["bank-e/payroll", "bank-e.pay_roll~2", "..", ".", "-e", "bank é", "bé"]),
    st.binary(max_size=20),
    st.sampled_from([bytes(15), bytes(16), bytes(17)]),
)


def transfer_outcome(data: bytes) -> object:
    try:
        return decode_tx(data, CHAIN_ID)
    except TxRefused as exc:
        return exc.code


def checked_outcome(data: bytes) -> object:
    """The field-by-field path alone, without decode_tx's transfer shortcut."""
    signed_bytes = data[64:]
    try:
        return _decode_checked(msgpack.unpackb(signed_bytes), data, b"", CHAIN_ID)
    except TxRefused as exc:
        return exc.code


@settings(max_examples=400)
@given(
    field=st.sampled_from(
        ["chain", "signer", "uetr", "expiry", "from", "to", "amount", "remittance"]
    ),
    value=FIELD_VALUES,
)
def test_transfer_shortcut_agrees_with_the_field_checks(field: str, value: object) -> None:
    data = signed(transfer_fields(**{field: value}))
    assert transfer_outcome(data) == checked_outcome(data)


def test_transfer_shortcut_is_taken_and_builds_the_same_transaction() -> None:
    data = transfer("bank-e", "bank-e", "bank-f", 5)
    fields = msgpack.unpackb(data[64:])
    fast = _valid_transfer(fields, data, data[64:])
    assert fast is not None
    assert fast == decode_tx(data, CHAIN_ID) == checked_outcome(data)
    assert fast.tx_hash == hashlib.sha256(data[64:]).digest()


def v2_parts(data: bytes) -> tuple[list[object], bytes]:
    """The signed fields and the envelope of a v2 transfer's wire bytes."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(data[64:])
    fields = unpacker.unpack()
    return fields, data[64 + unpacker.tell() :]


def checked_outcome_v2(data: bytes, envelope: bytes) -> object:
    """The field-by-field path alone for wire bytes that end with `envelope`."""
    signed_bytes = data[64 : len(data) - len(envelope)]
    try:
        return _decode_checked(msgpack.unpackb(signed_bytes), data, envelope, CHAIN_ID)
    except TxRefused as exc:
        return exc.code


@settings(max_examples=400)
@given(
    index=st.integers(min_value=0, max_value=8),  # tag, chain, signer, ..., remittance hash
    value=st.one_of(FIELD_VALUES, st.sampled_from([bytes(32), b"\x01" * 32])),
    envelope_damage=st.sampled_from(["none", "cut", "flip", "append"]),
)
def test_v2_transfer_shortcut_agrees_with_the_field_checks(
    index: int, value: object, envelope_damage: str
) -> None:
    fields, envelope = v2_parts(transfer("bank-e", "bank-e", "bank-f", 5, remittance="inv 42"))
    fields[index] = value
    if envelope_damage == "cut":
        envelope = envelope[:-1]
    elif envelope_damage == "flip":
        envelope = envelope[:-1] + bytes([envelope[-1] ^ 1])
    elif envelope_damage == "append":
        envelope += b"\x00"
    data = signed(fields) + envelope
    assert transfer_outcome(data) == checked_outcome_v2(data, envelope)


def test_v2_transfer_shortcut_is_taken_and_builds_the_same_transaction() -> None:
    data = transfer("bank-e", "bank-e", "bank-f", 5, remittance="inv 42")
    fields, envelope = v2_parts(data)
    fast = _valid_transfer_v2(fields, data, data[64:], envelope)
    assert fast is not None
    assert fast.envelope is not None
    assert fast == decode_tx(data, CHAIN_ID) == checked_outcome_v2(data, envelope)
    assert fast.tx_hash == hashlib.sha256(data[64:]).digest()
