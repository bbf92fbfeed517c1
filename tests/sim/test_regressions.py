"""Seeds that once found a bug, kept as named tests. Each docstring says what broke;
/tmp/sim_findings.md (and the simulator's commit) has the full analysis."""

from __future__ import annotations

from consensus.sim import SimParams, run_simulation
from tests.sim.seeds import explain

ALL_FAULTS = SimParams(validators=4, heights=5)
NO_CRASH_ONE_BYZANTINE = SimParams(
    validators=4,
    heights=5,
    byzantine=1,
    faults=frozenset({"delay", "loss", "duplicate", "partition"}),
)


def check(seed: int, params: SimParams) -> None:
    result = run_simulation(seed, params)
    assert result.ok, explain(result, params)
    assert result.decided_heights == params.heights


def test_seed_3_restart_loses_own_votes_and_stalls_the_round() -> None:
    """Two replicas restart in one round; what they signed before the crash is lost and
    the guard forbids re-signing, so nobody reaches 2f+1 prevotes of the round."""
    check(3, ALL_FAULTS)


def test_seed_11_restarts_in_one_height_stall_it() -> None:
    """Three restarts in height 3: own messages are not durable (as seed 3)."""
    check(11, ALL_FAULTS)


def test_seed_2_proof_of_lock_unobtainable_after_loss_and_crash() -> None:
    """Two replicas lock in round 1; the round-1 prevotes are no longer re-sent, so the
    others never accept the re-proposal and the rounds climb forever."""
    check(2, ALL_FAULTS)


def test_seed_1_equivocating_proposer_hides_the_lock() -> None:
    """A Byzantine proposer equivocates and double-votes; honest nodes that counted its
    other vote first can never see the polka behind an honest lock."""
    check(1, NO_CRASH_ONE_BYZANTINE)


def test_seed_4_double_vote_hides_the_lock() -> None:
    """A Byzantine prevotes nil to some and the value to others; the lock it helped form
    cannot be proven to the nodes that counted its nil vote."""
    check(4, NO_CRASH_ONE_BYZANTINE)
