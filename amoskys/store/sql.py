"""Small helpers over aiosqlite connections shared by the store's modules."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite


async def fetch_one(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a PRAGMA)."""
    for row in await conn.execute_fetchall(sql, params):
        return tuple(row)
    raise sqlite3.ProgrammingError(f"query returned no row: {sql}")


async def rollback_quietly(conn: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any (SQLite may already have rolled it back itself)."""
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # "cannot rollback - no transaction is active"
