"""amoskys.retry.Backoff: the one backoff formula, with an injected random and clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from amoskys.collectors.clock import FakeClock
from amoskys.retry import Backoff


class FixedRandom(random.Random):
    """uniform() always returns the same point of the range: `at` = 0 → low, 1 → high."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def test_without_jitter_the_curve_grows_by_factor_up_to_the_cap() -> None:
    b = Backoff(1.0, 10.0, factor=3.0, jitter=(1.0, 1.0))
    assert [b.next_delay() for _ in range(5)] == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_jitter_scales_each_delay_within_its_range() -> None:
    low = Backoff(2.0, 100.0, jitter=(0.8, 1.2), rng=FixedRandom(0.0))
    high = Backoff(2.0, 100.0, jitter=(0.8, 1.2), rng=FixedRandom(1.0))
    assert [low.next_delay() for _ in range(3)] == pytest.approx([1.6, 3.2, 6.4])
    assert [high.next_delay() for _ in range(3)] == pytest.approx([2.4, 4.8, 9.6])


def test_jitter_spreads_delays_of_streaks_that_started_together() -> None:
    rng = random.Random(5)
    streaks = [Backoff(1.0, 60.0, jitter=(1.0, 1.1), rng=rng) for _ in range(20)]
    third = [b.delay(2) for b in streaks]
    assert all(4.0 <= d <= 4.4 for d in third)
    assert len(set(third)) == len(third)


def test_reset_starts_the_curve_again() -> None:
    b = Backoff(0.1, 1.0, jitter=(1.0, 1.0))
    for _ in range(6):
        b.next_delay()
    assert b.next_delay() == 1.0
    b.reset()
    assert b.next_delay() == 0.1


def test_a_servers_hint_is_a_floor() -> None:
    b = Backoff(0.1, 1.0, rng=FixedRandom(1.0))
    assert b.next_delay(hint_seconds=3.0) == 3.0
    assert b.next_delay(hint_seconds=0.0) == pytest.approx(0.2)


def test_the_default_is_equal_jitter_never_above_the_curve() -> None:
    b = Backoff(0.1, 1.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    curve = [min(1.0, 0.1 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, curve, strict=True))


def test_delay_does_not_move_the_streak_and_a_long_streak_stays_at_the_cap() -> None:
    b = Backoff(1.0, 30.0, jitter=(1.0, 1.0))
    assert b.delay(3) == 8.0
    assert b.next_delay() == 1.0
    assert b.delay(100_000) == 30.0  # 2.0 ** 100_000 overflows: still the cap


def test_an_inverted_jitter_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"jitter \(1.2, 0.8\)"):
        Backoff(1.0, 2.0, jitter=(1.2, 0.8))


async def test_sleep_waits_the_next_delay_on_the_injected_clock() -> None:
    clock = FakeClock()
    b = Backoff(2.0, 10.0, jitter=(1.0, 1.0), clock=clock)
    start = clock.monotonic()
    task = asyncio.create_task(b.sleep())
    assert await clock.wait_sleeping() == [2.0]
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    assert await task == 2.0
    assert clock.monotonic() - start == pytest.approx(2.0)
