"""The shared polling loop: collect on a fixed schedule, skip ticks while a collect overruns."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amoskys.collectors.context import CollectorContext


async def poll(
    ctx: CollectorContext, interval_seconds: float, collect: Callable[[], Awaitable[None]]
) -> None:
    """Call ``collect()`` at once and then every `interval_seconds` on ``ctx.clock``, forever.

    Ticks stay on the schedule start, start + interval, ...; a tick that comes while the previous
    collect still runs is skipped, never queued. The first overrun is a warning
    (``collector_poll_overrun``), later ones are only counted (amoskys_collector_ticks_skipped_total);
    the first on-time collect after that logs ``collector_poll_recovered``. Time inside collect()
    counts as busy seconds. Exceptions from collect() propagate: the supervisor handles them.
    """
    if not interval_seconds > 0:
        raise ValueError(f"collector {ctx.name!r}: poll interval must be > 0 seconds, got {interval_seconds}")
    clock = ctx.clock
    next_tick = clock.monotonic()
    overrunning = False
    skipped_since_warning = 0
    while True:
        started = clock.monotonic()
        with ctx.busy():
            await collect()
        now = clock.monotonic()
        next_tick += interval_seconds
        if now > next_tick:  # ticks came and went while collecting
            missed = math.floor((now - next_tick) / interval_seconds) + 1
            next_tick += missed * interval_seconds
            ctx.count_skipped_ticks(missed)
            skipped_since_warning += missed
            if not overrunning:
                overrunning = True
                ctx.log.warning(
                    "collector_poll_overrun",
                    interval_seconds=interval_seconds,
                    collect_seconds=round(now - started, 3),
                    skipped_ticks=missed,
                )
        elif overrunning:
            overrunning = False
            ctx.log.info(
                "collector_poll_recovered",
                interval_seconds=interval_seconds,
                collect_seconds=round(now - started, 3),
                skipped_ticks=skipped_since_warning,
            )
            skipped_since_warning = 0
        await clock.sleep(next_tick - now)
