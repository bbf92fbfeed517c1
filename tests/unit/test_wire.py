"""consensus.wire: canonical encodings round-trip; malformed bytes raise WireError and
nothing else; signed bytes are domain separated by message kind and chain id."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import crypto, wire
from consensus.config import Validator, ValidatorSet
from consensus.crypto import Signer
from consensus.errors import WireError
from consensus.messages import (
    NIL_ROUND,
    CommitCertificate,
    DurableState,
    Evidence,
    Height,
    Proposal,
    Round,
    Step,
    ValidatorId,
    Value,
    Vote,
    VoteType,
)

CHAIN = "somnet-test"
SIGNER = Signer(CHAIN, ValidatorId("v0"), hashlib.sha256(b"v0").digest())
VALIDATORS = ValidatorSet(
    (Validator(validator_id=ValidatorId("v0"), public_key=SIGNER.public_key, voting_power=1),)
)

heights = st.integers(min_value=0, max_value=wire.HEIGHT_MAX).map(Height)
rounds = st.integers(min_value=0, max_value=wire.ROUND_MAX).map(Round)
value_ids = st.binary(min_size=32, max_size=32)
values = st.builds(Value, value_id=value_ids, payload=st.binary(max_size=256))
signatures = st.binary(min_size=64, max_size=64)
voter_ids = st.text(min_size=1, max_size=64).map(ValidatorId)

votes = st.builds(
    Vote,
    vote_type=st.sampled_from(VoteType),
    height=heights,
    round=rounds,
    value_id=st.none() | value_ids,
    voter=voter_ids,
    signature=signatures,
)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    round_ = draw(rounds)
    valid_round = draw(st.integers(min_value=NIL_ROUND, max_value=round_ - 1))
    return Proposal(
        height=draw(heights),
        round=round_,
        value=draw(values),
        valid_round=Round(valid_round),
        proposer=draw(voter_ids),
        signature=draw(signatures),
    )


@settings(max_examples=200)
@given(message=votes | proposals())
def test_messages_round_trip(message: Proposal | Vote) -> None:
    encoded = wire.encode_message(message)
    assert wire.decode_message(encoded) == message
    assert wire.encode_message(wire.decode_message(encoded)) == encoded  # canonical


@settings(max_examples=100)
@given(
    height=heights,
    round_=rounds,
    value_id=value_ids,
    precommits=st.lists(votes, min_size=1, max_size=8),
)
def test_certificates_round_trip(
    height: Height, round_: Round, value_id: bytes, precommits: list[Vote]
) -> None:
    cert = CommitCertificate(
        height=height, round=round_, value_id=value_id, precommits=tuple(precommits)
    )
    assert wire.decode_certificate(wire.encode_certificate(cert)) == cert


@given(first=votes, second=votes)
def test_evidence_round_trips(first: Vote, second: Vote) -> None:
    evidence = Evidence(first=first, second=second)
    assert wire.decode_evidence(wire.encode_evidence(evidence)) == evidence


@given(
    height=heights,
    round_=rounds,
    step=st.none() | st.sampled_from(Step),
    locked=st.none() | values,
    valid=st.none() | values,
    locked_round=st.integers(min_value=NIL_ROUND, max_value=100).map(Round),
)
def test_durable_state_round_trips(
    height: Height,
    round_: Round,
    step: Step | None,
    locked: Value | None,
    valid: Value | None,
    locked_round: Round,
) -> None:
    state = DurableState(
        signed_height=height,
        signed_round=round_,
        signed_step=step,
        locked_value=locked,
        locked_round=locked_round,
        valid_value=valid,
        valid_round=locked_round,
    )
    assert wire.decode_durable_state(wire.encode_durable_state(state)) == state


DECODERS = [
    wire.decode_message,
    wire.decode_certificate,
    wire.decode_evidence,
    wire.decode_durable_state,
]


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except WireError:
            pass


msgpack_objects = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=8),
    max_leaves=30,
)


@settings(max_examples=300)
@given(obj=msgpack_objects)
def test_well_formed_msgpack_of_the_wrong_shape_raises_only_wire_error(obj: object) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    for decode in DECODERS:
        try:
            decode(data)
        except WireError:
            pass


@settings(max_examples=200)
@given(message=votes | proposals(), cut=st.integers(min_value=0, max_value=400), flip=st.data())
def test_truncated_or_flipped_messages_raise_only_wire_error(
    message: Proposal | Vote, cut: int, flip: st.DataObject
) -> None:
    encoded = wire.encode_message(message)
    truncated = encoded[: min(cut, len(encoded) - 1)]
    with pytest.raises(WireError):
        wire.decode_message(truncated)
    index = flip.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[index] ^= 0xFF
    try:
        wire.decode_message(bytes(flipped))
    except WireError:
        pass


@pytest.mark.parametrize(
    "obj",
    [
        [1, 0, 0, [b"\0" * 32, b""], 0, "v0", b"\0" * 64],  # valid_round == round
        [1, 0, 1, [b"\0" * 31, b""], -1, "v0", b"\0" * 64],  # short value id
        [2, 3, 0, 0, None, "v0", b"\0" * 64],  # vote type 3
        [2, 1, -1, 0, None, "v0", b"\0" * 64],  # negative height
        [2, 1, 0, 0, None, "", b"\0" * 64],  # empty voter
        [2, 1, 0, 0, None, "v0", b"\0" * 63],  # short signature
        [2, True, 0, 0, None, "v0", b"\0" * 64],  # bool is not an int
        [9],  # unknown kind
        [],
        {"kind": 2},  # maps are refused
    ],
)
def test_specific_malformed_messages_are_refused(obj: object) -> None:
    with pytest.raises(WireError):
        wire.decode_message(msgpack.packb(obj, use_bin_type=True))


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(WireError):
        wire.decode_message("text")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Domain separation.


def test_a_prevote_signature_does_not_verify_as_a_precommit() -> None:
    vote = SIGNER.sign_vote(VoteType.PREVOTE, Height(1), Round(0), b"\1" * 32)
    assert crypto.verify_vote(CHAIN, vote, VALIDATORS)
    as_precommit = Vote(
        vote_type=VoteType.PRECOMMIT,
        height=vote.height,
        round=vote.round,
        value_id=vote.value_id,
        voter=vote.voter,
        signature=vote.signature,
    )
    assert not crypto.verify_vote(CHAIN, as_precommit, VALIDATORS)


def test_a_signature_does_not_verify_on_another_chain() -> None:
    vote = SIGNER.sign_vote(VoteType.PRECOMMIT, Height(1), Round(0), None)
    assert not crypto.verify_vote("another-chain", vote, VALIDATORS)
    prop = SIGNER.sign_proposal(
        Height(1), Round(1), Value(value_id=b"\2" * 32, payload=b""), NIL_ROUND
    )
    assert crypto.verify_proposal(CHAIN, prop, VALIDATORS)
    assert not crypto.verify_proposal("another-chain", prop, VALIDATORS)


def test_signed_bytes_differ_by_kind_and_chain() -> None:
    args = (Height(1), Round(0))
    samples = {
        wire.vote_signed_bytes(CHAIN, VoteType.PREVOTE, *args, b"\1" * 32),
        wire.vote_signed_bytes(CHAIN, VoteType.PRECOMMIT, *args, b"\1" * 32),
        wire.vote_signed_bytes("other", VoteType.PREVOTE, *args, b"\1" * 32),
        wire.proposal_signed_bytes(CHAIN, *args, b"\1" * 32, NIL_ROUND),
    }
    assert len(samples) == 4
