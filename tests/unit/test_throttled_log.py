"""node.throttled_log: a peer cannot fill the disk with warnings about itself."""

from __future__ import annotations

import logging

import pytest

from node.throttled_log import ThrottledLog


class FakeClock:
    def __init__(self) -> None:
        self.ms = 0

    def now_ms(self) -> int:
        return self.ms

    def unix_ms(self) -> int:
        return self.ms


LOGGER = logging.getLogger("tests.throttled")


def test_one_line_per_subject_and_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    throttled = ThrottledLog(LOGGER, clock=clock, interval_ms=1_000)
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        for _ in range(3000):
            throttled.warning("b", "frame", "peer=%s sent junk", "b")
        throttled.warning("b", "handshake", "peer=%s refused", "b")  # another kind
        throttled.warning("c", "frame", "peer=%s sent junk", "c")  # another peer
        clock.ms += 1_000
        throttled.warning("b", "frame", "peer=%s sent junk", "b")
    assert [r.getMessage() for r in caplog.records] == [
        "peer=b sent junk",
        "peer=b refused",
        "peer=c sent junk",
        "peer=b sent junk (suppressed=2999)",
    ]


def test_lines_are_cut_and_the_table_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    throttled = ThrottledLog(LOGGER, clock=FakeClock(), subjects_max=4, line_chars_max=50)
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        throttled.warning("b", "frame", "junk: %r", b"x" * 300_000)
        for i in range(100):
            throttled.warning(f"10.0.0.{i}", "handshake", "refused")
    assert len(caplog.records[0].getMessage()) < 80
    assert caplog.records[0].getMessage().endswith("(300009 chars)")
    assert len(throttled._entries) == 4
