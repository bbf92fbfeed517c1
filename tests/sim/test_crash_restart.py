"""Crash and restart: a restarted honest replica is rebuilt from its persisted state only,
and never signs a second, different message for a (height, round, step) it signed in an
earlier life. The checker keeps its record across lives, so it would see one."""

from __future__ import annotations

from consensus.config import ReplicaConfig, Validator, ValidatorSet
from consensus.crypto import Signer
from consensus.messages import DurableState, Height, Round, Step, ValidatorId, VoteType
from consensus.sim import FIRST_HEIGHT, SimParams, Simulation, _Node, run_simulation
from consensus.sim_check import SafetyChecker
from consensus.wire import encode_durable_state
from tests.sim.seeds import explain, seeds

CRASHES = SimParams(validators=4, heights=5, faults=frozenset({"crash"}))
SAFETY = ("agreement", "validity", "double-sign", "persist-before", "one-decision", "order")


@seeds(range(500, 540))
def test_restarted_node_never_double_signs(sim_seed: int) -> None:
    simulation = Simulation(sim_seed, CRASHES)
    assert simulation.plan.crashes, f"seed {sim_seed}: the plan has no crash"
    result = simulation.run()
    safety = [v for v in result.violations if v.startswith(SAFETY)]
    assert safety == [], explain(result, CRASHES)


class AmnesiacSimulation(Simulation):
    """A broken shell that loses the persisted signing guard at every crash."""

    def _restart(self, node: _Node) -> None:
        if node.replica is None:
            node.storage.durable = encode_durable_state(DurableState.initial(FIRST_HEIGHT))
        super()._restart(node)


def test_checker_catches_double_sign_after_amnesia() -> None:
    params = SimParams(validators=4, heights=3, faults=frozenset({"crash"}))
    found = []
    for seed in range(600, 640):
        result = AmnesiacSimulation(seed, params).run()
        found += [v for v in result.violations if v.startswith("double-sign")]
    assert found, "a shell that forgets the guard must be caught double-signing"


def _checker() -> tuple[SafetyChecker, Signer]:
    signer = Signer("somnet-sim", ValidatorId("v00"), bytes(32))
    validators = ValidatorSet(
        (Validator(validator_id=signer.validator_id, public_key=signer.public_key, voting_power=1),)
    )
    ReplicaConfig.for_tests("somnet-sim").validate()
    return SafetyChecker(
        "somnet-sim", lambda _height: validators, frozenset({signer.validator_id})
    ), signer


def test_checker_flags_two_different_votes_and_an_unpersisted_one() -> None:
    checker, signer = _checker()
    guard = DurableState(
        signed_height=Height(1),
        signed_round=Round(0),
        signed_step=Step.PREVOTE,
        locked_value=None,
        locked_round=Round(-1),
        valid_value=None,
        valid_round=Round(-1),
    )
    first = signer.sign_vote(VoteType.PREVOTE, Height(1), Round(0), b"\x01" * 32)
    checker.on_broadcast(signer.validator_id, first, guard)
    checker.on_broadcast(signer.validator_id, first, guard)  # a re-send is fine
    assert checker.violations == []
    checker.on_broadcast(
        signer.validator_id, signer.sign_vote(VoteType.PREVOTE, Height(1), Round(0), None), guard
    )
    assert [v.split(":")[0] for v in checker.violations] == ["double-sign"]
    precommit = signer.sign_vote(VoteType.PRECOMMIT, Height(1), Round(0), None)
    checker.on_broadcast(signer.validator_id, precommit, guard)  # the guard is at prevote
    assert checker.violations[-1].startswith("persist-before-broadcast")


def test_crash_plan_restarts_everyone_by_heal() -> None:
    result = run_simulation(501, CRASHES)
    assert result.heal_ms > 0
    assert any(line.startswith("crash") for line in result.faults)
