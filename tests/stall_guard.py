"""The CPU-stall guard for the test suite: each event-loop callback that uses more than LIMIT_SECONDS of
CPU is reported, one line "CPU stall: <callback> <ms> ms".

CPU, not wall clock: ``time.thread_time()`` of the loop's thread around the callback, so a callback
that only waited (the other processes on shared cores, a GIL held by a worker thread) is not counted;
wall-clock lag is what ``amoskys_event_loop_lag_seconds`` reports, and is not failed.

Where it looks: on asyncio's own loop, ``asyncio.events.Handle._run`` (every callback, task steps
included); on uvloop (what `amoskys run` uses), whose handles are compiled, every task step through
the loop's task factory (amoskys.loophealth.time_task_steps): request handlers, the bus's calls, the
writer and the collectors all run in tasks; uvloop's plain callbacks are not timed.

In ``amoskys run`` children (tests/child_site/sitecustomize.py calls ``activate_in_child``) each stall
goes to stderr, and the appliance_factory fixture (tests/conftest.py, support.stall_failures) fails the
test at teardown listing them. STALL_GUARD_BURN_MS in a child's environment makes it burn that much CPU
in one task step, once, half a second after its loop starts: tests/test_stall_guard.py shows the guard
catches it.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.runners
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

LIMIT_SECONDS = 0.1
LINE_PREFIX = "CPU stall: "
BURN_ENV = "STALL_GUARD_BURN_MS"

Report = Callable[[str], None]


def print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _describe_handle(handle: asyncio.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):  # a task's step: name its coroutine
        coro = owner.get_coro()
        return f"<task {owner.get_name()} {getattr(coro, '__qualname__', coro)}>"
    return repr(handle)


def _line(what: str, seconds: float) -> str:
    return f"{LINE_PREFIX}{what} {seconds * 1000:.0f} ms"


_original_run: Callable[[asyncio.Handle], None] | None = None


def time_handles(report: Report, limit: float = LIMIT_SECONDS) -> None:
    """asyncio's own loops: report every callback over `limit` seconds of CPU from now on."""
    global _original_run
    if _original_run is not None:
        return
    original = asyncio.events.Handle._run
    cpu = time.thread_time

    def _run(self: asyncio.Handle) -> None:
        began = cpu()
        original(self)  # Handle._run handles the callback's exceptions itself
        used = cpu() - began
        if used > limit:
            report(_line(_describe_handle(self), used))

    _original_run = original
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]


def untime_handles() -> None:
    global _original_run
    if _original_run is not None:
        asyncio.events.Handle._run = _original_run  # type: ignore[method-assign]
        _original_run = None


def time_loop(loop: asyncio.AbstractEventLoop, report: Report, limit: float = LIMIT_SECONDS) -> None:
    """Any loop: report every task step over `limit` seconds of CPU (uvloop: Handle._run is compiled)."""
    # imported here, not at the top: sitecustomize imports this module before sys.path is complete
    from amoskys.loophealth import time_task_steps

    def on_stall(coro: Coroutine[Any, Any, Any], seconds: float) -> None:
        report(_line(f"<task {getattr(coro, '__qualname__', coro)}>", seconds))

    time_task_steps(loop, time.thread_time, limit, on_stall)


async def deliberate_cpu_burn(ms: float) -> None:
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def activate_in_child(report: Report = print_to_stderr) -> None:
    """In an `amoskys run` child: time every loop an asyncio.Runner makes (the appliance's)."""
    time_handles(report)
    lazy_init = asyncio.runners.Runner._lazy_init
    burn_ms = float(os.environ.get(BURN_ENV, "0") or 0)

    def _lazy_init(self: asyncio.runners.Runner) -> None:
        fresh = self._loop is None  # type: ignore[attr-defined]
        lazy_init(self)  # type: ignore[attr-defined]
        loop: asyncio.AbstractEventLoop = self._loop  # type: ignore[attr-defined]
        if fresh and not type(loop).__module__.startswith("asyncio"):  # asyncio's: time_handles does it
            time_loop(loop, report)
        if fresh and burn_ms:
            loop.call_later(0.5, lambda: loop.create_task(deliberate_cpu_burn(burn_ms)))

    asyncio.runners.Runner._lazy_init = _lazy_init  # type: ignore[attr-defined]
