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
import collections
import gc
import os
import sys
import threading
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


#: (thread CPU time at its end, CPU seconds, generation) of each garbage collection on a loop's thread
#: (the one `activate_in_child` watches): a stall line says how much of it was the collector's.
_collections: collections.deque[tuple[float, float, int]] = collections.deque(maxlen=64)
_collecting: list[float] = []
_loop_thread: list[int] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if not _loop_thread or threading.get_ident() != _loop_thread[0]:
        return
    now = time.thread_time()
    if phase == "start":
        _collecting[:] = [now]
    elif _collecting:
        _collections.append((now, now - _collecting.pop(), info["generation"]))


def watch_collections() -> None:
    """Attribute garbage collections on the calling thread (the loop's) to the stall lines from now."""
    _loop_thread[:] = [threading.get_ident()]
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def _gc_within(seconds: float) -> str:
    """ " (garbage collection: N ms, generation G)" for collections in the last `seconds` of the loop
    thread's CPU time ("" for none)."""
    since = time.thread_time() - seconds
    spent = [(took, gen) for end, took, gen in _collections if end >= since]
    if not spent:
        return ""
    total = sum(took for took, _ in spent)
    return f" (garbage collection: {total * 1000:.0f} ms, generation {max(gen for _, gen in spent)})"


def _line(what: str, seconds: float) -> str:
    return f"{LINE_PREFIX}{what} {seconds * 1000:.0f} ms{_gc_within(seconds)}"


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
        if fresh:
            watch_collections()
        if fresh and not type(loop).__module__.startswith("asyncio"):  # asyncio's: time_handles does it
            time_loop(loop, report)
        if fresh and burn_ms:
            loop.call_later(0.5, lambda: loop.create_task(deliberate_cpu_burn(burn_ms)))

    asyncio.runners.Runner._lazy_init = _lazy_init  # type: ignore[attr-defined]
