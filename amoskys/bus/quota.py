"""Per-source token buckets, so one noisy publisher cannot starve the rest."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """One bucket per source: `rate` events/s refill, `burst` capacity. Bounded by `max_sources`."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, last refill time)

    def take(self, source: str, n: int) -> float:
        """Take n tokens; return 0.0 on success, else the seconds until n tokens will be there."""
        now = self._clock()
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if n > self.burst:  # a batch larger than the burst can never fit: let it through on a full bucket
            n = int(self.burst)
        if tokens >= n:
            self._remember(source, (tokens - n, now))
            return 0.0
        self._remember(source, (tokens, now))
        return (n - tokens) / self.rate

    def _remember(self, source: str, value: tuple[float, float]) -> None:
        if source not in self._buckets and len(self._buckets) >= self._max:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[source] = value
