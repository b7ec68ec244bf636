"""Helpers the benchmark scripts share: ports, a child's CPU time and memory from /proc, and the
open-loop request schedule."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def paced(rps: int, seconds: int, fire: Callable[[int, float], Coroutine[Any, Any, None]]) -> None:
    """Open loop: request i is started at its scheduled time t0 + i / rps, whether or not the earlier
    ones were answered (no coordinated omission); returns when every one has finished.
    ``fire(i, scheduled)`` makes request i."""
    tasks = []
    t0 = time.perf_counter()
    for i in range(rps * seconds):
        scheduled = t0 + i / rps
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, scheduled)))
    await asyncio.gather(*tasks)
