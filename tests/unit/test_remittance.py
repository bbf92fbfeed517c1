"""Sealed remittances (issue 8): the v2 encodings, their limits, who can open them, and
the ledger's rule on who they must be sealed to (node/tx.py's module doc)."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

from node.errors import RefusalCode, TxRefused
from node.ledger import Ledger, decode_tx_result
from node.tx import (
    BOX_SIZE_MAX,
    BOX_SIZE_MIN,
    ENVELOPE_SIZE_MAX,
    RECIPIENTS_MAX,
    TAG_COMMITMENT,
    TAG_ENVELOPE,
    TAG_TRANSFER,
    TAG_TRANSFER_V2,
    TX_SIZE_MAX,
    Issue,
    Payout,
    Transfer,
    decode_tx,
    open_remittance,
    remittance_recipients,
    seal_remittance,
    sign_payout,
    sign_transfer,
    signed_message,
    verify_tx_signature,
)
from tests.unit.ledger_support import (
    CHAIN_ID,
    Chain,
    issue,
    key_of,
    make_genesis,
    new_uetr,
    payout,
    transfer,
)

TEXT = "salary run 11/2026, client ACME LLC"
GENESIS = make_genesis()


def public_key(name: str) -> bytes:
    return bytes(key_of(name).verify_key)


def sealed(text: str = TEXT, to: str = "bank-f") -> bytes:
    return transfer("bank-e", "bank-e", to, 5, remittance=text)


def v2_with(envelope: bytes, *, signed_hash: bytes | None = None) -> bytes:
    """A v2 transfer signed by bank-e over `signed_hash` (the envelope's own hash by
    default), with `envelope` after the signed bytes: nothing checked on the way."""
    remittance_hash = hashlib.sha256(envelope).digest() if signed_hash is None else signed_hash
    fields = [TAG_TRANSFER_V2, CHAIN_ID, "bank-e", bytes(16), 10, "bank-e", "bank-f", 100]
    signed = msgpack.packb([*fields, remittance_hash], use_bin_type=True)
    return bytes(key_of("bank-e").sign(signed)) + envelope


def envelope_of(entries: object, *, commitment: object = bytes(32), tag: object = None) -> bytes:
    document = [TAG_ENVELOPE if tag is None else tag, commitment, entries]
    return bytes(msgpack.packb(document, use_bin_type=True))


def boxes(*recipients: str, size: int = BOX_SIZE_MIN) -> list[list[object]]:
    return [[recipient, bytes([index]) * size] for index, recipient in enumerate(recipients)]


def refusal(data: bytes) -> RefusalCode:
    with pytest.raises(TxRefused) as info:
        decode_tx(data, CHAIN_ID)
    assert info.value.message
    return info.value.code


# -- each recipient reads it, nobody else ---------------------------------------------------


def test_a_sealed_transfer_round_trips_and_each_recipient_reads_it() -> None:
    raw = sealed()
    tx = decode_tx(raw, CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert tx.envelope is not None
    # The sending bank, the receiving bank and the issuer, in id order.
    assert tx.envelope.recipients == ("bank-e", "bank-f", "nbkr")
    for recipient in tx.envelope.recipients:
        assert open_remittance(tx, recipient, key_of(recipient)) == TEXT
    assert TEXT.encode() not in raw
    assert tx.tx_hash == hashlib.sha256(raw[64:]).digest()
    assert signed_message(tx) == raw[: len(raw) - tx.envelope.size]
    assert verify_tx_signature(tx, public_key("bank-e"))
    assert Ledger(GENESIS).check_tx(raw) == tx


def test_a_third_bank_and_wrong_keys_cannot_read_it() -> None:
    tx = decode_tx(sealed(), CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert tx.envelope is not None
    assert open_remittance(tx, "val-b", key_of("val-b")) is None  # not a recipient
    assert open_remittance(tx, "bank-f", key_of("val-b")) is None  # a key not bank-f's
    assert open_remittance(tx, "bank-f", key_of("bank-e")) is None  # another recipient's
    outsider = SealedBox(key_of("val-b").to_curve25519_private_key())
    for box in tx.envelope.boxes:
        with pytest.raises(CryptoError):
            outsider.decrypt(box)
    plain = decode_tx(transfer("bank-e", "bank-e", "bank-f", 5), CHAIN_ID)
    assert open_remittance(plain, "bank-f", key_of("bank-f")) is None  # none to read
    minted = decode_tx(issue("nbkr", "bank-e", 5), CHAIN_ID)
    assert isinstance(minted, Issue)
    assert open_remittance(minted, "nbkr", key_of("nbkr")) is None


def test_a_sealed_payout_reaches_every_receiving_bank() -> None:
    raw = payout("bank-e", "bank-e", [("bank-f.savings", 1), ("val-b", 2)], remittance=TEXT)
    tx = decode_tx(raw, CHAIN_ID)
    assert isinstance(tx, Payout)
    assert tx.envelope is not None
    assert tx.envelope.recipients == ("bank-e", "bank-f", "nbkr", "val-b")
    for recipient in tx.envelope.recipients:
        assert open_remittance(tx, recipient, key_of(recipient)) == TEXT
    assert open_remittance(tx, "val-c", key_of("val-c")) is None
    assert TEXT.encode() not in raw


def test_the_same_text_sealed_twice_shares_nothing_visible() -> None:
    """The salt: the commitment of a guessed text can never be recomputed."""
    first, second = (decode_tx(sealed(), CHAIN_ID) for _ in range(2))
    assert isinstance(first, Transfer)
    assert isinstance(second, Transfer)
    assert first.envelope is not None
    assert second.envelope is not None
    assert first.envelope.commitment != second.envelope.commitment
    assert not set(first.envelope.boxes) & set(second.envelope.boxes)
    unsalted = msgpack.packb([bytes(16), TEXT], use_bin_type=True)
    assert hashlib.sha256(TAG_COMMITMENT + unsalted).digest() != first.envelope.commitment


def test_a_sender_who_seals_different_texts_is_found_out_by_the_recipient() -> None:
    """The commitment: every recipient reads the text the sender committed to, or none."""
    salt = bytes(range(16))
    told = msgpack.packb([salt, "salary"], use_bin_type=True)
    other = msgpack.packb([salt, "bonus!"], use_bin_type=True)
    assert len(told) == len(other)

    def box(recipient: str, content: bytes) -> list[object]:
        key = PublicKey(crypto_sign_ed25519_pk_to_curve25519(public_key(recipient)))
        return [recipient, SealedBox(key).encrypt(content)]

    entries = [box("bank-e", told), box("bank-f", other), box("nbkr", told)]
    commitment = hashlib.sha256(TAG_COMMITMENT + told).digest()
    tx = decode_tx(v2_with(envelope_of(entries, commitment=commitment)), CHAIN_ID)
    assert open_remittance(tx, "bank-e", key_of("bank-e")) == "salary"
    assert open_remittance(tx, "nbkr", key_of("nbkr")) == "salary"
    assert open_remittance(tx, "bank-f", key_of("bank-f")) is None


def test_garbage_in_a_well_formed_envelope_is_valid_but_opens_to_nothing() -> None:
    """Validators check the form; only a recipient can check its box."""
    tx = decode_tx(v2_with(envelope_of(boxes("bank-e", "bank-f", "nbkr"))), CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert open_remittance(tx, "bank-f", key_of("bank-f")) is None


# -- the encoding: canonical, committed, bounded -------------------------------------------


def test_a_malleated_signature_keeps_the_hash_and_fails_verification() -> None:
    raw = sealed()
    tx = decode_tx(raw, CHAIN_ID)
    malleated = decode_tx(bytes(64) + raw[64:], CHAIN_ID)
    assert malleated.tx_hash == tx.tx_hash
    assert not verify_tx_signature(malleated, public_key("bank-e"))


def test_a_tampered_envelope_is_malformed() -> None:
    raw = sealed()
    tx = decode_tx(raw, CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert tx.envelope is not None
    start = len(raw) - tx.envelope.size
    for position in range(start, len(raw), 29):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        assert refusal(bytes(tampered)) is RefusalCode.MALFORMED, position


def test_another_transactions_envelope_is_malformed() -> None:
    mine, theirs = (decode_tx(sealed(), CHAIN_ID) for _ in range(2))
    assert isinstance(mine, Transfer)
    assert isinstance(theirs, Transfer)
    assert mine.envelope is not None
    assert theirs.envelope is not None
    swapped = signed_message(mine) + theirs.raw[len(theirs.raw) - theirs.envelope.size :]
    assert refusal(swapped) is RefusalCode.MALFORMED


def test_an_envelope_swapped_with_its_signed_hash_fails_the_signature() -> None:
    """The remittance hash is signed, so only the signer can change the envelope."""
    forged_envelope = envelope_of(boxes("bank-e", "bank-f", "nbkr"))
    genuine = v2_with(envelope_of(boxes("bank-e", "bank-f", "nbkr", size=BOX_SIZE_MIN + 1)))
    forged_fields = msgpack.unpackb(signed_message(decode_tx(genuine, CHAIN_ID))[64:])
    forged_fields[-1] = hashlib.sha256(forged_envelope).digest()
    forged = genuine[:64] + msgpack.packb(forged_fields, use_bin_type=True) + forged_envelope
    tx = decode_tx(forged, CHAIN_ID)  # well formed...
    with pytest.raises(TxRefused) as info:
        Ledger(GENESIS).check_signature(tx)  # ...but not what bank-e signed
    assert info.value.code is RefusalCode.BAD_SIGNATURE


def test_v2_without_its_envelope_and_bytes_after_other_kinds_are_malformed() -> None:
    raw = sealed()
    tx = decode_tx(raw, CHAIN_ID)
    assert refusal(signed_message(tx)) is RefusalCode.MALFORMED
    envelope = raw[len(signed_message(tx)) :]
    assert refusal(transfer("bank-e", "bank-e", "bank-f", 5) + envelope) is RefusalCode.MALFORMED
    assert refusal(issue("nbkr", "bank-e", 5) + envelope) is RefusalCode.MALFORMED
    assert refusal(raw + b"\x90") is RefusalCode.MALFORMED  # bytes after the envelope


def test_a_v2_remittance_hash_must_be_32_bytes() -> None:
    envelope = envelope_of(boxes("bank-e", "bank-f", "nbkr"))
    for signed_hash in (bytes(31), bytes(33)):
        assert refusal(v2_with(envelope, signed_hash=signed_hash)) is RefusalCode.MALFORMED
    fields = [TAG_TRANSFER_V2, CHAIN_ID, "bank-e", bytes(16), 10, "bank-e", "bank-f", 100, ""]
    no_hash = bytes(key_of("bank-e").sign(msgpack.packb(fields, use_bin_type=True)))
    assert refusal(no_hash + envelope) is RefusalCode.MALFORMED


def non_canonical_envelope() -> bytes:
    """A box length written as bin 16 where bin 8 is the canonical form."""
    canonical = envelope_of(boxes("bank-e", "bank-f", "nbkr", size=100))
    box = bytes([1]) * 100
    assert canonical.count(b"\xc4\x64" + box) == 1
    padded = canonical.replace(b"\xc4\x64" + box, b"\xc5\x00\x64" + box)
    assert msgpack.unpackb(padded) == msgpack.unpackb(canonical)
    return padded


MALFORMED_ENVELOPES = {
    "wrong tag": envelope_of(boxes("bank-e", "bank-f"), tag=b"somnet/remittance/envelope/v0"),
    "short commitment": envelope_of(boxes("bank-e", "bank-f"), commitment=bytes(31)),
    "text commitment": envelope_of(boxes("bank-e", "bank-f"), commitment="x" * 32),
    "no box": envelope_of([]),
    "too many boxes": envelope_of(boxes(*(f"bank-{i:02d}" for i in range(RECIPIENTS_MAX + 1)))),
    "box too small": envelope_of(boxes("bank-e", "bank-f", size=BOX_SIZE_MIN - 1)),
    "box too large": envelope_of(boxes("bank-e", "bank-f", size=BOX_SIZE_MAX + 1)),
    "boxes of two sizes": envelope_of([*boxes("bank-e"), *boxes("bank-f", size=BOX_SIZE_MIN + 1)]),
    "recipients out of order": envelope_of(boxes("nbkr", "bank-e")),
    "recipient twice": envelope_of(boxes("bank-e", "bank-e")),
    "recipient not an id": envelope_of(boxes("bank e", "bank-f")),
    "recipient as bytes": envelope_of([[b"bank-e", bytes(BOX_SIZE_MIN)]]),
    "box as text": envelope_of([["bank-e", "x" * BOX_SIZE_MIN]]),
    "entry of three": envelope_of([["bank-e", bytes(BOX_SIZE_MIN), 1]]),
    "a map": msgpack.packb({"tag": 1}, use_bin_type=True),
    "not msgpack": b"\xc1" * 40,
    "non-canonical": non_canonical_envelope(),
    "too large": bytes(ENVELOPE_SIZE_MAX + 1),
}


@pytest.mark.parametrize("envelope", MALFORMED_ENVELOPES.values(), ids=MALFORMED_ENVELOPES.keys())
def test_a_malformed_envelope_is_malformed_even_when_signed(envelope: bytes) -> None:
    assert refusal(v2_with(envelope)) is RefusalCode.MALFORMED


def test_the_largest_envelope_is_accepted_and_fits_a_transaction() -> None:
    recipients = [f"{i:02d}" + "x" * 62 for i in range(RECIPIENTS_MAX)]
    envelope = envelope_of(boxes(*recipients, size=BOX_SIZE_MAX))
    assert len(envelope) == ENVELOPE_SIZE_MAX  # the bound is exactly the largest form
    tx = decode_tx(v2_with(envelope), CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert tx.envelope is not None
    assert tx.envelope.recipients == tuple(recipients)
    assert len(tx.raw) < TX_SIZE_MAX


def test_the_text_limit_is_inclusive_and_the_longest_text_fills_a_box() -> None:
    longest_text = "\U0001f4b0" * 140  # 140 characters of 4 bytes each in UTF-8
    longest = decode_tx(sealed(longest_text), CHAIN_ID)
    assert isinstance(longest, Transfer)
    assert longest.envelope is not None
    assert {len(box) for box in longest.envelope.boxes} == {BOX_SIZE_MAX}
    assert open_remittance(longest, "bank-f", key_of("bank-f")) == longest_text
    assert open_remittance(decode_tx(sealed("я" * 140), CHAIN_ID), "nbkr", key_of("nbkr")) == (
        "я" * 140
    )
    shortest = decode_tx(sealed("x"), CHAIN_ID)
    assert isinstance(shortest, Transfer)
    assert shortest.envelope is not None
    assert {len(box) for box in shortest.envelope.boxes} == {BOX_SIZE_MIN}
    with pytest.raises(TxRefused) as info:
        sealed("я" * 141)
    assert info.value.code is RefusalCode.MALFORMED


def test_a_transfer_without_remittance_stays_v1() -> None:
    raw = transfer("bank-e", "bank-e", "bank-f", 5)
    assert msgpack.unpackb(raw[64:])[0] == TAG_TRANSFER
    tx = decode_tx(raw, CHAIN_ID)
    assert isinstance(tx, Transfer)
    assert tx.envelope is None
    assert signed_message(tx) == raw


@settings(max_examples=200)
@given(st.data())
def test_mutated_sealed_transactions_raise_only_tx_refused(data: st.DataObject) -> None:
    raw = bytearray(sealed("inv 42"))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_tx(bytes(raw[:cut]), CHAIN_ID)
    except TxRefused as exc:
        assert isinstance(exc.code, RefusalCode)


# -- building: recipients from genesis -------------------------------------------------------


def test_genesis_names_the_recipients_and_their_keys() -> None:
    keys = GENESIS.remittance_keys("bank-e", ["bank-f.savings"])
    assert keys == {name: public_key(name) for name in ("bank-e", "bank-f", "nbkr")}
    assert list(GENESIS.remittance_keys("nbkr", ["bank-e"])) == ["bank-e", "nbkr"]
    assert remittance_recipients("bank-e", "nbkr", ["bank-e.payroll", "bank-e"]) == (
        "bank-e",
        "bank-e.payroll",
        "nbkr",
    )
    with pytest.raises(TxRefused) as info:
        GENESIS.remittance_keys("bank-e", ["bank-x"])
    assert info.value.code is RefusalCode.UNKNOWN_ACCOUNT


def test_a_client_cannot_build_a_remittance_without_recipients_or_with_too_many() -> None:
    common = {"signer": "bank-e", "uetr": new_uetr(), "expiry_height": 10}
    accounts = {"from_account": "bank-e", "to_account": "bank-f", "amount": 1}
    with pytest.raises(TxRefused) as info:
        sign_transfer(key_of("bank-e"), CHAIN_ID, **common, **accounts, remittance=TEXT)  # type: ignore[arg-type]
    assert info.value.code is RefusalCode.MALFORMED
    many = {f"bank-{i:02d}": public_key("bank-e") for i in range(RECIPIENTS_MAX + 1)}
    for recipients in ({}, many, {"bank-f": bytes(32)}, {"bank f": public_key("bank-f")}):
        with pytest.raises(TxRefused) as info:
            seal_remittance(TEXT, recipients)
        assert info.value.code is RefusalCode.MALFORMED
    with pytest.raises(TxRefused):
        seal_remittance("", {"bank-f": public_key("bank-f")})


# -- the ledger: sealed to exactly the banks it must reach -----------------------------------


def misaddressed(recipients: tuple[str, ...]) -> bytes:
    return sign_transfer(
        key_of("bank-e"),
        CHAIN_ID,
        signer="bank-e",
        uetr=new_uetr(),
        expiry_height=100,
        from_account="bank-e",
        to_account="bank-f",
        amount=5,
        remittance=TEXT,
        recipients={name: public_key(name) for name in recipients},
    )


@pytest.mark.parametrize(
    "recipients",
    [
        ("bank-e", "bank-f"),
        ("bank-f", "nbkr"),
        ("bank-e", "nbkr"),
        ("bank-e", "bank-f", "nbkr", "val-b"),
    ],
)
def test_a_remittance_not_sealed_to_exactly_its_banks_is_refused(
    recipients: tuple[str, ...],
) -> None:
    chain = Chain(Ledger(make_genesis([("bank-e", 1_000)])))
    tx = chain.ledger.check_tx(misaddressed(recipients))  # well formed and signed
    with pytest.raises(TxRefused) as info:
        chain.ledger.check_admission(tx)  # the mempool refuses it
    assert info.value.code is RefusalCode.MISADDRESSED
    effects = chain.settle([tx.raw])  # and a block records the same refusal
    [(_, result)] = effects.tx_results
    assert decode_tx_result(result).code is RefusalCode.MISADDRESSED
    assert chain.ledger.balances["bank-e"] == 1_000


def test_sealed_payments_addressed_rightly_settle_and_a_payout_missing_a_bank_is_refused() -> None:
    chain = Chain(Ledger(make_genesis([("bank-e", 1_000)])))
    legs = [("bank-f", 1), ("val-b", 2)]
    sealed_payout = payout("bank-e", "bank-e", legs, remittance=TEXT)
    short = sign_payout(  # the same payout, sealed without val-b's box
        key_of("bank-e"),
        CHAIN_ID,
        signer="bank-e",
        uetr=new_uetr(),
        expiry_height=100,
        from_account="bank-e",
        legs=legs,
        remittance=TEXT,
        recipients={name: public_key(name) for name in ("bank-e", "bank-f", "nbkr")},
    )
    effects = chain.settle([sealed(), sealed_payout, short])
    codes = [decode_tx_result(result).code for _, result in effects.tx_results]
    assert codes == [None, None, RefusalCode.MISADDRESSED]
    assert chain.ledger.balances["bank-e"] == 1_000 - 5 - 3
