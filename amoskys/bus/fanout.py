"""Live fan-out of committed events to subscribers (dashboard, forwarders): bounded, never blocking."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscription(Generic[T]):
    """A bounded queue of committed events; when full it drops its own oldest and counts them."""

    def __init__(self, fanout: Fanout[T], maxlen: int, name: str) -> None:
        self._fanout = fanout
        self._items: deque[T] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.name = name
        self.dropped = 0

    def _push(self, items: Iterable[T]) -> int:
        dropped = 0
        for item in items:
            if len(self._items) == self._items.maxlen:
                dropped += 1
            self._items.append(item)
        self.dropped += dropped
        self._ready.set()
        return dropped

    async def get_many(self, limit: int = 1000) -> list[T]:
        """Wait for at least one item, then return up to `limit` of them, oldest first."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        out = []
        while self._items and len(out) < limit:
            out.append(self._items.popleft())
        return out

    def close(self) -> None:
        self._fanout._subs.discard(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Fanout(Generic[T]):
    def __init__(self, on_drop: callable | None = None) -> None:  # type: ignore[valid-type]
        self._subs: set[Subscription[T]] = set()
        self._on_drop = on_drop

    def subscribe(self, name: str, maxlen: int = 10_000) -> Subscription[T]:
        sub = Subscription(self, maxlen, name)
        self._subs.add(sub)
        return sub

    def publish(self, items: list[T]) -> None:
        if not items:
            return
        for sub in list(self._subs):
            dropped = sub._push(items)
            if dropped and self._on_drop:
                self._on_drop(sub.name, dropped)
