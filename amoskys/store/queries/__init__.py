"""The store's reads, one module per concept: this one pages the log and the views for the CLI, the
export and the Store facade; `reader` is the dashboard's read connection (bounded, sheds load), and
`flows`, `history`, `snmp` and `log` are the dashboard's reads of the read model.

Every statement here is its own read transaction and touches a bounded window of store_seq, so a
reader never pins the WAL (a long read would stop checkpoints and let the -wal grow).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiosqlite

from amoskys.errors import StoreError
from amoskys.store.records import StoredEvent
from amoskys.store.sql import fetch_one

#: store_seq values scanned per statement when filtering.
WINDOW = 65_536
MAX_LIMIT = 10_000

_EVENT_COLUMNS = (
    "store_seq, event_id, source, boot_id, source_seq, kind, ts_ns, received_ns, envelope, digest, "
    "origin, synthetic"
)


async def seq_bounds(conn: aiosqlite.Connection) -> tuple[int, int]:
    """(lowest, highest) store_seq in the log; (0, 0) when it is empty."""
    # two subqueries: SQLite answers a lone MIN or MAX from the end of the index, both in one
    # SELECT by scanning the whole table (27 ms at 300k rows)
    low, high = await fetch_one(
        conn, "SELECT (SELECT MIN(store_seq) FROM events), (SELECT MAX(store_seq) FROM events)"
    )
    return int(low or 0), int(high or 0)


async def events(
    conn: aiosqlite.Connection,
    *,
    kind: str | None = None,
    source: str | None = None,
    since_ns: int | None = None,
    after_seq: int = 0,
    limit: int = 1000,
    path: str = "",
    window: int = WINDOW,
) -> list[StoredEvent]:
    """Events after `after_seq` in store_seq order, filtered by kind, source and observation time
    (ts_ns >= since_ns). Page on with after_seq = the last store_seq returned."""
    if limit < 1 or limit > MAX_LIMIT:
        raise ValueError(f"events: limit must be 1..{MAX_LIMIT}, got {limit}")
    where = ["store_seq > ?", "store_seq <= ?"]
    params: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if since_ns is not None:
        where.append("ts_ns >= ?")
        params.append(since_ns)
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY store_seq LIMIT ?"
    out: list[StoredEvent] = []
    try:
        low, high = await seq_bounds(conn)
        lo = max(after_seq, low - 1)
        while lo < high and len(out) < limit:
            hi = lo + window
            rows = await conn.execute_fetchall(sql, (lo, hi, *params, limit - len(out)))
            out.extend(StoredEvent(*r) for r in rows)
            lo = hi
    except sqlite3.Error as err:
        raise StoreError(f"store {path}: cannot read events: {err}") from err
    return out


async def _dicts(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...], path: str
) -> list[dict[str, Any]]:
    try:
        cursor = await conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        rows = await cursor.fetchall()
        await cursor.close()
    except sqlite3.Error as err:
        raise StoreError(f"store {path}: cannot read a view: {err}") from err
    return [dict(zip(names, r, strict=True)) for r in rows]


async def devices(
    conn: aiosqlite.Connection,
    *,
    source: str | None = None,
    present_only: bool = False,
    limit: int = 1000,
    path: str = "",
) -> list[dict[str, Any]]:
    """The device inventory, most recently seen first."""
    sql = (
        "SELECT * FROM devices WHERE (? IS NULL OR source = ?) AND (? = 0 OR present = 1) "
        "ORDER BY last_seen_ns DESC LIMIT ?"
    )
    return await _dicts(conn, sql, (source, source, 1 if present_only else 0, limit), path)


async def snmp_targets(conn: aiosqlite.Connection, *, path: str = "") -> list[dict[str, Any]]:
    return await _dicts(conn, "SELECT * FROM snmp_targets ORDER BY source, target", (), path)


async def snmp_interfaces(
    conn: aiosqlite.Connection, *, target: str | None = None, source: str | None = None, path: str = ""
) -> list[dict[str, Any]]:
    sql = (
        "SELECT * FROM snmp_interfaces WHERE (? IS NULL OR target = ?) AND (? IS NULL OR source = ?) "
        "ORDER BY source, target, if_index"
    )
    return await _dicts(conn, sql, (target, target, source, source), path)


async def processes(
    conn: aiosqlite.Connection, *, source: str | None = None, limit: int = 5000, path: str = ""
) -> list[dict[str, Any]]:
    """The current process table (argv decoded from its JSON text)."""
    sql = "SELECT * FROM processes WHERE (? IS NULL OR source = ?) ORDER BY source, pid LIMIT ?"
    rows = await _dicts(conn, sql, (source, source, limit), path)
    for row in rows:
        row["argv"] = json.loads(row["argv"])
    return rows
