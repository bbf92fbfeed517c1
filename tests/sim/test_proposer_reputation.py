"""Leader reputation in the simulator: with a validator down from the start, the proposer
order passes over it once the window of carried certificates has filled, so heights keep
taking one round and the block rate stays near the healthy one; when it comes back it
proposes again. Measured in rounds per height and virtual time, never wall time."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from consensus.config import PROPOSER_WINDOW_HEIGHTS
from consensus.messages import Height, HeightStarted
from consensus.sim import SimParams, SimProgress, Simulation, _Crash, _Node, _Restart
from tests.sim.seeds import explain, seeds

HEIGHTS = 60
CALM = SimParams(validators=4, heights=HEIGHTS, faults=frozenset())
DELAYED = SimParams(
    validators=4, heights=HEIGHTS, faults=frozenset({"delay"}), liveness_ms_max=120_000
)
"""Delays drawn up to 400 ms, beyond the 300 ms propose timeout of the test config: even a
healthy network then needs up to about 600 ms a height, so 60 heights need a wider
liveness bound than the default (sized for the swarm's 5 heights)."""
FILLED = PROPOSER_WINDOW_HEIGHTS + 2
"""The first height whose order sees a full window (block k+1 carries k's certificate)."""


class DownSimulation(Simulation):
    """Nodes in `down` never start (a validator down from the start), unless `back_ms`
    brings them up then. `plain` replays the old order: nobody is ever passed over."""

    def __init__(
        self,
        seed: int,
        params: SimParams,
        down: Sequence[int],
        *,
        back_ms: int | None = None,
        stops: tuple[int, int] | None = None,
        plain: bool = False,
    ) -> None:
        """`stops`: (node, time) a node that stops for good then."""
        self.progress: list[SimProgress] = []
        super().__init__(seed, params, self.progress.append)
        self.plain = plain
        self.down = frozenset(down)
        self.back_ms = back_ms
        for index in down:
            self.nodes[index].replica = None
            if back_ms is not None:
                self._push(back_ms, _Restart(index))
        gone = set() if back_ms is not None else set(down)
        if stops is not None:
            self._push(stops[1], _Crash(stops[0]))
            gone.add(stops[0])
        self.gone = frozenset(gone)
        self.honest = tuple(i for i in self.honest if i not in gone)

    def _restart(self, node: _Node) -> None:
        # The heal restarts every honest node; a down one only comes back at back_ms.
        if node.index in self.gone or (
            node.index in self.down and (self.back_ms is None or self.now_ms < self.back_ms)
        ):
            return
        super()._restart(node)

    def _started(self, node: _Node, height: Height) -> HeightStarted:
        started = super()._started(node, height)
        return dataclasses.replace(started, passed_over=frozenset()) if self.plain else started

    def rounds(self, first: int = FILLED) -> list[int]:
        """Rounds each height took (1 = decided in round 0), as the first running
        honest node decided it, from height `first` on."""
        node = self.nodes[self.honest[0]].validator_id
        taken = {int(p.height): p.round + 1 for p in self.progress if p.validator_id == node}
        assert sorted(taken) == list(range(1, HEIGHTS + 1))
        return [taken[h] for h in range(first, HEIGHTS + 1)]

    def ms_per_height(self, first: int = FILLED) -> float:
        node = self.nodes[self.honest[0]].validator_id
        at = {int(p.height): p.time_ms for p in self.progress if p.validator_id == node}
        return (at[HEIGHTS] - at[first]) / (HEIGHTS - first)


def mean(values: Sequence[int]) -> float:
    return sum(values) / len(values)


@seeds(range(1100, 1110))
def test_one_validator_down_keeps_one_round_per_height(sim_seed: int) -> None:
    healthy = DownSimulation(sim_seed, CALM, down=())
    assert healthy.run().ok
    down = DownSimulation(sim_seed, CALM, down=(3,))
    result = down.run()
    assert result.ok, explain(result, CALM)
    assert result.decided_heights == HEIGHTS
    assert mean(down.rounds()) <= 1.05, down.rounds()
    # Block rate in virtual time: at least 75% of the healthy one (issue 12's target).
    assert down.ms_per_height() * 0.75 <= healthy.ms_per_height(), (
        healthy.ms_per_height(),
        down.ms_per_height(),
    )


@seeds(range(1110, 1115))
def test_the_plain_order_pays_a_round_per_turn_of_the_down_validator(sim_seed: int) -> None:
    """Negative control: the measure above tells the orders apart."""
    plain = DownSimulation(sim_seed, CALM, down=(3,), plain=True)
    assert plain.run().ok
    assert mean(plain.rounds()) >= 1.2, plain.rounds()
    reputed = DownSimulation(sim_seed, CALM, down=(3,))
    assert reputed.run().ok
    assert reputed.ms_per_height() * 3 < plain.ms_per_height()


@seeds(range(1120, 1130))
def test_with_delays_the_order_takes_fewer_rounds_than_the_plain_one(sim_seed: int) -> None:
    """Long delays cost rounds even when all are healthy (a proposal can arrive after
    the propose timeout), and with one of four down every quorum waits for the slowest
    of the other three; what the order removes is the down validator's turns."""
    reputed = DownSimulation(sim_seed, DELAYED, down=(3,))
    result = reputed.run()
    assert result.ok, explain(result, DELAYED)
    plain = DownSimulation(sim_seed, DELAYED, down=(3,), plain=True)
    assert plain.run().ok
    # Delays near the propose timeout cost rounds in both orders alike, so a seed may
    # come out within one round of a tie: seed 1126 (delays up to 397 ms) took 88
    # rounds against the plain order's 87 once the proof of lock went out from the
    # re-proposer only (81 against 84 before); its block rate still tells them apart.
    assert sum(reputed.rounds()) <= sum(plain.rounds()) + 1, (reputed.rounds(), plain.rounds())
    assert reputed.ms_per_height() < plain.ms_per_height()
    if reputed.plan.delay_ms_max < 250 and reputed.plan.tail_probability == 0:
        # Delays well under the propose timeout: one round a height, as when calm.
        assert mean(reputed.rounds()) <= 1.1, reputed.rounds()


@seeds(range(1130, 1135))
def test_two_of_seven_down_are_both_passed_over(sim_seed: int) -> None:
    params = dataclasses.replace(CALM, validators=7)
    simulation = DownSimulation(sim_seed, params, down=(5, 6))
    result = simulation.run()
    assert result.ok, explain(result, params)
    assert mean(simulation.rounds()) <= 1.05, simulation.rounds()


@seeds(range(1140, 1145))
def test_a_validator_back_from_downtime_proposes_again(sim_seed: int) -> None:
    """v03 is down until the window filled and passed over; it comes back, and another
    validator stops before v03 caught up, so the network waits for it (v03 is needed
    in every quorum now while still passed over: the later rounds' plain order and the
    others' turns carry the heights). Once carried certificates hold its signature it
    proposes in round 0 again."""
    params = dataclasses.replace(CALM, liveness_ms_max=60_000)
    simulation = DownSimulation(sim_seed, params, down=(3,), back_ms=1500, stops=(2, 2000))
    result = simulation.run()
    assert result.ok, explain(result, params)
    back = simulation.nodes[3].validator_id
    decided = simulation.nodes[0].storage.decided
    assert len(simulation.nodes[3].storage.decided) == HEIGHTS
    # It was passed over while down...
    while_down = [h for h, (_, c) in decided.items() if FILLED <= h and c.round == 0]
    assert while_down
    proposed = [
        h
        for h, (value, certificate) in decided.items()
        if certificate.round == 0 and b";proposer=%s;" % back.encode() in value.payload
    ]
    signed = [h for h, (_, c) in decided.items() if back in {v.voter for v in c.precommits}]
    assert signed, "it never signed a certificate after coming back"
    assert proposed, "the validator that came back never proposed in round 0 again"
    assert min(proposed) > min(signed)
    assert not [h for h in proposed if FILLED <= h < min(signed)]
