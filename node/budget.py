"""Per-peer budgets: what any one participant may cost this node per second.

A token bucket per key (a peer id): `rate_per_s` tokens flow in every second up to
`burst`; an action that costs more than is left is refused and costs nothing. Time comes
from the injected clock, so a budget's policy is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.clock import Clock

__all__ = ["Budgets"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_ms: int


class Budgets:
    """Token buckets by key, all with one rate and burst."""

    def __init__(self, *, rate_per_s: float, burst: float, clock: Clock) -> None:
        assert rate_per_s > 0
        assert burst > 0
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def available(self, key: str) -> float:
        """The tokens `key` may spend now."""
        now = self._clock.now_ms()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.burst, at_ms=now)
        elapsed_ms = max(0, now - bucket.at_ms)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed_ms * self.rate_per_s / 1000)
        bucket.at_ms = now
        return bucket.tokens

    def take(self, key: str, amount: float) -> bool:
        """Spend `amount` if that much is left; otherwise spend nothing and say so."""
        assert amount >= 0
        if self.available(key) < amount:
            return False
        self._buckets[key].tokens -= amount
        return True

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
