"""Ed25519 signing and verification of consensus messages (pure: libsodium via PyNaCl).

Signing is deterministic (RFC 8032), so the simulator derives keys from its seed and
replays exactly.

Two seams exist for the simulator and nothing else: `Signer.sign_bytes` and
`Verifier.verify_bytes`. The simulator overrides them to count signatures and checks, and
(with `somnet sim --signatures keyed-hash`) to swap Ed25519 for a keyed hash that is not
a signature at all. A node never passes a verifier: `Replica` defaults to `ED25519`, and
the module-level functions below always check Ed25519.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.config import ValidatorSet
from consensus.messages import (
    CommitCertificate,
    Evidence,
    Height,
    Proposal,
    Round,
    ValidatorId,
    Value,
    Vote,
    VoteType,
)
from consensus.wire import proposal_signed_bytes, vote_signed_bytes

__all__ = [
    "ED25519",
    "Signer",
    "Verifier",
    "verify_bytes",
    "verify_certificate",
    "verify_evidence",
    "verify_proposal",
    "verify_vote",
]


def verify_bytes(public_key: bytes, signed: bytes, signature: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `signed` by `public_key`."""
    try:
        VerifyKey(public_key).verify(signed, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class Signer:
    """Holds one validator's private key and signs consensus messages with it."""

    __slots__ = ("_key", "chain_id", "public_key", "validator_id")

    def __init__(self, chain_id: str, validator_id: ValidatorId, seed: bytes) -> None:
        assert len(seed) == 32
        self._key = SigningKey(seed)
        self.chain_id = chain_id
        self.validator_id = validator_id
        self.public_key = bytes(self._key.verify_key)

    def sign_bytes(self, signed: bytes) -> bytes:
        """The 64-byte signature of `signed` (the seam the simulator overrides)."""
        signature = self._key.sign(signed).signature
        assert len(signature) == 64
        return signature

    def sign_proposal(
        self, height: Height, round_: Round, value: Value, valid_round: Round
    ) -> Proposal:
        signed = proposal_signed_bytes(self.chain_id, height, round_, value.value_id, valid_round)
        return Proposal(
            height=height,
            round=round_,
            value=value,
            valid_round=valid_round,
            proposer=self.validator_id,
            signature=self.sign_bytes(signed),
        )

    def sign_vote(
        self, vote_type: VoteType, height: Height, round_: Round, value_id: bytes | None
    ) -> Vote:
        signed = vote_signed_bytes(self.chain_id, vote_type, height, round_, value_id)
        return Vote(
            vote_type=vote_type,
            height=height,
            round=round_,
            value_id=value_id,
            voter=self.validator_id,
            signature=self.sign_bytes(signed),
        )

    def sign_application(self, message: bytes) -> bytes:
        """libsodium's signed message (signature || message) under this validator's key,
        for what the application signs with it (a node's evidence transaction). Every
        consensus signature covers a tagged encoding of its own (`vote_signed_bytes`),
        so an application message never passes for a vote."""
        assert message
        signed = bytes(self._key.sign(message))
        assert len(signed) == 64 + len(message)
        return signed


class Verifier:
    """Checks consensus signatures with Ed25519. `ED25519` is the one instance a node
    uses; the simulator subclasses it to count checks or to check its keyed hash."""

    __slots__ = ()

    def verify_bytes(self, public_key: bytes, signed: bytes, signature: bytes) -> bool:
        return verify_bytes(public_key, signed, signature)

    def verify_proposal(self, chain_id: str, proposal: Proposal, validators: ValidatorSet) -> bool:
        """Signed by a member of the set (not checked: whether it is the round's proposer)."""
        member = validators.get(proposal.proposer)
        if member is None:
            return False
        signed = proposal_signed_bytes(
            chain_id, proposal.height, proposal.round, proposal.value.value_id, proposal.valid_round
        )
        return self.verify_bytes(member.public_key, signed, proposal.signature)

    def verify_vote(self, chain_id: str, vote: Vote, validators: ValidatorSet) -> bool:
        member = validators.get(vote.voter)
        if member is None:
            return False
        signed = vote_signed_bytes(chain_id, vote.vote_type, vote.height, vote.round, vote.value_id)
        return self.verify_bytes(member.public_key, signed, vote.signature)

    def verify_certificate(
        self, chain_id: str, certificate: CommitCertificate, validators: ValidatorSet
    ) -> bool:
        """True if the certificate holds validly signed precommits of distinct members for
        its (height, round, value_id) whose voting power is more than 2/3 of the total."""
        seen: set[ValidatorId] = set()
        power = 0
        for vote in certificate.precommits:
            if vote.vote_type is not VoteType.PRECOMMIT:
                return False
            if (vote.height, vote.round, vote.value_id) != (
                certificate.height,
                certificate.round,
                certificate.value_id,
            ):
                return False
            if vote.voter in seen or not self.verify_vote(chain_id, vote, validators):
                return False
            seen.add(vote.voter)
            power += validators.power_of(vote.voter)
        return power >= validators.quorum_power

    def verify_evidence(self, chain_id: str, evidence: Evidence, validators: ValidatorSet) -> bool:
        """True if both votes are validly signed by one member for one (height, round, type)
        and name different values."""
        a, b = evidence.first, evidence.second
        if (a.voter, a.vote_type, a.height, a.round) != (b.voter, b.vote_type, b.height, b.round):
            return False
        if a.value_id == b.value_id:
            return False
        return self.verify_vote(chain_id, a, validators) and self.verify_vote(
            chain_id, b, validators
        )


ED25519 = Verifier()
"""The verifier of every node: real Ed25519 signatures."""


def verify_proposal(chain_id: str, proposal: Proposal, validators: ValidatorSet) -> bool:
    """Signed by a member of the set (not checked: whether it is the round's proposer)."""
    return ED25519.verify_proposal(chain_id, proposal, validators)


def verify_vote(chain_id: str, vote: Vote, validators: ValidatorSet) -> bool:
    return ED25519.verify_vote(chain_id, vote, validators)


def verify_certificate(
    chain_id: str, certificate: CommitCertificate, validators: ValidatorSet
) -> bool:
    """True if the certificate holds validly signed precommits of distinct members for its
    (height, round, value_id) whose voting power is more than 2/3 of the total."""
    return ED25519.verify_certificate(chain_id, certificate, validators)


def verify_evidence(chain_id: str, evidence: Evidence, validators: ValidatorSet) -> bool:
    """True if both votes are validly signed by one member for one (height, round, type)
    and name different values."""
    return ED25519.verify_evidence(chain_id, evidence, validators)
