"""The simulator's signature schemes, and its count of signatures made and checked.

Theory of operation. The core signs through a `Signer` and checks through a `Verifier`
(consensus.crypto); a node uses Ed25519 for both and never constructs anything from this
module. The simulator builds one `SimCrypto` per run and hands its signers and its
verifier to every replica, so it can count each signature made (`Signer.sign_bytes`) and
each signature checked by a replica (`Verifier.verify_bytes`) without touching the core's
logic. The checkers get an uncounted verifier of the same scheme: their checks are the
simulator's, not the protocol's cost.

Two schemes:
- "ed25519" (the default): real keys derived from the run seed, as a node signs.
- "keyed-hash": SIMULATION ONLY, NEVER USED BY A NODE. A "signature" is a keyed BLAKE2b of
  the signed bytes under the validator's secret, and checking it means recomputing it with
  the secret looked up in the run's key table. It is not a signature: anyone holding the
  key table forges any validator's messages. Inside one simulation only the simulator
  holds the table, and Byzantine actors sign with their own signers, so a forgery under
  another validator's name still fails the check exactly as it does with Ed25519. It
  exists because libsodium's verification dominates a run's CPU time, so that tens of
  thousands of seeds run in minutes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from consensus.crypto import ED25519, Signer, Verifier, verify_bytes
from consensus.ids import ValidatorId

__all__ = [
    "SIGNATURE_SCHEMES",
    "SimCrypto",
    "SimCryptoCounts",
    "SimKeyedHashSigner",
    "SimKeyedHashVerifier",
]

SIGNATURE_SCHEMES = ("ed25519", "keyed-hash")
SIGNATURE_SIZE = 64  # the wire's signature size, which the keyed hash matches
PUBLIC_KEY_SIZE = 32
_PERSON_SIGN = b"somnet-sim-kh-s"  # BLAKE2b personalisation: at most 16 bytes
_PERSON_PUBLIC = b"somnet-sim-kh-p"
assert len(_PERSON_SIGN) <= 16
assert len(_PERSON_PUBLIC) <= 16


@dataclass(slots=True)
class SimCryptoCounts:
    """What the replicas of one run signed and checked (not the checkers)."""

    signatures_made: int = 0
    signature_checks: int = 0


def _keyed_hash(secret: bytes, signed: bytes) -> bytes:
    digest = hashlib.blake2b(
        signed, key=secret, digest_size=SIGNATURE_SIZE, person=_PERSON_SIGN
    ).digest()
    assert len(digest) == SIGNATURE_SIZE
    return digest


def _keyed_hash_public_key(secret: bytes) -> bytes:
    """A public name for the secret: it identifies the key-table entry and reveals
    nothing that helps compute the keyed hash."""
    public = hashlib.blake2b(
        b"public", key=secret, digest_size=PUBLIC_KEY_SIZE, person=_PERSON_PUBLIC
    ).digest()
    assert len(public) == PUBLIC_KEY_SIZE
    return public


class _CountingSigner(Signer):
    """An Ed25519 signer that counts what it signs."""

    __slots__ = ("counts",)

    def __init__(
        self, chain_id: str, validator_id: ValidatorId, seed: bytes, counts: SimCryptoCounts
    ) -> None:
        super().__init__(chain_id, validator_id, seed)
        self.counts = counts

    def sign_bytes(self, signed: bytes) -> bytes:
        self.counts.signatures_made += 1
        return super().sign_bytes(signed)


class SimKeyedHashSigner(Signer):
    """SIMULATION ONLY, NEVER USED BY A NODE: it is not a signature, since anyone with the
    key table forges. "Signs" with a keyed BLAKE2b under the validator's secret; see the
    module docstring for why the simulator may use it."""

    __slots__ = ("_secret", "counts")

    def __init__(
        self, chain_id: str, validator_id: ValidatorId, seed: bytes, counts: SimCryptoCounts
    ) -> None:
        # No Ed25519 key: Signer.__init__ would derive one, which is the cost we avoid.
        assert len(seed) == 32
        self._secret = seed
        self.chain_id = chain_id
        self.validator_id = validator_id
        self.public_key = _keyed_hash_public_key(seed)
        self.counts = counts

    def sign_bytes(self, signed: bytes) -> bytes:
        self.counts.signatures_made += 1
        return _keyed_hash(self._secret, signed)

    def sign_application(self, message: bytes) -> bytes:
        raise AssertionError("the simulation's keyed-hash signer signs no application message")


class _CountingVerifier(Verifier):
    """Ed25519, counting every check."""

    __slots__ = ("counts",)

    def __init__(self, counts: SimCryptoCounts) -> None:
        self.counts = counts

    def verify_bytes(self, public_key: bytes, signed: bytes, signature: bytes) -> bool:
        self.counts.signature_checks += 1
        return verify_bytes(public_key, signed, signature)


class SimKeyedHashVerifier(Verifier):
    """SIMULATION ONLY, NEVER USED BY A NODE: checks `SimKeyedHashSigner` "signatures" by
    recomputing them from the key table (public key -> secret) it holds, which is exactly
    why it is not a signature scheme. Counts checks if given counts."""

    __slots__ = ("_secrets", "counts")

    def __init__(self, secrets: dict[bytes, bytes], counts: SimCryptoCounts | None) -> None:
        assert all(len(public) == PUBLIC_KEY_SIZE for public in secrets)
        self._secrets = secrets
        self.counts = counts

    def verify_bytes(self, public_key: bytes, signed: bytes, signature: bytes) -> bool:
        if self.counts is not None:
            self.counts.signature_checks += 1
        secret = self._secrets.get(public_key)
        if secret is None or len(signature) != SIGNATURE_SIZE:
            return False
        return hmac.compare_digest(_keyed_hash(secret, signed), signature)


class SimCrypto:
    """One run's signers (one per node), the replicas' counting verifier and the
    checkers' uncounted one, all of one scheme."""

    def __init__(
        self, scheme: str, chain_id: str, identities: list[tuple[ValidatorId, bytes]]
    ) -> None:
        """Args:
        identities: (validator id, 32-byte key seed) per node, in node order."""
        assert scheme in SIGNATURE_SCHEMES
        self.scheme = scheme
        self.counts = SimCryptoCounts()
        self.signers: list[Signer]
        self.replica_verifier: Verifier
        self.checker_verifier: Verifier
        if scheme == "ed25519":
            self.signers = [_CountingSigner(chain_id, v, s, self.counts) for v, s in identities]
            self.replica_verifier = _CountingVerifier(self.counts)
            self.checker_verifier = ED25519
        else:
            keyed = [SimKeyedHashSigner(chain_id, v, s, self.counts) for v, s in identities]
            secrets = {
                signer.public_key: seed for signer, (_, seed) in zip(keyed, identities, strict=True)
            }
            assert len(secrets) == len(identities)  # distinct seeds, distinct public keys
            self.signers = list(keyed)
            self.replica_verifier = SimKeyedHashVerifier(secrets, self.counts)
            self.checker_verifier = SimKeyedHashVerifier(secrets, None)
        assert len(self.signers) == len(identities)
