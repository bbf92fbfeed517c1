"""Signed som transactions: canonical encodings, decoding with limits, signatures, and
remittance text sealed to the banks that may read it.

Wire format of a transaction: `signature (64 bytes) || signed bytes [|| envelope]`. The
signature and the signed bytes are libsodium's "signed message" layout. The signed bytes
are a canonical msgpack array (never a map):

    [tag, chain id, signer, uetr, expiry height, <kind fields>...]

- the tag names the kind and the version, and the chain id follows it, so a transfer
  never passes for an issue, a consensus vote, or a transaction of another network;
- the signer is a genesis participant id; its key must verify the signature;
- every id (the signer, the accounts) follows the genesis id rule (node/ids.py: URL-safe
  ASCII, 1..64 characters), or the transaction is MALFORMED;
- (signer, UETR) is the replay key; the ledger refuses a second transaction with it;
- the transaction hash is sha256 of the wire bytes after the signature (the signed
  bytes, and the envelope they commit to), so another (or malleated) signature over the
  same content never makes a second transaction.

Kinds: transfer v1 `[..., from, to, amount, ""]`, transfer v2 `[..., from, to, amount,
remittance hash]`, payout v1 `[..., from, [[to, amount], ...], ""]`, payout v2 `[...,
from, legs, remittance hash]`, issue `[..., to, amount, reserve reference]`, redeem
`[..., from, amount, reserve reference]`, govern `[..., action, approvals]` (issue 13:
node/governance.py gives the action and approval encodings; signed by the issuer),
evidence `[..., [first vote, second vote]]` (issue 13: a proof of equivocation, the
consensus.wire evidence encoding embedded as its array, so the limits of the signed array
apply to it; signed by a validator's node key).

Remittance privacy (issue 8). Every node stores and gossips every transaction, so the
remittance text of a payment never travels in clear: it is sealed to the banks that may
read it, and only they can open it.
- v1 transfers and payouts carry no remittance: their last field must be empty text
  (MALFORMED otherwise). A payment with a remittance is v2; one without is v1. So each
  content has one encoding, and no plaintext remittance is ever on the wire or on disk.
- v2: the signed bytes end with `remittance hash` = sha256(envelope), and the envelope
  follows them on the wire, outside the signature but committed to by it. The envelope
  is a canonical msgpack array

      [b"somnet/remittance/envelope/v1", commitment, [[recipient id, box], ...]]

  with one sealed box per recipient, recipients in ascending id order. Every box is a
  libsodium sealed box (crypto_box_seal: an ephemeral X25519 key, XSalsa20-Poly1305) of
  the same content `msgpack [salt (16 random bytes), text (1..140 characters)]`, sealed
  to the recipient's X25519 key converted from its genesis Ed25519 key
  (crypto_sign_ed25519_pk_to_curve25519; the recipient opens with its node key's
  seed converted by crypto_sign_ed25519_sk_to_curve25519). `commitment` =
  sha256(b"somnet/remittance/commitment/v1" || content).
- Recipients (`remittance_recipients`): the sending bank (the signer, who owns the
  debited account), the issuer (the central bank), and the owner of every credited
  account (a transfer's `to`, each payout leg's), without repeats. At most
  RECIPIENTS_MAX (16) boxes: a payout whose legs reach more banks cannot carry a
  remittance, and is split or sent without one.
- Why two hashes. The signed remittance hash covers the whole envelope, so validators
  check it without any key (the envelope is exactly the one the sender signed; nobody
  relaying the transaction can swap a box) and the transaction hash still names one
  content. The commitment covers the plaintext with a secret random salt: each recipient
  checks that what it opened is what the sender committed to, and so that every
  recipient reads the same text; without the salt, anyone could confirm a guessed text
  against the hash.
- What a validator checks (`decode_tx`, MALFORMED otherwise): the envelope decodes
  canonically within its limits, its sha256 is the signed remittance hash, recipients
  are valid ids in strictly ascending order, 1..16 of them, and every box has the same
  size, that of a sealed content of 1..140 characters. What the ledger checks, with
  genesis (`Ledger`, refused MISADDRESSED otherwise): the recipients are exactly
  `remittance_recipients` of the transaction. What nobody but a recipient can check:
  that a box really is sealed to its recipient's key and holds the committed content.
  A sender that seals garbage is found out by the recipient (`open_remittance` gives
  None) and its signature over the envelope proves what it sent.
- What stays visible to every node: the amounts, accounts and parties (as before), the
  recipient ids (they follow from the accounts anyway), and the text's length in bytes
  (boxes are not padded).
- A node key now also decrypts: a stolen node key exposes the remittances sealed to
  that bank, as well as letting its holder sign.

Decoding accepts only the canonical encoding (re-encoding the decoded arrays must give
the same bytes), so one content has exactly one hash. `decode_tx` raises nothing but
`TxRefused`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import msgpack
from nacl.bindings import (
    crypto_box_SEALBYTES,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_open,
)
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from nacl.signing import SigningKey
from nacl.utils import random as random_bytes

from consensus.errors import WireError
from consensus.messages import Evidence
from consensus.wire import decode_evidence, encode_evidence
from node.errors import RefusalCode, TxRefused
from node.governance import Action, decode_action, decode_approvals, encode_action
from node.ids import ID_CHARS_MAX, ID_RULE, is_id

__all__ = [
    "AMOUNT_MAX",
    "PAYOUT_LEGS_MAX",
    "RECIPIENTS_MAX",
    "REMITTANCE_CHARS_MAX",
    "TX_SIZE_MAX",
    "UETR_SIZE",
    "Envelope",
    "EvidenceTx",
    "Govern",
    "Issue",
    "Payout",
    "Redeem",
    "Transfer",
    "Tx",
    "decode_tx",
    "open_remittance",
    "reference_key",
    "remittance_recipients",
    "seal_remittance",
    "sign_evidence",
    "sign_govern",
    "sign_issue",
    "sign_payout",
    "sign_redeem",
    "sign_transfer",
    "signed_message",
    "verify_tx_signature",
]

AMOUNT_MAX = 2**63 - 1  # tyiyn; 1 som = 100 tyiyn
HEIGHT_MAX = 2**63 - 1
UETR_SIZE = 16
SIGNATURE_SIZE = 64
HASH_SIZE = 32
REMITTANCE_CHARS_MAX = 140
RESERVE_REFERENCE_CHARS_MAX = 64
PAYOUT_LEGS_MAX = 1000
TX_SIZE_MAX = 128 * 1024

TAG_TRANSFER = b"somnet/tx/transfer/v1"
TAG_TRANSFER_V2 = b"somnet/tx/transfer/v2"
TAG_ISSUE = b"somnet/tx/issue/v1"
TAG_REDEEM = b"somnet/tx/redeem/v1"
TAG_PAYOUT = b"somnet/tx/payout/v1"
TAG_PAYOUT_V2 = b"somnet/tx/payout/v2"
TAG_GOVERN = b"somnet/tx/govern/v1"
TAG_EVIDENCE = b"somnet/tx/evidence/v1"
TAG_ENVELOPE = b"somnet/remittance/envelope/v1"
TAG_COMMITMENT = b"somnet/remittance/commitment/v1"
COMMON_FIELDS = 5  # tag, chain id, signer, uetr, expiry height

# The sealed remittance: one box per recipient, each the same sealed content.
RECIPIENTS_MAX = 16  # the sending bank, the issuer and up to 14 receiving banks
SALT_SIZE = 16
SEAL_OVERHEAD = crypto_box_SEALBYTES  # the ephemeral public key and the MAC: 48 bytes
# The content [salt, text]: a fixarray, bin 8 salt, then the text as fixstr (<= 31
# bytes), str 8 or str 16 (140 characters of UTF-8 are at most 560 bytes).
CONTENT_SIZE_MIN = 1 + 2 + SALT_SIZE + 1 + 1
CONTENT_SIZE_MAX = 1 + 2 + SALT_SIZE + 3 + 4 * REMITTANCE_CHARS_MAX
BOX_SIZE_MIN = SEAL_OVERHEAD + CONTENT_SIZE_MIN
BOX_SIZE_MAX = SEAL_OVERHEAD + CONTENT_SIZE_MAX
# [tag, commitment, [[id, box], ...]] with every field at its largest.
ENVELOPE_SIZE_MAX = (
    1 + (2 + len(TAG_ENVELOPE)) + (2 + HASH_SIZE) + 3
    + RECIPIENTS_MAX * (1 + (2 + ID_CHARS_MAX) + (3 + BOX_SIZE_MAX))
)  # fmt: skip
assert SEAL_OVERHEAD == 48
assert BOX_SIZE_MAX < 2**16  # a box is at most a bin 16
# A full payout: 1000 legs of (64-char account, 9-byte amount), the largest envelope and
# the rest of the array.
assert PAYOUT_LEGS_MAX * (ID_CHARS_MAX + 2 + 9 + 1) + ENVELOPE_SIZE_MAX + 4096 < TX_SIZE_MAX


# Transactions are immutable NamedTuples, not frozen dataclasses: a node builds one per
# transaction on its hot path, and a frozen dataclass's __init__ (one object.__setattr__
# per field) costs about 2 us against 0.3 us here. Every kind starts with the same five
# fields: raw, tx_hash, signer, uetr, expiry_height.


class Envelope(NamedTuple):
    """A v2 transaction's remittance, sealed once per recipient (see the module doc)."""

    commitment: bytes  # sha256(TAG_COMMITMENT || content), content = [salt, text]
    recipients: tuple[str, ...]  # participant ids, strictly ascending
    boxes: tuple[bytes, ...]  # boxes[i] is the content sealed to recipients[i]
    size: int  # bytes of its encoding, which ends the wire bytes


class Transfer(NamedTuple):
    raw: bytes  # the wire bytes: signature || signed bytes [|| envelope]
    tx_hash: bytes  # sha256 of the wire bytes after the signature
    signer: str  # participant id whose key signs
    uetr: bytes  # 16-byte ISO 20022 end-to-end reference
    expiry_height: int  # last height at which the transaction may apply
    from_account: str
    to_account: str
    amount: int
    envelope: Envelope | None  # the sealed remittance (v2); None: no remittance (v1)


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
    envelope: Envelope | None  # the sealed remittance (v2); None: no remittance (v1)


class Govern(NamedTuple):
    """A governance action approved by the central bank's officers (node/governance.py);
    signed by the issuer."""

    raw: bytes
    tx_hash: bytes
    signer: str
    uetr: bytes
    expiry_height: int
    action: Action
    approvals: tuple[tuple[str, bytes], ...]  # (officer id, signature), ids ascending


class EvidenceTx(NamedTuple):
    """A proof that a validator signed two conflicting votes, put on chain by a validator
    that saw it (the ledger checks it against the set of the votes' height)."""

    raw: bytes
    tx_hash: bytes
    signer: str
    uetr: bytes
    expiry_height: int
    evidence: Evidence
    evidence_bytes: bytes  # consensus.wire.encode_evidence(evidence), as the API shows it


Tx = Transfer | Issue | Redeem | Payout | Govern | EvidenceTx


def reference_key(signer: str, uetr: bytes) -> bytes:
    """The replay key of (signer, UETR): the fixed-size UETR first keeps it unambiguous."""
    assert len(uetr) == UETR_SIZE
    return uetr + signer.encode()


def signed_message(tx: Tx) -> bytes:
    """`signature || signed bytes`: the wire bytes without the envelope, which is what
    libsodium's crypto_sign_open checks against the signer's key."""
    if (type(tx) is Transfer or type(tx) is Payout) and tx.envelope is not None:
        size = len(tx.raw) - tx.envelope.size
        assert size > SIGNATURE_SIZE
        return tx.raw[:size]
    return tx.raw


def verify_tx_signature(tx: Tx, public_key: bytes) -> bool:
    """True if the transaction's signature verifies with `public_key`."""
    try:
        crypto_sign_open(signed_message(tx), public_key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def remittance_recipients(
    signer: str, issuer: str, receiving_banks: Iterable[str]
) -> tuple[str, ...]:
    """The participants a remittance is sealed to, in envelope order: the sending bank
    (the signer), the issuer, and the owners of the credited accounts."""
    return tuple(sorted({signer, issuer, *receiving_banks}))


# ---------------------------------------------------------------------------------------
# Signing and sealing (used by banks' clients, the CLI and tests). Each builder decodes
# what it made, so a client can never produce a transaction the network would refuse as
# malformed.


# One packer, reused: Packer.pack runs in C without releasing the GIL and resets itself,
# and saves building a Packer per call on the hot path.
_PACKER = msgpack.Packer(use_bin_type=True)
_sha256 = hashlib.sha256


def _pack(obj: object) -> bytes:
    packed = _PACKER.pack(obj)
    assert isinstance(packed, bytes)
    return packed


def seal_remittance(text: str, recipients: Mapping[str, bytes]) -> bytes:
    """Seal `text` once for each recipient and return the envelope's encoding.

    Args:
        text: 1..140 characters.
        recipients: participant id -> genesis Ed25519 public key, for exactly the
            `remittance_recipients` of the transaction (cli/submit.py remittance_keys).
    Raises:
        TxRefused: MALFORMED, naming the text or the recipient that is wrong.
    """
    _text(text, "remittance", 1, REMITTANCE_CHARS_MAX)
    if not 1 <= len(recipients) <= RECIPIENTS_MAX:
        raise _malformed(f"a remittance is sealed to 1..{RECIPIENTS_MAX} recipients")
    content = _pack([random_bytes(SALT_SIZE), text])
    assert CONTENT_SIZE_MIN <= len(content) <= CONTENT_SIZE_MAX
    entries: list[list[object]] = []
    for recipient in sorted(recipients):
        _id(recipient, "remittance recipient")
        try:
            key = crypto_sign_ed25519_pk_to_curve25519(recipients[recipient])
        except (CryptoError, ValueError, TypeError) as exc:
            raise _malformed(f"recipient {recipient!r}: not an Ed25519 public key") from exc
        entries.append([recipient, SealedBox(PublicKey(key)).encrypt(content)])
    commitment = _sha256(TAG_COMMITMENT + content).digest()
    envelope = _pack([TAG_ENVELOPE, commitment, entries])
    assert len(envelope) <= ENVELOPE_SIZE_MAX
    return envelope


def open_remittance(tx: Tx, participant_id: str, signing_key: SigningKey) -> str | None:
    """The remittance text of `tx` as the participant `participant_id` reads it.

    Returns None when the transaction carries no remittance, the participant is not one
    of its recipients, or its box does not open with `signing_key` to the content the
    sender committed to (a wrong key, or a sender that sealed garbage).
    """
    envelope = tx.envelope if type(tx) is Transfer or type(tx) is Payout else None
    if envelope is None or participant_id not in envelope.recipients:
        return None
    box = envelope.boxes[envelope.recipients.index(participant_id)]
    try:
        content = SealedBox(signing_key.to_curve25519_private_key()).decrypt(box)
    except CryptoError:
        return None
    if _sha256(TAG_COMMITMENT + content).digest() != envelope.commitment:
        return None
    return _decode_content(content)


def _decode_content(content: bytes) -> str | None:
    """The text of a sealed content [salt, text], or None if it is not well formed."""
    try:
        obj = msgpack.unpackb(
            content,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=SALT_SIZE,
            max_str_len=CONTENT_SIZE_MAX,
            max_array_len=2,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception:  # msgpack raises several types on bad bytes; all mean one thing
        return None
    if type(obj) is not list or len(obj) != 2 or _PACKER.pack(obj) != content:
        return None
    salt, text = obj
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        return None
    if type(text) is not str or not 1 <= len(text) <= REMITTANCE_CHARS_MAX:
        return None
    return text


def _sign(key: SigningKey, chain_id: str, fields: list[object], envelope: bytes = b"") -> bytes:
    try:
        signed = _pack(fields)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _malformed(f"a field cannot be encoded: {exc}") from exc
    raw = bytes(key.sign(signed)) + envelope
    tx = decode_tx(raw, chain_id)
    assert tx.raw == raw
    return raw


def _sign_with_remittance(
    key: SigningKey,
    chain_id: str,
    tags: tuple[bytes, bytes],
    fields: list[object],
    remittance: str,
    recipients: Mapping[str, bytes] | None,
) -> bytes:
    """v1 with an empty last field when there is no remittance; else v2, its last field
    the hash of the envelope that follows the signed bytes."""
    v1, v2 = tags
    if not remittance:
        return _sign(key, chain_id, [v1, *fields, ""])
    if recipients is None:
        raise _malformed("a remittance is sealed: give its recipients' public keys")
    envelope = seal_remittance(remittance, recipients)
    return _sign(key, chain_id, [v2, *fields, _sha256(envelope).digest()], envelope)


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
    recipients: Mapping[str, bytes] | None = None,
) -> bytes:
    """Return the wire bytes of a signed transfer: v1 without a remittance, v2 with it
    sealed to `recipients` (participant id -> Ed25519 public key, from
    cli/submit.py remittance_keys). Raises TxRefused if a field is invalid."""
    _amount(amount, "amount")
    fields: list[object] = [chain_id, signer, uetr, expiry_height]
    fields += [from_account, to_account, amount]
    tags = (TAG_TRANSFER, TAG_TRANSFER_V2)
    return _sign_with_remittance(key, chain_id, tags, fields, remittance, recipients)


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
    recipients: Mapping[str, bytes] | None = None,
) -> bytes:
    """Return the wire bytes of a signed payout; the remittance as in `sign_transfer`."""
    for index, (_, amount) in enumerate(legs):
        _amount(amount, f"leg {index} amount")
    encoded_legs = [[to, amount] for to, amount in legs]
    fields: list[object] = [chain_id, signer, uetr, expiry_height, from_account, encoded_legs]
    tags = (TAG_PAYOUT, TAG_PAYOUT_V2)
    return _sign_with_remittance(key, chain_id, tags, fields, remittance, recipients)


def sign_govern(
    key: SigningKey,
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    action: Action,
    approvals: Iterable[tuple[str, bytes]],
) -> bytes:
    """Return the wire bytes of a govern transaction: `key` is the issuer's node key,
    `approvals` the officers' (node.governance.approve with the same uetr and expiry),
    in any order. Raises TxRefused if a field is invalid."""
    ordered = [[officer_id, signature] for officer_id, signature in sorted(approvals)]
    fields: list[object] = [TAG_GOVERN, chain_id, signer, uetr, expiry_height]
    return _sign(key, chain_id, [*fields, encode_action(action), ordered])


def sign_evidence(
    sign: Callable[[bytes], bytes],
    chain_id: str,
    *,
    signer: str,
    uetr: bytes,
    expiry_height: int,
    evidence: Evidence,
) -> bytes:
    """Return the wire bytes of an evidence transaction. `sign` gives libsodium's signed
    message under the validator's node key (`SigningKey.sign`, or the consensus
    `Signer.sign_application`, the same key). Raises TxRefused if a field is invalid."""
    embedded = msgpack.unpackb(encode_evidence(evidence), raw=False, use_list=True)
    fields: list[object] = [TAG_EVIDENCE, chain_id, signer, uetr, expiry_height, embedded]
    try:
        signed = _pack(fields)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _malformed(f"a field cannot be encoded: {exc}") from exc
    raw = bytes(sign(signed))
    tx = decode_tx(raw, chain_id)
    assert tx.raw == raw
    return raw


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


def _unpack(body: bytes) -> tuple[list[Any], bytes]:
    """The signed array that starts `body`, and the bytes after it (a v2 transaction's
    envelope; empty for every other transaction)."""
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=UETR_SIZE * 4,
            max_str_len=1024,
            max_array_len=PAYOUT_LEGS_MAX * 4,
            max_map_len=0,
            max_ext_len=0,
        )
        rest = b""
    except msgpack.ExtraData as extra:  # the array is followed by more bytes
        obj, rest = extra.unpacked, extra.extra
        assert type(rest) is bytes
        assert rest
    except Exception as exc:  # msgpack raises several types on hostile bytes; all mean one thing
        raise _malformed(f"not canonical msgpack: {type(exc).__name__}") from exc
    if type(obj) is not list or len(obj) < COMMON_FIELDS:
        raise _malformed("expected an array of at least 5 fields")
    return obj, rest


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
    body = data[SIGNATURE_SIZE:]
    f, rest = _unpack(body)
    signed = body[: len(body) - len(rest)] if rest else body
    if _PACKER.pack(f) != signed:
        raise _malformed("not the canonical encoding")
    if len(f) == COMMON_FIELDS + 4 and f[1] == chain_id:
        if not rest and f[0] == TAG_TRANSFER:
            transfer = _valid_transfer(f, data, signed)
        elif rest and f[0] == TAG_TRANSFER_V2:
            transfer = _valid_transfer_v2(f, data, body, rest)
        else:
            transfer = None
        if transfer is not None:
            return transfer
    return _decode_checked(f, data, rest, chain_id)  # names the refusal, or another kind


def _valid_transfer(f: list[Any], data: bytes, signed: bytes) -> Transfer | None:
    """The common case in one expression: a well-formed v1 transfer of this chain, or
    None (then `_decode_checked` finds which rule it breaks). Accepts exactly what the
    field by field checks accept; tests/unit/test_tx.py compares the two."""
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
        and not remittance
        and from_ != to
    ):
        tx_hash = _sha256(signed).digest()
        return Transfer(data, tx_hash, signer, uetr, expiry, from_, to, amount, None)
    return None


def _valid_transfer_v2(f: list[Any], data: bytes, body: bytes, rest: bytes) -> Transfer | None:
    """The same for a v2 transfer (a bank's usual one: it carries a sealed remittance),
    whose signed fields are all valid; the envelope `rest` is then checked as
    `_decode_checked` checks it, and raises what that would raise. None: some field
    breaks a rule, and `_decode_checked` names the first."""
    _, _, signer, uetr, expiry, from_, to, amount, remittance_hash = f
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
        and type(remittance_hash) is bytes
        and len(remittance_hash) == HASH_SIZE
        and from_ != to
    ):
        envelope = _decode_envelope(rest, remittance_hash)
        tx_hash = _sha256(body).digest()
        return Transfer(data, tx_hash, signer, uetr, expiry, from_, to, amount, envelope)
    return None


def _decode_checked(f: list[Any], data: bytes, rest: bytes, chain_id: str) -> Tx:
    """Field by field, so a refusal names the first rule broken. `rest`: the bytes after
    the signed array."""
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
    if rest and tag not in (TAG_TRANSFER_V2, TAG_PAYOUT_V2):
        raise _malformed("bytes follow the signed array")
    tx_hash = hashlib.sha256(data[SIGNATURE_SIZE:]).digest()
    if tag == TAG_TRANSFER or tag == TAG_TRANSFER_V2:
        return _decode_transfer(f, data, tx_hash, rest)
    if tag == TAG_ISSUE:
        return _decode_issue(f, data, tx_hash)
    if tag == TAG_REDEEM:
        return _decode_redeem(f, data, tx_hash)
    if tag == TAG_PAYOUT or tag == TAG_PAYOUT_V2:
        return _decode_payout(f, data, tx_hash, rest)
    if tag == TAG_GOVERN:
        return _decode_govern(f, data, tx_hash)
    if tag == TAG_EVIDENCE:
        return _decode_evidence_tx(f, data, tx_hash)
    raise _malformed("unknown transaction tag")


def _fields(f: list[Any], kind: str, count: int) -> list[Any]:
    if len(f) != COMMON_FIELDS + count:
        raise _malformed(f"{kind}: expected {COMMON_FIELDS + count} fields")
    return f[COMMON_FIELDS:]


def _remittance(tag: bytes, last: object, rest: bytes) -> Envelope | None:
    """A transfer's or payout's last signed field: empty text in v1; in v2 the hash of
    the envelope in `rest`."""
    if tag == TAG_TRANSFER or tag == TAG_PAYOUT:
        assert not rest  # _decode_checked refused bytes after a v1 array
        if type(last) is not str or last:
            raise _malformed("remittance: v1 carries none; a remittance travels sealed (v2)")
        return None
    assert tag == TAG_TRANSFER_V2 or tag == TAG_PAYOUT_V2
    if type(last) is not bytes or len(last) != HASH_SIZE:
        raise _malformed(f"remittance hash: expected {HASH_SIZE} bytes")
    return _decode_envelope(rest, last)


def _decode_envelope(data: bytes, remittance_hash: bytes) -> Envelope:
    """The envelope after a v2 transaction's signed bytes, checked against its signed
    hash, its limits and the canonical encoding. Raises TxRefused MALFORMED."""
    if not data:
        raise _malformed("remittance: the sealed remittance is missing")
    if len(data) > ENVELOPE_SIZE_MAX:
        raise _malformed(f"remittance: the envelope exceeds {ENVELOPE_SIZE_MAX} bytes")
    if _sha256(data).digest() != remittance_hash:
        raise _malformed("remittance: the envelope is not the one signed (hash differs)")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=BOX_SIZE_MAX,
            max_str_len=ID_CHARS_MAX,
            max_array_len=RECIPIENTS_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types on hostile bytes
        raise _malformed(f"remittance: not canonical msgpack: {type(exc).__name__}") from exc
    if type(obj) is not list or len(obj) != 3 or obj[0] != TAG_ENVELOPE:
        raise _malformed("remittance: expected [envelope tag, commitment, boxes]")
    _, commitment, entries = obj
    if type(commitment) is not bytes or len(commitment) != HASH_SIZE:
        raise _malformed(f"remittance commitment: expected {HASH_SIZE} bytes")
    if type(entries) is not list or not 1 <= len(entries) <= RECIPIENTS_MAX:
        raise _malformed(f"remittance: expected 1..{RECIPIENTS_MAX} sealed boxes")
    recipients: list[str] = []
    boxes: list[bytes] = []
    for index, entry in enumerate(entries):
        if type(entry) is not list or len(entry) != 2:
            raise _malformed(f"remittance box {index}: expected [recipient, box]")
        recipient = _id(entry[0], f"remittance box {index} recipient")
        if recipients and recipient <= recipients[-1]:
            raise _malformed("remittance: recipients must be in strictly ascending order")
        box = entry[1]
        if type(box) is not bytes or not BOX_SIZE_MIN <= len(box) <= BOX_SIZE_MAX:
            raise _malformed(
                f"remittance box {index}: expected {BOX_SIZE_MIN}..{BOX_SIZE_MAX} bytes"
            )
        if boxes and len(box) != len(boxes[0]):
            raise _malformed("remittance: every box seals the same content, so has one size")
        recipients.append(recipient)
        boxes.append(box)
    if _PACKER.pack(obj) != data:
        raise _malformed("remittance: not the canonical encoding")
    return Envelope(commitment, tuple(recipients), tuple(boxes), len(data))


def _decode_transfer(f: list[Any], data: bytes, tx_hash: bytes, rest: bytes) -> Transfer:
    from_, to, amount, last = _fields(f, "transfer", 4)
    tx = Transfer(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        from_account=_id(from_, "from account"),
        to_account=_id(to, "to account"),
        amount=_amount(amount, "amount"),
        envelope=_remittance(f[0], last, rest),
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


def _decode_payout(f: list[Any], data: bytes, tx_hash: bytes, rest: bytes) -> Payout:
    from_, raw_legs, last = _fields(f, "payout", 3)
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
        envelope=_remittance(f[0], last, rest),
    )


def _decode_govern(f: list[Any], data: bytes, tx_hash: bytes) -> Govern:
    action, approvals = _fields(f, "govern", 2)
    return Govern(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        action=decode_action(action),
        approvals=decode_approvals(approvals),
    )


def _decode_evidence_tx(f: list[Any], data: bytes, tx_hash: bytes) -> EvidenceTx:
    (embedded,) = _fields(f, "evidence", 1)
    evidence_bytes = _pack(embedded)  # canonical: the whole array re-encoded to itself
    try:
        evidence = decode_evidence(evidence_bytes)
    except WireError as exc:
        raise _malformed(f"evidence: {exc}") from exc
    return EvidenceTx(
        raw=data,
        tx_hash=tx_hash,
        signer=f[2],
        uetr=f[3],
        expiry_height=f[4],
        evidence=evidence,
        evidence_bytes=evidence_bytes,
    )
