"""The dashboard's read connection: one read-only aiosqlite connection, and a gate that sheds load.

Every statement runs in aiosqlite's thread (off the event loop) and returns plain rows. At most
`max_concurrent` statements are queued or running at once; a request that cannot start one within
`wait_s` is refused with ReadsBusyError (the web app answers 503 with Retry-After) instead of waiting
seconds behind a queue.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from amoskys.errors import StoreError
from amoskys.store.queries import log
from amoskys.store.records import StoredEvent

#: how long a read waits for a free slot before it is shed
WAIT_S = 0.1
#: a derived view's row is synthetic when its source is enrolled with the loadgen role (the views keep
#: no per-event flag): this column, in the same statement, spares a second read
SYNTHETIC_SOURCE = "source IN (SELECT name FROM identities WHERE role = 'loadgen') AS synthetic"


class ReadsBusyError(Exception):
    """Every read slot is taken: the request is shed (answered 503, Retry-After: 1). Deliberately not
    a StoreError: nothing is wrong with the store."""


class Reader:
    def __init__(self, db: Path, *, max_concurrent: int = 8, wait_s: float = WAIT_S) -> None:
        if max_concurrent < 1:
            raise ValueError(f"[web] max_concurrent_reads must be >= 1, got {max_concurrent}")
        self.db = db
        self.max_concurrent = max_concurrent
        self.wait_s = wait_s
        self.slots = asyncio.Semaphore(max_concurrent)
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self._conn = await aiosqlite.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None)
            self._conn.row_factory = sqlite3.Row  # rows index by position and name: dicts cheaply
            await self._conn.create_function("amoskys_body_json", 1, log.body_json, deterministic=True)
            await self._conn.execute("PRAGMA query_only = ON")
            await self._conn.execute("PRAGMA busy_timeout = 2000")
        except sqlite3.Error as err:
            raise StoreError(f"dashboard: cannot open {self.db} read-only: {err}") from err

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("dashboard reads are closed")
        return self._conn

    async def _acquire(self) -> None:
        if not self.slots.locked():
            await self.slots.acquire()  # free: taken at once, no timer
            return
        try:
            await asyncio.wait_for(self.slots.acquire(), self.wait_s)
        except TimeoutError:
            raise ReadsBusyError(
                f"{self.max_concurrent} reads in progress ([web] max_concurrent_reads); try again"
            ) from None

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """All rows of one statement, as tuples (one thread hop)."""
        await self._acquire()
        try:
            return list(await self.conn.execute_fetchall(sql, params))
        except sqlite3.Error as err:
            raise StoreError(f"dashboard: cannot read {self.db}: {err}") from err
        finally:
            self.slots.release()

    async def dicts(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """All rows of one statement, as dicts keyed by column name (one thread hop)."""
        rows = await self.rows(sql, params)
        if not rows:
            return []
        names = rows[0].keys()
        return [dict(zip(names, r, strict=True)) for r in rows]

    # the event log, for callers that want StoredEvents (tests, the detail view)
    async def recent(self, **filters: Any) -> list[StoredEvent]:
        """Newest stored events first (see queries.log.recent)."""
        return await log.recent(self, **filters)

    async def by_seq(self, seq: int) -> StoredEvent | None:
        return await log.by_seq(self, seq)


def proto3(body: dict[str, Any]) -> dict[str, Any]:
    """A body built from columns, shaped as protobuf JSON shapes it: fields at their default value
    (empty, zero, false, unset) left out."""
    return {k: v for k, v in body.items() if v}
