"""Live fan-out of committed events to subscribers (dashboard, forwarders): bounded, never blocking.

Publishing costs O(1) per subscriber per batch, whatever the batch size and however far behind the
subscriber is: a subscription keeps references to the published batches (shared, never copied) and
an offset into the oldest one; dropping its oldest events moves that offset or forgets whole
batches. Per-event work (slicing, filtering, serializing) happens on the reader's side, when it reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscription(Generic[T]):
    """A bounded queue of committed events; when full it drops its own oldest and counts them."""

    def __init__(self, fanout: Fanout[T], maxlen: int, name: str) -> None:
        if maxlen < 1:
            raise ValueError(f"subscription {name!r}: maxlen must be at least 1, got {maxlen}")
        self._fanout = fanout
        self._batches: deque[Sequence[T]] = deque()
        self._head = 0  # events of the oldest batch already taken or dropped
        self._size = 0  # events held
        self._ready = asyncio.Event()
        self.maxlen = maxlen
        self.name = name
        self.dropped = 0
        self.closed = False

    def __len__(self) -> int:
        return self._size

    def _push(self, batch: Sequence[T]) -> int:
        """Hold `batch` (by reference: it must not change), dropping the oldest events beyond
        `maxlen`; returns how many were dropped. Amortized O(1): each batch is forgotten once."""
        if self.closed:
            return 0
        self._batches.append(batch)
        self._size += len(batch)
        excess = self._size - self.maxlen
        dropped = max(excess, 0)
        while excess > 0:
            left = len(self._batches[0]) - self._head
            if left <= excess:
                self._batches.popleft()
                self._head = 0
                excess -= left
                self._size -= left
            else:
                self._head += excess
                self._size -= excess
                excess = 0
        self.dropped += dropped
        self._ready.set()
        return dropped

    async def get_many(self, limit: int = 1000) -> list[T]:
        """Wait for at least one item, then return up to `limit` of them, oldest first; once the
        subscription is closed, return what is left and then empty lists at once."""
        while not self._size and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        out: list[T] = []
        while self._batches and len(out) < limit:
            head = self._batches[0]
            take = min(limit - len(out), len(head) - self._head)
            out.extend(head[self._head : self._head + take])
            self._head += take
            self._size -= take
            if self._head == len(head):
                self._batches.popleft()
                self._head = 0
        return out

    def close(self) -> None:
        """Stop receiving; a reader waiting in `get_many` wakes up."""
        self.closed = True
        self._fanout._subs.discard(self)
        self._ready.set()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Fanout(Generic[T]):
    def __init__(self, on_drop: Callable[[str, int], None] | None = None) -> None:
        self._subs: set[Subscription[T]] = set()
        self._on_drop = on_drop

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, name: str, maxlen: int = 10_000) -> Subscription[T]:
        sub = Subscription(self, maxlen, name)
        self._subs.add(sub)
        return sub

    def publish(self, items: Sequence[T]) -> None:
        """Hand `items` to every subscriber. The sequence is shared, not copied: do not change it."""
        if not items:
            return
        for sub in list(self._subs):
            dropped = sub._push(items)
            if dropped and self._on_drop:
                self._on_drop(sub.name, dropped)
