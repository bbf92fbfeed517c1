"""The proposer order (leader reputation): the first rounds of a height pass over the
validators that signed none of the last carried certificates; later rounds, and a chain
where everyone signs, keep the plain weighted round robin."""

from __future__ import annotations

import collections

from consensus.config import (
    PASSED_OVER_ROUNDS,
    PROPOSER_WINDOW_HEIGHTS,
    Validator,
    ValidatorSet,
    passed_over,
)
from consensus.messages import (
    BuildValue,
    Height,
    HeightStarted,
    ProposalReceived,
    Round,
    ValidatorId,
)
from tests.unit.test_replica_harness import (
    SIGNERS,
    VALIDATORS,
    H,
    of_type,
    replica_for,
    value,
)

W = PROPOSER_WINDOW_HEIGHTS


def validator(name: str, power: int = 1) -> Validator:
    return Validator(
        validator_id=ValidatorId(name),
        public_key=name.encode().ljust(32, b"\0"),
        voting_power=power,
    )


FOUR = ValidatorSet(tuple(validator(n) for n in "abcd"))


def signers(names: str) -> frozenset[ValidatorId]:
    return frozenset(ValidatorId(n) for n in names)


def test_a_validator_that_signed_no_carried_certificate_of_the_window_is_passed_over() -> None:
    assert passed_over(FOUR, [signers("abc")] * W) == {"d"}
    # One signature anywhere in the window keeps it in; only the window counts.
    assert passed_over(FOUR, [signers("abd")] + [signers("abc")] * (W - 1)) == frozenset()
    assert passed_over(FOUR, [signers("abd")] + [signers("abc")] * W) == {"d"}


def test_nobody_is_passed_over_before_the_window_fills() -> None:
    assert passed_over(FOUR, [signers("abc")] * (W - 1)) == frozenset()
    assert passed_over(FOUR, []) == frozenset()


def test_a_whole_new_set_is_not_passed_over() -> None:
    # The window's certificates are of an older set: nobody of the new one signed them.
    new = ValidatorSet(tuple(validator(n) for n in "wxyz"))
    assert passed_over(new, [signers("abc")] * W) == frozenset()
    # Members that left are no concern of the new set's order.
    assert passed_over(ValidatorSet(tuple(validator(n) for n in "abe")), [signers("ab")] * W) == {
        "e"
    }


def test_a_validator_is_back_once_a_carried_certificate_holds_its_signature() -> None:
    window = collections.deque([signers("abc")] * W, maxlen=W)
    assert passed_over(FOUR, window) == {"d"}
    window.append(signers("bcd"))  # d is back and signed; the deque is what the ledger keeps
    assert passed_over(FOUR, window) == frozenset()
    assert FOUR.proposer(Height(3), Round(0), passed_over(FOUR, window)) == "d"


def test_all_healthy_is_the_plain_weighted_round_robin() -> None:
    weighted = ValidatorSet((validator("a", 3), validator("b", 1), validator("c", 2)))
    for h in range(60):
        for r in range(8):
            plain = weighted.proposer(Height(h), Round(r))
            assert weighted.proposer(Height(h), Round(r), frozenset()) == plain


def test_passed_over_validator_never_proposes_in_the_first_rounds_others_keep_shares() -> None:
    weighted = ValidatorSet((validator("a", 2), validator("b", 1), validator("c", 1)))
    out = frozenset({ValidatorId("c")})
    for r in range(PASSED_OVER_ROUNDS):
        turns = collections.Counter(weighted.proposer(Height(h), Round(r), out) for h in range(300))
        assert turns == {"a": 200, "b": 100}
    # Rounds 0 and 1 of a height are two different proposers (the next after a failure).
    for h in range(30):
        first = FOUR.proposer(Height(h), Round(0), signers("d"))
        second = FOUR.proposer(Height(h), Round(1), signers("d"))
        assert first != second
        assert "d" not in (first, second)


def test_every_validator_still_proposes_in_some_round_of_every_height() -> None:
    for out in (signers("d"), signers("cd"), signers("abcd")):
        for h in range(40):
            rounds = range(PASSED_OVER_ROUNDS + len(FOUR.validators))
            assert {FOUR.proposer(Height(h), Round(r), out) for r in rounds} == set("abcd")
    # From round PASSED_OVER_ROUNDS on, the plain order exactly.
    for h in range(40):
        for r in range(PASSED_OVER_ROUNDS, 12):
            assert FOUR.proposer(Height(h), Round(r), signers("d")) == FOUR.proposer(
                Height(h), Round(r)
            )


def test_the_order_is_a_function_of_its_inputs() -> None:
    # Same set, same window (in any container, any set order): the same proposers.
    window_a = [signers("abc")] * W
    window_b = collections.deque([frozenset(reversed(sorted(signers("cba"))))] * W)
    out_a, out_b = passed_over(FOUR, window_a), passed_over(FOUR, window_b)
    assert out_a == out_b
    for h in range(20):
        for r in range(6):
            assert FOUR.proposer(Height(h), Round(r), out_a) == FOUR.proposer(
                Height(h), Round(r), frozenset(out_b)
            )


def test_passing_over_everyone_or_strangers_falls_back_to_the_plain_order() -> None:
    for out in (signers("abcd"), signers("xyz")):
        for h in range(10):
            assert FOUR.proposer(Height(h), Round(0), out) == FOUR.proposer(Height(h), Round(0))


def test_the_replica_follows_the_order_its_height_started_with() -> None:
    """The proposer of round 0 under the plain order is passed over: it neither builds a
    value nor has its proposal accepted; the order's round-0 proposer does both."""
    plain = VALIDATORS.proposer(H, Round(0))
    out = frozenset({plain})
    chosen = VALIDATORS.proposer(H, Round(0), out)
    assert chosen != plain
    started = HeightStarted(height=H, validators=VALIDATORS, passed_over=out)

    passed = replica_for(plain)
    assert not of_type(passed.step(started, 0), BuildValue)
    assert passed.proposer(Round(0)) == chosen

    proposer = replica_for(chosen)
    assert of_type(proposer.step(started, 0), BuildValue)

    judge = next(v for v in (replica_for(i) for i in SIGNERS) if v.me not in (plain, chosen))
    judge.step(started, 0)
    x = value(b"block x")
    refused = SIGNERS[plain].sign_proposal(H, Round(0), x, Round(-1))
    judge.step(ProposalReceived(proposal=refused), 1)
    assert judge.dropped["wrong_proposer"] == 1
    accepted = SIGNERS[chosen].sign_proposal(H, Round(0), x, Round(-1))
    judge.step(ProposalReceived(proposal=accepted), 2)
    assert judge.proposals[Round(0)] == accepted
    assert judge.dropped["wrong_proposer"] == 1
    # Round 2 follows the plain order again: the passed-over validator has its turn.
    assert judge.proposer(Round(PASSED_OVER_ROUNDS)) == VALIDATORS.proposer(
        H, Round(PASSED_OVER_ROUNDS)
    )
