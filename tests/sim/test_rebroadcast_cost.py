"""The rebroadcast's cost in messages stays quadratic in the validator count.

Each REBROADCAST tick re-sends a replica's own messages (a handful, to n - 1 peers: about
n^2 a tick for the network). The proof of lock (n prevotes) once went out too from every
replica holding a validValue: n x n x n a tick, 811982 messages for height 1 of seed 3 at
100 validators. Now only a replica re-sending its own re-proposal forwards it (see
`Replica._rebroadcast`). The bound is on counts, per tick of virtual time, never on a
wall-clock time.
"""

from __future__ import annotations

from consensus.config import ReplicaConfig
from consensus.sim import SimParams, run_simulation
from tests.sim.seeds import explain

THIRTY_ONE = SimParams(validators=31, heights=2, signatures="keyed-hash")
"""All faults, so that heights outlast several ticks with replicas locked or holding a
validValue; keyed-hash because the count is the same under Ed25519 and cheaper."""

SEEDS = range(1, 9)

MESSAGES_PER_TICK_PER_N_SQUARED_MAX = 4
"""Seeds 1-8 measured 2.9 (every message sent, over every tick of virtual time, divided
by n^2); with the proof of lock forwarded by every holder of a validValue they measured
7.5, and the forwarding alone can reach n = 31 per tick once every replica holds one."""


def test_messages_per_rebroadcast_tick_stay_quadratic() -> None:
    rebroadcast_ms = ReplicaConfig.for_tests(THIRTY_ONE.chain_id).rebroadcast_ms
    messages_sent = 0
    ticks = 0.0
    heights = 0
    for seed in SEEDS:
        result = run_simulation(seed, THIRTY_ONE)
        assert result.ok, explain(result, THIRTY_ONE)
        messages_sent += result.messages_sent
        ticks += result.virtual_time_ms / rebroadcast_ms
        heights += result.decided_heights
    n_squared = THIRTY_ONE.validators**2
    per_tick = messages_sent / ticks / n_squared
    per_height = messages_sent / heights / n_squared
    assert per_tick <= MESSAGES_PER_TICK_PER_N_SQUARED_MAX, (
        f"{messages_sent} messages in {ticks:.0f} rebroadcast ticks of seeds {SEEDS}:"
        f" {per_tick:.1f} n^2 a tick, {per_height:.1f} n^2 a height"
    )
