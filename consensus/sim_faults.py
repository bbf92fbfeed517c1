"""Network and node faults of one simulation run, drawn from the run's seed.

Theory of operation. Each seed draws its own mix of faults ("swarm testing", as in
TigerBeetle's VOPR): some seeds lose messages, some partition the validators, some crash
nodes, most do a few of these at once. Every fault lives inside the fault phase, which
ends at `heal_ms`. After it the network is connected, loses nothing, and every crashed
node has restarted, so the liveness checker may demand progress within a bound.

Rules:
- The plan is a pure function of the generator passed in: a seed replays exactly.
- Delays are integers in milliseconds and at least 1, so a message never arrives in the
  same instant it was sent (the event queue stays strictly causal).
- Only honest nodes crash; a Byzantine node misbehaves by script, not by dying.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "Crash", "FaultPlan", "Partition", "draw_fault_plan"]

FAULT_KINDS = ("delay", "loss", "duplicate", "partition", "crash")

DELAY_CALM_MS_MAX = 10  # delay bound of a seed without the delay fault (still reorders)
DELAY_MS_MAX = 400  # upper bound of the uniform part of a drawn delay distribution
TAIL_MS_MAX = 3000  # bound on the long tail of a long-tail delay distribution
LOSS_PROBABILITY_MAX = 0.3
DUPLICATE_PROBABILITY_MAX = 0.2
EPISODES_MAX = 3  # partitions and crashes per run
DOWNTIME_MS_MAX = 3000

assert DELAY_CALM_MS_MAX < DELAY_MS_MAX < TAIL_MS_MAX
assert 0 < LOSS_PROBABILITY_MAX < 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """Between start_ms and end_ms, messages between different groups are dropped."""

    start_ms: int
    end_ms: int
    groups: tuple[int, ...]
    """Group number of each validator, by validator index."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    """The node stops at start_ms (losing all it did not persist) and restarts at end_ms."""

    node: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    heal_ms: int
    """End of the fault phase: no loss, partition or crash at or after this time."""
    delay_ms_min: int
    delay_ms_max: int
    tail_probability: float
    """Chance that a message sent before heal_ms takes the long tail."""
    tail_ms_max: int
    loss_probability: float
    duplicate_probability: float
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]

    def delay_ms(self, rng: random.Random, now_ms: int) -> int:
        delay = rng.randint(self.delay_ms_min, self.delay_ms_max)
        if now_ms < self.heal_ms and self.tail_probability > 0:
            if rng.random() < self.tail_probability:
                delay += rng.randint(0, self.tail_ms_max)
        assert delay >= 1
        return delay

    def lost(self, rng: random.Random, now_ms: int) -> bool:
        return now_ms < self.heal_ms and rng.random() < self.loss_probability

    def duplicated(self, rng: random.Random) -> bool:
        return self.duplicate_probability > 0 and rng.random() < self.duplicate_probability

    def draw_delivery(self, rng: random.Random, now_ms: int) -> tuple[int, ...]:
        """The network's draws for one message sent at now_ms: the delay of each copy that
        arrives (none if it is lost, two if it is duplicated).

        Partitions draw nothing, so the caller checks `separated` first. This is the one
        place a message's fate is drawn, so that the simulator and
        `sim.scenario_fingerprint` (which probes it) always draw alike.
        """
        if self.lost(rng, now_ms):
            return ()
        copies = 2 if self.duplicated(rng) else 1
        delays = tuple(self.delay_ms(rng, now_ms) for _ in range(copies))
        assert 1 <= len(delays) <= 2
        assert all(delay >= 1 for delay in delays)  # never in the instant it was sent
        return delays

    def separated(self, a: int, b: int, now_ms: int) -> bool:
        """True if a partition active at now_ms puts nodes a and b in different groups."""
        for p in self.partitions:
            if p.start_ms <= now_ms < p.end_ms and p.groups[a] != p.groups[b]:
                assert p.end_ms <= self.heal_ms
                return True
        return False

    def describe(self) -> list[str]:
        """One readable line per fault, for the CLI and the demo."""
        lines = [f"fault phase ends at {self.heal_ms} ms"]
        tail = ""
        if self.tail_probability > 0:
            tail = f", {self.tail_probability:.0%} take up to +{self.tail_ms_max} ms"
        lines.append(f"delay {self.delay_ms_min}..{self.delay_ms_max} ms{tail}")
        if self.loss_probability > 0:
            lines.append(f"loss {self.loss_probability:.0%}")
        if self.duplicate_probability > 0:
            lines.append(f"duplication {self.duplicate_probability:.0%}")
        for p in self.partitions:
            groups = "|".join(
                ",".join(f"v{i}" for i, g in enumerate(p.groups) if g == group)
                for group in sorted(set(p.groups))
            )
            lines.append(f"partition {groups} from {p.start_ms} to {p.end_ms} ms")
        for c in self.crashes:
            lines.append(f"crash v{c.node} at {c.start_ms} ms, restart at {c.end_ms} ms")
        return lines


def draw_fault_plan(
    rng: random.Random,
    kinds: frozenset[str],
    validators: int,
    crashable: tuple[int, ...],
    fault_phase_ms_max: int,
) -> FaultPlan:
    """Draw this seed's fault mix: each allowed kind is in with probability 0.6, and at
    least one is in whenever any is allowed."""
    assert kinds <= set(FAULT_KINDS)
    assert validators >= 1
    assert fault_phase_ms_max >= 100
    chosen = {k for k in sorted(kinds) if rng.random() < 0.6}
    if kinds and not chosen:
        chosen = {rng.choice(sorted(kinds))}
    heal_ms = rng.randint(fault_phase_ms_max // 4, fault_phase_ms_max) if chosen else 0
    delay_ms_max, tail_probability, tail_ms_max = DELAY_CALM_MS_MAX, 0.0, 0
    if "delay" in chosen:
        delay_ms_max = rng.randint(DELAY_CALM_MS_MAX, DELAY_MS_MAX)
        if rng.random() < 0.5:
            tail_probability = rng.uniform(0.01, 0.1)
            tail_ms_max = rng.randint(DELAY_MS_MAX, TAIL_MS_MAX)
    loss = rng.uniform(0.01, LOSS_PROBABILITY_MAX) if "loss" in chosen else 0.0
    duplicate = rng.uniform(0.01, DUPLICATE_PROBABILITY_MAX) if "duplicate" in chosen else 0.0
    partitions: tuple[Partition, ...] = ()
    if "partition" in chosen and validators >= 2:
        partitions = tuple(
            _draw_partition(rng, validators, heal_ms) for _ in range(rng.randint(1, EPISODES_MAX))
        )
    crashes: tuple[Crash, ...] = ()
    if "crash" in chosen and crashable:
        crashes = tuple(
            _draw_crash(rng, crashable, heal_ms) for _ in range(rng.randint(1, EPISODES_MAX))
        )
    plan = FaultPlan(
        heal_ms=heal_ms,
        delay_ms_min=1,
        delay_ms_max=delay_ms_max,
        tail_probability=tail_probability,
        tail_ms_max=tail_ms_max,
        loss_probability=loss,
        duplicate_probability=duplicate,
        partitions=partitions,
        crashes=crashes,
    )
    assert all(p.end_ms <= heal_ms for p in plan.partitions)
    assert all(c.end_ms <= heal_ms for c in plan.crashes)
    return plan


def _draw_partition(rng: random.Random, validators: int, heal_ms: int) -> Partition:
    group_count = rng.randint(2, min(3, validators))
    # Every group gets one node first, so the split is real; the rest land anywhere.
    order = list(range(validators))
    rng.shuffle(order)
    groups = [0] * validators
    for position, node in enumerate(order):
        groups[node] = position if position < group_count else rng.randrange(group_count)
    start_ms = rng.randint(0, max(0, heal_ms - 100))
    end_ms = rng.randint(start_ms + 1, heal_ms) if heal_ms > start_ms else start_ms
    assert len(set(groups)) == group_count
    return Partition(start_ms=start_ms, end_ms=end_ms, groups=tuple(groups))


def _draw_crash(rng: random.Random, crashable: tuple[int, ...], heal_ms: int) -> Crash:
    start_ms = rng.randint(0, max(0, heal_ms - 1))
    end_ms = min(heal_ms, start_ms + rng.randint(1, DOWNTIME_MS_MAX))
    assert start_ms <= end_ms <= heal_ms
    return Crash(node=rng.choice(crashable), start_ms=start_ms, end_ms=end_ms)
