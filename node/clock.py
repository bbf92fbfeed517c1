"""The node's one clock, passed in, so that time-dependent policy can be tested.

`now_ms` is monotonic: intervals, timeouts and the consensus core's timers. `unix_ms` is
wall time: only block timestamps and what is shown to people.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Monotonic milliseconds (never goes back; unrelated to the calendar)."""
        ...

    def unix_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def unix_ms(self) -> int:
        return time.time_ns() // 1_000_000
