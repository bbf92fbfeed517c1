"""The simulation-only keyed-hash scheme (`somnet sim --signatures keyed-hash`): a run is
the same run as with Ed25519, event for event, its checkers still catch the f+1 fork,
and it rejects what Ed25519 rejects. No node code can reach it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from consensus import crypto
from consensus.config import ReplicaConfig, Validator, ValidatorSet
from consensus.messages import DurableState, Height, Round, ValidatorId, VoteType
from consensus.replica import Replica
from consensus.sim import SimParams, SimResult, run_simulation
from consensus.sim_crypto import SimCrypto

ROOT = Path(__file__).resolve().parents[2]
CHAIN_ID = "somnet-sim"


def _same_run(ed25519: SimResult, keyed: SimResult) -> bool:
    return ed25519 == keyed  # every field, the trace hash included


@pytest.mark.parametrize(("validators", "byzantine"), [(4, 1), (7, 2)])
def test_keyed_hash_run_is_the_ed25519_run_event_for_event(validators: int, byzantine: int) -> None:
    """Nothing in the core or the simulator depends on signature bytes, so swapping the
    scheme changes the cost and nothing else: the seeds it finds are Ed25519's seeds."""
    params = SimParams(validators=validators, heights=4, byzantine=byzantine)
    keyed_params = dataclasses.replace(params, signatures="keyed-hash")
    for seed in range(3):
        ed25519 = run_simulation(seed, params)
        keyed = run_simulation(seed, keyed_params)
        assert ed25519.signature_checks > 0
        assert _same_run(ed25519, keyed), f"seed {seed}: {ed25519} != {keyed}"


@pytest.mark.parametrize(
    ("validators", "byzantine", "forks_min"),
    [(4, 2, 18), (7, 3, 15)],  # the thresholds of test_negative_control.py
)
def test_keyed_hash_checkers_still_catch_the_colluding_fork(
    validators: int, byzantine: int, forks_min: int
) -> None:
    params = SimParams(
        validators=validators,
        heights=5,
        byzantine=byzantine,
        faults=frozenset(),
        allow_unsafe=True,
        signatures="keyed-hash",
    )
    results = [run_simulation(seed, params) for seed in range(20)]
    forked = [r.seed for r in results if any(v.startswith("agreement:") for v in r.violations)]
    assert len(forked) >= forks_min, f"agreement violations only on seeds {forked} of 0..19"


def _validator_set(sim_crypto: SimCrypto) -> ValidatorSet:
    return ValidatorSet(
        tuple(
            Validator(validator_id=s.validator_id, public_key=s.public_key, voting_power=1)
            for s in sim_crypto.signers
        )
    )


def test_keyed_hash_rejects_forgery_tampering_and_strangers() -> None:
    identities = [(ValidatorId(f"v{i}"), bytes([i + 1]) * 32) for i in range(3)]
    sim_crypto = SimCrypto("keyed-hash", CHAIN_ID, identities)
    validators = _validator_set(sim_crypto)
    verifier = sim_crypto.replica_verifier
    a, b = sim_crypto.signers[0], sim_crypto.signers[1]
    vote = a.sign_vote(VoteType.PREVOTE, Height(1), Round(0), b"\x01" * 32)
    assert verifier.verify_vote(CHAIN_ID, vote, validators)
    # b's name on a's "signature"; another value; another network; garbage.
    assert not verifier.verify_vote(
        CHAIN_ID, dataclasses.replace(vote, voter=b.validator_id), validators
    )
    assert not verifier.verify_vote(
        CHAIN_ID, dataclasses.replace(vote, value_id=b"\x02" * 32), validators
    )
    assert not verifier.verify_vote("another-chain", vote, validators)
    assert not verifier.verify_vote(
        CHAIN_ID, dataclasses.replace(vote, signature=bytes(64)), validators
    )
    # A member whose public key is not in the key table: no secret, no check passes.
    stranger = ValidatorSet(
        (Validator(validator_id=a.validator_id, public_key=bytes(32), voting_power=1),)
    )
    assert not verifier.verify_vote(CHAIN_ID, vote, stranger)
    # The same messages under Ed25519 fail the keyed-hash check and vice versa.
    ed25519 = SimCrypto("ed25519", CHAIN_ID, identities)
    assert not crypto.ED25519.verify_vote(CHAIN_ID, vote, _validator_set(ed25519))
    real = ed25519.signers[0].sign_vote(VoteType.PREVOTE, Height(1), Round(0), b"\x01" * 32)
    assert not verifier.verify_vote(CHAIN_ID, real, validators)
    # Counted: the replicas' verifier counts, the checkers' does not.
    checks = sim_crypto.counts.signature_checks
    assert checks == 7
    assert sim_crypto.checker_verifier.verify_vote(CHAIN_ID, vote, validators)
    assert sim_crypto.counts.signature_checks == checks
    assert sim_crypto.counts.signatures_made == 1


def test_keyed_hash_signer_signs_no_application_message() -> None:
    sim_crypto = SimCrypto("keyed-hash", CHAIN_ID, [(ValidatorId("v0"), bytes(32))])
    with pytest.raises(AssertionError, match="no application message"):
        sim_crypto.signers[0].sign_application(b"evidence")


def test_a_replica_checks_ed25519_unless_the_simulator_says_otherwise() -> None:
    config = ReplicaConfig.for_tests(CHAIN_ID)
    signer = crypto.Signer(CHAIN_ID, ValidatorId("v0"), bytes(32))
    replica = Replica(config, signer, DurableState.initial(Height(1)))
    assert replica.verifier is crypto.ED25519
    assert type(crypto.ED25519) is crypto.Verifier


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_node_code_imports_the_simulator() -> None:
    """The keyed hash is not a signature; only the simulator and its command may hold it."""
    allowed = {ROOT / "cli" / "sim.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("node", "cli")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in allowed and any(name.startswith("consensus.sim") for name in _imports(path))
    ]
    assert offenders == []
