"""A seeded, deterministic network simulator for the consensus core.

Theory of operation. N replicas run in one process on a virtual clock in integer
milliseconds. Everything that will happen is an item in one event queue, a heap of
(time_ms, seq, item): a message arriving, a timer firing, the application answering, a
node crashing or restarting, the network healing, a Byzantine node acting. The loop pops
the earliest item, feeds the event to the replica, and plays the shell's role for each
action it returns, in order:

- Persist: the state goes to the node's `SimStorage` (encoded with `consensus.wire`); a
  crash keeps exactly what was persisted and the decided log, and loses the rest.
- Broadcast: the message is encoded and sent to every other validator through the
  simulated network (delay, loss, duplication, partitions); the receiver decodes it with
  `consensus.wire`, so garbage from Byzantine peers takes the real rejection path.
- ArmTimer, CheckValue, BuildValue: a TimeoutFired, ValueChecked or ValueBuilt later.
- Decide: the decision enters the decided log, then HeightStarted(h + 1) follows.
- Block sync: a node that hears a message of a lower height from a peer sends that peer
  CommitReceived for the peer's height from its decided log.

Validator-set changes (`SimParams.validator_changes`): a change decided in block h is in
force from height h+2, as the application of a real node applies it (CometBFT's rule);
each HeightStarted carries the set of its height. The run has `spares` extra honest
nodes outside the genesis set that may join later; a node outside the set of its current
height follows it and learns the decision by pulling it from a peer on every sync tick
(block sync), since it sends no message that would tell its peers it is behind.

The checkers in `consensus.sim_check` see every honest action as it runs. After the fault
phase (`FaultPlan.heal_ms`) every honest node must decide the target heights within
`SimParams.liveness_ms_max`, or the run reports a liveness violation.

Rules: one seed is one run, and the run is a pure function of (seed, params): every
random choice comes from a `random.Random` seeded from the run seed, keys are derived from
it, and nothing reads a clock. This module is part of the pure core (no I/O).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.config import (
    PROPOSER_WINDOW_HEIGHTS,
    VOTING_POWER_TOTAL_MAX,
    ReplicaConfig,
    Validator,
    ValidatorSet,
    passed_over,
)
from consensus.config import VALIDATORS_MAX as CONFIG_VALIDATORS_MAX
from consensus.crypto import Signer
from consensus.errors import ConfigError, WireError
from consensus.messages import (
    ArmTimer,
    Broadcast,
    BuildValue,
    CheckValue,
    CommitCertificate,
    CommitReceived,
    Decide,
    DurableState,
    Event,
    Height,
    HeightStarted,
    Message,
    Persist,
    Proposal,
    ProposalReceived,
    ReportEvidence,
    Round,
    TimeoutFired,
    ValidatorId,
    Value,
    ValueBuilt,
    ValueChecked,
    VoteReceived,
)
from consensus.replica import Replica
from consensus.sim_byzantine import (
    BYZANTINE_BEHAVIOURS,
    ByzantineActor,
    ForkCoalition,
    draw_behaviours,
)
from consensus.sim_check import SafetyChecker, app_valid, make_payload_prefix
from consensus.sim_crypto import SIGNATURE_SCHEMES, SimCrypto
from consensus.sim_faults import FAULT_KINDS, FaultPlan, draw_fault_plan
from consensus.wire import (
    decode_durable_state,
    decode_message,
    encode_durable_state,
    encode_message,
)

__all__ = [
    "BYZANTINE_BEHAVIOURS",
    "FAULT_KINDS",
    "SIGNATURE_SCHEMES",
    "VALIDATORS_MAX",
    "SimParams",
    "SimProgress",
    "SimResult",
    "Simulation",
    "ValidatorChange",
    "rotation_at",
    "rotation_changes",
    "run_simulation",
    "scenario_fingerprint",
]

FIRST_HEIGHT = Height(1)
VALIDATORS_MAX = CONFIG_VALIDATORS_MAX  # the largest set a ValidatorSet accepts
HEIGHTS_MAX = 1000
APP_DELAY_MS = 1  # the application answers CheckValue and BuildValue after this long
SETTLE_DELAY_MS = 2  # between Decide and HeightStarted(h + 1)
RESTART_DELAY_MS = 1
SYNC_INTERVAL_MS = 100  # at most one CommitReceived per peer and height in this time
SYNC_TICK_MS = 500  # period of the proactive block sync
BYZANTINE_TICK_MS = (50, 150)
VIOLATIONS_MAX = 10
DECODED_CACHE_MAX = 4096  # frames whose decoding is kept (see Simulation._decode)
SCENARIO_PROBE_DRAWS = 32  # first draws of each stream that a scenario fingerprint covers


CHANGE_DELAY_HEIGHTS = 2
"""A validator-set change decided in block h is in force from height h + this."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorChange:
    """The whole new validator set decided in block `decided_at` (in force from
    `decided_at + CHANGE_DELAY_HEIGHTS`), as (node index, voting power) pairs; node
    indices at or past `SimParams.validators` are the spare nodes."""

    decided_at: int
    members: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimParams:
    """Everything besides the seed that shapes a run."""

    validators: int = 4
    heights: int = 5
    """Target: every honest node decides heights 1..heights."""
    byzantine: int = 0
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    """Fault kinds a seed may draw from."""
    behaviours: frozenset[str] = frozenset(BYZANTINE_BEHAVIOURS)
    """Byzantine behaviours a seed may draw from."""
    allow_unsafe: bool = False
    """Allow more than f Byzantine validators; they then collude to fork."""
    fault_phase_ms_max: int = 6_000
    liveness_ms_max: int = 20_000
    """Bound, after the fault phase ends, for every honest node to reach the target."""
    events_max: int = 2_000_000
    chain_id: str = "somnet-sim"
    spares: int = 0
    """Honest nodes outside the genesis set (v{validators}, ...): they follow until a
    change makes them validators."""
    validator_changes: tuple[ValidatorChange, ...] = ()
    """Validator-set changes, by ascending `decided_at`. Byzantine nodes are drawn from the
    genesis validators; every set in force must keep their worst-case power below 1/3
    unless `allow_unsafe`."""
    signatures: str = "ed25519"
    """The signature scheme (`consensus.sim_crypto`): "ed25519" as a node signs, or
    "keyed-hash", a cheap keyed hash for simulation only that is not a signature."""

    @property
    def events_budget(self) -> int:
        """`events_max`, scaled with the messages of a round (n squared) past the 20
        validators the simulator was first limited to, so that a large set is not cut
        short by a budget meant for a small one; unchanged up to 20."""
        scale = max(1, -(-self.validators * self.validators // (20 * 20)))
        return self.events_max * scale

    @property
    def nodes(self) -> int:
        return self.validators + self.spares

    @property
    def fault_tolerance(self) -> int:
        """f: the Byzantine validators n = 3f + 1 equal-power validators tolerate."""
        return (self.validators - 1) // 3

    def validate(self) -> None:
        if not 1 <= self.validators <= VALIDATORS_MAX:
            raise ConfigError(f"validators must be 1..{VALIDATORS_MAX}")
        if not 1 <= self.heights <= HEIGHTS_MAX:
            raise ConfigError(f"heights must be 1..{HEIGHTS_MAX}")
        if not 0 <= self.byzantine < self.validators:
            raise ConfigError("byzantine must be at least 0 and less than validators")
        if self.byzantine > self.fault_tolerance and not self.allow_unsafe:
            raise ConfigError(
                f"{self.byzantine} Byzantine of {self.validators} validators exceeds"
                f" f={self.fault_tolerance}; this only makes sense as a negative control"
                " (allow_unsafe)"
            )
        if not self.faults <= set(FAULT_KINDS):
            raise ConfigError(f"unknown fault kinds {sorted(self.faults - set(FAULT_KINDS))}")
        if not self.behaviours <= set(BYZANTINE_BEHAVIOURS):
            unknown = sorted(self.behaviours - set(BYZANTINE_BEHAVIOURS))
            raise ConfigError(f"unknown Byzantine behaviours {unknown}")
        if self.signatures not in SIGNATURE_SCHEMES:
            raise ConfigError(
                f"unknown signature scheme {self.signatures}; known: {','.join(SIGNATURE_SCHEMES)}"
            )
        if self.fault_phase_ms_max < 100 or self.liveness_ms_max < 1000:
            raise ConfigError("fault_phase_ms_max must be >= 100 and liveness_ms_max >= 1000")
        self._validate_changes()

    def _validate_changes(self) -> None:
        if not 0 <= self.spares <= VALIDATORS_MAX - self.validators:
            raise ConfigError(f"spares must be 0..{VALIDATORS_MAX - self.validators}")
        decided = [c.decided_at for c in self.validator_changes]
        if decided != sorted(set(decided)) or not all(1 <= h for h in decided):
            raise ConfigError(
                "validator changes must be decided at distinct heights >= 1, in order"
            )
        for change in self.validator_changes:
            indices = [i for i, _ in change.members]
            if not indices or len(set(indices)) != len(indices):
                raise ConfigError(f"change at {change.decided_at}: members must be distinct")
            if not all(0 <= i < self.nodes for i in indices):
                raise ConfigError(f"change at {change.decided_at}: a member is not a node")
            powers = [p for _, p in change.members]
            if not all(1 <= p for p in powers) or sum(powers) > VOTING_POWER_TOTAL_MAX:
                raise ConfigError(f"change at {change.decided_at}: bad voting power")
            # Byzantine nodes are among the genesis validators; assume the strongest.
            genesis_powers = sorted(
                (p for i, p in change.members if i < self.validators), reverse=True
            )
            byzantine_power = sum(genesis_powers[: self.byzantine])
            if 3 * byzantine_power >= sum(powers) and not self.allow_unsafe:
                raise ConfigError(
                    f"change at {change.decided_at}: {self.byzantine} Byzantine may hold 1/3"
                    " of the new set's power; this only makes sense as a negative control"
                    " (allow_unsafe)"
                )


def rotation_changes(validators: int, at: int) -> tuple[ValidatorChange, ...]:
    """`somnet sim --change-validators-at AT`: the one spare node joins by a change
    decided at AT, and the first genesis validator leaves by one decided at AT + 1."""
    assert validators >= 1
    assert at >= 1
    joined = tuple((i, 1) for i in range(validators + 1))
    return (
        ValidatorChange(decided_at=at, members=joined),
        ValidatorChange(decided_at=at + 1, members=joined[1:]),
    )


def rotation_at(params: SimParams) -> int | None:
    """AT if `params` are those of `--change-validators-at AT`, else None."""
    if params.spares != 1 or not params.validator_changes:
        return None
    at = params.validator_changes[0].decided_at
    if params.validator_changes != rotation_changes(params.validators, at):
        return None
    return at


@dataclass(frozen=True, slots=True, kw_only=True)
class SimProgress:
    """One honest decision, reported to an observer while the run goes on."""

    time_ms: int
    validator_id: ValidatorId
    height: Height
    value_id: bytes
    round: Round


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    seed: int
    violations: tuple[str, ...]
    decided_heights: int
    """Heights decided by every honest node (the common prefix)."""
    decided_by_node: tuple[int, ...]
    virtual_time_ms: int
    heal_ms: int
    events: int
    messages_sent: int
    messages_delivered: int
    messages_dropped: int
    messages_rejected: int
    """Bytes that did not decode (garbage) and were dropped by the receiving shell."""
    signatures_made: int
    """By every node, honest or not, through its signer."""
    signature_checks: int
    """By the replicas (the protocol's cost), not by the checkers."""
    evidence_reported: int
    byzantine: tuple[str, ...]
    """Byzantine validators with their drawn behaviours."""
    faults: tuple[str, ...]
    trace_hash: str

    @property
    def ok(self) -> bool:
        return not self.violations


# ---------------------------------------------------------------------------------------
# Queue items.


@dataclass(frozen=True, slots=True)
class _Deliver:
    target: int
    sender: int
    data: bytes | CommitReceived


@dataclass(frozen=True, slots=True)
class _Local:
    """An event from the node's own shell (timer, application); void after a crash."""

    target: int
    epoch: int
    event: Event


@dataclass(frozen=True, slots=True)
class _Crash:
    target: int


@dataclass(frozen=True, slots=True)
class _Restart:
    target: int


@dataclass(frozen=True, slots=True)
class _Heal:
    pass


@dataclass(frozen=True, slots=True)
class _ByzantineTick:
    target: int


@dataclass(frozen=True, slots=True)
class _SyncTick:
    target: int


_Item = _Deliver | _Local | _Crash | _Restart | _Heal | _ByzantineTick | _SyncTick


@dataclass(slots=True, kw_only=True)
class SimStorage:
    """What survives a crash: the last persisted state and the decided log."""

    durable: bytes
    decided: dict[Height, tuple[Value, CommitCertificate]] = field(default_factory=dict)

    @property
    def next_height(self) -> Height:
        return Height(FIRST_HEIGHT + len(self.decided))


@dataclass(slots=True, kw_only=True)
class _Node:
    index: int
    validator_id: ValidatorId
    signer: Signer
    storage: SimStorage
    replica: Replica | None
    actor: ByzantineActor | None
    epoch: int = 0
    sync_sent: dict[int, tuple[Height, int]] = field(default_factory=dict)
    peer_heights: dict[int, Height] = field(default_factory=dict)
    """The highest height heard from each peer: heights only grow, even across crashes."""
    persisted_decoded: tuple[bytes, DurableState] | None = None
    """`storage.durable` and its decoding, kept while those bytes stay the persisted ones."""

    @property
    def honest(self) -> bool:
        return self.actor is None


def _streams(seed: int) -> tuple[random.Random, random.Random, random.Random, random.Random]:
    """The run's random streams: plan, network, application, Byzantine.

    Separate streams, so one kind of choice does not shift the others. One function, so
    that `Simulation.scenario` probes exactly the streams a run draws from.
    """
    streams = tuple(random.Random(f"somnet/sim/{kind}/{seed}") for kind in _STREAM_KINDS)
    assert len(streams) == 4
    return streams[0], streams[1], streams[2], streams[3]


_STREAM_KINDS = ("plan", "net", "app", "byzantine")


def _key_seed(seed: int, index: int) -> bytes:
    material = b"somnet/sim/key/%d/%d" % (seed, index)
    return hashlib.sha256(material).digest()


class Simulation:
    """One run: build with (seed, params), call `run()` once."""

    def __init__(
        self,
        seed: int,
        params: SimParams,
        observer: Callable[[SimProgress], None] | None = None,
    ) -> None:
        params.validate()
        self.seed = seed
        self.params = params
        self.observer = observer
        self.config = ReplicaConfig.for_tests(params.chain_id)
        self.config.validate()
        plan_rng, self.net_rng, self.app_rng, self.byzantine_rng = _streams(seed)
        n = params.nodes
        self.crypto = SimCrypto(
            params.signatures,
            params.chain_id,
            [(ValidatorId(f"v{i:02d}"), _key_seed(seed, i)) for i in range(n)],
        )
        signers = self.crypto.signers
        self.signers = signers
        genesis = tuple((i, 1) for i in range(params.validators))
        # The set in force from each height on: genesis's from the first, then each change.
        self.sets: tuple[tuple[Height, ValidatorSet], ...] = (
            (FIRST_HEIGHT, self._validator_set(genesis)),
            *(
                (Height(c.decided_at + CHANGE_DELAY_HEIGHTS), self._validator_set(c.members))
                for c in params.validator_changes
            ),
        )
        # Byzantine nodes come from the genesis validators (the draw predates spares).
        byzantine = tuple(sorted(plan_rng.sample(range(params.validators), params.byzantine)))
        honest = tuple(i for i in range(n) if i not in byzantine)
        self.plan: FaultPlan = draw_fault_plan(
            plan_rng, params.faults, n, honest, params.fault_phase_ms_max
        )
        self.checker = SafetyChecker(
            params.chain_id,
            self.validators_at,
            frozenset(signers[i].validator_id for i in honest),
            self.crypto.checker_verifier,
        )
        coalition = self._coalition(plan_rng, byzantine, honest, signers)
        self.nodes: list[_Node] = []
        for i, signer in enumerate(signers):
            actor = None
            if i in byzantine:
                actor = self._actor(plan_rng, i, signer, honest, signers, coalition)
            self.nodes.append(self._new_node(i, signer, actor))
        self.honest = honest
        self.queue: list[tuple[int, int, _Item]] = []
        self.seq = 0
        self.now_ms = 0
        self.events = 0
        self.trace = hashlib.sha256()
        self.decoded: dict[bytes, Message | None] = {}
        self.target_reached = False  # every honest node decided the target heights
        self.counts = {"sent": 0, "delivered": 0, "dropped": 0, "rejected": 0, "evidence": 0}
        assert len(self.nodes) == n
        assert len(honest) + len(byzantine) == n

    def _validator_set(self, members: tuple[tuple[int, int], ...]) -> ValidatorSet:
        chosen = sorted(
            ((self.signers[i], power) for i, power in members), key=lambda m: m[0].validator_id
        )
        return ValidatorSet(
            tuple(
                Validator(validator_id=s.validator_id, public_key=s.public_key, voting_power=p)
                for s, p in chosen
            )
        )

    def validators_at(self, height: Height) -> ValidatorSet:
        """The validator set in force at `height`: the last change in force by then."""
        assert height >= FIRST_HEIGHT
        found = [validators for start, validators in self.sets if start <= height]
        assert found  # the genesis set is in force from the first height
        return found[-1]

    def _started(self, node: _Node, height: Height) -> HeightStarted:
        """As a node's application starts a height: with its set, and the proposer order's
        input from the certificates carried in the values this node decided (each value
        carries its proposer's certificate of the height before, as a block does)."""
        validators = self.validators_at(height)
        first = max(FIRST_HEIGHT + 1, height - PROPOSER_WINDOW_HEIGHTS)
        decided = node.storage.decided
        carried = [_carried_signers(decided[Height(k)][0].payload) for k in range(first, height)]
        return HeightStarted(
            height=height,
            validators=validators,
            passed_over=passed_over(validators, carried),
        )

    def _coalition(
        self,
        rng: random.Random,
        byzantine: tuple[int, ...],
        honest: tuple[int, ...],
        signers: list[Signer],
    ) -> ForkCoalition | None:
        if len(byzantine) <= self.params.fault_tolerance:
            return None
        shuffled = list(honest)
        rng.shuffle(shuffled)
        cut = max(1, len(shuffled) // 2)
        return ForkCoalition(
            members=byzantine,
            halves=(tuple(shuffled[:cut]), tuple(shuffled[cut:])),
            signers={i: signers[i] for i in byzantine},
        )

    def _actor(
        self,
        rng: random.Random,
        index: int,
        signer: Signer,
        honest: tuple[int, ...],
        signers: list[Signer],
        coalition: ForkCoalition | None,
    ) -> ByzantineActor:
        return ByzantineActor(
            index=index,
            signer=signer,
            behaviours=draw_behaviours(rng, self.params.behaviours),
            peers=tuple(i for i in range(len(signers)) if i != index),
            victims=tuple(signers[i].validator_id for i in honest),
            rng=self.byzantine_rng,
            make_value=lambda h, r: self._make_value(signer.validator_id, h, r, invalid=False),
            coalition=coalition,
        )

    def _new_node(self, index: int, signer: Signer, actor: ByzantineActor | None) -> _Node:
        durable = DurableState.initial(FIRST_HEIGHT)
        storage = SimStorage(durable=encode_durable_state(durable))
        replica = Replica(self.config, signer, durable, verifier=self.crypto.replica_verifier)
        return _Node(
            index=index,
            validator_id=signer.validator_id,
            signer=signer,
            storage=storage,
            replica=replica,
            actor=actor,
        )

    # -----------------------------------------------------------------------------------
    # The scenario: what the seed drew, before the first event.

    def scenario(self) -> tuple[str, ...]:
        """What this run drew from its seed and params before its first event, one fact
        per line; `scenario_fingerprint` hashes it. Call it before `run()`.

        A seed kept as a regression test reproduces its bug only while the simulator
        draws the same scenario for it. This covers everything drawn before the run and
        how the network draws each message: the params and the replica config; the keys;
        the Byzantine nodes, their behaviours and any coalition; the fault plan; the
        simulator's fixed delays; and the first draws of the network, application and
        Byzantine streams (the network's through `FaultPlan.draw_delivery`, the code path
        of every message). It leaves out the event trace on purpose: that also depends on
        the replica, which a bug fix must be free to change.
        """
        assert self.events == 0, "the scenario is what was drawn before the run"
        assert self.now_ms == 0
        byzantine = [
            (node.index, sorted(node.actor.behaviours))
            for node in self.nodes
            if node.actor is not None
        ]
        coalition = {
            (c.members, c.halves)
            for c in (node.actor.coalition for node in self.nodes if node.actor is not None)
            if c is not None
        }
        assert len(coalition) <= 1  # all Byzantine nodes share one coalition, or none
        _, net_rng, app_rng, byzantine_rng = _streams(self.seed)  # fresh: ours stay unused
        lines = (
            f"params {_canonical_params(self.params)}",
            f"config {_canonical(self.config)}",
            f"delays app={APP_DELAY_MS} settle={SETTLE_DELAY_MS} restart={RESTART_DELAY_MS}"
            f" sync={SYNC_INTERVAL_MS},{SYNC_TICK_MS} byzantine_tick={BYZANTINE_TICK_MS}",
            f"keys {[s.public_key.hex() for s in self.signers]}",
            f"byzantine {byzantine} coalition {sorted(coalition)}",
            f"plan {_canonical(self.plan)}",
            f"network {self._network_probe(net_rng)}",
            f"app {[app_rng.randbytes(16).hex() for _ in range(SCENARIO_PROBE_DRAWS)]}",
            "byzantine_ticks"
            f" {[byzantine_rng.randint(*BYZANTINE_TICK_MS) for _ in range(SCENARIO_PROBE_DRAWS)]}",
        )
        assert all("\n" not in line for line in lines)
        return lines

    def _network_probe(self, rng: random.Random) -> list[tuple[int, ...]]:
        """The fates of SCENARIO_PROBE_DRAWS messages sent at times spread over the fault
        phase and as long again after it (where loss and long tails must stop)."""
        step_ms = max(1, 2 * self.plan.heal_ms // SCENARIO_PROBE_DRAWS)
        fates = [self.plan.draw_delivery(rng, i * step_ms) for i in range(SCENARIO_PROBE_DRAWS)]
        assert len(fates) == SCENARIO_PROBE_DRAWS
        return fates

    # -----------------------------------------------------------------------------------
    # The loop.

    def run(self) -> SimResult:
        """Run until every honest node reached the target or the liveness bound passed."""
        assert self.events == 0, "a Simulation runs once"
        for node in self.nodes:
            self._push(
                0,
                _Local(
                    node.index,
                    node.epoch,
                    self._started(node, FIRST_HEIGHT),
                ),
            )
            if node.actor is not None:
                self._push(
                    self.byzantine_rng.randint(*BYZANTINE_TICK_MS), _ByzantineTick(node.index)
                )
            else:
                self._push(SYNC_TICK_MS, _SyncTick(node.index))
        for crash in self.plan.crashes:
            self._push(crash.start_ms, _Crash(crash.node))
            self._push(crash.end_ms, _Restart(crash.node))
        self._push(self.plan.heal_ms, _Heal())
        deadline_ms = self.plan.heal_ms + self.params.liveness_ms_max
        while self.queue and not self.checker.violations and not self.target_reached:
            time_ms, _, item = heapq.heappop(self.queue)
            if time_ms > deadline_ms:
                break
            assert time_ms >= self.now_ms, "the virtual clock never runs backwards"
            self.now_ms = time_ms
            self.events += 1
            if self.events > self.params.events_budget:
                self.checker.violations.append(
                    f"budget: more than {self.params.events_budget} events"
                )
                break
            self._dispatch(item)
        assert self.target_reached == self._target_reached()
        if not self.checker.violations and not self.target_reached:
            self._report_liveness(deadline_ms)
        return self._result()

    def _target_reached(self) -> bool:
        target = FIRST_HEIGHT + self.params.heights
        return all(self.nodes[i].storage.next_height >= target for i in self.honest)

    def _report_liveness(self, deadline_ms: int) -> None:
        behind = [
            f"{self.nodes[i].validator_id} decided {len(self.nodes[i].storage.decided)}"
            for i in self.honest
            if len(self.nodes[i].storage.decided) < self.params.heights
        ]
        self.checker.violations.append(
            f"liveness: {', '.join(behind)} of {self.params.heights} heights by"
            f" {min(self.now_ms, deadline_ms)} ms (fault phase ended at {self.plan.heal_ms} ms,"
            f" bound {self.params.liveness_ms_max} ms after it)"
        )

    def _push(self, time_ms: int, item: _Item) -> None:
        assert time_ms >= self.now_ms
        self.seq += 1
        heapq.heappush(self.queue, (time_ms, self.seq, item))

    def _dispatch(self, item: _Item) -> None:
        match item:
            case _Deliver():
                self._on_deliver(item)
            case _Local(target, epoch, event):
                node = self.nodes[target]
                if node.replica is not None and node.epoch == epoch:
                    self._step(node, event)
            case _Crash(target):
                self._crash(self.nodes[target])
            case _Restart(target):
                self._restart(self.nodes[target])
            case _Heal():
                for i in self.honest:
                    self._restart(self.nodes[i])
            case _ByzantineTick(target):
                self._on_byzantine_tick(self.nodes[target])
            case _SyncTick(target):
                self._on_sync_tick(self.nodes[target])

    def _step(self, node: _Node, event: Event) -> None:
        assert node.replica is not None
        self.trace.update(b"%d|%d|%s|" % (self.now_ms, node.index, type(event).__name__.encode()))
        try:
            actions = node.replica.step(event, self.now_ms)
        except AssertionError as exc:
            # The replica caught its own bug. A real node would crash and restart; here
            # it is a finding, reported with the seed like any violation.
            frame = exc.__traceback__
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            where = "" if frame is None else f"{frame.tb_frame.f_code.co_name}:{frame.tb_lineno}"
            self.checker.violations.append(
                f"replica-assertion: {node.validator_id} on {type(event).__name__} at"
                f" {self.now_ms} ms in {where} {exc}".rstrip()
            )
            return
        for action in actions:
            match action:
                case Persist(state=state):
                    node.storage.durable = encode_durable_state(state)
                case Broadcast(message=message):
                    self._broadcast(node, message)
                case ArmTimer(deadline_ms=deadline_ms, height=height, round=round_, timer=timer):
                    timeout = TimeoutFired(height=height, round=round_, timer=timer)
                    self._push(
                        max(deadline_ms, self.now_ms), _Local(node.index, node.epoch, timeout)
                    )
                case CheckValue(height=height, value=value):
                    checked = ValueChecked(
                        height=height, value_id=value.value_id, valid=app_valid(height, value)
                    )
                    self._push(self.now_ms + APP_DELAY_MS, _Local(node.index, node.epoch, checked))
                case BuildValue(height=height, round=round_):
                    invalid = node.actor is not None and node.actor.wants_invalid_value()
                    value = self._make_value(node.validator_id, height, round_, invalid=invalid)
                    built = ValueBuilt(height=height, round=round_, value=value)
                    self._push(self.now_ms + APP_DELAY_MS, _Local(node.index, node.epoch, built))
                case Decide():
                    self._decide(node, action)
                case ReportEvidence(evidence=evidence):
                    self.counts["evidence"] += 1
                    if node.honest:
                        self.checker.on_evidence(node.validator_id, evidence)

    def _make_value(
        self, proposer: ValidatorId, height: Height, round_: Round, *, invalid: bool
    ) -> Value:
        payload = (
            make_payload_prefix(height)
            + b"r=%d;proposer=%s;" % (round_, proposer.encode())
            + self._carried(proposer, height)
            + self.app_rng.randbytes(16)
        )
        # An invalid value: its id is not the hash of its payload.
        hashed = b"invalid;" + payload if invalid else payload
        value = Value(value_id=hashlib.sha256(hashed).digest(), payload=payload)
        assert app_valid(height, value) is not invalid
        return value

    def _carried(self, proposer: ValidatorId, height: Height) -> bytes:
        """The certificate a block carries (node/block.py): the previous height's, as its
        proposer decided it; here its signers, `c=v00,v01,v02;`."""
        node = next(n for n in self.nodes if n.validator_id == proposer)
        decided = node.storage.decided.get(Height(height - 1))
        signers = [] if decided is None else [v.voter for v in decided[1].precommits]
        return b"c=%s;" % ",".join(signers).encode()

    # -----------------------------------------------------------------------------------
    # Network.

    def _broadcast(self, node: _Node, message: Message) -> None:
        if node.actor is None:
            self.checker.on_broadcast(node.validator_id, message, self._persisted(node))
            data = encode_message(message)
            for peer in range(len(self.nodes)):
                if peer != node.index:
                    self._transmit(node.index, peer, data)
            return
        encoded: dict[int, bytes] = {}
        for peer, out in node.actor.outgoing(message):
            if isinstance(out, Proposal):
                self.checker.on_proposal_sent(out)
            data = encoded.setdefault(id(out), encode_message(out))
            node.actor.remember(data)
            self._transmit(node.index, peer, data)

    def _persisted(self, node: _Node) -> DurableState:
        """The node's persisted state, decoded from its storage: once per Persist, not
        once per broadcast (rebroadcasts persist nothing new)."""
        persisted = node.storage.durable
        if node.persisted_decoded is None or node.persisted_decoded[0] is not persisted:
            node.persisted_decoded = (persisted, decode_durable_state(persisted))
        assert node.persisted_decoded[0] is persisted
        return node.persisted_decoded[1]

    def _transmit(self, sender: int, recipient: int, data: bytes | CommitReceived) -> None:
        assert sender != recipient
        self.counts["sent"] += 1
        delays: tuple[int, ...] = ()
        if not self.plan.separated(sender, recipient, self.now_ms):
            delays = self.plan.draw_delivery(self.net_rng, self.now_ms)
        if not delays:
            self.counts["dropped"] += 1
            return
        for delay_ms in delays:
            self._push(self.now_ms + delay_ms, _Deliver(recipient, sender, data))

    def _on_deliver(self, item: _Deliver) -> None:
        node = self.nodes[item.target]
        if node.replica is None:  # a crashed node loses what was in flight to it
            self.counts["dropped"] += 1
            return
        self.counts["delivered"] += 1
        if isinstance(item.data, CommitReceived):
            self._step(node, item.data)
            return
        message = self._decode(item.data)
        if message is None:
            self.counts["rejected"] += 1
            return
        if node.actor is not None:
            node.actor.remember(item.data)
        else:
            known = node.peer_heights.get(item.sender, FIRST_HEIGHT)
            node.peer_heights[item.sender] = max(known, message.height)
            self._sync_peer(node, item.sender, message.height)
        if isinstance(message, Proposal):
            self._step(node, ProposalReceived(proposal=message))
        else:
            self._step(node, VoteReceived(vote=message))

    def _decode(self, data: bytes) -> Message | None:
        """`decode_message`, or None for bytes it rejects. A broadcast hands the same bytes
        to every peer, and decoding is a pure function of them, so each distinct frame is
        decoded once (a run at 100 validators would otherwise decode each 99 times)."""
        if data in self.decoded:
            return self.decoded[data]
        if len(self.decoded) >= DECODED_CACHE_MAX:
            self.decoded.clear()
        message: Message | None
        try:
            message = decode_message(data)
        except WireError:
            message = None
        self.decoded[data] = message
        assert len(self.decoded) <= DECODED_CACHE_MAX
        return message

    def _sync_peer(self, node: _Node, peer: int, peer_height: Height) -> None:
        """Block sync: a peer still working on a height we decided gets its commit."""
        decided = node.storage.decided.get(peer_height)
        if decided is None:
            return
        last = node.sync_sent.get(peer)
        if last is not None and last[0] == peer_height and self.now_ms - last[1] < SYNC_INTERVAL_MS:
            return
        node.sync_sent[peer] = (peer_height, self.now_ms)
        value, certificate = decided
        self._transmit(node.index, peer, CommitReceived(value=value, certificate=certificate))

    # -----------------------------------------------------------------------------------
    # Decisions, crashes, Byzantine ticks.

    def _decide(self, node: _Node, decide: Decide) -> None:
        storage = node.storage
        self.trace.update(b"decide|%d|%d|%s|" % (node.index, decide.height, decide.value.value_id))
        if node.honest:
            if decide.height in storage.decided:
                self.checker.on_duplicate_decision(node.validator_id, decide.height)
                return
            self.checker.on_decide(
                node.validator_id,
                storage.next_height,
                decide.height,
                decide.value,
                decide.certificate,
            )
        if decide.height != storage.next_height:
            return  # out of order: reported above for an honest node, ignored otherwise
        storage.decided[decide.height] = (decide.value, decide.certificate)
        # Decided logs only grow, so the target can only be reached here: checking it
        # once per decision instead of once per event keeps the loop O(1) in n.
        self.target_reached = self._target_reached()
        if decide.height < self.params.heights:
            # Past the target a node stays at its last height and only serves block sync,
            # so the run does not spend its time on heights nobody checks.
            started = self._started(node, Height(decide.height + 1))
            self._push(self.now_ms + SETTLE_DELAY_MS, _Local(node.index, node.epoch, started))
        if self.observer is not None and node.honest:
            self.observer(
                SimProgress(
                    time_ms=self.now_ms,
                    validator_id=node.validator_id,
                    height=decide.height,
                    value_id=decide.value.value_id,
                    round=decide.certificate.round,
                )
            )

    def _crash(self, node: _Node) -> None:
        if node.replica is None:
            return
        assert node.honest
        self.trace.update(b"crash|%d|" % node.index)
        node.replica = None
        node.epoch += 1  # timers and application answers of the old life are void
        node.sync_sent.clear()

    def _restart(self, node: _Node) -> None:
        if node.replica is not None:
            return
        self.trace.update(b"restart|%d|" % node.index)
        durable = decode_durable_state(node.storage.durable)
        node.replica = Replica(
            self.config, node.signer, durable, verifier=self.crypto.replica_verifier
        )
        started = self._started(node, node.storage.next_height)
        self._push(self.now_ms + RESTART_DELAY_MS, _Local(node.index, node.epoch, started))

    def _on_sync_tick(self, node: _Node) -> None:
        """Periodic block sync: a peer that went quiet at a height we decided (it may
        have restarted without anything to re-send) still gets that height's commit."""
        assert node.honest
        if node.replica is not None:
            for peer, height in sorted(node.peer_heights.items()):
                self._sync_peer(node, peer, height)
            self._pull(node)
        self._push(self.now_ms + SYNC_TICK_MS, _SyncTick(node.index))

    def _pull(self, node: _Node) -> None:
        """A node outside the set of its next height signs nothing there, so no peer
        learns that it is behind: it asks, and every running honest peer that decided
        that height sends the commit (through the network, so faults apply)."""
        height = node.storage.next_height
        target = FIRST_HEIGHT + self.params.heights
        if height >= target or self.validators_at(height).get(node.validator_id) is not None:
            return
        for peer in self.honest:
            other = self.nodes[peer]
            decided = other.storage.decided.get(height)
            if peer != node.index and other.replica is not None and decided is not None:
                value, certificate = decided
                commit = CommitReceived(value=value, certificate=certificate)
                self._transmit(peer, node.index, commit)

    def _on_byzantine_tick(self, node: _Node) -> None:
        assert node.actor is not None
        for peer, data in node.actor.on_tick():
            self._transmit(node.index, peer, data)
        self._push(
            self.now_ms + self.byzantine_rng.randint(*BYZANTINE_TICK_MS), _ByzantineTick(node.index)
        )

    def _result(self) -> SimResult:
        decided = tuple(len(node.storage.decided) for node in self.nodes)
        byzantine = tuple(
            f"{node.validator_id}:"
            + (
                "fork-coalition"
                if node.actor.coalition
                else ",".join(sorted(node.actor.behaviours))
            )
            for node in self.nodes
            if node.actor is not None
        )
        self.trace.update(repr(sorted(self.counts.items())).encode())
        return SimResult(
            seed=self.seed,
            violations=tuple(self.checker.violations[:VIOLATIONS_MAX]),
            decided_heights=min((decided[i] for i in self.honest), default=0),
            decided_by_node=decided,
            virtual_time_ms=self.now_ms,
            heal_ms=self.plan.heal_ms,
            events=self.events,
            messages_sent=self.counts["sent"],
            messages_delivered=self.counts["delivered"],
            messages_dropped=self.counts["dropped"],
            messages_rejected=self.counts["rejected"],
            signatures_made=self.crypto.counts.signatures_made,
            signature_checks=self.crypto.counts.signature_checks,
            evidence_reported=self.counts["evidence"],
            byzantine=byzantine,
            faults=tuple(self.plan.describe()),
            trace_hash=self.trace.hexdigest(),
        )


def _carried_signers(payload: bytes) -> frozenset[ValidatorId]:
    """The signers `Simulation._carried` put in a value's payload (none if the field is
    not there: a Byzantine value may lack it, and every node reads it alike)."""
    fields = payload.split(b";", 4)
    if len(fields) < 5 or not fields[3].startswith(b"c="):
        return frozenset()
    names = fields[3][2:].decode("ascii", "replace")
    return frozenset(ValidatorId(name) for name in names.split(",") if name)


def scenario_fingerprint(seed: int, params: SimParams) -> str:
    """A sha256 (hex) of `Simulation.scenario`: what the seed draws under params.

    A regression test pins it, so that a change in how the simulator draws fails that
    test loudly instead of letting its seed pass without reaching its bug any more. Pure
    and cheap: it builds the simulation but runs no event.
    """
    lines = Simulation(seed, params).scenario()
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert len(digest) == 64
    return digest


_NOT_ADDED_LATER = object()
_PARAMS_ADDED_LATER = {"spares": 0, "validator_changes": (), "signatures": "ed25519"}
"""SimParams fields added after seeds were pinned, with their defaults: left out of the
scenario at their default, so that every seed pinned before them draws the same scenario."""


def _canonical_params(params: SimParams) -> object:
    fields = [
        _canonical(getattr(params, f.name))
        for f in dataclasses.fields(params)
        if _PARAMS_ADDED_LATER.get(f.name, _NOT_ADDED_LATER) != getattr(params, f.name)
    ]
    assert len(fields) <= len(dataclasses.fields(params))
    return tuple(fields)


def _canonical(value: object) -> object:
    """`value` as nested tuples of plain values, with set members sorted, so that its repr
    is the same in every process (the order of a frozenset of strings is not: it follows
    the per-process string hash seed). Field names are left out, so renaming a field does
    not change a fingerprint; a changed value does."""
    if isinstance(value, frozenset | set):
        return tuple(sorted((_canonical(v) for v in value), key=repr))
    if isinstance(value, tuple | list):
        return tuple(_canonical(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_canonical(getattr(value, f.name)) for f in dataclasses.fields(value))
    assert isinstance(value, int | float | str | bytes | None), type(value)
    return value


def run_simulation(
    seed: int, params: SimParams, observer: Callable[[SimProgress], None] | None = None
) -> SimResult:
    """Run one seed. A pure function of (seed, params): the same inputs, the same result."""
    return Simulation(seed, params, observer).run()
