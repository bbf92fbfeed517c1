"""Canonical msgpack encodings of consensus messages and of the durable state.

Two kinds of bytes live here:
- signed bytes: what a signature covers. Each starts with a domain tag and the chain id,
  so a vote can never pass as a proposal, a transfer, or a message of another network.
- wire bytes: how a message travels or is stored. `decode_*` checks every field and
  raises `WireError` on anything malformed; it never verifies signatures (crypto does).

Encodings are arrays with a fixed field order, never maps, so they are canonical.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consensus.config import TAG_VALIDATOR_SET, Validator, ValidatorSet
from consensus.errors import ConfigError, WireError
from consensus.messages import (
    NIL_ROUND,
    VALUE_ID_SIZE,
    CommitCertificate,
    DurableState,
    Evidence,
    Height,
    Message,
    Proposal,
    Round,
    Step,
    ValidatorId,
    Value,
    Vote,
    VoteType,
)

__all__ = [
    "PAYLOAD_SIZE_MAX",
    "decode_certificate",
    "decode_durable_state",
    "decode_evidence",
    "decode_message",
    "decode_validator_set",
    "encode_certificate",
    "encode_durable_state",
    "encode_evidence",
    "encode_message",
    "proposal_signed_bytes",
    "vote_signed_bytes",
]

PAYLOAD_SIZE_MAX = 16 * 1024 * 1024
SIGNATURE_SIZE = 64
VALIDATOR_ID_SIZE_MAX = 64
HEIGHT_MAX = 2**63 - 1
ROUND_MAX = 2**31 - 1
PRECOMMITS_MAX = 100

TAG_PROPOSAL = b"somnet/consensus/proposal/v1"
TAG_PREVOTE = b"somnet/consensus/prevote/v1"
TAG_PRECOMMIT = b"somnet/consensus/precommit/v1"

KIND_PROPOSAL = 1
KIND_VOTE = 2


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError("expected bytes")
    if len(data) > PAYLOAD_SIZE_MAX + 64 * 1024:
        raise WireError("message too large")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=PAYLOAD_SIZE_MAX,
            max_str_len=1024,
            max_array_len=PRECOMMITS_MAX * 2 + 16,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"malformed msgpack: {exc}") from exc


# ---------------------------------------------------------------------------------------
# Signed bytes.


def proposal_signed_bytes(
    chain_id: str, height: Height, round_: Round, value_id: bytes, valid_round: Round
) -> bytes:
    return _pack([TAG_PROPOSAL, chain_id, height, round_, value_id, valid_round])


def vote_signed_bytes(
    chain_id: str, vote_type: VoteType, height: Height, round_: Round, value_id: bytes | None
) -> bytes:
    tag = TAG_PREVOTE if vote_type is VoteType.PREVOTE else TAG_PRECOMMIT
    return _pack([tag, chain_id, height, round_, value_id])


# ---------------------------------------------------------------------------------------
# Field checks for decoding.


def _int(x: object, lo: int, hi: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise WireError(f"{what}: expected integer in [{lo}, {hi}]")
    return x


def _bytes(x: object, what: str, size: int | None = None, size_max: int | None = None) -> bytes:
    if type(x) is not bytes:
        raise WireError(f"{what}: expected bytes")
    if size is not None and len(x) != size:
        raise WireError(f"{what}: expected {size} bytes")
    if size_max is not None and len(x) > size_max:
        raise WireError(f"{what}: longer than {size_max} bytes")
    return x


def _validator_id(x: object, what: str) -> ValidatorId:
    if type(x) is not str or not 1 <= len(x) <= VALIDATOR_ID_SIZE_MAX:
        raise WireError(f"{what}: expected validator id string")
    return ValidatorId(x)


def _array(x: object, size: int, what: str) -> list[Any]:
    if type(x) is not list or len(x) != size:
        raise WireError(f"{what}: expected array of {size}")
    return x


# ---------------------------------------------------------------------------------------
# Values, votes, proposals.


def _value_fields(value: Value) -> list[object]:
    return [value.value_id, value.payload]


def _decode_value(x: object) -> Value:
    f = _array(x, 2, "value")
    return Value(
        value_id=_bytes(f[0], "value_id", size=VALUE_ID_SIZE),
        payload=_bytes(f[1], "payload", size_max=PAYLOAD_SIZE_MAX),
    )


def _vote_fields(vote: Vote) -> list[object]:
    return [
        int(vote.vote_type),
        vote.height,
        vote.round,
        vote.value_id,
        vote.voter,
        vote.signature,
    ]


def _decode_vote(x: object) -> Vote:
    f = _array(x, 6, "vote")
    vote_type = _int(f[0], 1, 2, "vote_type")
    value_id = None if f[3] is None else _bytes(f[3], "value_id", size=VALUE_ID_SIZE)
    return Vote(
        vote_type=VoteType(vote_type),
        height=Height(_int(f[1], 0, HEIGHT_MAX, "height")),
        round=Round(_int(f[2], 0, ROUND_MAX, "round")),
        value_id=value_id,
        voter=_validator_id(f[4], "voter"),
        signature=_bytes(f[5], "signature", size=SIGNATURE_SIZE),
    )


def encode_message(message: Message) -> bytes:
    if isinstance(message, Proposal):
        return _pack(
            [
                KIND_PROPOSAL,
                message.height,
                message.round,
                _value_fields(message.value),
                message.valid_round,
                message.proposer,
                message.signature,
            ]
        )
    return _pack([KIND_VOTE, *_vote_fields(message)])


def decode_message(data: bytes) -> Message:
    """Decode a proposal or a vote. Raises WireError on malformed input."""
    obj = _unpack(data)
    if type(obj) is not list or not obj:
        raise WireError("message: expected non-empty array")
    if obj[0] == KIND_PROPOSAL:
        f = _array(obj, 7, "proposal")
        round_ = _int(f[2], 0, ROUND_MAX, "round")
        valid_round = _int(f[4], NIL_ROUND, ROUND_MAX, "valid_round")
        if valid_round >= round_:
            raise WireError("valid_round must be less than round")
        return Proposal(
            height=Height(_int(f[1], 0, HEIGHT_MAX, "height")),
            round=Round(round_),
            value=_decode_value(f[3]),
            valid_round=Round(valid_round),
            proposer=_validator_id(f[5], "proposer"),
            signature=_bytes(f[6], "signature", size=SIGNATURE_SIZE),
        )
    if obj[0] == KIND_VOTE:
        return _decode_vote(obj[1:])
    raise WireError("message: unknown kind")


# ---------------------------------------------------------------------------------------
# Certificates and evidence.


def encode_certificate(certificate: CommitCertificate) -> bytes:
    return _pack(
        [
            certificate.height,
            certificate.round,
            certificate.value_id,
            [_vote_fields(v) for v in certificate.precommits],
        ]
    )


def decode_certificate(data: bytes) -> CommitCertificate:
    """Decode a certificate's structure. Signatures and power are checked by
    `consensus.crypto.verify_certificate`."""
    f = _array(_unpack(data), 4, "certificate")
    votes = f[3]
    if type(votes) is not list or not 1 <= len(votes) <= PRECOMMITS_MAX:
        raise WireError(f"certificate: expected 1..{PRECOMMITS_MAX} precommits")
    return CommitCertificate(
        height=Height(_int(f[0], 0, HEIGHT_MAX, "height")),
        round=Round(_int(f[1], 0, ROUND_MAX, "round")),
        value_id=_bytes(f[2], "value_id", size=VALUE_ID_SIZE),
        precommits=tuple(_decode_vote(v) for v in votes),
    )


def encode_evidence(evidence: Evidence) -> bytes:
    return _pack([_vote_fields(evidence.first), _vote_fields(evidence.second)])


def decode_evidence(data: bytes) -> Evidence:
    f = _array(_unpack(data), 2, "evidence")
    return Evidence(first=_decode_vote(f[0]), second=_decode_vote(f[1]))


def decode_validator_set(data: bytes) -> ValidatorSet:
    """Decode `ValidatorSet.encode()` bytes from anyone (a proof document): bounded, and
    only the canonical encoding, so the set's hash is the sha256 of exactly these bytes."""
    f = _unpack(data)
    if type(f) is not list or not 2 <= len(f) <= PRECOMMITS_MAX + 1 or f[0] != TAG_VALIDATOR_SET:
        raise WireError(f"validator set: expected a tagged array of 1..{PRECOMMITS_MAX} members")
    members = []
    for x in f[1:]:
        validator_id, public_key, power = _array(x, 3, "validator")
        members.append(
            Validator(
                validator_id=_validator_id(validator_id, "validator id"),
                public_key=_bytes(public_key, "validator key", size=32),
                voting_power=_int(power, 1, HEIGHT_MAX, "voting power"),
            )
        )
    try:
        validators = ValidatorSet(tuple(members))
    except ConfigError as exc:
        raise WireError(f"validator set: {exc}") from exc
    if validators.encode() != data:
        raise WireError("validator set: not the canonical encoding")
    return validators


# ---------------------------------------------------------------------------------------
# Durable state (our own record: decoded with the same checks, asserted by the caller).


def encode_durable_state(state: DurableState) -> bytes:
    return _pack(
        [
            state.signed_height,
            state.signed_round,
            None if state.signed_step is None else int(state.signed_step),
            None if state.locked_value is None else _value_fields(state.locked_value),
            state.locked_round,
            None if state.valid_value is None else _value_fields(state.valid_value),
            state.valid_round,
        ]
    )


def decode_durable_state(data: bytes) -> DurableState:
    f = _array(_unpack(data), 7, "durable state")
    step = None if f[2] is None else Step(_int(f[2], 0, 2, "signed_step"))
    return DurableState(
        signed_height=Height(_int(f[0], 0, HEIGHT_MAX, "signed_height")),
        signed_round=Round(_int(f[1], 0, ROUND_MAX, "signed_round")),
        signed_step=step,
        locked_value=None if f[3] is None else _decode_value(f[3]),
        locked_round=Round(_int(f[4], NIL_ROUND, ROUND_MAX, "locked_round")),
        valid_value=None if f[5] is None else _decode_value(f[5]),
        valid_round=Round(_int(f[6], NIL_ROUND, ROUND_MAX, "valid_round")),
    )
