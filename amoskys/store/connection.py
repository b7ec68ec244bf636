"""The store's files: the lock file that keeps a second process out, and the SQLite connections."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import aiosqlite
import structlog

from amoskys.config import StoreConfig
from amoskys.errors import StoreError

log = structlog.get_logger(__name__)

_MB = 1024 * 1024


def lock_file(path: Path) -> int:
    """Take the store's lock file, so two processes never write one database (blocking: run it in a
    thread). Returns the file descriptor that holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StoreError(f"store {path}: cannot create lock file {lock_path}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise StoreError(f"store {path} is in use by pid {holder} (lock file {lock_path})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    return fd


async def connect(path: Path, config: StoreConfig, *, query_only: bool) -> aiosqlite.Connection:
    """The writer's connection (`query_only=False`) or the readers' one."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        if query_only:
            await conn.execute("PRAGMA query_only = ON")
            return conn
        await conn.execute(f"PRAGMA synchronous = {'FULL' if config.synchronous == 'full' else 'NORMAL'}")
        await conn.execute("PRAGMA foreign_keys = ON")
        # keep the -wal small relative to the budget: it counts toward it
        wal_pages = max(64, min(1000, config.hard_cap_mb * _MB // 4096 // 16))
        await conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages:d}")
        await conn.execute(f"PRAGMA journal_size_limit = {wal_pages * 4096:d}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def close_quietly(
    writer: aiosqlite.Connection | None, reader: aiosqlite.Connection | None, lock_fd: int
) -> None:
    """Close both connections (logging, not raising, what fails) and release the lock file."""
    for conn in (writer, reader):
        if conn is not None:
            try:
                await conn.close()
            except sqlite3.Error as err:
                log.warning("store_close_failed", error=str(err))
    os.close(lock_fd)
