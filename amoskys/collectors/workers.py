"""The collectors' own worker threads, for their blocking reads (/proc, /sys, files).

A read of /proc can hang (a process stuck in the kernel holds its mm lock; a hung NFS mount under a
/proc/<pid>/cwd). On asyncio's default executor such reads would take the threads the store, the
password checks and the bus's plain handlers wait for; here at most WORKERS of them hang, and only the
collectors wait (a poll skips its ticks while its previous collect still runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

WORKERS = 4

P = ParamSpec("P")
T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:  # threads start on first use, one at a time up to WORKERS
        _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="amoskys-collect")
    return _pool


async def in_worker(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread``, on the collectors' workers (the caller's context variables go along)."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)
