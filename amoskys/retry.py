"""Backoff: the one formula for waiting between retries, with jitter, a random and a clock one can inject.

Delay number n (0, 1, 2, ...) of a failure streak is ``min(cap, base·factor^n)`` (the *curve*) scaled
by a random factor drawn from ``jitter = (low, high)``:

- publishers (bus client, bus core): ``(0.5, 1.0)``, "equal jitter", never above the curve (the
  default);
- the supervisor's restarts: ``(0.8, 1.2)``, ±20 % around the curve;
- SNMP targets: ``(1.0, 1.1)``, never sooner than the documented curve, so targets that died together
  (a site behind one dead uplink) spread their retries instead of polling in lockstep;
- ``(1.0, 1.0)``: no jitter.

``next_delay()`` walks the curve and ``reset()`` starts it again; callers that already count
failures ask ``delay(n)``. A server's hint is a floor: ``next_delay(hint_seconds=3.0)`` never returns
less than 3 s. ``sleep()`` waits the next delay on the injected clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amoskys.collectors.clock import Clock, SystemClock


@dataclass
class Backoff:
    """Delays for successive retries: min(cap, base·factor^n), scaled by a random factor in `jitter`."""

    base_seconds: float = 0.05
    cap_seconds: float = 5.0
    factor: float = 2.0
    jitter: tuple[float, float] = (0.5, 1.0)
    rng: random.Random = field(default_factory=random.Random)
    clock: Clock = field(default_factory=SystemClock)
    attempt: int = 0  # the next delay's n

    def __post_init__(self) -> None:
        low, high = self.jitter
        if not 0 <= low <= high:
            raise ValueError(f"backoff jitter {self.jitter!r}: need 0 <= low <= high")

    def curve(self, attempt: int) -> float:
        """The delay before jitter: min(cap, base·factor^attempt)."""
        try:
            return min(self.cap_seconds, self.base_seconds * self.factor ** max(0, attempt))
        except OverflowError:  # a very long streak: far past the cap
            return self.cap_seconds

    def delay(self, attempt: int) -> float:
        """Delay number `attempt` (0 for the first retry) with its jitter; does not move the streak."""
        low, high = self.jitter
        curve = self.curve(attempt)
        return curve if low == high == 1.0 else curve * self.rng.uniform(low, high)

    def next_delay(self, hint_seconds: float = 0.0) -> float:
        """The next delay of the streak, never below the server's hint."""
        delay = self.delay(self.attempt)
        self.attempt += 1
        return max(hint_seconds, delay)

    def reset(self) -> None:
        """Success: the next failure starts the curve again."""
        self.attempt = 0

    async def sleep(self, hint_seconds: float = 0.0) -> float:
        """Wait the next delay on the clock; returns how long."""
        delay = self.next_delay(hint_seconds)
        await self.clock.sleep(delay)
        return delay
