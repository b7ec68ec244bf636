"""The /metrics body: rendered on the loop while that is cheap, else a cached render made off the loop.

A render in a worker thread must take the GIL from a busy loop, which can make a scrape wait for many
switch intervals; a render of a few milliseconds on the loop costs less than that wait. So: while the
last render took at most `budget` seconds, render on the loop; past it, answer from the last render if
it is at most `max_age` seconds old, and render again in a worker thread (one render at a time, shared
by every scrape waiting for it) once it is half that old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

ON_LOOP_BUDGET_SECONDS = 0.005
MAX_AGE_SECONDS = 1.0


class Exposition:
    def __init__(
        self,
        render: Callable[[], bytes],
        *,
        budget: float = ON_LOOP_BUDGET_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._budget = budget
        self._max_age = max_age
        self._clock = clock
        self._cost = 0.0  # seconds the last render took (CPU time of its thread)
        self._body = b""
        self._rendered_at = float("-inf")
        self._pending: asyncio.Future[bytes] | None = None
        self.on_loop = 0  # renders made on the loop / in a worker thread, for tests and curiosity
        self.off_loop = 0

    @property
    def cost_seconds(self) -> float:
        return self._cost

    async def body(self) -> bytes:
        if self._cost <= self._budget:
            began = time.thread_time()
            body = self._render()
            self._keep(body, time.thread_time() - began)
            self.on_loop += 1
            return body
        age = self._clock() - self._rendered_at
        if age > self._max_age / 2:
            pending = self._refresh()
            if age > self._max_age:
                return await asyncio.shield(pending)
        return self._body

    def _refresh(self) -> asyncio.Future[bytes]:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().run_in_executor(None, self._render_off_loop)
        return self._pending

    def _render_off_loop(self) -> bytes:
        began = time.thread_time()  # this thread's CPU: not the time it waited for the GIL
        body = self._render()
        self._keep(body, time.thread_time() - began)
        self.off_loop += 1
        return body

    def _keep(self, body: bytes, cost: float) -> None:
        self._body, self._cost, self._rendered_at = body, cost, self._clock()
