"""The log's shared state: one `LogState` that the writer, maintenance and the side file read and change.

Its fields are grouped by concern. Three groups describe the database and change only while the
transaction lock (`TxLock`) is held by the changing task — their methods check it, so a change made
outside a transaction is a RuntimeError, not a silent race:

- `head` — the committed tip (last store_seq, chain digest, row count) and the per-boot marks;
- `space` — the ladder's rung and the used-bytes estimate;
- `backoff` — whether the last transaction failed, and when the writer takes work again.

Three groups are bookkeeping owned by one task at a time, never by a transaction, and are plain fields:

- `lifecycle` — running/closing/closed and the submission counter (`submit()` is synchronous and
  cannot wait for the lock; `close()` sets `closing` before it waits for the writer);
- `schedule` — when space was last measured and maintenance last ran;
- `side` — what the high-water side file last said (written outside the lock: an fsync must not hold up
  commits).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

import aiosqlite

from amoskys import retry
from amoskys.store.space import SpaceLadder
from amoskys.store.sql import fetch_one


class TxLock(asyncio.Lock):
    """The transaction lock: one transaction at a time on the writer's connection (whichever thread
    runs it: the writer's own or aiosqlite's), and the only time `LogState.head`, `.space` and
    `.backoff` change. The checkpointer takes it too when its checkpoint must not interleave with
    commits. Knows which task holds it."""

    _owner: asyncio.Task[object] | None = None

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self._owner = asyncio.current_task()
        return True

    def release(self) -> None:
        self._owner = None
        super().release()

    def require_held(self, what: str) -> None:
        """Raise RuntimeError unless the calling task holds the lock."""
        if self._owner is None or self._owner is not asyncio.current_task():
            raise RuntimeError(f"store: {what} changes the log state and needs the transaction lock")


@dataclass(slots=True)
class Tip:
    """The committed end of the log: as in `store_meta`."""

    last_seq: int
    last_digest: bytes
    rows: int


@dataclass(slots=True)
class Mark:
    """One publisher boot's marks: as in `source_marks`."""

    max_seq: int  # the highest source_seq stored
    pruned_seq: int  # the highest source_seq deleted (replays at or below it are duplicates)
    last_received_ns: int  # when the boot last sent something


@dataclass(slots=True)
class Head:
    """What the database holds at its committed end (under the lock)."""

    tip: Tip
    marks: dict[tuple[str, str], Mark]
    #: rows of `events` that loadgen identities published (counted at load on their partial index,
    #: then kept by the writer and the deletions: the overview reads it on every request)
    synthetic_rows: int = 0
    #: A transaction failed or was interrupted: read tip and marks back before the next one.
    reload_needed: bool = False


@dataclass(slots=True)
class SpaceBook:
    """Where the store is on the space ladder (under the lock)."""

    ladder: SpaceLadder
    used_bytes: int = 0  # the last measurement plus the estimate of what was written since
    bytes_per_row: int = 0  # measured used bytes per row: a floor for the estimate


@dataclass(slots=True)
class Backoff:
    """The writer's failure episode (under the lock)."""

    failing: bool = False  # the last transaction failed
    retry_at: float = 0.0  # monotonic time before which submit() refuses with reason "error"
    delay: float = 0.0  # the current backoff (seconds), doubled per failure
    #: the episode's delays (`amoskys.retry.Backoff`, no jitter); None between episodes
    delays: retry.Backoff | None = None


@dataclass(slots=True)
class Lifecycle:
    """The writer task's life (changed by run() and close(), read by submit())."""

    closing: bool = False  # close() began: submit() refuses
    closed: bool = False  # the connections are (being) closed: reads refuse
    running: bool = False  # run() is in its loop
    submits: int = 0  # submissions taken so far: group commit waits only while this moves
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # run() returned


@dataclass(slots=True)
class Schedule:
    """When periodic work last ran (monotonic seconds)."""

    last_measure: float = 0.0
    last_maintenance: float = 0.0


@dataclass(slots=True)
class SideFileBook:
    """What the high-water side file last said (changed only by `SideFile`)."""

    written_seq: int = -1  # the store_seq it holds (-1: not written in this run)
    written_at: float = 0.0  # monotonic time of the last attempt
    failing: bool = False  # the last attempt failed (logged once per episode)


class LogState:
    """The one state object of an open store; see the module docstring for who changes what when."""

    __slots__ = ("backoff", "head", "lifecycle", "lock", "schedule", "side", "space")

    def __init__(self, head: Head, ladder: SpaceLadder) -> None:
        self.lock = TxLock()
        self.head = head
        self.space = SpaceBook(ladder)
        self.backoff = Backoff()
        self.lifecycle = Lifecycle()
        self.schedule = Schedule()
        self.side = SideFileBook()

    # -- head (under the lock)

    async def reload_if_needed(self, conn: aiosqlite.Connection) -> None:
        """After a failed or interrupted transaction, read the tip and marks back from the database."""
        if self.head.reload_needed:
            await self.reload(conn)

    async def reload(self, conn: aiosqlite.Connection) -> None:
        self.lock.require_held("reloading the head")
        loaded = await load_head(conn)
        self.head.tip, self.head.marks, self.head.reload_needed = loaded.tip, loaded.marks, False

    def mark_reload(self) -> None:
        """A transaction failed or was interrupted: what is in memory may not be what is stored."""
        self.lock.require_held("marking the head stale")
        self.head.reload_needed = True

    def adopt_commit(
        self,
        tip: Tip,
        marks: dict[tuple[str, str], int],
        received_ns: int,
        est_bytes: int,
        rows: int,
        synthetic: int = 0,
    ) -> None:
        """Make a committed transaction's tip and marks the head (`synthetic` of its rows are
        loadgen's), and add its size to the estimate."""
        self.lock.require_held("adopting a commit")
        self.head.tip = tip
        self.head.synthetic_rows += synthetic
        known = self.head.marks
        for boot, top in marks.items():
            mark = known.get(boot)
            if mark is None:
                known[boot] = Mark(top, 0, received_ns)
            else:
                mark.max_seq = max(mark.max_seq, top)
                mark.last_received_ns = received_ns
        self.space.used_bytes += max(est_bytes, rows * self.space.bytes_per_row)

    def adopt_pruned(
        self, rows_left: int, pruned_marks: list[tuple[int, str, str]], synthetic: int = 0
    ) -> None:
        """Rows were deleted from the front of the log (`synthetic` of them loadgen's): the row
        counts and the boots' pruned marks."""
        self.lock.require_held("adopting a deletion")
        tip = self.head.tip
        self.head.tip = Tip(tip.last_seq, tip.last_digest, rows_left)
        self.head.synthetic_rows = max(0, self.head.synthetic_rows - synthetic)
        for top, source, boot in pruned_marks:
            mark = self.head.marks.get((source, boot))
            if mark is not None and top > mark.pruned_seq:
                mark.pruned_seq = top

    # -- space (under the lock)

    def adopt_measure(self, used_bytes: int) -> None:
        """A measurement replaces the estimate and calibrates the bytes a row costs."""
        self.lock.require_held("adopting a measurement")
        self.space.used_bytes = used_bytes
        if self.head.tip.rows > 100:
            self.space.bytes_per_row = used_bytes // self.head.tip.rows
        self.space.ladder.decide(used_bytes)

    # -- backoff (under the lock)

    def fail(self, now: float, first: float, maximum: float) -> bool:
        """A transaction failed: back off (`first` doubling up to `maximum`, no jitter: there is one
        writer per file, no herd to spread); True when this begins a failure episode."""
        self.lock.require_held("recording a failure")
        b = self.backoff
        if b.delays is None:
            b.delays = retry.Backoff(first, maximum, jitter=(1.0, 1.0))
        b.delay = b.delays.next_delay()
        b.retry_at = now + b.delay
        began, b.failing = not b.failing, True
        return began

    def recover(self) -> bool:
        """A transaction committed: True when this ends a failure episode."""
        b = self.backoff
        if not b.failing:
            return False
        self.lock.require_held("recording a recovery")
        b.failing, b.delay, b.delays = False, 0.0, None
        return True


async def load_head(conn: aiosqlite.Connection) -> Head:
    """The tip and the per-boot marks, as stored."""
    last_seq, last_digest, row_count = await fetch_one(
        conn, "SELECT last_seq, last_digest, row_count FROM store_meta WHERE id = 1"
    )
    marks = {
        (source, boot): Mark(int(top), int(pruned), int(received))
        for source, boot, top, pruned, received in await conn.execute_fetchall(
            "SELECT source, boot_id, max_seq, pruned_seq, last_received_ns FROM source_marks"
        )
    }
    (synthetic,) = await fetch_one(conn, "SELECT COUNT(*) FROM events WHERE synthetic = 1")
    return Head(Tip(int(last_seq), bytes(last_digest), int(row_count)), marks, int(synthetic))
