"""Keeping the high-water side file current: at most once a second while the tip moves, and at close.

The file's format, and what a start makes of it, are `integrity`'s; this module decides when to
write it and logs a failing episode once. It never runs ahead of a COMMIT: it writes the committed tip.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from amoskys.store import integrity
from amoskys.store.logstate import LogState

log = structlog.get_logger(__name__)

#: The side file is written at most this often (and at close).
HIGH_WATER_INTERVAL_S = 1.0


class SideFile:
    """The side file of one store (`events.db.highwater`)."""

    def __init__(self, path: Path, store_id: str, state: LogState) -> None:
        self.path = path
        self._store_id = store_id
        self._state = state

    def due_at(self) -> float | None:
        """The monotonic time the next write is due, or None while the file is current."""
        book = self._state.side
        if book.written_seq == self._state.head.tip.last_seq:
            return None
        return book.written_at + HIGH_WATER_INTERVAL_S

    async def write(self, *, force: bool = False) -> None:
        """Write the committed tip when it moved and a second passed since the last write (or now,
        with `force`). A failure is logged once per episode and retried later, never raised."""
        book = self._state.side
        tip = self._state.head.tip
        seq = tip.last_seq
        if not force and (
            seq == book.written_seq or time.monotonic() - book.written_at < HIGH_WATER_INTERVAL_S
        ):
            return
        mark = integrity.HighWater(self._store_id, seq, tip.rows)
        try:
            await asyncio.to_thread(integrity.write_high_water, self.path, mark)
        except OSError as err:
            if not book.failing:
                book.failing = True
                log.warning("store_highwater_write_failed", path=str(self.path), error=err.strerror)
            book.written_at = time.monotonic()
            return
        if book.failing:
            book.failing = False
            log.info("store_highwater_write_recovered", path=str(self.path))
        book.written_seq = seq
        book.written_at = time.monotonic()
