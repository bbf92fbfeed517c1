"""Signed som transactions: canonical encodings, decoding with limits, signatures.

Wire format of a transaction: `signature (64 bytes) || signed bytes`, which is exactly
libsodium's "signed message" layout, so verification needs no copying. The signed bytes
are a canonical msgpack array (never a map):

    [tag, chain id, signer, uetr, expiry height, <kind fields>...]

- the tag names the kind and the version, and the chain id follows it, so a transfer
  never passes for an issue, a consensus vote, or a transaction of another network;
- the signer is a genesis participant id; its key must verify the signature;
- every id (the signer, the accounts) follows the genesis id rule (node/ids.py: URL-safe
  ASCII, 1..64 characters), or the transaction is MALFORMED;
- (signer, UETR) is the replay key; the ledger refuses a second transaction with it;
- the transaction hash is sha256 of the signed bytes only, so another (or malleated)
  signature over the same content never makes a second transaction.

Decoding accepts only the canonical encoding (re-encoding the decoded array must give
the same bytes), so one content has exactly one hash. `decode_tx` raises nothing but
`TxRefused`.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from node.errors import RefusalCode, TxRefused
from node.ids import ID_CHARS_MAX, ID_RULE, is_id

__all__ = [
    "AMOUNT_MAX",
    "PAYOUT_LEGS_MAX",
    "TX_SIZE_MAX",
    "UETR_SIZE",
    "Issue",
    "Payout",
    "Redeem",
    "Transfer",
    "Tx",
    "decode_tx",
    "reference_key",
    "sign_issue",
    "sign_payout",
    "sign_redeem",
    "sign_transfer",
    "verify_tx_signature",
]

AMOUNT_MAX = 2**63 - 1  # tyiyn; 1 som = 100 tyiyn
HEIGHT_MAX = 2**63 - 1
UETR_SIZE = 16
SIGNATURE_SIZE = 64
REMITTANCE_CHARS_MAX = 140
RESERVE_REFERENCE_CHARS_MAX = 64
PAYOUT_LEGS_MAX = 1000
# A full payout: 1000 legs of (64-char account, 9-byte amount) plus the envelope.
TX_SIZE_MAX = 128 * 1024
assert PAYOUT_LEGS_MAX * (ID_CHARS_MAX + 2 + 9 + 1) + 4096 < TX_SIZE_MAX

TAG_TRANSFER = b"somnet/tx/transfer/v1"
TAG_ISSUE = b"somnet/tx/issue/v1"
TAG_REDEEM = b"somnet/tx/redeem/v1"
TAG_PAYOUT = b"somnet/tx/payout/v1"
COMMON_FIELDS = 5  # tag, chain id, signer, uetr, expiry height


# Transactions are immutable NamedTuples, not frozen dataclasses: a node builds one per
# transaction on its hot path, and a frozen dataclass's __init__ (one object.__setattr__
# per field) costs about 2 us against 0.3 us here. Fields are read by name only. Every
# kind starts with the same five fields: raw, tx_hash, signer, uetr, expiry_height.


class Transfer(NamedTuple):
    raw: bytes  # the wire bytes: signature || signed bytes
    tx_hash: bytes  # sha256 of the signed bytes
    signer: str  # participant id whose key signs
    uetr: bytes  # 16-byte ISO 20022 end-to-end reference
    expiry_height: int  # last height at which the transaction may apply
    from_account: str
    to_account: str
    amount: int
    remittance: str


class Issue(NamedTuple):
    """The issuer creates som on an account against a reserve record."""

    raw: bytes
    tx_hash: bytes
    signer: str
    uetr: bytes
    expiry_height: int
    to_account: str
    amount: int
    reserve_reference: str


class Redeem(NamedTuple):
    """The issuer destroys som on an account against a reserve record."""

    raw: bytes
    tx_hash: bytes
    signer: str
    uetr: bytes
    expiry_height: int
    from_account: str
    amount: int
    reserve_reference: str


class Payout(NamedTuple):
    """One debit, many credits, all or nothing."""

    raw: bytes
    tx_hash: bytes
    signer: str
    uetr: bytes
    expiry_height: int
    from_account: str
    legs: tuple[tuple[str, int], ...]  # (to account, amount)
    total: int  # sum of the leg amounts, checked <= AMOUNT_MAX
    remittance: str


Tx = Transfer | Issue | Redeem | Payout


def reference_key(signer: str, uetr: bytes) -> bytes:
    """The replay key of (signer, UETR): the fixed-size UETR first keeps it unambiguous."""
    assert len(uetr) == UETR_SIZE
    return uetr + signer.encode()


def verify_tx_signature(tx: Tx, public_key: bytes) -> bool:
    """True if the transaction's signature verifies with `public_key`."""
    try:
        crypto_sign_open(tx.raw, public_key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------------------
# Signing (used by banks' clients, the CLI and tests). Each builder decodes what it made,
# so a client can never produce a transaction the network would refuse as malformed.


# One packer, reused: Packer.pack runs in C without releasing the GIL and resets itself,
# and saves building a Packer per call on the hot path.
_PACKER = msgpack.Packer(use_bin_type=True)
_sha256 = hashlib.sha256


def _pack(obj: object) -> bytes:
    packed = _PACKER.pack(obj)
    assert isinstance(packed, bytes)
    return packed


def _sign(key: SigningKey, chain_id: str, fields: list[object]) -> bytes:
    try:
        signed = _pack(fields)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _malformed(f"a field cannot be encoded: {exc}") from exc
    raw = bytes(key.sign(signed))
    tx = decode_tx(raw, chain_id)
    assert tx.raw == raw
    return raw


def sign_transfer(
    key: SigningKey,
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    from_account: str,
    to_account: str,
    amount: int,
    remittance: str = "",
) -> bytes:
    """Return the wire bytes of a signed transfer. Raises TxRefused if a field is invalid."""
    _amount(amount, "amount")
    fields: list[object] = [TAG_TRANSFER, chain_id, signer, uetr, expiry_height]
    return _sign(key, chain_id, [*fields, from_account, to_account, amount, remittance])


def sign_issue(
    key: SigningKey,
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    to_account: str,
    amount: int,
    reserve_reference: str,
) -> bytes:
    _amount(amount, "amount")
    fields: list[object] = [TAG_ISSUE, chain_id, signer, uetr, expiry_height]
    return _sign(key, chain_id, [*fields, to_account, amount, reserve_reference])


def sign_redeem(
    key: SigningKey,
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    from_account: str,
    amount: int,
    reserve_reference: str,
) -> bytes:
    _amount(amount, "amount")
    fields: list[object] = [TAG_REDEEM, chain_id, signer, uetr, expiry_height]
    return _sign(key, chain_id, [*fields, from_account, amount, reserve_reference])


def sign_payout(
    key: SigningKey,
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    from_account: str,
    legs: list[tuple[str, int]],
    remittance: str = "",
) -> bytes:
    for index, (_, amount) in enumerate(legs):
        _amount(amount, f"leg {index} amount")
    fields: list[object] = [TAG_PAYOUT, chain_id, signer, uetr, expiry_height]
    encoded_legs = [[to, amount] for to, amount in legs]
    return _sign(key, chain_id, [*fields, from_account, encoded_legs, remittance])


# ---------------------------------------------------------------------------------------
# Decoding.


def _malformed(message: str) -> TxRefused:
    return TxRefused(RefusalCode.MALFORMED, message)


def _id(x: object, what: str) -> str:
    # The genesis rule: an id that breaks it names no participant or account, and could
    # not be read back through the API.
    if not is_id(x):
        raise _malformed(f"{what}: expected an id of {ID_RULE}")
    return x


def _text(x: object, what: str, chars_min: int, chars_max: int) -> str:
    if type(x) is not str or not chars_min <= len(x) <= chars_max:
        raise _malformed(f"{what}: expected text of {chars_min}..{chars_max} characters")
    return x


def _amount(x: object, what: str) -> int:
    # type() rather than isinstance(): a bool is an int subclass and is never money.
    if type(x) is not int or not 1 <= x <= AMOUNT_MAX:
        raise TxRefused(
            RefusalCode.INVALID_AMOUNT, f"{what}: expected an integer of 1..{AMOUNT_MAX} tyiyn"
        )
    return x


def _unpack(signed: bytes) -> list[Any]:
    try:
        obj = msgpack.unpackb(
            signed,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=UETR_SIZE * 4,
            max_str_len=1024,
            max_array_len=PAYOUT_LEGS_MAX * 4,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types on hostile bytes; all mean one thing
        raise _malformed(f"not canonical msgpack: {type(exc).__name__}") from exc
    if type(obj) is not list or len(obj) < COMMON_FIELDS:
        raise _malformed("expected an array of at least 5 fields")
    return obj


def decode_tx(data: bytes, chain_id: str) -> Tx:
    """Decode and check the form of a signed transaction (not its signature).

    Args:
        data: wire bytes from a peer, a client, or a block.
        chain_id: this network's chain id.
    Returns:
        The decoded transaction.
    Raises:
        TxRefused: MALFORMED, WRONG_CHAIN, INVALID_AMOUNT, SELF_TRANSFER, TOO_MANY_LEGS.
    """
    if type(data) is not bytes or not SIGNATURE_SIZE < len(data) <= TX_SIZE_MAX:
        raise _malformed(f"expected bytes of {SIGNATURE_SIZE + 1}..{TX_SIZE_MAX}")
    signed = data[SIGNATURE_SIZE:]
    f = _unpack(signed)
    if _PACKER.pack(f) != signed:
        raise _malformed("not the canonical encoding")
    if len(f) == COMMON_FIELDS + 4 and f[0] == TAG_TRANSFER and f[1] == chain_id:
        transfer = _valid_transfer(f, data, signed)
        if transfer is not None:
            return transfer
    return _decode_checked(f, data, signed, chain_id)  # names the refusal, or another kind


def _valid_transfer(f: list[Any], data: bytes, signed: bytes) -> Transfer | None:
    """The common case in one expression: a well-formed transfer of this chain, or None
    (then `_decode_checked` finds which rule it breaks). Accepts exactly what the field
    by field checks accept; tests/unit/test_tx.py compares the two."""
    _, _, signer, uetr, expiry, from_, to, amount, remittance = f
    if (
        is_id(signer)
        and type(uetr) is bytes
        and len(uetr) == UETR_SIZE
        and type(expiry) is int
        and 1 <= expiry <= HEIGHT_MAX
        and is_id(from_)
        and is_id(to)
        and type(amount) is int
        and 1 <= amount <= AMOUNT_MAX
        and type(remittance) is str
        and len(remittance) <= REMITTANCE_CHARS_MAX
        and from_ != to
    ):
        tx_hash = _sha256(signed).digest()
        return Transfer(data, tx_hash, signer, uetr, expiry, from_, to, amount, remittance)
    return None


def _decode_checked(f: list[Any], data: bytes, signed: bytes, chain_id: str) -> Tx:
    """Field by field, so a refusal names the first rule broken."""
    tag = f[0]
    if type(f[1]) is not str:
        raise _malformed("chain id: expected text")
    if f[1] != chain_id:
        raise TxRefused(RefusalCode.WRONG_CHAIN, f"signed for chain {f[1][:64]!r}")
    uetr = f[3]
    if type(uetr) is not bytes or len(uetr) != UETR_SIZE:
        raise _malformed(f"uetr: expected {UETR_SIZE} bytes")
    expiry = f[4]
    if type(expiry) is not int or not 1 <= expiry <= HEIGHT_MAX:
        raise _malformed("expiry height: expected a positive integer")
    _id(f[2], "signer")
    tx_hash = hashlib.sha256(signed).digest()
    if tag == TAG_TRANSFER:
        return _decode_transfer(f, data, tx_hash)
    if tag == TAG_ISSUE:
        return _decode_issue(f, data, tx_hash)
    if tag == TAG_REDEEM:
        return _decode_redeem(f, data, tx_hash)
    if tag == TAG_PAYOUT:
        return _decode_payout(f, data, tx_hash)
    raise _malformed("unknown transaction tag")


def _fields(f: list[Any], kind: str, count: int) -> list[Any]:
    if len(f) != COMMON_FIELDS + count:
        raise _malformed(f"{kind}: expected {COMMON_FIELDS + count} fields")
    return f[COMMON_FIELDS:]


def _decode_transfer(f: list[Any], data: bytes, tx_hash: bytes) -> Transfer:
    from_, to, amount, remittance = _fields(f, "transfer", 4)
    tx = Transfer(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        from_account=_id(from_, "from account"),
        to_account=_id(to, "to account"),
        amount=_amount(amount, "amount"),
        remittance=_text(remittance, "remittance", 0, REMITTANCE_CHARS_MAX),
    )
    if tx.from_account == tx.to_account:
        raise TxRefused(RefusalCode.SELF_TRANSFER, "from and to are the same account")
    return tx


def _decode_issue(f: list[Any], data: bytes, tx_hash: bytes) -> Issue:
    to, amount, reserve = _fields(f, "issue", 3)
    return Issue(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        to_account=_id(to, "to account"),
        amount=_amount(amount, "amount"),
        reserve_reference=_text(reserve, "reserve reference", 1, RESERVE_REFERENCE_CHARS_MAX),
    )


def _decode_redeem(f: list[Any], data: bytes, tx_hash: bytes) -> Redeem:
    from_, amount, reserve = _fields(f, "redeem", 3)
    return Redeem(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        from_account=_id(from_, "from account"),
        amount=_amount(amount, "amount"),
        reserve_reference=_text(reserve, "reserve reference", 1, RESERVE_REFERENCE_CHARS_MAX),
    )


def _decode_payout(f: list[Any], data: bytes, tx_hash: bytes) -> Payout:
    from_, raw_legs, remittance = _fields(f, "payout", 3)
    from_account = _id(from_, "from account")
    if type(raw_legs) is not list:
        raise _malformed("legs: expected an array")
    if not 1 <= len(raw_legs) <= PAYOUT_LEGS_MAX:
        raise TxRefused(RefusalCode.TOO_MANY_LEGS, f"a payout has 1..{PAYOUT_LEGS_MAX} legs")
    legs: list[tuple[str, int]] = []
    total = 0
    for index, leg in enumerate(raw_legs):
        if type(leg) is not list or len(leg) != 2:
            raise _malformed(f"leg {index}: expected [to account, amount]")
        to = _id(leg[0], f"leg {index} to account")
        if to == from_account:
            raise TxRefused(RefusalCode.SELF_TRANSFER, f"leg {index} pays the from account")
        amount = _amount(leg[1], f"leg {index} amount")
        total += amount
        legs.append((to, amount))
    if total > AMOUNT_MAX:
        raise TxRefused(RefusalCode.INVALID_AMOUNT, f"payout total exceeds {AMOUNT_MAX} tyiyn")
    return Payout(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        from_account=from_account,
        legs=tuple(legs),
        total=total,
        remittance=_text(remittance, "remittance", 0, REMITTANCE_CHARS_MAX),
    )
