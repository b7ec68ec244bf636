"""Running the space ladder (DESIGN §5): measure, retention, forgetting old boots, dropping the oldest
rows at the hard cap, incremental vacuum and WAL checkpoints.

`space` holds the pieces (the ladder's rungs, measuring, the SQL of prefix deletion); this module
decides when they run and runs them as short transactions under the transaction lock, committing what
publishers queued between chunks when it runs on the writer task.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import structlog

from amoskys.config import StoreConfig
from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.store import outbox, series, space
from amoskys.store.logstate import LogState, Tip
from amoskys.store.loss import loss_record
from amoskys.store.space import SpaceState
from amoskys.store.sql import fetch_one, rollback_quietly
from amoskys.store.writer import UPDATE_TIP, Writer

log = structlog.get_logger(__name__)

_MB = 1024 * 1024
_NS_PER_HOUR = 3600 * 1_000_000_000
_NEVER_NS = (1 << 63) - 1
#: How often the writer runs retention when nothing else asks for it.
MAINTENANCE_INTERVAL_S = 60.0
#: Space is measured at least this often while writing (the estimate fills the gaps).
MEASURE_INTERVAL_S = 1.0
#: Rows deleted per maintenance transaction.
PRUNE_CHUNK = 20_000
#: Pages returned per incremental-vacuum transaction.
VACUUM_CHUNK_PAGES = 2048


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one `Store.maintain()` pass did."""

    retention_deleted: int = 0
    hard_cap_dropped: int = 0
    vacuumed_pages: int = 0
    space_state: SpaceState = SpaceState.OK
    series_deleted: int = 0  # time-series points past their own retention


class Maintenance:
    """The space ladder of one store."""

    def __init__(
        self,
        *,
        path: Path,
        config: StoreConfig,
        metrics: Metrics,
        clock_ns: Callable[[], int],
        writer: Writer,
        db: aiosqlite.Connection,
        state: LogState,
        stamper: EnvelopeStamper,
    ) -> None:
        self.path = path
        self.config = config
        self._metrics = metrics
        self._clock_ns = clock_ns
        self._writer = writer
        self._db = db
        self._state = state
        self._lock = state.lock
        self._stamper = stamper
        self._wal_path = path.with_name(path.name + "-wal")
        self._one_pass = asyncio.Lock()  # one maintenance pass at a time
        # (clock_ns, store_seq acked by every sink then), for [store] delete_acked_after_seconds
        self._acked_history: collections.deque[tuple[int, int]] = collections.deque()

    # ------------------------------------------------------------------ scheduling

    def due_at(self) -> float:
        """When the periodic pass is next due (monotonic)."""
        return self._state.schedule.last_maintenance + MAINTENANCE_INTERVAL_S

    async def when_idle(self) -> None:
        """The periodic pass, when it came due."""
        if time.monotonic() - self._state.schedule.last_maintenance >= MAINTENANCE_INTERVAL_S:
            await self.maintain_quietly()

    async def after_write(self) -> bool:
        """Measure when the estimate nears the next mark (or a second passed), and run the ladder when
        the state climbed (or stays up). False when measuring failed (the writer goes on writing)."""
        state = self._state
        ladder = state.space.ladder
        now = time.monotonic()
        near = state.space.used_bytes >= ladder.next_threshold() * 0.9
        if not near and now - state.schedule.last_measure < MEASURE_INTERVAL_S:
            return True
        before = ladder.state
        try:
            await self.measure()
        except StoreError as err:  # the next write fails too if this is real; never stop the writer
            state.schedule.last_measure = now
            log.debug("store_measure_failed", path=str(self.path), error=str(err))
            return False
        if ladder.state is not SpaceState.OK and (
            ladder.state is not before or now - state.schedule.last_maintenance >= MAINTENANCE_INTERVAL_S / 6
        ):
            await self.maintain_quietly()
        return True

    async def maintain_quietly(self) -> None:
        """Maintenance from the writer loop: a failure is logged and retried later, never fatal."""
        try:
            await self.maintain()
        except StoreError as err:
            self._state.schedule.last_maintenance = time.monotonic()
            log.warning("store_maintenance_failed", path=str(self.path), error=str(err))

    # ------------------------------------------------------------------ measuring

    async def measure(self) -> space.SpaceMeasure:
        """Measure the files and move the ladder (logging and counting a change of rung)."""
        ladder = self._state.space.ladder
        before = ladder.state
        try:
            async with self._lock:
                measured = await space.measure(self._db, self._wal_path)
                self._state.adopt_measure(measured.used_bytes)
        except (sqlite3.Error, ValueError) as err:  # ValueError: the connection is closed
            raise StoreError(f"store {self.path}: cannot measure its size: {err}") from err
        self._state.schedule.last_measure = time.monotonic()
        after = ladder.state
        m = self._metrics
        m.store_bytes.labels("db").set(measured.db_bytes)
        m.store_bytes.labels("wal").set(measured.wal_bytes)
        for s in SpaceState:
            m.store_space_state.labels(s.value).set(1 if s is after else 0)
        if after is not before:
            event = "store_space_ok" if after is SpaceState.OK else f"store_{after.value}"
            (log.info if after is SpaceState.OK else log.warning)(
                event,
                path=str(self.path),
                used_mb=round(measured.used_bytes / _MB, 1),
                high_water_mb=self.config.high_water_mb,
                hard_cap_mb=self.config.hard_cap_mb,
            )
        return measured

    # ------------------------------------------------------------------ the ladder

    async def maintain(self) -> MaintenanceReport:
        """Run the space ladder now: retention, then the hard cap, then incremental vacuum (see
        `Store.maintain`). One pass at a time."""
        state = self._state
        async with self._one_pass:
            try:
                retention = await self._retention()
                if retention:
                    await self._forget_old_boots()
                series_deleted = await self._series_retention()
                if retention or series_deleted:
                    await self._checkpoint()
                measured = await self.measure()
                dropped, rounds = 0, 0
                while state.space.ladder.state is SpaceState.HARD_CAP and rounds < 20:
                    rounds += 1
                    step = await self._drop_oldest(measured)
                    if not step:
                        break  # nothing left to drop: what fills the space is not the log
                    dropped += step
                    await self._checkpoint()
                    measured = await self.measure()
                vacuumed = await self._vacuum(measured)
                if vacuumed:
                    await self._checkpoint()
                    await self.measure()
            except (sqlite3.Error, ValueError) as err:  # ValueError: the connection is closed
                raise StoreError(f"store {self.path}: maintenance failed: {err}") from err
            finally:
                state.schedule.last_maintenance = time.monotonic()
        return MaintenanceReport(retention, dropped, vacuumed, state.space.ladder.state, series_deleted)

    async def _retention(self) -> int:
        """Delete the oldest rows that are past retention and acked by every enabled sink."""
        cutoff = self._clock_ns() - self.config.retention_hours * _NS_PER_HOUR
        deleted = 0
        state = self._state
        while True:
            async with self._lock:
                db = self._db
                await state.reload_if_needed(db)
                head = state.head
                await db.execute("BEGIN IMMEDIATE")
                try:
                    acked = await outbox.acked_seq(db, last_seq=head.tip.last_seq, scan=PRUNE_CHUNK)
                    boundary = await space.retention_boundary(
                        db, cutoff_ns=cutoff, acked_seq=acked, limit=PRUNE_CHUNK
                    )
                    early = self._acked_long_ago(acked, first=not deleted)
                    if early > boundary:  # acked by every sink long enough ago, however recent
                        boundary = max(
                            boundary,
                            await space.retention_boundary(
                                db, cutoff_ns=_NEVER_NS, acked_seq=early, limit=PRUNE_CHUNK
                            ),
                        )
                    pruned = await space.prune_prefix(db, boundary) if boundary else space.NOTHING_PRUNED
                    tip = Tip(head.tip.last_seq, head.tip.last_digest, head.tip.rows - pruned.count)
                    if pruned.count:
                        await db.execute(UPDATE_TIP, (tip.last_seq, tip.last_digest, tip.rows))
                    await db.execute("COMMIT")
                except BaseException:
                    await rollback_quietly(db)
                    state.mark_reload()
                    raise
                if not pruned.count:
                    break
                state.adopt_pruned(tip.rows, pruned.marks, pruned.synthetic)
                self._metrics.store_rows.set(tip.rows)
                deleted += pruned.count
            await self._writer.flush_between()
        if deleted:
            log.info("store_retention_deleted", path=str(self.path), rows=deleted)
        return deleted

    def _acked_long_ago(self, acked: int, *, first: bool) -> int:
        """The store_seq every sink had acked `delete_acked_after_seconds` ago (0: off, or not known
        that long: the history lives in memory). `first`: the pass's first chunk records `acked`."""
        delay = self.config.delete_acked_after_seconds
        if not delay:
            return 0
        now = self._clock_ns()
        history = self._acked_history
        if first:
            history.append((now, acked))
        limit = now - delay * 1_000_000_000
        found = 0
        while history and history[0][0] <= limit:
            found = history[0][1]
            if len(history) > 1 and history[1][0] <= limit:
                history.popleft()
                continue
            break
        return min(found, acked)

    async def _series_retention(self) -> int:
        """Delete time-series points past their step's retention (`series_minute_hours`,
        `series_quarter_days`), a few buckets per transaction. Independent of the events' retention:
        the points outlive the events they count."""
        cut = series.cutoffs(
            self._clock_ns(),
            minute_hours=self.config.series_minute_hours,
            quarter_days=self.config.series_quarter_days,
        )
        deleted = 0
        for step, cutoff in cut.items():
            more = True
            while more:
                async with self._lock:
                    db = self._db
                    await db.execute("BEGIN IMMEDIATE")
                    try:
                        count, more = await series.delete_expired_chunk(db, step, cutoff)
                        await db.execute("COMMIT")
                    except BaseException:
                        await rollback_quietly(db)
                        raise
                deleted += count
                await self._writer.flush_between()
        if deleted:
            log.info("store_series_deleted", path=str(self.path), points=deleted)
        return deleted

    async def _forget_old_boots(self) -> None:
        """Forget the marks of publisher boots whose every row is gone and that sent nothing for
        twice the retention: the marks table would otherwise grow by one row per publisher restart."""
        cutoff = self._clock_ns() - 2 * self.config.retention_hours * _NS_PER_HOUR
        async with self._lock:
            cursor = await self._db.execute(
                "DELETE FROM source_marks WHERE pruned_seq >= max_seq AND last_received_ns < ?", (cutoff,)
            )
            if cursor.rowcount:
                await self._state.reload(self._db)

    async def _drop_oldest(self, measured: space.SpaceMeasure) -> int:
        """At the hard cap: drop the oldest rows down to the target and report them as lost."""
        state = self._state
        excess = measured.used_bytes - state.space.ladder.hard_cap_target
        per_row = max(measured.used_bytes / max(state.head.tip.rows, 1), 1.0)
        count = min(max(math.ceil(excess / per_row), 1), PRUNE_CHUNK * 5)
        now = self._clock_ns()
        async with self._lock:
            db = self._db
            await state.reload_if_needed(db)
            await db.execute("BEGIN IMMEDIATE")
            try:
                boundary = await space.oldest_boundary(db, count)
                # With sinks, what they all sent is safe upstream: only the rest is lost (an upper bound
                # when a sink filters kinds). The store's own LossReports no sink has sent yet go too:
                # this report carries theirs.
                acked = await outbox.acked_seq(db, last_seq=state.head.tip.last_seq, scan=PRUNE_CHUNK)
                lost = await outbox.unsent_span(db, after_seq=acked, upto_seq=boundary)
                unsent = await outbox.unsent_losses(
                    db, source=self._stamper.source, after_seq=acked, upto_seq=boundary
                )
                pruned = await space.prune_prefix(db, boundary)
                if not pruned.count:
                    await db.execute("COMMIT")
                    return 0
                if lost is None:  # no sink: every row dropped is lost
                    lost = outbox.Span(pruned.count, pruned.first_seq, pruned.first_ts_ns)
                head = state.head.tip
                base = Tip(head.last_seq, head.last_digest, head.rows - pruned.count)
                newly_lost = lost.rows - unsent.reports  # the dropped LossReports are not events lost
                lost_count = newly_lost + unsent.count  # what the report says: theirs are carried in it
                plan = None
                if lost_count > 0:
                    record = loss_record(
                        self._stamper,
                        ts_ns=now,
                        reason="hard_cap",
                        count=lost_count,
                        range_start=min(lost.first_seq, unsent.range_start or lost.first_seq),
                        range_end=pruned.last_seq,
                        window_start_ns=min(lost.first_ts_ns, unsent.window_start_ns or lost.first_ts_ns),
                        window_end_ns=pruned.last_ts_ns,
                    )
                    plan = self._writer.plan([[record]], [None], now, base=base)
                    await self._writer.apply(plan)
                else:
                    await db.execute(UPDATE_TIP, (base.last_seq, base.last_digest, base.rows))
                await db.execute("COMMIT")
            except BaseException:
                await rollback_quietly(db)
                state.mark_reload()
                raise
            state.adopt_pruned(base.rows, pruned.marks, pruned.synthetic)
            if plan is not None:
                self._writer.adopt(plan)
        self._metrics.store_lost.labels("hard_cap").inc(max(0, newly_lost))  # each event once
        log.warning(
            "store_hard_cap_dropped",
            path=str(self.path),
            rows=pruned.count,
            lost=max(0, newly_lost),
            reported=max(0, lost_count),
            first_seq=pruned.first_seq,
            last_seq=pruned.last_seq,
            hard_cap_mb=self.config.hard_cap_mb,
        )
        return pruned.count

    async def _vacuum(self, measured: space.SpaceMeasure) -> int:
        """Return free pages to the file system when they pile up (more than 1/8 of the file and
        4 MB), a chunk per transaction, then checkpoint so the file really shrinks."""
        if measured.free_bytes < max(4 * _MB, measured.db_bytes // 8):
            return 0
        freed = 0
        while True:
            async with self._lock:
                (free_before,) = await fetch_one(self._db, "PRAGMA freelist_count")
                if not free_before:
                    break
                await self._db.execute_fetchall(f"PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES:d})")
                (free_after,) = await fetch_one(self._db, "PRAGMA freelist_count")
            if free_after >= free_before:
                break
            freed += free_before - free_after
            await self._writer.flush_between()
        return freed

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it: deletions and vacuum write every page they
        touch into the WAL, which counts toward the budget until it is checkpointed."""
        async with self._lock:
            busy, _, _ = await fetch_one(self._db, "PRAGMA wal_checkpoint(TRUNCATE)")
        if busy:
            log.debug("store_checkpoint_busy", path=str(self.path))
