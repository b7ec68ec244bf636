"""Per-publisher limits, so one publisher cannot starve the rest: token buckets (events and bytes) and
each publisher's share of recent ingest, which decides who is refused first when the store is short
of space."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: Time constant of the recent-ingest average, in seconds (the "last ~10 s" a fair share is judged on).
FAIR_SHARE_WINDOW_SECONDS = 10.0
#: A publisher whose decayed recent ingest fell below this many bytes no longer counts as active.
FAIR_SHARE_FORGET_BYTES = 1.0


class TokenBuckets:
    """One bucket per source: `rate` tokens/s refill, `burst` capacity. Bounded by `max_sources`."""

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

    def wait(self, source: str, n: int) -> float:
        """Seconds until n tokens will be there for `source` (0.0: now); takes nothing."""
        tokens, _ = self._refilled(source, self._clock())
        n = min(n, int(self.burst))  # more than the burst can never fit: it passes on a full bucket
        return 0.0 if tokens >= n else (n - tokens) / self.rate

    def take(self, source: str, n: int) -> float:
        """Take n tokens; return 0.0 on success, else the seconds until n tokens will be there."""
        now = self._clock()
        tokens, now = self._refilled(source, now)
        n = min(n, int(self.burst))
        if tokens >= n:
            self._remember(source, (tokens - n, now))
            return 0.0
        self._remember(source, (tokens, now))
        return (n - tokens) / self.rate

    def _refilled(self, source: str, now: float) -> tuple[float, float]:
        tokens, last = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate), now

    def _remember(self, source: str, value: tuple[float, float]) -> None:
        if source not in self._buckets and len(self._buckets) >= self._max:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[source] = value


class FairShare:
    """Each publisher's recent ingest: the bytes it put in the store, decaying exponentially with the
    time constant `window_seconds`, so old bursts fade and the shares describe the last few windows.

    The rule (`above_fair_share`): with N active publishers (decayed ingest of at least
    FAIR_SHARE_FORGET_BYTES, the asking one always included) and T their total, a publisher is above
    its fair share when its own recent ingest is at least T / N. A publisher with nothing recent among
    others who have is below it; a lone publisher (N = 1), or all of them with nothing recent, is
    at or above it: there is nobody to be fair to, so it is refused as every remote publisher was.
    """

    def __init__(
        self,
        window_seconds: float = FAIR_SHARE_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.window = window_seconds
        self._clock = clock
        self._max = max_sources
        self._recent: dict[str, tuple[float, float]] = {}  # source -> (decayed bytes, as of time)

    def add(self, source: str, nbytes: int) -> None:
        """`source` put `nbytes` in the store just now."""
        now = self._clock()
        if source not in self._recent and len(self._recent) >= self._max:
            self._forget(now)
            if len(self._recent) >= self._max:
                self._recent.pop(min(self._recent, key=lambda s: self._decayed(s, now)))
        self._recent[source] = (self._decayed(source, now) + nbytes, now)

    def above_fair_share(self, source: str) -> bool:
        now = self._clock()
        self._forget(now)
        recent = {s: self._decayed(s, now) for s in self._recent}
        mine = recent.get(source, 0.0)
        active = len(recent) + (source not in recent)
        return mine * active >= sum(recent.values())

    def _decayed(self, source: str, now: float) -> float:
        value, at = self._recent.get(source, (0.0, now))
        return value * math.exp(-max(0.0, now - at) / self.window)

    def _forget(self, now: float) -> None:
        gone = [s for s in self._recent if self._decayed(s, now) < FAIR_SHARE_FORGET_BYTES]
        for s in gone:
            del self._recent[s]
