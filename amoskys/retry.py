"""Exponential backoff with full jitter, honouring a server's hint: shared by every publisher."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive retries: min(cap, base·2^n) with full jitter, never below a server hint."""

    base_seconds: float = 0.05
    cap_seconds: float = 5.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, hint_seconds: float = 0.0) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return max(hint_seconds, self.rng.uniform(ceiling / 2, ceiling))

    def reset(self) -> None:
        self.attempt = 0
