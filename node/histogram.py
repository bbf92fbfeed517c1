"""A fixed-bucket histogram of integers, cheap enough to update once per settled block.

The node counts what it measures in these, in its own units (milliseconds, rounds);
node/metrics.py turns them into Prometheus histograms only when /metrics is scraped, so
the node needs no metrics library on its hot path and none of its locks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["FixedHistogram"]


class FixedHistogram:
    """Counts of observations per bucket, with their sum. One owner: the node's loop.

    Bucket i counts the values v with bounds[i-1] < v <= bounds[i]; the last bucket,
    beyond the largest bound, is Prometheus's "+Inf".
    """

    def __init__(self, bounds: tuple[int, ...]) -> None:
        assert bounds, "a histogram needs at least one bound"
        assert list(bounds) == sorted(set(bounds)), "bounds must increase strictly"
        self.bounds = bounds
        self._bucket_counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0

    def observe(self, value: int) -> None:
        self._bucket_counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def observe_all(self, values: Iterable[int]) -> None:
        for value in values:
            self.observe(value)

    def cumulative_counts(self) -> list[int]:
        """Observations at or below each bound, then all of them (the "+Inf" bucket)."""
        counts: list[int] = []
        total = 0
        for bucket_count in self._bucket_counts:
            total += bucket_count
            counts.append(total)
        assert counts[-1] == self.count
        return counts
