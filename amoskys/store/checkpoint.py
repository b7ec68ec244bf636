"""The WAL checkpointer: checkpoints run on their own connection and thread, never inside a commit.

The writer connection has `wal_autocheckpoint = 0`, so no COMMIT ever pays for copying the WAL into
the database. Instead, every `TICK_S` the checkpointer looks at the WAL (its size, on its own thread)
and the writer's commit counter, and runs on its own connection:

- `PRAGMA wal_checkpoint(PASSIVE)` when new frames came and the WAL reached the size trigger
  (`wal_trigger_bytes`: 16 MiB, or a 16th of the hard cap when that is smaller) or `INTERVAL_S` passed
  since the last checkpoint. PASSIVE never waits for the writer or readers; commits go on meanwhile.
  But SQLite restarts the WAL from its start only when a write transaction begins after a checkpoint
  that copied every frame and while no reader still reads from the WAL, which commits landing during
  each checkpoint and a dashboard's back-to-back reads prevent: under sustained ingest the WAL would
  grow without end (it reached 650 MB in a five-minute run). So once it reaches twice the trigger, the
  checkpointer runs a PASSIVE for the bulk of the frames with commits going on, then takes the
  transaction lock and runs `PRAGMA wal_checkpoint(RESTART)`: no commit lands meanwhile (commits queue
  and are group committed after it, never inside it), it copies the few frames committed since and
  waits at most `RESTART_BUSY_MS` for the readers still on the WAL (new readers read the database
  file), and the next commit restarts the WAL (`journal_size_limit` trims the file then). The lock is
  held for the tail only: the bulk was copied without it.
- `PRAGMA wal_checkpoint(TRUNCATE)` once the writer has been idle `IDLE_S` and the WAL is not empty:
  the file shrinks back to nothing. It may hold new writers for at most its short busy timeout.

Each checkpoint's duration goes to `amoskys_store_checkpoint_seconds{mode}`, and the WAL size to
`amoskys_store_bytes{file="wal"}`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import structlog

from amoskys.metrics import Metrics

log = structlog.get_logger(__name__)

_MIB = 1024 * 1024
#: How often the checkpointer looks at the WAL (seconds).
TICK_S = 0.5
#: A PASSIVE checkpoint runs at least this often while new frames come (seconds).
INTERVAL_S = 30.0
#: The writer idle this long: TRUNCATE (seconds).
IDLE_S = 5.0
#: The size trigger's ceiling.
WAL_TRIGGER_MAX_BYTES = 16 * _MIB
#: How long a TRUNCATE waits for readers and the writer before it gives up (ms).
TRUNCATE_BUSY_MS = 100
#: How long a RESTART (commits held off) waits for readers still on the WAL before it gives up (ms).
RESTART_BUSY_MS = 50

Mode = Literal["passive", "restart", "truncate"]


def wal_trigger_bytes(hard_cap_bytes: int) -> int:
    """The WAL size at which a PASSIVE checkpoint runs: 16 MiB, or a 16th of the hard cap (the WAL
    counts toward it), but not below 256 KiB."""
    return max(256 * 1024, min(WAL_TRIGGER_MAX_BYTES, hard_cap_bytes // 16))


class Commits(Protocol):
    """What the checkpointer reads of the writer."""

    @property
    def commits(self) -> int: ...

    @property
    def last_commit(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint: its mode, whether it was kept from finishing (busy), how long it took."""

    mode: Mode
    busy: bool
    seconds: float
    wal_bytes: int  # the WAL's size after it


class Checkpointer:
    """Checkpoints of one store's WAL (see the module docstring). `run()` is a task; `close()` ends it."""

    def __init__(
        self,
        path: Path,
        metrics: Metrics,
        writer: Commits,
        lock: asyncio.Lock,
        *,
        wal_trigger: int = WAL_TRIGGER_MAX_BYTES,
        interval_s: float = INTERVAL_S,
        idle_s: float = IDLE_S,
        tick_s: float = TICK_S,
    ) -> None:
        self.path = path
        self._wal_path = path.with_name(path.name + "-wal")
        self._metrics = metrics
        self._writer = writer
        self._lock = lock
        self._wal_seen = 0  # the WAL's size when last looked at (by a tick or a commit's nudge)
        self.wal_trigger = wal_trigger
        self.interval_s = interval_s
        self.idle_s = idle_s
        self.tick_s = tick_s
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._seen_commits = 0  # the writer's commit count at the last checkpoint
        self._last_at = time.monotonic()  # when the last checkpoint ran
        self._truncated = False  # the last checkpoint was a TRUNCATE and nothing was committed since
        self._wake = asyncio.Event()
        self.checkpoints = 0

    def nudge(self, wal_bytes: int) -> None:
        """After a commit (on the loop): look now, not at the next tick, when the WAL reached the trigger."""
        self._wal_seen = wal_bytes
        if wal_bytes >= self.wal_trigger:
            self._wake.set()

    async def run(self) -> None:
        """Look at the WAL every tick and checkpoint when a trigger fires (until cancelled)."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.tick()
            except sqlite3.Error as err:  # the next tick tries again; the writer never waits for this
                log.warning("store_checkpoint_failed", path=str(self.path), error=str(err))

    async def tick(self) -> Checkpoint | None:
        """One look: the checkpoint it ran, or None."""
        commits, last_commit = self._writer.commits, self._writer.last_commit
        now = time.monotonic()
        new_frames = commits != self._seen_commits
        if new_frames:
            self._truncated = False
        # idle: nothing committed, and no checkpoint tried, for idle_s (a busy TRUNCATE retries that late)
        idle = now - last_commit >= self.idle_s and now - self._last_at >= self.idle_s
        due = new_frames and now - self._last_at >= self.interval_s
        if new_frames and self._wal_seen >= 2 * self.wal_trigger:  # see the module docstring
            bulk = await self._in_thread(new_frames, True, False)
            if bulk is not None:
                self._count(bulk)
            async with self._lock:
                done = await self._in_thread(new_frames, True, False, restart=True)
        else:
            done = await self._in_thread(new_frames, due, idle and not self._truncated)
        if done is None:
            return None
        self._seen_commits, self._last_at = commits, time.monotonic()
        self._truncated = done.mode == "truncate" and not done.busy
        self._count(done)
        return done

    def _count(self, done: Checkpoint) -> None:
        self.checkpoints += 1
        self._metrics.store_checkpoint_seconds.labels(done.mode).observe(done.seconds)
        if done.busy:
            log.debug("store_checkpoint_busy", path=str(self.path), mode=done.mode)

    async def close(self) -> None:
        """Close the checkpointer's connection (after any checkpoint in progress) and its thread."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
        finally:
            executor.shutdown(wait=False)

    # -- on the checkpointer's thread

    async def _in_thread(
        self, new_frames: bool, due: bool, idle: bool, *, restart: bool = False
    ) -> Checkpoint | None:
        if self._closed:
            return None
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="amoskys-store-checkpoint"
            )
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._check, new_frames, due, idle, restart
        )

    def _wal_size(self) -> int:
        try:
            return os.stat(self._wal_path).st_size
        except FileNotFoundError:
            return 0

    def _check(self, new_frames: bool, due: bool, idle: bool, restart: bool) -> Checkpoint | None:
        self._wal_seen = size = self._wal_size()
        self._metrics.store_bytes.labels("wal").set(size)
        mode: Mode
        if restart:
            mode = "restart"
        elif new_frames and (due or size >= self.wal_trigger):
            mode = "passive"
        elif idle and size > 0:
            mode = "truncate"
        else:
            return None
        conn = self._conn
        if conn is None:
            conn = self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {RESTART_BUSY_MS if restart else TRUNCATE_BUSY_MS:d}")
        t0 = time.perf_counter()
        busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchone()
        took = time.perf_counter() - t0
        self._wal_seen = size = self._wal_size()
        self._metrics.store_bytes.labels("wal").set(size)
        return Checkpoint(mode, bool(busy), took, size)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
