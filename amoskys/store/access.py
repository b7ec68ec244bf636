"""The appliance state of a data dir for command-line tools and tests, whether or not the appliance runs.

Not running: the store is opened normally (created and migrated if needed). Running: the store's
process lock is held, so the command uses a short-lived connection of its own; SQLite serializes
its writes with the appliance's writer (busy timeout), and the appliance sees them at once.

The CLI only reads through it: its state changes go through the control service (amoskys.cli.actions),
over the running appliance's control socket or with the store's lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite

from amoskys.config import StoreConfig
from amoskys.errors import StoreError
from amoskys.metrics import Metrics
from amoskys.store import ApplianceState, Store


def _lock_is_held(db: Path) -> bool:
    lock_path = db.with_name(db.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


@contextlib.asynccontextmanager
async def appliance_state(db: Path, config: StoreConfig) -> AsyncIterator[ApplianceState]:
    if not _lock_is_held(db):
        store = await Store.open(db, config, Metrics())
        try:
            yield store.state
        finally:
            await store.close()
        return
    try:
        conn = await aiosqlite.connect(db, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"store {db}: cannot open: {err}") from err
    try:
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA synchronous = FULL")
        yield ApplianceState(conn, conn, asyncio.Lock(), time.time_ns, str(db), closed=lambda: False)
    finally:
        await conn.close()
