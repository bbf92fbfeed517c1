"""Safety checkers of the simulator: they watch every action of every honest node.

Theory of operation. The simulator reports each honest broadcast, decision and piece of
evidence here as it executes it, so a violation is caught at the step that caused it and
named with the node, height and round. The checkers keep their own record across crashes:
a restarted replica has forgotten what it signed, the checker has not.

Properties (DESIGN.md, Testing):
- agreement: no two honest nodes decide different values at one height;
- validity: a decided value was proposed by someone and is valid by the application rule;
- one decision per height per node, and heights are decided in order;
- no honest double-sign: two different signed messages of one honest validator for one
  (height, round, kind) are a violation, even across crash and restart;
- persist before broadcast: a signed message leaves only once the persisted signing guard
  covers its position;
- every certificate is valid (`Verifier.verify_certificate`) against the validator set of
  its height and names the decided value;
- an honest node signs nothing at a height whose validator set it is not in;
- evidence is well formed (against the set of its height) and never names an honest
  validator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from consensus.config import ValidatorSet
from consensus.crypto import ED25519, Verifier
from consensus.messages import (
    CommitCertificate,
    DurableState,
    Evidence,
    Height,
    Message,
    Proposal,
    Step,
    ValidatorId,
    Value,
)
from consensus.wire import encode_certificate

__all__ = ["SafetyChecker", "app_valid", "make_payload_prefix"]


def make_payload_prefix(height: Height) -> bytes:
    return b"h=%d;" % height


def app_valid(height: Height, value: Value) -> bool:
    """The simulated application's rule: the payload hashes to the id and names the
    height it is proposed for. A Byzantine breaks the first part on purpose."""
    return hashlib.sha256(value.payload).digest() == value.value_id and value.payload.startswith(
        make_payload_prefix(height)
    )


def _short(value_id: bytes | None) -> str:
    return "nil" if value_id is None else value_id.hex()[:8]


def _position(message: Message) -> tuple[int, int, int]:
    step = Step.PROPOSE if isinstance(message, Proposal) else message.vote_type.step
    return (message.height, message.round, int(step))


class SafetyChecker:
    """Accumulates violations as strings; the simulator stops at the first one."""

    def __init__(
        self,
        chain_id: str,
        validators_at: Callable[[Height], ValidatorSet],
        honest: frozenset[ValidatorId],
        verifier: Verifier = ED25519,
    ) -> None:
        """Args:
        validators_at: the validator set in force at a height (the run's schedule).
        verifier: the run's signature scheme; its checks are not the replicas' and go
            uncounted."""
        assert honest
        self.chain_id = chain_id
        self.verifier = verifier
        self.validators_at = validators_at
        self.honest = honest
        self.violations: list[str] = []
        self.decisions: dict[Height, tuple[bytes, ValidatorId]] = {}
        self.proposed: set[bytes] = set()
        self.signed: dict[tuple[ValidatorId, int, int, int], bytes] = {}
        self._certificates_checked: dict[bytes, bool] = {}

    def on_proposal_sent(self, proposal: Proposal) -> None:
        """Any validly signed proposal that entered the network, from anyone."""
        self.proposed.add(proposal.value.value_id)

    def on_broadcast(
        self, node: ValidatorId, message: Message, persisted: DurableState | None
    ) -> None:
        """An honest node signs and sends `message`."""
        assert node in self.honest
        signer = message.proposer if isinstance(message, Proposal) else message.voter
        height, round_, step = _position(message)
        where = f"{node} h={height} r={round_} step={Step(step).name}"
        if signer != node:
            return  # forwarding a peer's message (e.g. a proof-of-lock) signs nothing new
        if isinstance(message, Proposal):
            self.on_proposal_sent(message)
        if self.validators_at(message.height).get(node) is None:
            self.violations.append(f"membership: {where} signed, not in the height's set")
        if persisted is None or persisted.signed_step is None:
            guard: tuple[int, int, int] = (-1, -1, -1)
            if persisted is not None:
                guard = (persisted.signed_height, persisted.signed_round, -1)
        else:
            guard = (persisted.signed_height, persisted.signed_round, int(persisted.signed_step))
        if guard < (height, round_, step):
            self.violations.append(
                f"persist-before-broadcast: {where} sent while the persisted guard is {guard}"
            )
        key = (node, height, round_, step)
        earlier = self.signed.setdefault(key, message.signature)
        if earlier != message.signature:
            value_id = message.value.value_id if isinstance(message, Proposal) else message.value_id
            self.violations.append(
                f"double-sign: {where} signed a second, different message (now {_short(value_id)})"
            )

    def on_decide(
        self,
        node: ValidatorId,
        expected: Height,
        height: Height,
        value: Value,
        certificate: CommitCertificate,
    ) -> None:
        """An honest node decides `value` at `height`; it expected to decide `expected`."""
        assert node in self.honest
        where = f"{node} h={height}"
        if height != expected:
            self.violations.append(f"order: {where} decided, but its next height was {expected}")
        first = self.decisions.setdefault(height, (value.value_id, node))
        if first[0] != value.value_id:
            self.violations.append(
                f"agreement: {where} decided {_short(value.value_id)}"
                f" but {first[1]} decided {_short(first[0])}"
            )
        if value.value_id not in self.proposed:
            self.violations.append(
                f"validity: {where} decided {_short(value.value_id)}, never proposed"
            )
        if not app_valid(height, value):
            self.violations.append(
                f"validity: {where} decided an invalid value {_short(value.value_id)}"
            )
        self._check_certificate(where, height, value, certificate)

    def _check_certificate(
        self, where: str, height: Height, value: Value, certificate: CommitCertificate
    ) -> None:
        if (certificate.height, certificate.value_id) != (height, value.value_id):
            self.violations.append(f"certificate: {where} certificate names another height/value")
            return
        encoded = encode_certificate(certificate)
        ok = self._certificates_checked.get(encoded)
        if ok is None:
            ok = self.verifier.verify_certificate(
                self.chain_id, certificate, self.validators_at(height)
            )
            self._certificates_checked[encoded] = ok
        if not ok:
            self.violations.append(f"certificate: {where} decided with an invalid certificate")

    def on_duplicate_decision(self, node: ValidatorId, height: Height) -> None:
        self.violations.append(f"one-decision: {node} h={height} decided twice")

    def on_evidence(self, node: ValidatorId, evidence: Evidence) -> None:
        validators = self.validators_at(evidence.first.height)
        if not self.verifier.verify_evidence(self.chain_id, evidence, validators):
            self.violations.append(f"evidence: {node} reported evidence that does not verify")
            return
        culprit = evidence.first.voter
        if culprit in self.honest:
            self.violations.append(
                f"evidence: {node} holds proof that honest {culprit} double-voted at"
                f" h={evidence.first.height} r={evidence.first.round}"
            )
