"""Vote tallies of one height: who voted what, in which round, with how much power.

Theory of operation. The paper's rules count "2f+1 PREVOTE(h, r, id(v))", "2f+1
PREVOTE(h, r, *)", "f+1 messages of round r" and so on. With weighted validators, "2f+1"
means more than 2/3 of the total voting power (`ValidatorSet.quorum_power`) and "f+1"
more than 1/3 (`ValidatorSet.skip_power`). This module keeps exactly what those counts
need and nothing more:

- `VoteTally`: one (round, vote type). At most one vote per validator: the first validly
  signed vote is the one counted, forever. A second vote with the same value is a
  duplicate (idempotent); a second vote with a different value is a conflict, which the
  replica turns into evidence. Memory is therefore bounded by the validator count.
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
    CONFLICT = "conflict"  # same validator, another value: equivocation, not counted


@dataclass(slots=True)
class VoteTally:
    """The votes of one (round, vote type): at most one per validator."""

    votes: dict[ValidatorId, Vote] = field(default_factory=dict)
    # Power behind each value id (None is nil) and behind any value at all.
    power_by_value: dict[bytes | None, int] = field(default_factory=dict)
    power_any: int = 0

    def add(self, vote: Vote, power: int) -> AddResult:
        """Count `vote` (of a member with `power`) unless its voter already voted here."""
        assert power >= 1  # only members are counted; the replica checked membership
        first = self.votes.get(vote.voter)
        if first is not None:
            # The first vote stays the counted one: a tally never moves backwards.
            return AddResult.DUPLICATE if first.value_id == vote.value_id else AddResult.CONFLICT
        self.votes[vote.voter] = vote
        self.power_by_value[vote.value_id] = self.power_by_value.get(vote.value_id, 0) + power
        self.power_any += power
        assert self.power_any >= self.power_by_value[vote.value_id]
        return AddResult.ADDED

    def first_vote(self, voter: ValidatorId) -> Vote | None:
        return self.votes.get(voter)

    def power_for(self, value_id: bytes | None) -> int:
        return self.power_by_value.get(value_id, 0)

    def values_with_power(self, power_min: int) -> list[bytes]:
        """Non-nil value ids backed by at least `power_min`, in a deterministic order."""
        assert power_min >= 1
        found = sorted(
            v for v, p in self.power_by_value.items() if v is not None and p >= power_min
        )
        # More than 2/3 can back at most one value when every voter counts once.
        return found

    def votes_for(self, value_id: bytes) -> tuple[Vote, ...]:
        """The counted votes for `value_id`, ordered by voter (a deterministic certificate)."""
        chosen = tuple(v for _, v in sorted(self.votes.items()) if v.value_id == value_id)
        assert len(chosen) <= len(self.votes)
        return chosen


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

    def add(self, vote: Vote) -> tuple[AddResult, Vote | None]:
        """Count a member's vote. Returns the outcome and, on conflict, the counted vote."""
        power = self._validators.power_of(vote.voter)
        assert power >= 1  # the replica only adds votes of members
        key = (vote.round, vote.vote_type)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = VoteTally()
        result = tally.add(vote, power)
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
        power = 0
        for sender, round_ in sorted(self._latest_round.items(), key=lambda x: -x[1]):
            if round_ <= current:
                break
            power += self._validators.power_of(sender)
            if power >= self._validators.skip_power:
                return round_
        return None

    def rounds(self) -> list[Round]:
        """Every round with at least one counted vote, ascending."""
        return sorted({r for r, _ in self._tallies})

    def vote_count(self) -> int:
        """Votes held in total (bounded: validators x rounds kept x 2)."""
        return sum(len(t.votes) for t in self._tallies.values())
