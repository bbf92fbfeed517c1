"""consensus.crypto: certificates verify only with enough distinct, valid precommits for
their own (height, round, value); evidence only for two different signed values."""

from __future__ import annotations

import dataclasses

import pytest

from consensus import crypto
from consensus.messages import CommitCertificate, Evidence, Height, Round, ValidatorId, VoteType
from tests.unit.test_replica_harness import (
    CHAIN,
    IDS,
    SIGNERS,
    VALIDATORS,
    precommit,
    prevote,
    validator_set,
    value,
)

V0, V1, V2, V3 = IDS
X = value(b"block x")
Y = value(b"block y")


def certificate(voters: list[ValidatorId]) -> CommitCertificate:
    return CommitCertificate(
        height=Height(1),
        round=Round(2),
        value_id=X.value_id,
        precommits=tuple(precommit(v, 1, 2, X) for v in voters),
    )


GOOD = certificate([V0, V1, V2])


def _replace_first(**changes: object) -> CommitCertificate:
    first = dataclasses.replace(GOOD.precommits[0], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(GOOD, precommits=(first, *GOOD.precommits[1:]))


@pytest.mark.parametrize(
    ("case", "cert", "expected"),
    [
        ("three of four", GOOD, True),
        ("all four", certificate(IDS), True),
        ("too little power", certificate([V0, V1]), False),
        ("empty", certificate([]), False),
        (
            "duplicate voter",
            dataclasses.replace(GOOD, precommits=(*GOOD.precommits[:2],) * 2),
            False,
        ),
        ("bad signature", _replace_first(signature=b"\0" * 64), False),
        ("wrong value in cert", dataclasses.replace(GOOD, value_id=Y.value_id), False),
        ("wrong round in cert", dataclasses.replace(GOOD, round=Round(3)), False),
        ("wrong height in cert", dataclasses.replace(GOOD, height=Height(2)), False),
        (
            "a prevote inside",
            dataclasses.replace(GOOD, precommits=(prevote(V0, 1, 2, X), *GOOD.precommits[1:])),
            False,
        ),
        (
            "a nil precommit inside",
            dataclasses.replace(GOOD, precommits=(precommit(V3, 1, 2, None), *GOOD.precommits)),
            False,
        ),
        ("unknown voter", _replace_first(voter=ValidatorId("v9")), False),
    ],
)
def test_certificate_verification(case: str, cert: CommitCertificate, expected: bool) -> None:
    assert crypto.verify_certificate(CHAIN, cert, VALIDATORS) is expected, case


def test_certificate_power_is_weighted() -> None:
    heavy = validator_set((4, 1, 1, 1))  # total 7, quorum 5
    assert crypto.verify_certificate(CHAIN, certificate([V0, V1]), heavy)
    assert not crypto.verify_certificate(CHAIN, certificate([V1, V2, V3]), heavy)


def test_certificate_of_another_chain_fails() -> None:
    assert not crypto.verify_certificate("another-chain", GOOD, VALIDATORS)


@pytest.mark.parametrize(
    ("case", "first", "second", "expected"),
    [
        ("two values", prevote(V1, 1, 0, X), prevote(V1, 1, 0, Y), True),
        ("value and nil", precommit(V1, 1, 0, X), precommit(V1, 1, 0, None), True),
        ("same value", prevote(V1, 1, 0, X), prevote(V1, 1, 0, X), False),
        ("two voters", prevote(V1, 1, 0, X), prevote(V2, 1, 0, Y), False),
        ("two rounds", prevote(V1, 1, 0, X), prevote(V1, 1, 1, Y), False),
        ("two types", prevote(V1, 1, 0, X), precommit(V1, 1, 0, Y), False),
        (
            "forged second",
            prevote(V1, 1, 0, X),
            dataclasses.replace(prevote(V1, 1, 0, Y), signature=b"\0" * 64),
            False,
        ),
    ],
)
def test_evidence_verification(case: str, first: object, second: object, expected: bool) -> None:
    evidence = Evidence(first=first, second=second)  # type: ignore[arg-type]
    assert crypto.verify_evidence(CHAIN, evidence, VALIDATORS) is expected, case


def test_signatures_are_deterministic_and_bound_to_the_key() -> None:
    a = SIGNERS[V0].sign_vote(VoteType.PREVOTE, Height(1), Round(0), X.value_id)
    b = SIGNERS[V0].sign_vote(VoteType.PREVOTE, Height(1), Round(0), X.value_id)
    assert a == b
    assert crypto.verify_vote(CHAIN, a, VALIDATORS)
    as_v1 = dataclasses.replace(a, voter=V1)
    assert not crypto.verify_vote(CHAIN, as_v1, VALIDATORS)
    assert not crypto.verify_bytes(b"\0" * 31, b"m", a.signature)  # malformed key: False
