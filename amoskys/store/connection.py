"""The store's files: the lock file that keeps a second process out, and the SQLite connections.

There is one writer connection (`WriterConnection`): a stdlib `sqlite3` connection whose transactions
run on its own one-thread executor, each transaction as ONE call (BEGIN…COMMIT in one closure). With
aiosqlite every statement of a group commit was a separate thread hop and a separate wakeup of the
loop (BEGIN, executemany, marks, tip, views, COMMIT: 6+ hops); now a group commit is one hop, and the
row loop (planning, chaining SHA-256, view rows) runs in that thread, so the loop never waits for it.
The same connection is also wrapped by an aiosqlite connection (`WriterConnection.aio`) for the
appliance state's short transactions and maintenance's reads: one SQLite connection, used by one
thread at a time (the transaction lock orders them). Readers keep their own aiosqlite connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import aiosqlite
import structlog

from amoskys.config import StoreConfig
from amoskys.errors import StoreError

log = structlog.get_logger(__name__)

_MB = 1024 * 1024
_P = ParamSpec("_P")
_T = TypeVar("_T")


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


async def connect(path: Path, config: StoreConfig, *, query_only: bool = True) -> aiosqlite.Connection:
    """A readers' connection (`query_only`; the writer's is a `WriterConnection`)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        if query_only:
            await conn.execute("PRAGMA query_only = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


def writer_pragmas(config: StoreConfig) -> list[str]:
    """The writer connection's settings. Autocheckpoint is off: a checkpoint never runs inside a
    commit (the `Checkpointer` runs them on its own connection)."""
    # keep the -wal small relative to the budget when it is reset: it counts toward it
    wal_pages = max(64, min(1000, config.hard_cap_mb * _MB // 4096 // 16))
    return [
        "PRAGMA busy_timeout = 5000",
        f"PRAGMA synchronous = {'FULL' if config.synchronous == 'full' else 'NORMAL'}",
        "PRAGMA foreign_keys = ON",
        "PRAGMA wal_autocheckpoint = 0",
        "PRAGMA temp_store = MEMORY",  # statement journals of multi-row upserts: no temp file I/O
        f"PRAGMA journal_size_limit = {wal_pages * 4096:d}",
    ]


class WriterConnection:
    """The store's one writer connection: `call()` runs a function with the stdlib connection on the
    writer's own thread (one hop per transaction); `aio` is the same connection behind aiosqlite."""

    def __init__(
        self,
        raw: sqlite3.Connection,
        executor: concurrent.futures.ThreadPoolExecutor,
        aio: aiosqlite.Connection,
    ) -> None:
        self._raw = raw
        self._executor = executor
        self.aio = aio

    @classmethod
    async def open(cls, path: Path, config: StoreConfig) -> WriterConnection:
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="amoskys-store-writer"
        )
        pragmas = writer_pragmas(config)

        def connect_raw() -> sqlite3.Connection:
            raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in pragmas:
                    raw.execute(pragma)
            except BaseException:
                raw.close()
                raise
            return raw

        try:
            raw = await asyncio.get_running_loop().run_in_executor(executor, connect_raw)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        try:
            aio = await aiosqlite.Connection(lambda: raw, 64)
        except BaseException:
            raw.close()
            executor.shutdown(wait=False)
            raise
        return cls(raw, executor, aio)

    async def call(
        self, fn: Callable[Concatenate[sqlite3.Connection, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run `fn(connection, *args)` on the writer thread and return its result. Cancelling the
        caller does not interrupt the call: it runs to its end (COMMIT or ROLLBACK) and the caller
        waits for that before the CancelledError goes on, so whoever takes the transaction lock next
        never finds the connection inside someone else's transaction."""
        future = self.start(fn, *args, **kwargs)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await outlive(future)
            raise

    def start(
        self, fn: Callable[Concatenate[sqlite3.Connection, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> asyncio.Future[_T]:
        """Start `fn(connection, *args)` on the writer thread; the caller awaits (or outlives) it."""
        raw = self._raw
        return asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(raw, *args, **kwargs))

    async def close(self) -> None:
        """Close the connection (aiosqlite closes it on its thread) and let the writer thread go."""
        try:
            await self.aio.close()
        finally:
            self._executor.shutdown(wait=False)


async def outlive(future: asyncio.Future[_T]) -> None:
    """Wait for a thread's call to end whatever cancels the waiter (its failure is the caller's, who
    was cancelled and no longer wants it)."""
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            continue
    if not future.cancelled():
        future.exception()  # retrieved: no "exception never retrieved" at garbage collection


async def close_quietly(
    writer: WriterConnection | None, reader: aiosqlite.Connection | None, lock_fd: int
) -> None:
    """Close both connections (logging, not raising, what fails) and release the lock file."""
    for conn in (writer, reader):
        if conn is not None:
            try:
                await conn.close()
            except sqlite3.Error as err:
                log.warning("store_close_failed", error=str(err))
    os.close(lock_fd)
