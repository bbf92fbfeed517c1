"""Helpers for the ledger, block and transaction tests: a small real network.

Real Ed25519 keys derived from names, a real genesis parsed from JSON, and real commit
certificates signed by the validators, so the tests exercise the same paths as a node.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from nacl.signing import SigningKey

from consensus.crypto import Signer
from consensus.messages import (
    CommitCertificate,
    Evidence,
    Height,
    Round,
    ValidatorId,
    Vote,
    VoteType,
)
from consensus.wire import encode_certificate
from node.block import Block
from node.effects import BlockEffects
from node.genesis import Genesis, parse_genesis
from node.governance import Action, Admit, RotateKey, approve, rotate_key
from node.ledger import Ledger
from node.tx import sign_evidence, sign_govern, sign_issue, sign_payout, sign_redeem, sign_transfer

CHAIN_ID = "som-test-1"
ISSUER = "nbkr"
VALIDATORS = ("nbkr", "val-b", "val-c", "val-d")
BANKS = ("bank-e", "bank-f")
EXTRA_ACCOUNTS = {"bank-e.payroll": "bank-e", "bank-f.savings": "bank-f"}
OFFICERS = ("officer-1", "officer-2", "officer-3")
OFFICER_THRESHOLD = 2


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"somnet-test-key/" + name.encode()).digest()


def key_of(name: str) -> SigningKey:
    return SigningKey(seed_of(name))


def public_hex(name: str) -> str:
    return bytes(key_of(name).verify_key).hex()


def participant_doc(name: str, role: str, power: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": name,
        "name": f"{name} bank",
        "role": role,
        "public_key": public_hex(name),
        "peer_address": f"127.0.0.1:{7000 + sum(name.encode()) % 1000}",
        "api_address": f"127.0.0.1:{8000 + sum(name.encode()) % 1000}",
    }
    if power is not None:
        doc["voting_power"] = power
    return doc


def genesis_doc(issuance: Sequence[tuple[str, int]] = ()) -> dict[str, Any]:
    participants = [participant_doc(ISSUER, "issuer", 1)]
    participants += [participant_doc(v, "validator", 1) for v in VALIDATORS[1:]]
    participants += [participant_doc(b, "bank") for b in BANKS]
    return {
        "chain_id": CHAIN_ID,
        "participants": participants,
        "accounts": [{"id": a, "owner": o} for a, o in EXTRA_ACCOUNTS.items()],
        "issuance": [{"account": a, "amount": n} for a, n in issuance],
        "officers": [{"id": o, "public_key": public_hex(o)} for o in OFFICERS],
        "officer_threshold": OFFICER_THRESHOLD,
    }


def make_genesis(issuance: Sequence[tuple[str, int]] = ()) -> Genesis:
    return parse_genesis(json.dumps(genesis_doc(issuance)))


def new_uetr() -> bytes:
    return uuid.uuid4().bytes


def transfer(
    signer: str,
    from_account: str,
    to_account: str,
    amount: int,
    *,
    uetr: bytes | None = None,
    expiry_height: int = 100,
    remittance: str = "",
) -> bytes:
    """A signed transfer; a remittance is sealed to the banks genesis says."""
    recipients = make_genesis().remittance_keys(signer, [to_account]) if remittance else None
    return sign_transfer(
        key_of(signer),
        CHAIN_ID,
        signer=signer,
        uetr=uetr or new_uetr(),
        expiry_height=expiry_height,
        from_account=from_account,
        to_account=to_account,
        amount=amount,
        remittance=remittance,
        recipients=recipients,
    )


def issue(signer: str, to_account: str, amount: int, *, expiry_height: int = 100) -> bytes:
    return sign_issue(
        key_of(signer),
        CHAIN_ID,
        signer=signer,
        uetr=new_uetr(),
        expiry_height=expiry_height,
        to_account=to_account,
        amount=amount,
        reserve_reference="reserve/2024/001",
    )


def redeem(signer: str, from_account: str, amount: int, *, expiry_height: int = 100) -> bytes:
    return sign_redeem(
        key_of(signer),
        CHAIN_ID,
        signer=signer,
        uetr=new_uetr(),
        expiry_height=expiry_height,
        from_account=from_account,
        amount=amount,
        reserve_reference="reserve/2024/002",
    )


def payout(
    signer: str,
    from_account: str,
    legs: list[tuple[str, int]],
    *,
    expiry_height: int = 100,
    remittance: str = "",
) -> bytes:
    """A signed payout; a remittance is sealed to the banks genesis says."""
    credited = [to for to, _ in legs]
    recipients = make_genesis().remittance_keys(signer, credited) if remittance else None
    return sign_payout(
        key_of(signer),
        CHAIN_ID,
        signer=signer,
        uetr=new_uetr(),
        expiry_height=expiry_height,
        from_account=from_account,
        legs=legs,
        remittance=remittance,
        recipients=recipients,
    )


def govern(
    action: Action,
    *,
    approvers: Sequence[str] = OFFICERS[:OFFICER_THRESHOLD],
    signer: str = ISSUER,
    uetr: bytes | None = None,
    expiry_height: int = 100,
) -> bytes:
    """A govern transaction signed by `signer` (the issuer's node key by default) and
    approved by `approvers`, each with the key named after it (an officer's, or not)."""
    uetr = uetr or new_uetr()
    approvals = [
        approve(
            action,
            chain_id=CHAIN_ID,
            uetr=uetr,
            expiry_height=expiry_height,
            officer_id=officer,
            officer_key=key_of(officer),
        )
        for officer in approvers
    ]
    return sign_govern(
        key_of(signer),
        CHAIN_ID,
        signer=signer,
        uetr=uetr,
        expiry_height=expiry_height,
        action=action,
        approvals=approvals,
    )


def admit_action(name: str, role: str = "bank") -> Admit:
    """Admitting `name` with the key `key_of(name)`."""
    return Admit(
        participant_id=name,
        name=f"{name} bank",
        role=role,
        public_key=bytes(key_of(name).verify_key),
        peer_address="127.0.0.1:7999",
        api_address="127.0.0.1:8999",
    )


def rotate(
    participant_id: str,
    new_key_name: str,
    *,
    new_key_signs: bool = True,
    approvers: Sequence[str] = OFFICERS[:OFFICER_THRESHOLD],
) -> bytes:
    """A govern transaction rotating the participant's key to `key_of(new_key_name)`,
    signed by the new key unless `new_key_signs` is False (then by another key)."""
    uetr = new_uetr()
    action = rotate_key(
        participant_id,
        key_of(new_key_name if new_key_signs else "not-" + new_key_name),
        chain_id=CHAIN_ID,
        uetr=uetr,
        expiry_height=100,
    )
    if not new_key_signs:
        action = RotateKey(
            participant_id=participant_id,
            new_public_key=bytes(key_of(new_key_name).verify_key),
            new_key_signature=action.new_key_signature,
        )
    return govern(action, approvers=approvers, uetr=uetr)


ACCUSED = "val-d"  # the validator the evidence helpers show equivocating
REPORTER = "val-b"  # the validator that reports it


def vote(value: bytes, *, voter: str = ACCUSED, height: int = 1, round_: int = 0) -> Vote:
    signer = Signer(CHAIN_ID, ValidatorId(voter), seed_of(voter))
    return signer.sign_vote(VoteType.PREVOTE, Height(height), Round(round_), value)


def equivocation(*, height: int = 1, round_: int = 0, voter: str = ACCUSED) -> Evidence:
    """Two validly signed prevotes of `voter` for different blocks."""
    first = vote(b"\x01" * 32, voter=voter, height=height, round_=round_)
    second = vote(b"\x02" * 32, voter=voter, height=height, round_=round_)
    return Evidence(first=first, second=second)


def evidence_tx(evidence: Evidence, *, signer: str = REPORTER, expiry_height: int = 5) -> bytes:
    return sign_evidence(
        key_of(signer).sign,
        CHAIN_ID,
        signer=signer,
        uetr=new_uetr(),
        expiry_height=expiry_height,
        evidence=evidence,
    )


def certify(block: Block, voters: Sequence[str] = VALIDATORS[:3]) -> CommitCertificate:
    """A real commit certificate: precommits of `voters` (3 of 4 is a quorum), each
    signed with the key named after it."""
    value_id = block.header.hash()
    height = Height(block.header.height)
    votes = tuple(
        Signer(CHAIN_ID, ValidatorId(v), seed_of(v)).sign_vote(
            VoteType.PRECOMMIT, height, Round(0), value_id
        )
        for v in sorted(voters)
    )
    return CommitCertificate(height=height, round=Round(0), value_id=value_id, precommits=votes)


class Chain:
    """Drives a ledger the way the node does: make, validate, certify, settle."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.certificate: CommitCertificate | None = None
        self.blocks: list[tuple[Block, CommitCertificate]] = []

    def voters(self) -> list[str]:
        """Who certifies the next block: VALIDATORS[:3] under the genesis set; after a
        governance change, every validator of the set in force."""
        ids = [str(v.validator_id) for v in self.ledger.validator_set.validators]
        return list(VALIDATORS[:3]) if ids == list(VALIDATORS) else ids

    def next_block(self, txs: Sequence[bytes], time_ms: int = 1_000) -> Block:
        voters = self.voters()
        proposer = ISSUER if ISSUER in voters else voters[0]
        return self.ledger.make_block(
            txs, time_ms=time_ms, proposer=proposer, prev_certificate=self.certificate
        )

    def settle(self, txs: Sequence[bytes], time_ms: int = 1_000) -> BlockEffects:
        block = self.next_block(txs, time_ms)
        self.ledger.validate_block(block)
        certificate = certify(block, self.voters())
        effects = self.ledger.apply_block(block, encode_certificate(certificate))
        self.certificate = certificate
        self.blocks.append((block, certificate))
        self.ledger.check_conservation()
        return effects
