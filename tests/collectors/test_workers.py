"""The collectors' worker threads: a hung /proc read takes one of them, never the default executor's."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

from amoskys.collectors import workers

import support


async def test_hung_samplers_leave_the_default_executor_free() -> None:
    release = threading.Event()
    # enough hung reads to take every thread of a default executor (min(32, cpus + 4)) if they ran there
    count = min(32, (os.cpu_count() or 1) + 4) + 1
    hung = [asyncio.ensure_future(workers.in_worker(release.wait)) for _ in range(count)]
    try:
        # every collector worker is stuck (and the other reads queue behind them) ...
        await support.eventually(
            lambda: (
                sum(t.name.startswith("amoskys-collect") for t in threading.enumerate()) >= workers.WORKERS
            ),
            what="the collectors' workers to start",
        )
        # ... while the store's and the web's threads still answer at once
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "store"), timeout=10) == "store"
        assert not any(task.done() for task in hung)
    finally:
        release.set()
    assert await asyncio.gather(*hung) == [True] * count


async def test_in_worker_passes_arguments_and_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("collector=host")
    name = await workers.in_worker(lambda prefix, sep="": prefix + sep + var.get(), "log", sep=":")
    assert name == "log:collector=host"
    assert await workers.in_worker(lambda: threading.current_thread().name.startswith("amoskys-collect"))
