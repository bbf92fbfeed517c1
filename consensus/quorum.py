"""Vote tallies of one height: who voted what, in which round, with how much power.

Theory of operation. The paper's rules count "2f+1 PREVOTE(h, r, id(v))", "2f+1
PREVOTE(h, r, *)", "f+1 messages of round r" and so on. With weighted validators, "2f+1"
means more than 2/3 of the total voting power (`ValidatorSet.quorum_power`) and "f+1"
more than 1/3 (`ValidatorSet.skip_power`). This module keeps exactly what those counts
need and nothing more:

- `VoteTally`: one (round, vote type). A validator's first validly signed vote is its
  "first vote": it alone counts towards "2f+1 for anything" (L34, L47), so every voter
  counts once there. A second vote with the same value is a duplicate (idempotent); one
  with a different value is a conflict, which the replica turns into evidence. The paper
  counts messages per value (L28, L36, L44, L49), so a conflicting vote is also counted
  for its own value when the replica calls it relevant (nil, or a value proposed at this
  height, or the lock or valid value): an equivocator that voted X to some and Y to
  others must count towards X everywhere, or an honest lock on X can become unprovable
  to the replicas that saw its Y first (sim seeds 4 and 1473). Counting both is safe:
  two values each backed by more than 2/3 would need more than 1/3 of the power voting
  both ways. Memory stays bounded: relevant values are at most the proposals of the
  height (one per round) plus nil, the lock and the valid value.
- `HeightVotes`: the tallies of every round of one height, plus the distinct senders of
  any message per round (for the round-skip rule, paper line 55).

Nothing here verifies signatures or membership: the replica does that before adding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from consensus.config import ValidatorSet
from consensus.messages import Round, ValidatorId, Vote, VoteType

__all__ = ["AddResult", "HeightVotes", "VoteTally"]


class AddResult(enum.Enum):
    """What happened to a vote offered to a tally."""

    ADDED = "added"  # first vote of this validator: counted
    DUPLICATE = "duplicate"  # same validator, same value: nothing changes
    CONFLICT = "conflict"  # same validator, another value: equivocation (see add)


@dataclass(slots=True)
class VoteTally:
    """The votes of one (round, vote type): per value, at most one vote per validator."""

    first: dict[ValidatorId, Vote] = field(default_factory=dict)
    """Each voter's first vote; only these count towards `power_any`."""
    by_value: dict[bytes | None, dict[ValidatorId, Vote]] = field(default_factory=dict)
    # Power behind each value id (None is nil), conflicting votes included.
    power_by_value: dict[bytes | None, int] = field(default_factory=dict)
    power_any: int = 0

    def add(self, vote: Vote, power: int, *, count_conflict: bool) -> AddResult:
        """Count `vote` (of a member with `power`). A vote for another value than the
        voter's first one is a conflict; it is counted for its value if `count_conflict`."""
        assert power >= 1  # only members are counted; the replica checked membership
        voters = self.by_value.get(vote.value_id)
        if voters is not None and vote.voter in voters:
            return AddResult.DUPLICATE
        conflict = vote.voter in self.first
        if conflict and not count_conflict:
            return AddResult.CONFLICT
        if not conflict:
            self.first[vote.voter] = vote
            self.power_any += power
        if voters is None:
            voters = self.by_value[vote.value_id] = {}
        voters[vote.voter] = vote
        self.power_by_value[vote.value_id] = self.power_by_value.get(vote.value_id, 0) + power
        assert self.power_any >= power
        return AddResult.CONFLICT if conflict else AddResult.ADDED

    def first_vote(self, voter: ValidatorId) -> Vote | None:
        return self.first.get(voter)

    def holds(self, vote: Vote) -> bool:
        """True if this exact vote (signature included) is counted here."""
        voters = self.by_value.get(vote.value_id)
        return voters is not None and voters.get(vote.voter) == vote

    def power_for(self, value_id: bytes | None) -> int:
        return self.power_by_value.get(value_id, 0)

    def values_with_power(self, power_min: int) -> list[bytes]:
        """Non-nil value ids backed by at least `power_min`, in a deterministic order.
        With a quorum `power_min` there is at most one unless more than 1/3 equivocate."""
        assert power_min >= 1
        return sorted(v for v, p in self.power_by_value.items() if v is not None and p >= power_min)

    def votes_for(self, value_id: bytes | None) -> tuple[Vote, ...]:
        """The counted votes for `value_id`, ordered by voter (a deterministic certificate)."""
        chosen = tuple(v for _, v in sorted(self.by_value.get(value_id, {}).items()))
        assert len({v.voter for v in chosen}) == len(chosen)
        return chosen

    def vote_count(self) -> int:
        return sum(len(voters) for voters in self.by_value.values())


class HeightVotes:
    """Every tally of one height, keyed by round, plus the latest round each validator
    has been seen in (for the round-skip rule, paper line 55)."""

    __slots__ = ("_latest_round", "_tallies", "_validators")

    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self._tallies: dict[tuple[Round, VoteType], VoteTally] = {}
        # The highest round of any validly signed message (proposal or vote) per sender.
        # One integer per validator, so it stays bounded even for rounds whose votes the
        # replica refuses to keep (beyond its window of future rounds).
        self._latest_round: dict[ValidatorId, Round] = {}

    def tally(self, round_: Round, vote_type: VoteType) -> VoteTally:
        """The tally of (round, type); an empty one (not stored) if nothing arrived yet."""
        found = self._tallies.get((round_, vote_type))
        return VoteTally() if found is None else found

    def add(self, vote: Vote, *, count_conflict: bool) -> tuple[AddResult, Vote | None]:
        """Count a member's vote (a conflicting one only if `count_conflict`). Returns the
        outcome and, on conflict, the voter's first vote."""
        power = self._validators.power_of(vote.voter)
        assert power >= 1  # the replica only adds votes of members
        key = (vote.round, vote.vote_type)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = VoteTally()
        result = tally.add(vote, power, count_conflict=count_conflict)
        self.note_round(vote.voter, vote.round)
        first = tally.first_vote(vote.voter)
        assert first is not None
        return result, (first if result is AddResult.CONFLICT else None)

    def note_round(self, sender: ValidatorId, round_: Round) -> None:
        """Remember that `sender` signed something for `round_` (line 55 counts senders)."""
        assert self._validators.power_of(sender) >= 1
        assert round_ >= 0
        if round_ > self._latest_round.get(sender, -1):
            self._latest_round[sender] = round_

    def skip_round(self, current: Round) -> Round | None:
        """The highest round R > `current` such that validators with more than 1/3 of the
        power have signed messages of round R or later; None if there is none.

        The paper (line 55) asks for f+1 messages of one round R. Counting "R or later"
        is as sound: more than 1/3 of the power contains an honest validator, and an
        honest validator only signs in a round it has reached, so some honest validator
        is at round R or beyond and skipping there cannot be forced by faulty ones alone.
        It also lets a replica that fell far behind jump in one step.
        """
        assert current >= 0
        # Only senders ahead of `current` count; usually there are none, and sorting the
        # whole set on every vote made this quadratic in the validator count per round.
        ahead = [
            (round_, sender) for sender, round_ in self._latest_round.items() if round_ > current
        ]
        if not ahead:
            return None
        ahead.sort(key=lambda x: -x[0])
        power = 0
        for round_, sender in ahead:
            assert round_ > current
            power += self._validators.power_of(sender)
            if power >= self._validators.skip_power:
                return round_
        return None

    def holds(self, vote: Vote) -> bool:
        """True if this exact vote is already counted (a repeat needs no new check)."""
        found = self._tallies.get((vote.round, vote.vote_type))
        return found is not None and found.holds(vote)

    def rounds(self) -> list[Round]:
        """Every round with at least one counted vote, ascending."""
        return sorted({r for r, _ in self._tallies})

    def vote_count(self) -> int:
        """Votes held in total (bounded: voters x relevant values x rounds kept x 2)."""
        return sum(t.vote_count() for t in self._tallies.values())
