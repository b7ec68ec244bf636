"""Checkpoints never run inside a commit: the writer connection has autocheckpoint off and the
checkpointer (its own connection and thread) runs PASSIVE on a size or time trigger and TRUNCATE when
the writer is idle. And a transaction on the writer thread is never cut short by a cancelled caller."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.store.connection import WriterConnection

from .helpers import flow_records, open_store, running, small_config
from support import eventually

_MB = 1024 * 1024
_NEVER = 1e9


def _wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _checkpoints(metrics: Metrics, mode: str) -> float:
    return metrics.registry.get_sample_value("amoskys_store_checkpoint_seconds_count", {"mode": mode}) or 0.0


async def test_commits_never_checkpoint_and_the_checkpointer_does_passive_then_truncate(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    metrics = Metrics()
    # hard cap 16 MB: the old autocheckpoint (a 16th of it, 256 pages) kept the WAL near 1 MB
    store = await open_store(db, config=small_config(high_water_mb=14, hard_cap_mb=16), metrics=metrics)
    checkpointer = store._checkpointer
    trigger = checkpointer.wal_trigger
    assert trigger == 1 * _MB
    checkpointer.wal_trigger, checkpointer.interval_s, checkpointer.idle_s = 1 << 62, _NEVER, _NEVER
    stamper = EnvelopeStamper("edge-1")
    async with running(store):
        assert (await store._db.execute_fetchall("PRAGMA wal_autocheckpoint"))[0][0] == 0
        n = 0
        while _wal_bytes(db) < 3 * _MB:  # commits alone never reset the WAL
            await store.submit(flow_records(stamper, 500, start=n))
            n += 500
            assert n < 100_000, f"the WAL stopped growing at {_wal_bytes(db)} bytes"
        assert checkpointer.checkpoints == 0
        grown = _wal_bytes(db)

        checkpointer.wal_trigger = trigger  # the size trigger: the next commit nudges a PASSIVE
        await store.submit(flow_records(stamper, 10, start=n))
        await eventually(lambda: _checkpoints(metrics, "passive") >= 1, what="a PASSIVE checkpoint")
        assert _checkpoints(metrics, "truncate") == 0
        assert _wal_bytes(db) >= grown  # PASSIVE copies the frames, it does not shrink the file

        checkpointer.idle_s = 0.2  # idle: TRUNCATE empties the file
        await eventually(lambda: _checkpoints(metrics, "truncate") >= 1, what="a TRUNCATE checkpoint")
        await eventually(lambda: _wal_bytes(db) == 0, what="an empty WAL")
        assert metrics.registry.get_sample_value("amoskys_store_bytes", {"file": "wal"}) == 0
        assert await checkpointer.tick() is None  # idle and already truncated: nothing more to do
        # the log is whole after all of it
        assert (await store.verify_chain()).ok
        assert (await store.stats()).rows == n + 10


async def test_a_passive_checkpoint_runs_on_the_time_trigger_when_new_frames_came(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    metrics = Metrics()
    store = await open_store(db, metrics=metrics)
    checkpointer = store._checkpointer
    checkpointer.wal_trigger, checkpointer.interval_s, checkpointer.idle_s = 1 << 62, 0.0, _NEVER
    async with running(store):
        assert await checkpointer.tick() is None  # nothing new: no checkpoint however much time passed
        assert checkpointer.checkpoints == 0
        await store.submit(flow_records(EnvelopeStamper("edge-1"), 20))
        await eventually(lambda: _checkpoints(metrics, "passive") >= 1, what="a PASSIVE checkpoint")


async def test_a_cancelled_caller_waits_for_the_writer_threads_call_to_end(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    conn = await WriterConnection.open(db, small_config())
    release, started = threading.Event(), threading.Event()

    def transaction(raw: sqlite3.Connection) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("CREATE TABLE t (x)")
        started.set()
        release.wait(30)
        raw.execute("INSERT INTO t VALUES (1)")
        raw.execute("COMMIT")

    try:
        caller = asyncio.create_task(conn.call(transaction))
        await eventually(started.is_set, what="the call to start on the writer thread")
        caller.cancel()
        for _ in range(20):
            await asyncio.sleep(0)  # a cancellation is delivered within a loop iteration or two
        assert not caller.done()  # still inside the transaction: whoever comes next must wait
        release.set()
        await eventually(caller.done, what="the cancelled caller to finish")
        assert caller.cancelled()
        # the transaction ran to its COMMIT: the connection is free and the row is there
        assert await conn.call(lambda raw: raw.in_transaction) is False
        assert await conn.call(lambda raw: raw.execute("SELECT x FROM t").fetchall()) == [(1,)]
    finally:
        release.set()
        await conn.close()


async def test_the_wal_stays_bounded_under_back_to_back_commits(tmp_path: Path) -> None:
    """PASSIVE alone never lets SQLite restart the WAL while commits keep landing during it: past twice
    the trigger the checkpointer holds commits off for its checkpoint, and the WAL restarts."""
    db = tmp_path / "events.db"
    store = await open_store(db, config=small_config(high_water_mb=60, hard_cap_mb=64))
    store._checkpointer.wal_trigger = trigger = 1 * _MB
    stamper = EnvelopeStamper("edge-1")
    largest = 0
    async with running(store):
        n = 0
        while n < 30_000:  # some 20 MB of WAL frames in all
            await store.submit(flow_records(stamper, 500, start=n))
            n += 500
            largest = max(largest, _wal_bytes(db))
        assert (await store.stats()).rows == n
    # twice the trigger, the commits that land while the checkpointer waits for its turn, and slack
    assert largest < 6 * trigger, f"the WAL grew to {largest} bytes (trigger {trigger})"


async def test_the_wal_stays_bounded_while_readers_never_pause(tmp_path: Path) -> None:
    """Two reader threads keep a slow read open at every moment (as a busy dashboard does): a PASSIVE
    checkpoint cannot copy past their snapshots, and a WAL whose readers still use it is never
    restarted, so without waiting for them the WAL grew without end."""
    db = tmp_path / "events.db"
    store = await open_store(db, config=small_config(high_water_mb=60, hard_cap_mb=64))
    store._checkpointer.wal_trigger = trigger = 1 * _MB
    stamper = EnvelopeStamper("edge-1")
    stop = threading.Event()

    def read_forever() -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        try:
            while not stop.is_set():
                conn.execute("SELECT SUM(length(envelope)) FROM events").fetchall()  # a full scan
        finally:
            conn.close()

    largest = 0
    readers = [threading.Thread(target=read_forever, daemon=True) for _ in range(2)]
    async with running(store):
        for t in readers:
            t.start()
        try:
            n = 0
            while n < 30_000:
                await store.submit(flow_records(stamper, 500, start=n))
                n += 500
                largest = max(largest, _wal_bytes(db))
        finally:
            stop.set()
            for t in readers:
                await asyncio.to_thread(t.join, 10)
        assert (await store.stats()).rows == n
    assert largest < 6 * trigger, f"the WAL grew to {largest} bytes (trigger {trigger})"
