"""The dashboard's read connections: a few read-only aiosqlite connections, and a gate that sheds load.

Every statement runs in an aiosqlite connection's thread (off the event loop) and returns plain rows.
There are CONNECTIONS of them (WAL readers do not block each other), and a statement goes to the one
with the fewest statements in hand: a cheap page does not queue behind an expensive one (with one
connection, a one-row SNMP read waited 40 ms behind event pages under load). At most `max_concurrent`
statements are queued or running at once; a request that cannot start one within `wait_s` is refused
with ReadsBusyError (the web app answers 503 with Retry-After) instead of waiting seconds behind a
queue.
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
#: read connections (threads): two, so a cheap statement is not stuck behind an expensive one; more
#: only contend for the GIL on a 2-core box
CONNECTIONS = 2
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
        self._conns: list[aiosqlite.Connection] = []
        self._busy: list[int] = []  # statements in hand, per connection

    async def open(self) -> None:
        try:
            for _ in range(CONNECTIONS):
                conn = await aiosqlite.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None)
                self._conns.append(conn)
                conn.row_factory = sqlite3.Row  # rows index by position and name: dicts cheaply
                await conn.create_function("amoskys_body_json", 1, log.body_json, deterministic=True)
                await conn.execute("PRAGMA query_only = ON")
                await conn.execute("PRAGMA busy_timeout = 2000")
        except sqlite3.Error as err:
            await self.close()
            raise StoreError(f"dashboard: cannot open {self.db} read-only: {err}") from err
        self._busy = [0] * len(self._conns)

    async def close(self) -> None:
        conns, self._conns, self._busy = self._conns, [], []
        for conn in conns:
            await conn.close()

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
            if not self._conns:
                raise StoreError("dashboard reads are closed")
            busy = self._busy
            i = busy.index(min(busy))  # the connection with the fewest statements in hand
            busy[i] += 1
            try:
                return list(await self._conns[i].execute_fetchall(sql, params))
            finally:
                if i < len(self._busy):
                    self._busy[i] -= 1
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
