"""The dashboard's reads: newest-first pages of the event log on a read-only connection of its own.

Every statement covers a bounded window of store_seq (its own short read transaction), so the
dashboard never pins the store's WAL and never competes with the writer's connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from google.protobuf.message import DecodeError

from amoskys.errors import StoreError
from amoskys.proto import events_pb2
from amoskys.store.export import event_json
from amoskys.store.records import StoredEvent

_COLUMNS = (
    "store_seq, event_id, source, boot_id, source_seq, kind, ts_ns, received_ns, envelope, digest, "
    "origin, synthetic"
)
WINDOW = 20_000  # store_seq values per statement when scanning backwards


class WebReads:
    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self._conn = await aiosqlite.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None)
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

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return list(await self.conn.execute_fetchall(sql, params))
        except sqlite3.Error as err:
            raise StoreError(f"dashboard: cannot read {self.db}: {err}") from err

    async def last_seq(self) -> int:
        rows = await self._rows("SELECT MAX(store_seq) FROM events", ())
        return int(rows[0][0] or 0)

    async def recent(
        self,
        *,
        kind: str | None = None,
        source: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        before_seq: int | None = None,
        limit: int = 50,
        match: Callable[[events_pb2.Envelope], bool] | None = None,
        scan_limit: int = 200_000,
        scope: Literal["local", "remote"] | None = None,
        synthetic: bool | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` events, newest first, with store_seq < before_seq; `match` filters decoded
        envelopes (for searches inside bodies) and at most `scan_limit` rows are looked at. `scope`
        "local" keeps only the appliance's own events (empty origin), "remote" only those that came
        through the bus. `synthetic` False leaves out events of loadgen identities, True keeps only
        those (None: both)."""
        hi = (before_seq - 1) if before_seq else await self.last_seq()
        where, params = ["store_seq > ?", "store_seq <= ?"], []
        for clause, value in (
            ("kind = ?", kind),
            ("source = ?", source),
            ("ts_ns >= ?", since_ns),
            ("ts_ns < ?", until_ns),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if scope is not None:
            where.append("origin = ''" if scope == "local" else "origin != ''")
        if synthetic is not None:
            where.append("synthetic = 1" if synthetic else "synthetic = 0")
        sql = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY store_seq DESC LIMIT ?"
        out: list[StoredEvent] = []
        scanned = 0
        while hi > 0 and len(out) < limit and scanned < scan_limit:
            lo = max(0, hi - WINDOW)
            want = limit - len(out) if match is None else WINDOW
            for row in await self._rows(sql, (lo, hi, *params, want)):
                event = StoredEvent(*row)
                if match is None or _matches(event, match):
                    out.append(event)
                    if len(out) >= limit:
                        break
            scanned += hi - lo
            hi = lo
        return out

    async def synthetic_rows(self) -> int:
        """Stored events that loadgen identities published (counted on their partial index)."""
        rows = await self._rows("SELECT COUNT(*) FROM events WHERE synthetic = 1", ())
        return int(rows[0][0] or 0)

    async def by_seq(self, seq: int) -> StoredEvent | None:
        rows = await self._rows(f"SELECT {_COLUMNS} FROM events WHERE store_seq = ?", (seq,))
        return StoredEvent(*rows[0]) if rows else None

    async def table(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            cursor = await self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = await cursor.fetchall()
            await cursor.close()
        except sqlite3.Error as err:
            raise StoreError(f"dashboard: cannot read {self.db}: {err}") from err
        return [dict(zip(names, r, strict=True)) for r in rows]


def _matches(event: StoredEvent, match: Callable[[events_pb2.Envelope], bool]) -> bool:
    try:
        envelope = event.parse()
    except DecodeError:  # a malformed row simply does not match
        return False
    return match(envelope)


def event_dict(event: StoredEvent) -> dict[str, Any]:
    """The JSON API's shape of an event (protobuf JSON body; not the export's encoding)."""
    return event_json(event)
