"""The Tendermint replica: a pure, deterministic state machine (events in, actions out).

Theory of operation. This is Algorithm 1 of "The latest gossip on BFT consensus"
(Buchman, Kwon, Milosevic 2018, arXiv:1807.04938); comments cite its line numbers as
"L22" and so on. consensus/SPEC.md states the rules in prose.

A height runs rounds 0, 1, 2, ... until a value is decided. Each round has three steps:
- propose (L11-21): the round's proposer proposes validValue with validRound if it has
  one, else a fresh value it asks the application for (`BuildValue`).
- prevote (L22-33): prevote id(v) for a valid proposal the lock allows (no lock, the same
  value, or a proof-of-lock round vr with lockedRound <= vr), otherwise nil.
- precommit (L36-46): on 2f+1 prevotes for id(v) of this round's proposal, lock v and
  precommit it, and remember v as validValue; on 2f+1 nil prevotes, precommit nil.
A value is decided on 2f+1 precommits for it in any round (L49). Timeouts (L34, L47,
L57-67) move the round along when messages do not come; they grow linearly with the
round, capped (ReplicaConfig.timeout_ms). f+1 senders in later rounds pull a replica
forward (L55). "2f+1" is more than 2/3 of the voting power, "f+1" more than 1/3.

Rules of this implementation (the paper leaves them to the implementer):
- Peer input is checked first (shape, height and round routing, membership, proposer,
  signature) and dropped with a counted reason in `dropped`; `step` never raises on it.
- Nothing is signed without a `Persist` of the new signing guard (and the current lock)
  earlier in the same action list, and never at or before the guard: after a crash the
  replica may lose track of what it signed, so it skips a step rather than risk a
  second, conflicting signature (SPEC "signing guard").
- Own messages are counted immediately; they are re-sent on a `REBROADCAST` timer so the
  protocol survives message loss without ever re-signing. A re-proposal of validValue
  goes out, and is re-sent, with the prevotes that prove it (its proof of lock), so a
  replica locked on another value can still obtain the proof L28 asks for.
- Memory is bounded: per (round, type) one vote per validator and relevant value (see
  consensus.quorum), votes only for rounds up to ROUNDS_AHEAD_MAX past the current one,
  a bounded buffer for the next height.
- The validator set is per height: `HeightStarted` brings the set of its height, and
  every message, vote count and certificate of that height is judged against it. A
  replica outside a height's set follows it without proposing or voting, and learns its
  decision only through `CommitReceived` (block sync). Messages of the next height are
  kept before their set is known and judged against it when the height starts.
  `HeightStarted` also brings the proposer order's input (`passed_over`), computed by the
  application from data every node agrees on, so every node expects the same proposer.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import assert_never

from consensus import crypto
from consensus.config import VALIDATORS_MAX, ReplicaConfig, ValidatorSet
from consensus.crypto import Signer
from consensus.messages import (
    NIL_ROUND,
    VALUE_ID_SIZE,
    Action,
    ArmTimer,
    Broadcast,
    BuildValue,
    CheckValue,
    CommitCertificate,
    CommitReceived,
    Decide,
    DurableState,
    Event,
    Evidence,
    Height,
    HeightStarted,
    Message,
    Persist,
    Proposal,
    ProposalReceived,
    ReportEvidence,
    Round,
    Step,
    TimeoutFired,
    Timer,
    ValidatorId,
    Value,
    ValueBuilt,
    ValueChecked,
    Vote,
    VoteReceived,
    VoteType,
)
from consensus.quorum import AddResult, HeightVotes

__all__ = ["ROUNDS_AHEAD_MAX", "Replica"]

ROUNDS_AHEAD_MAX = 10
"""Votes and proposals are kept for rounds up to current + this; later ones only count
towards the round-skip rule (L55) through their sender's latest round."""

RULE_PASSES_MAX = 64
"""Bound on rule firings per event. Each rule fires at most once per round (the paper's
"for the first time" and step guards), and a round skip happens at most once per
round, so a handful of passes suffice; the bound turns a livelock bug into a crash."""

STRANGER_SHARE_DIVISOR = 2
"""Messages of the next height from senders outside the current set (a validator that
joins there, or a forged name) may fill at most 1/this of the next-height buffer, so that
members of the current set, whose signatures are checked on arrival, always find room."""

assert ROUNDS_AHEAD_MAX >= 1
assert STRANGER_SHARE_DIVISOR >= 2
assert RULE_PASSES_MAX > 8  # more than the rules of one round plus a skip and a decision


PositionObserver = Callable[[Height, Round, Step], None]
"""Told the new (height, round, step) after a `step` that moved the replica; the node
logs it. The core does no I/O of its own, so whatever is told is the caller's choice."""


class Replica:
    """One validator's consensus state machine. Single-threaded; feed it with `step`.

    Attributes:
        dropped: peer or stale input that was ignored, counted by reason.
        durable: the last durable state this replica asked to persist.
        validators: the set of the current height (from its `HeightStarted`).
        member: whether this replica is in that set, and so proposes and votes.
    """

    def __init__(
        self,
        config: ReplicaConfig,
        signer: Signer,
        durable: DurableState,
        on_position_changed: PositionObserver | None = None,
        *,
        verifier: crypto.Verifier = crypto.ED25519,
    ) -> None:
        """Args:
        on_position_changed: called once per `step` that changed the height, round or
            step, with the position it ended at (steps passed through within one event
            are not reported); it must not call back into the replica. None in the
            simulator, which stays quiet and deterministic.
        verifier: checks peers' signatures; a node keeps the default, Ed25519. Only the
            simulator passes its own (to count checks, or its keyed hash)."""
        assert signer.chain_id == config.chain_id  # a signer of another network is a bug
        self.config = config
        self.signer = signer
        self.verifier = verifier
        self.me: ValidatorId = signer.validator_id
        self.durable = durable
        self._on_position_changed = on_position_changed
        self.dropped: collections.Counter[str] = collections.Counter()
        self.stalls = 0  # times the stall rule moved a stuck step on (see _on_stall)
        # Height progress. `started` turns True at the first HeightStarted.
        self.started = False
        self.height: Height = durable.signed_height
        self.round: Round = Round(0)
        self.round_step: Step = Step.PROPOSE
        self.decided = False
        # The paper's lockedValue/lockedRound and validValue/validRound.
        self.locked_value: Value | None = None
        self.locked_round: Round = NIL_ROUND
        self.valid_value: Value | None = None
        self.valid_round: Round = NIL_ROUND
        # Messages of the next height (or, before the start, of the first height), in
        # arrival order, each with the public key its signature was checked against on
        # arrival (None: its sender was not in the current set, so it was not checked).
        self.future: dict[Message, bytes | None] = {}
        self.step_started_ms = 0  # when the current (height, round, step) began
        # The set of the current height and what depends on it exist from the first
        # HeightStarted on; nothing reads them before (every handler checks `started`).
        self._validators: ValidatorSet | None = None
        self._passed_over: frozenset[ValidatorId] = frozenset()  # the order's input (§1)
        self._votes: HeightVotes | None = None
        self.member = False
        self.proposals: dict[Round, Proposal] = {}  # the first proposal per round
        # valid(v) answers keyed by value id: the payload that was checked and the answer.
        self.validity: dict[bytes, tuple[bytes, bool]] = {}
        self.checking: dict[bytes, Value] = {}  # CheckValue sent, answer pending
        self.own: dict[tuple[Round, Step], Message] = {}  # what we signed, for rebroadcast
        self.awaiting_build: Round | None = None  # BuildValue sent for this round
        self.evidence_reported: set[tuple[ValidatorId, Round, VoteType]] = set()
        self._reset_round_flags()

    @property
    def validators(self) -> ValidatorSet:
        """The validator set of the current height."""
        assert self._validators is not None, "no height started yet"
        return self._validators

    @property
    def votes(self) -> HeightVotes:
        """The votes of the current height, counted with its set."""
        assert self._votes is not None, "no height started yet"
        return self._votes

    def proposer(self, round_: Round) -> ValidatorId:
        """The proposer of (current height, `round_`): the height's set and the proposer
        order's input both came with its `HeightStarted`, as on every other node."""
        return self.validators.proposer(self.height, round_, self._passed_over)

    def _reset_height_state(
        self, validators: ValidatorSet, passed_over: frozenset[ValidatorId]
    ) -> None:
        """Forget everything that belongs to one height and take the set of the new one
        and its proposer order (called at each new height)."""
        self._validators = validators
        self._passed_over = passed_over
        self.member = validators.get(self.me) is not None
        self.proposals = {}
        self._votes = HeightVotes(validators)
        self.validity = {}
        self.checking = {}
        self.own = {}
        self.awaiting_build = None
        self.evidence_reported = set()
        self._reset_round_flags()
        assert not self.proposals
        assert self.votes.vote_count() == 0
        assert self.member == (self.validators.power_of(self.me) >= 1)

    def _reset_round_flags(self) -> None:
        # The paper's "for the first time" guards of L34, L36 and L47, per round.
        self.prevote_timeout_armed = False
        self.polka_seen = False
        self.precommit_timeout_armed = False

    # -----------------------------------------------------------------------------------
    # The one entry point.

    def step(self, event: Event, now_ms: int) -> list[Action]:
        """Advance by one event.

        Args:
            event: a fact reported by the shell.
            now_ms: the current time in milliseconds (deadlines are computed from it).
        Returns:
            Actions to execute in order; a `Persist` must be durable before any later
            action of the list runs.
        Raises:
            Nothing on peer input: bad input is dropped and counted in `dropped`.
        """
        assert now_ms >= 0
        # Every handler appends to one list, so the order of actions is the order in
        # which the rules fired: a Persist always lands before the Broadcast it guards.
        out: list[Action] = []
        position = (self.height, self.round, self.round_step)
        was_started = self.started
        match event:
            case HeightStarted():
                self._on_height_started(event, now_ms, out)
            case ProposalReceived():
                self._on_message(event.proposal, now_ms, out)
            case VoteReceived():
                self._on_message(event.vote, now_ms, out)
            case TimeoutFired():
                self._on_timeout(event, now_ms, out)
            case ValueChecked():
                self._on_value_checked(event, now_ms, out)
            case ValueBuilt():
                self._on_value_built(event, now_ms, out)
            case CommitReceived():
                self._on_commit_received(event, out)
            case _:
                assert_never(event)
        moved = (self.height, self.round, self.round_step) != position
        if moved:
            self.step_started_ms = now_ms  # the stall rule measures time spent in a step
        self._check_actions(out)
        # The first height may start where the durable state already points: told too.
        if (moved or self.started != was_started) and self._on_position_changed is not None:
            self._on_position_changed(self.height, self.round, self.round_step)
        return out

    def _check_actions(self, out: list[Action]) -> None:
        """Postconditions of every step: a fresh signature leaves only after a Persist
        that covers it, and at most one decision."""
        persisted = False
        for action in out:
            if isinstance(action, Persist):
                persisted = True
            elif isinstance(action, Broadcast) and not persisted:
                # Without a Persist in this list, it must be a re-send of an old message
                # of ours or a forwarded vote we hold (a proof of lock).
                message = action.message
                assert message in self.own.values() or (
                    isinstance(message, Vote) and self.votes.holds(message)
                )
        assert sum(isinstance(a, Decide) for a in out) <= 1

    # -----------------------------------------------------------------------------------
    # Heights (L10 StartRound(0) on a new height; restart from the durable state).

    def _on_height_started(self, event: HeightStarted, now_ms: int, out: list[Action]) -> None:
        # Heights only move forward. The shell may jump several heights at once (block
        # sync settled them), so any later height is accepted, not only height + 1.
        height = event.height
        if height < 0 or (self.started and height <= self.height):
            self.dropped["stale_height_started"] += 1
            return
        self.started = True
        self.height = height
        self.decided = False
        self._reset_height_state(event.validators, event.passed_over)
        self.round = Round(0)
        self.round_step = Step.PROPOSE
        self.locked_value, self.locked_round = None, NIL_ROUND
        self.valid_value, self.valid_round = None, NIL_ROUND
        if not self.member:
            # A follower at this height: no rounds, no timers, nothing signed. Its
            # decision comes by block sync (CommitReceived), checked against this set.
            self._replay_future(now_ms, out)
            assert not self.own
            return
        first_round = Round(0)
        if self.durable.signed_height == height:
            # A restart inside this height: the lock and valid value come back, and the
            # replica resumes at the round it last signed in (the guard forbids re-signing).
            self.locked_value = self.durable.locked_value
            self.locked_round = self.durable.locked_round
            self.valid_value = self.durable.valid_value
            self.valid_round = self.durable.valid_round
            first_round = self.durable.signed_round
            if self.valid_round < self.locked_round:
                # validRound >= lockedRound always holds in the paper (L36 sets both).
                self.valid_value, self.valid_round = self.locked_value, self.locked_round
            for value in (self.locked_value, self.valid_value):
                if value is not None:  # L36 only locks or keeps a value it found valid
                    self.validity[value.value_id] = (value.payload, True)
        out.append(self._timer(now_ms + self.config.rebroadcast_ms, Timer.REBROADCAST))
        self._start_round(first_round, now_ms, out)
        self._replay_future(now_ms, out)
        assert self.height == height
        assert self.started

    def _replay_future(self, now_ms: int, out: list[Action]) -> None:
        """Judge buffered messages of the new height against its set and process those
        that pass; keep those of the height after."""
        buffered = list(self.future.items())
        self.future = {m: key for m, key in buffered if m.height == self.height + 1}
        for message, checked_key in buffered:
            if message.height != self.height:
                continue
            if not self.member:
                self.dropped["not_a_member"] += 1
                continue
            reason = self._member_error(message, checked_key)
            if reason is not None:
                self.dropped[reason] += 1
            elif not self._already_held(message):
                self._process(message, now_ms, out)
            else:
                self.dropped["duplicate"] += 1
        assert all(m.height == self.height + 1 for m in self.future)

    # -----------------------------------------------------------------------------------
    # Rounds (L11-21).

    def _start_round(self, round_: Round, now_ms: int, out: list[Action]) -> None:
        assert round_ >= self.round
        assert not self.decided
        # Entering a round forgets nothing of earlier rounds' votes: L28 and L49 may
        # still need them. Only the per-round "first time" flags start over.
        self.round = round_
        self.round_step = Step.PROPOSE
        self.awaiting_build = None
        self._reset_round_flags()
        # Own messages of the two latest rounds are enough to re-send: older rounds are
        # settled by timeouts, and a lagging peer catches up through block sync.
        self.own = {k: m for k, m in self.own.items() if k[0] >= round_ - 1}
        if self.proposer(round_) == self.me and self._may_sign(Step.PROPOSE):
            if self.valid_value is not None:
                self._propose(self.valid_value, self.valid_round, out)  # L15-16
            else:
                out.append(BuildValue(height=self.height, round=round_))  # L18
                self.awaiting_build = round_
        # L21. The proposer arms it too (as CometBFT does): if the application never
        # answers BuildValue, the round still ends.
        deadline = now_ms + self.config.timeout_ms(self.config.timeout_propose_ms, round_)
        out.append(self._timer(deadline, Timer.PROPOSE))
        assert self.round_step is Step.PROPOSE

    def _propose(self, value: Value, valid_round: Round, out: list[Action]) -> None:
        """L19: sign and broadcast PROPOSAL(h, r, value, validRound)."""
        assert self._may_sign(Step.PROPOSE)
        assert valid_round < self.round
        proposal = self.signer.sign_proposal(self.height, self.round, value, valid_round)
        # Our own value (built by our application, or validValue that L36 found valid).
        self.validity[value.value_id] = (value.payload, True)
        self._persist_signed(Step.PROPOSE, out)
        out.append(Broadcast(message=proposal))
        # L16 re-proposes validValue: send its proof of lock along, since a replica
        # locked on another value may lack it (lost, or hidden by an equivocator). The
        # rebroadcast re-sends it with the proposal (see _rebroadcast).
        out.extend(Broadcast(message=vote) for vote in self._proof_of_lock(value, valid_round))
        assert self.round not in self.proposals  # the guard stops a second proposal
        self.proposals[self.round] = proposal
        self.votes.note_round(self.me, self.round)
        self.own[(self.round, Step.PROPOSE)] = proposal
        self.awaiting_build = None

    def _on_value_built(self, event: ValueBuilt, now_ms: int, out: list[Action]) -> None:
        fresh = (
            self.started
            and not self.decided
            and event.height == self.height
            and event.round == self.round
            and self.awaiting_build == self.round
            and self.round_step is Step.PROPOSE
        )
        if not fresh:
            self.dropped["stale_value_built"] += 1
            return
        if len(event.value.value_id) != VALUE_ID_SIZE:
            self.dropped["malformed_value_built"] += 1
            return
        self._propose(event.value, NIL_ROUND, out)
        self._run_rules(now_ms, out)  # L22: the proposer prevotes its own proposal

    # -----------------------------------------------------------------------------------
    # Signing: the guard (SPEC "signing guard").

    def _may_sign(self, step: Step) -> bool:
        """True if (height, round, step) is strictly after the last signed position."""
        return self._after_guard(self.height, self.round, step)

    def _after_guard(self, height: Height, round_: Round, step: Step) -> bool:
        d = self.durable
        signed_step = -1 if d.signed_step is None else int(d.signed_step)
        return (height, round_, int(step)) > (d.signed_height, d.signed_round, signed_step)

    def _persist_signed(self, step: Step, out: list[Action]) -> None:
        """Move the guard to (height, round, step), together with the current lock."""
        assert self._may_sign(step)
        self.durable = DurableState(
            signed_height=self.height,
            signed_round=self.round,
            signed_step=step,
            locked_value=self.locked_value,
            locked_round=self.locked_round,
            valid_value=self.valid_value,
            valid_round=self.valid_round,
        )
        out.append(Persist(state=self.durable))
        assert not self._may_sign(step)

    def _sign_vote(self, vote_type: VoteType, value_id: bytes | None, out: list[Action]) -> None:
        """Sign, persist, count and broadcast our vote of the current round, unless the
        guard says this step was already signed before a restart: then stay silent."""
        step = vote_type.step
        if not self._may_sign(step):
            return
        vote = self.signer.sign_vote(vote_type, self.height, self.round, value_id)
        self._persist_signed(step, out)
        out.append(Broadcast(message=vote))
        result, _ = self.votes.add(vote, count_conflict=False)
        assert result is AddResult.ADDED  # nothing of ours was counted at this position
        self.own[(self.round, step)] = vote

    def _prevote(self, value_id: bytes | None, out: list[Action]) -> None:
        assert self.round_step is Step.PROPOSE
        self._sign_vote(VoteType.PREVOTE, value_id, out)
        self.round_step = Step.PREVOTE

    def _precommit(self, value_id: bytes | None, out: list[Action]) -> None:
        assert self.round_step is Step.PREVOTE
        self._sign_vote(VoteType.PRECOMMIT, value_id, out)
        self.round_step = Step.PRECOMMIT

    # -----------------------------------------------------------------------------------
    # Peer messages: validation first, then routing by height and round.

    def _on_message(self, message: Message, now_ms: int, out: list[Action]) -> None:
        reason = self._shape_error(message)
        if reason is not None:
            self.dropped[reason] += 1
            return
        if not self.started:
            # Before the first height: keep what the shell will most likely start with.
            if message.height not in (self.height, self.height + 1):
                self.dropped["height_not_started"] += 1
            else:
                self._buffer(message)
            return
        if message.height == self.height + 1:
            self._buffer(message)  # judged against its own set when that height starts
            return
        if message.height != self.height:
            self.dropped["height_past" if message.height < self.height else "height_future"] += 1
            return
        if not self.member:
            # A follower has no use for the votes of a height it does not vote in (its
            # decision comes by block sync), so it spends no signature check on them.
            self.dropped["not_a_member"] += 1
            return
        if self._already_held(message):
            # The same bytes passed every check before; rebroadcasts and forwarded proofs
            # of lock repeat messages often, and a signature check is the costly part.
            self.dropped["duplicate"] += 1
            return
        reason = self._member_error(message, None)
        if reason is not None:
            self.dropped[reason] += 1
            return
        self._process(message, now_ms, out)

    def _shape_error(self, message: Message) -> str | None:
        """Structural checks that need no key: types, sizes and ranges."""
        # `wire.decode_message` already enforces all of this for bytes from the network,
        # but the core must not trust its caller for peer data: a simulator's Byzantine
        # script or a future transport could hand over objects directly. `type(x) is int`
        # also refuses bool, which is an int subclass.
        if type(message.height) is not int or type(message.round) is not int:
            return "malformed"
        if message.height < 0 or message.round < 0 or type(message.signature) is not bytes:
            return "malformed"
        if isinstance(message, Proposal):
            value = message.value
            if type(value.value_id) is not bytes or len(value.value_id) != VALUE_ID_SIZE:
                return "malformed"
            if type(message.valid_round) is not int or type(value.payload) is not bytes:
                return "malformed"
            if not NIL_ROUND <= message.valid_round < message.round:
                return "malformed"
            return None
        if type(message.vote_type) is not VoteType:
            return "malformed"
        if message.value_id is not None and (
            type(message.value_id) is not bytes or len(message.value_id) != VALUE_ID_SIZE
        ):
            return "malformed"
        return None

    def _already_held(self, message: Message) -> bool:
        """This exact message of the current height is already kept (shape checked)."""
        if not self.started or message.height != self.height:
            return False
        if isinstance(message, Proposal):
            return self.proposals.get(message.round) == message
        return self.votes.holds(message)

    def _member_error(self, message: Message, checked_key: bytes | None) -> str | None:
        """Checks against the current height's set: membership, the round's proposer,
        the signature (the costly check, skipped if `checked_key` is the sender's key
        in this set: the signature was checked with it on arrival), and our own key
        used by someone else."""
        assert self.started
        assert message.height == self.height
        validators = self.validators
        sender = _sender(message)
        member = validators.get(sender)
        if member is None:
            return "unknown_validator"
        if isinstance(message, Proposal):
            if self.proposer(message.round) != sender:
                return "wrong_proposer"
        if checked_key != member.public_key and not self._signature_ok(message, validators):
            return "bad_signature"
        if self._is_unknown_own_message(message):
            return "own_message_not_signed_here"
        return None

    def _signature_ok(self, message: Message, validators: ValidatorSet) -> bool:
        # The chain id is inside the signed bytes, so a message of another network fails
        # here as a bad signature; there is no separate field to compare.
        assert validators.get(_sender(message)) is not None
        if isinstance(message, Proposal):
            return self.verifier.verify_proposal(self.config.chain_id, message, validators)
        return self.verifier.verify_vote(self.config.chain_id, message, validators)

    def _is_unknown_own_message(self, message: Message) -> bool:
        """A message signed with our key at a position after our signing guard: we did
        not sign it (the guard moves before every signature), so another process holds
        our key. Counting it could make us sign a second message at that position."""
        if isinstance(message, Proposal):
            sender, step = message.proposer, Step.PROPOSE
        else:
            sender, step = message.voter, message.vote_type.step
        if sender != self.me:
            return False
        # Messages at or before the guard are ours from before a restart: worth counting.
        return self._after_guard(message.height, message.round, step)

    def _buffer(self, message: Message) -> None:
        """Keep a message of the next height within per-sender and total bounds, so that
        a Byzantine validator cannot crowd out the honest ones.

        The next height's set may differ from the current one, so the message is judged
        against it only when that height starts (`_replay_future`). A sender in the
        current set is checked now with its current key (a bad signature goes at once,
        and the check is not repeated if the key is unchanged); any other sender may be
        a validator that joins at the next height, or a forged name, so its messages
        share a smaller part of the buffer (STRANGER_SHARE_DIVISOR). A validator whose
        key changes at the next height may see a message dropped here; it re-sends it
        (REBROADCAST), and the copy is judged at its height."""
        if message in self.future:
            self.dropped["duplicate"] += 1
            return
        sender = _sender(message)
        member = None if self._validators is None else self._validators.get(sender)
        checked_key: bytes | None = None
        if member is not None:
            if not self._signature_ok(message, self.validators):
                self.dropped["bad_signature"] += 1
                return
            checked_key = member.public_key
        total_max = self.config.future_messages_max
        if checked_key is not None:
            pool_max = total_max
            per_sender_max = max(1, total_max // len(self.validators.validators))
        else:
            pool_max = max(1, total_max // STRANGER_SHARE_DIVISOR)
            per_sender_max = max(1, total_max // VALIDATORS_MAX)
        # The buffer is small (bounded by config), so a linear count per insert is
        # cheaper than keeping a second index in step with it.
        pool = [m for m, key in self.future.items() if (key is None) == (checked_key is None)]
        from_sender = sum(1 for m in pool if _sender(m) == sender)
        if len(self.future) >= total_max or len(pool) >= pool_max or from_sender >= per_sender_max:
            self.dropped["buffer_full"] += 1
            return
        self.future[message] = checked_key
        assert len(self.future) <= total_max

    def _process(self, message: Message, now_ms: int, out: list[Action]) -> None:
        """A validly signed message of the current height."""
        assert message.height == self.height
        assert self.started
        sender = _sender(message)
        # Even a message too far ahead to keep tells us its sender's round (L55).
        self.votes.note_round(sender, message.round)
        if message.round > self.round + ROUNDS_AHEAD_MAX:
            # Not kept (memory stays bounded), but the note above may complete f+1
            # senders ahead of us, so the round-skip rule gets its chance.
            self.dropped["round_too_far"] += 1
            self._run_rules(now_ms, out)
            return
        if isinstance(message, Proposal):
            self._on_proposal(message, out)
        else:
            self._on_vote(message, out)
        self._run_rules(now_ms, out)

    def _on_proposal(self, proposal: Proposal, out: list[Action]) -> None:
        existing = self.proposals.get(proposal.round)
        if existing is not None:
            # The first proposal of a round stays; a different second one is the
            # proposer equivocating, which a vote-based Evidence cannot express.
            self.dropped["duplicate" if existing == proposal else "proposal_conflict"] += 1
            return
        self.proposals[proposal.round] = proposal
        if not self.decided and self._validity(proposal.value) is None:
            self._request_check(proposal.value, out)
        assert self.proposals[proposal.round] is proposal

    def _on_vote(self, vote: Vote, out: list[Action]) -> None:
        # The tally decides what a vote is: new, a harmless repeat (rebroadcasts and
        # duplicating networks make these common), or a second, different vote. The
        # paper counts messages per value, so a second vote still counts for its value
        # if that value can matter here (see consensus.quorum for why and the bound).
        result, first = self.votes.add(vote, count_conflict=self._is_relevant(vote.value_id))
        if result is AddResult.DUPLICATE:
            self.dropped["duplicate"] += 1
        elif result is AddResult.CONFLICT:
            assert first is not None
            assert first.value_id != vote.value_id
            self.dropped["equivocation"] += 1
            # One report per position is enough to punish; a validator that keeps
            # equivocating must not make us emit (and the shell store) unbounded evidence.
            key = (vote.voter, vote.round, vote.vote_type)
            if key not in self.evidence_reported:
                self.evidence_reported.add(key)
                out.append(ReportEvidence(evidence=Evidence(first=first, second=vote)))

    def _is_relevant(self, value_id: bytes | None) -> bool:
        """Nil, or a value a rule of this height can act on: one proposed at this height
        (L36, L28, L49 all need the proposal), the lock or the valid value."""
        if value_id is None:
            return True
        if any(p.value.value_id == value_id for p in self.proposals.values()):
            return True
        return any(
            v is not None and v.value_id == value_id for v in (self.locked_value, self.valid_value)
        )

    # -----------------------------------------------------------------------------------
    # valid(v): asked of the application once per value id, answers cached.

    def _validity(self, value: Value) -> bool | None:
        """The cached valid(v), or None if unknown. The cache is keyed by value id but
        remembers the payload it judged: a proposal may pair a known id with another
        payload, and an answer about one payload says nothing good about another."""
        known = self.validity.get(value.value_id)
        if known is None:
            return None
        payload, valid = known
        if payload == value.payload:
            return valid
        # Another payload under an id already found valid cannot match that id.
        return False if valid else None

    def _request_check(self, value: Value, out: list[Action]) -> None:
        assert self._validity(value) is None
        if value.value_id in self.checking:
            return  # one question per id at a time; the answer re-runs the rules
        self.checking[value.value_id] = value
        out.append(CheckValue(height=self.height, value=value))

    def _on_value_checked(self, event: ValueChecked, now_ms: int, out: list[Action]) -> None:
        # Only answers to questions we asked at this height count: an answer from
        # before a restart or for an earlier height says nothing about this one.
        value = self.checking.get(event.value_id)
        if not self.started or event.height != self.height or value is None:
            self.dropped["stale_value_checked"] += 1
            return
        del self.checking[event.value_id]
        self.validity[event.value_id] = (value.payload, event.valid)
        assert self._validity(value) is event.valid
        # A negative answer about one payload leaves other payloads with this id open.
        for proposal in self.proposals.values():
            other = proposal.value
            if other.value_id == event.value_id and self._validity(other) is None:
                self._request_check(other, out)
        self._run_rules(now_ms, out)

    # -----------------------------------------------------------------------------------
    # Timeouts (L57-67) and the rebroadcast timer.

    def _timer(self, deadline_ms: int, timer: Timer) -> ArmTimer:
        assert deadline_ms >= 0
        return ArmTimer(deadline_ms=deadline_ms, height=self.height, round=self.round, timer=timer)

    def _on_timeout(self, event: TimeoutFired, now_ms: int, out: list[Action]) -> None:
        # A follower arms no timer at its height, so whatever fires there is stale too.
        if not self.started or event.height != self.height or not self.member:
            self.dropped["stale_timer"] += 1
            return
        if event.timer is Timer.REBROADCAST:
            # The rebroadcast timer belongs to the height, not to a round: it keeps
            # ticking across rounds and after the decision, until the next height. The
            # stall check runs first so that whatever it signs is not also re-sent.
            if not self.decided and now_ms - self.step_started_ms >= self._stall_ms():
                self._on_stall(now_ms, out)
            self._rebroadcast(now_ms, out)
            return
        if self.decided or event.round != self.round:
            self.dropped["stale_timer"] += 1
            return
        if event.timer is Timer.PROPOSE and self.round_step is Step.PROPOSE:
            self._prevote(None, out)  # L57-60
        elif event.timer is Timer.PREVOTE and self.round_step is Step.PREVOTE:
            self._precommit(None, out)  # L61-64
        elif event.timer is Timer.PRECOMMIT:
            self._start_round(Round(self.round + 1), now_ms, out)  # L65-67
        else:
            self.dropped["stale_timer"] += 1  # the step moved on before the timer fired
            return
        self._run_rules(now_ms, out)

    def _stall_ms(self) -> int:
        """How long a round may sit in one step before the stall rule moves it on: the
        three timeouts of the round together, so it never pre-empts the paper's own."""
        c = self.config
        bases = (c.timeout_propose_ms, c.timeout_prevote_ms, c.timeout_precommit_ms)
        stall_ms = sum(c.timeout_ms(base, self.round) for base in bases)
        assert stall_ms > c.timeout_ms(c.timeout_prevote_ms, self.round)
        return stall_ms

    def _on_stall(self, now_ms: int, out: list[Action]) -> None:
        """Not in the paper: L34 and L47 arm their timeouts only once 2f+1 messages of
        the round have arrived. After crashes, correct replicas can sit in different
        rounds, each waiting for votes the others will never send there (a restarted
        replica has lost its old messages, and fewer than f+1 are ahead, so L55 cannot
        help). Doing what L61 and L65 do, later, is always safe (a nil precommit and a
        new round break no lock) and lets the lower rounds catch up."""
        assert not self.decided
        if self.round_step is Step.PREVOTE:
            self._precommit(None, out)
        elif self.round_step is Step.PRECOMMIT:
            self._start_round(Round(self.round + 1), now_ms, out)
        else:
            return  # step propose always has its own timeout (L21)
        self.stalls += 1
        self._run_rules(now_ms, out)

    def _rebroadcast(self, now_ms: int, out: list[Action]) -> None:
        """Re-send our own signed messages of the latest rounds, unchanged (no new
        signature, so no Persist), each re-proposal among them with its proof of lock
        while undecided; keep exactly one rebroadcast timer armed.

        Why the proof goes with our re-proposals only. L28 is the one rule that needs a
        proof of lock, and only for a re-proposal PROPOSAL(v, vr), to release a replica
        locked on another value. The re-proposer built it from its validValue, so it
        holds the 2f+1 prevotes for v in vr (L36 counted them) and sends them with the
        proposal (L16); re-sending them with the proposal gets them past message loss,
        and past an equivocator that showed the locked replica another vote (sim seeds
        2 and 1473: the copy counts once v is relevant there, at the latest when the
        proposal arrives). Nobody else needs to forward it: a replica holding a
        validValue but not proposing has no proposal for its proof to serve, and it
        proposes within a bounded number of rounds (every validator does, SPEC §9):
        then it re-proposes its validValue with that proof, or with the proof of a
        newer polka that replaced it. So what a holder's forwarding achieved in some
        round, its own turn achieves at the latest one rotation later. Lost: a round
        whose re-proposer restarted since its polka (votes are not durable, so it holds
        no proof) or, being faulty, withholds it, which a holder could have completed;
        and, under long delays, the holders' relay of prevotes to replicas that missed
        some (most likely why 2000 seeds at 4 validators with delays only now take 2%
        more virtual time). Every holder used to forward on every tick, to every peer:
        n x n x n messages a tick (811982 in height 1 of `somnet sim --validators 100
        --first-seed 3`). Now the proof goes out from the proposers of the latest two
        rounds only, n votes to n peers each: O(n^2) a tick."""
        sent = {a.message for a in out if isinstance(a, Broadcast)}  # sent just now
        resend: list[Message] = [self.own[key] for key in sorted(self.own)]
        if not self.decided:
            resend += [
                vote
                for message in resend
                if isinstance(message, Proposal)
                for vote in self._proof_of_lock(message.value, message.valid_round)
            ]
        out.extend(Broadcast(message=m) for m in dict.fromkeys(resend) if m not in sent)
        out.append(self._timer(now_ms + self.config.rebroadcast_ms, Timer.REBROADCAST))
        assert all(m.height == self.height for m in self.own.values())

    def _proof_of_lock(self, value: Value, valid_round: Round) -> tuple[Vote, ...]:
        """The prevotes we hold for `value` in `valid_round` (the POL L28 asks of a
        re-proposal); none for a fresh proposal (`valid_round` NIL)."""
        if valid_round == NIL_ROUND:
            return ()
        tally = self.votes.tally(valid_round, VoteType.PREVOTE)
        return tally.votes_for(value.value_id)

    # -----------------------------------------------------------------------------------
    # Block sync.

    def _on_commit_received(self, event: CommitReceived, out: list[Action]) -> None:
        certificate = event.certificate
        # No valid(v) check here: more than 2/3 of the power precommitted v, so at least
        # one correct validator found it valid, and safety means nobody decides else.
        # The cheap checks come before the signature checks of the whole certificate.
        if not self.started or self.decided or certificate.height != self.height:
            self.dropped["commit_stale"] += 1
            return
        if event.value.value_id != certificate.value_id:
            self.dropped["commit_mismatch"] += 1
            return
        if not self.verifier.verify_certificate(self.config.chain_id, certificate, self.validators):
            self.dropped["commit_bad_certificate"] += 1
            return
        self._decide(event.value, certificate, out)

    def _decide(self, value: Value, certificate: CommitCertificate, out: list[Action]) -> None:
        assert not self.decided
        assert certificate.value_id == value.value_id
        out.append(Decide(height=self.height, value=value, certificate=certificate))
        self.decided = True

    # -----------------------------------------------------------------------------------
    # The upon-rules (L22-56), applied until none fires.

    def _run_rules(self, now_ms: int, out: list[Action]) -> None:
        """Apply the paper's upon-rules until none fires. Each rule returns True if it
        changed the state, which may enable another rule (a lock enables a precommit,
        a round skip enables a prevote, and so on)."""
        if not self.started or self.decided or not self.member:
            return
        for _ in range(RULE_PASSES_MAX):
            fired = (
                self._rule_decide(out)
                or self._rule_skip_round(now_ms, out)
                or self._rule_prevote_on_proposal(out)
                or self._rule_prevote_timeout(now_ms, out)
                or self._rule_polka(out)
                or self._rule_precommit_nil(out)
                or self._rule_precommit_timeout(now_ms, out)
            )
            if not fired or self.decided:
                return
        raise AssertionError("consensus rules did not settle")  # a livelock is our bug

    def _rule_decide(self, out: list[Action]) -> bool:
        """L49: a proposal (or any known copy of its value) and 2f+1 precommits for its id
        in any round, with valid(v): decide."""
        quorum = self.validators.quorum_power
        # Scanning every round is fine: rounds of one height are few, and the scan stops
        # at the first decision. Within a round, more than 2/3 can back at most one id.
        for round_ in self.votes.rounds():
            tally = self.votes.tally(round_, VoteType.PRECOMMIT)
            for value_id in tally.values_with_power(quorum):
                value = self._known_value(value_id, out)
                if value is None:
                    continue
                # The certificate is exactly what we counted: distinct voters (one vote
                # per validator per tally), all for this (height, round, id).
                certificate = CommitCertificate(
                    height=self.height,
                    round=round_,
                    value_id=value_id,
                    precommits=tally.votes_for(value_id),
                )
                assert sum(self.validators.power_of(v.voter) for v in certificate.precommits) >= (
                    quorum
                )
                self._decide(value, certificate, out)
                return True
        return False

    def _known_value(self, value_id: bytes, out: list[Action]) -> Value | None:
        """A value with this id known to be valid, asking the application if needed.
        Candidates are the proposals of this height and the lock and valid values."""
        candidates = [p.value for p in self.proposals.values() if p.value.value_id == value_id]
        candidates += [
            v
            for v in (self.locked_value, self.valid_value)
            if v is not None and v.value_id == value_id
        ]
        for value in candidates:
            if self._validity(value) is True:
                return value
        for value in candidates:
            if self._validity(value) is None:
                self._request_check(value, out)
        return None

    def _rule_skip_round(self, now_ms: int, out: list[Action]) -> bool:
        """L55: f+1 of the power is in later rounds: start the highest such round."""
        target = self.votes.skip_round(self.round)
        if target is None:
            return False
        assert target > self.round
        self._start_round(target, now_ms, out)
        return True

    def _rule_prevote_on_proposal(self, out: list[Action]) -> bool:
        """L22-33: in step propose, prevote on this round's proposal."""
        proposal = self.proposals.get(self.round)
        if self.round_step is not Step.PROPOSE or proposal is None:
            return False
        value, valid_round = proposal.value, proposal.valid_round
        # L22-23: a fresh proposal is acceptable if unlocked or locked on it.
        free = self.locked_round == NIL_ROUND or self._is_locked_on(value)
        if valid_round == NIL_ROUND or free:
            # Not in the paper: L28 also asks a re-proposal (vr >= 0) for its proof of
            # lock when the lock allows v anyway. Votes are not persisted, so after
            # crashes that proof can be gone for good while every replica is locked on
            # (or free to take) v, and the height would never end. Safety rests on the
            # locked replicas only: one that is free, or locked on v, may prevote v just
            # as L22 lets it (CometBFT prevotes the same way).
            allowed = free
        else:
            # L28-29: a proof of lock (2f+1 prevotes for v in round vr) overrides a lock
            # on another value from round vr or earlier.
            assert 0 <= valid_round < self.round
            pol = self.votes.tally(valid_round, VoteType.PREVOTE).power_for(value.value_id)
            if pol < self.validators.quorum_power:
                return False  # wait for the proof, or the propose timeout
            allowed = self.locked_round <= valid_round
        if not allowed:
            self._prevote(None, out)  # nil whatever valid(v) says
            return True
        valid = self._validity(value)
        if valid is None:
            self._request_check(value, out)
            return False
        self._prevote(value.value_id if valid else None, out)
        return True

    def _is_locked_on(self, value: Value) -> bool:
        return self.locked_value is not None and self.locked_value.value_id == value.value_id

    def _rule_prevote_timeout(self, now_ms: int, out: list[Action]) -> bool:
        """L34-35: 2f+1 prevotes for anything in step prevote, first time: arm the timer."""
        if self.round_step is not Step.PREVOTE or self.prevote_timeout_armed:
            return False
        tally = self.votes.tally(self.round, VoteType.PREVOTE)
        if tally.power_any < self.validators.quorum_power:
            return False
        self.prevote_timeout_armed = True
        deadline = now_ms + self.config.timeout_ms(self.config.timeout_prevote_ms, self.round)
        out.append(self._timer(deadline, Timer.PREVOTE))
        return True

    def _rule_polka(self, out: list[Action]) -> bool:
        """L36-43: this round's proposal, valid, with 2f+1 prevotes for its id, step >=
        prevote, first time: lock and precommit it if still in prevote; remember it as
        validValue in any case."""
        proposal = self.proposals.get(self.round)
        if self.round_step < Step.PREVOTE or self.polka_seen or proposal is None:
            return False
        value = proposal.value
        tally = self.votes.tally(self.round, VoteType.PREVOTE)
        if tally.power_for(value.value_id) < self.validators.quorum_power:
            return False
        valid = self._validity(value)
        if valid is None:
            self._request_check(value, out)
            return False
        if not valid:
            return False  # 2f+1 prevoted an invalid value: not ours to follow
        self.polka_seen = True
        # Both are set before signing, so the Persist of the precommit carries them: a
        # replica restarted with a lock but without the matching validValue would never
        # re-propose the value everyone is locked on, and the height would stall.
        self.valid_value, self.valid_round = value, self.round
        if self.round_step is Step.PREVOTE:
            self.locked_value, self.locked_round = value, self.round
            self._precommit(value.value_id, out)
        assert self.valid_round >= self.locked_round
        assert self.durable.valid_round >= self.durable.locked_round
        return True

    def _rule_precommit_nil(self, out: list[Action]) -> bool:
        """L44-46: 2f+1 nil prevotes in step prevote: precommit nil."""
        if self.round_step is not Step.PREVOTE:
            return False
        tally = self.votes.tally(self.round, VoteType.PREVOTE)
        if tally.power_for(None) < self.validators.quorum_power:
            return False
        self._precommit(None, out)
        return True

    def _rule_precommit_timeout(self, now_ms: int, out: list[Action]) -> bool:
        """L47-48: 2f+1 precommits for anything, first time: arm the precommit timer."""
        if self.precommit_timeout_armed:
            return False
        tally = self.votes.tally(self.round, VoteType.PRECOMMIT)
        if tally.power_any < self.validators.quorum_power:
            return False
        self.precommit_timeout_armed = True
        deadline = now_ms + self.config.timeout_ms(self.config.timeout_precommit_ms, self.round)
        out.append(self._timer(deadline, Timer.PRECOMMIT))
        return True


def _sender(message: Message) -> ValidatorId:
    """Who signed `message`: the proposer of a proposal, the voter of a vote."""
    return message.proposer if isinstance(message, Proposal) else message.voter
