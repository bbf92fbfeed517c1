"""The replica tells the node its new (height, round, step) once per change, so that
the node can log consensus progress at INFO while the core does no I/O."""

from __future__ import annotations

import logging

import pytest

from consensus.messages import (
    DurableState,
    Height,
    HeightStarted,
    Round,
    Step,
    TimeoutFired,
    Timer,
)
from consensus.replica import Replica
from node.driver import log_replica_position
from tests.unit.test_replica_harness import (
    CONFIG,
    IDS,
    SIGNERS,
    VALIDATORS,
    H,
    prevote,
    proposer_of,
    received,
)

Position = tuple[Height, Round, Step]


def observed_replica() -> tuple[Replica, list[Position]]:
    seen: list[Position] = []
    me = next(v for v in IDS if v != proposer_of(1, 0))  # no BuildValue to answer
    replica = Replica(
        CONFIG,
        SIGNERS[me],
        DurableState.initial(H),
        on_position_changed=lambda h, r, s: seen.append((h, r, s)),
    )
    return replica, seen


def test_each_change_of_height_round_or_step_is_told_once() -> None:
    replica, seen = observed_replica()
    replica.step(HeightStarted(height=H, validators=VALIDATORS), now_ms=0)
    assert seen == [(H, Round(0), Step.PROPOSE)]
    # No proposal in time: prevote nil, which moves the step.
    replica.step(TimeoutFired(height=H, round=Round(0), timer=Timer.PROPOSE), now_ms=10_000)
    assert seen[-1] == (H, Round(0), Step.PREVOTE)
    told = len(seen)
    # A peer's vote that moves nothing is not told: one line per change, not per message.
    replica.step(received(prevote(IDS[0], 1, 0, None)), now_ms=10_001)
    assert len(seen) == told


def test_the_node_logs_the_position_at_info_under_the_cores_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="consensus.replica"):
        log_replica_position(Height(7), Round(2), Step.PRECOMMIT)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("consensus.replica", logging.INFO, "h=7 r=2 step=precommit")
    ]
