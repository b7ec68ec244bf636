"""`Store`: the one object the rest of the appliance holds — opening and closing the store, and its reads.

It composes the parts, which share one `LogState`: the `Writer` (submit and group commit), the
`Maintenance` (the space ladder) and the `SideFile` (the high-water side file). Reads use a second
connection and short read transactions (`queries`, `chain`), so they work while the writer runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from amoskys.config import StoreConfig
from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.store import chain, integrity, outbox, queries, space
from amoskys.store.checkpoint import Checkpointer, wal_trigger_bytes
from amoskys.store.connection import WriterConnection, close_quietly, connect, lock_file
from amoskys.store.logstate import LogState, load_head
from amoskys.store.loss import loss_record
from amoskys.store.maintenance import Maintenance, MaintenanceReport
from amoskys.store.records import Outcome, Record, StoredEvent
from amoskys.store.sidefile import SideFile
from amoskys.store.space import SpaceLadder, SpaceState, StoreStats
from amoskys.store.state import ApplianceState, ChainAnchor
from amoskys.store.writer import StoreOp, Writer

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

_MB = 1024 * 1024


class Store:
    """The event log, its derived views and the appliance state, in one SQLite database.

    Open with `await Store.open(...)`, run `store.run()` as a task, `submit()` events, `close()`.
    """

    def __init__(
        self,
        *,
        path: Path,
        config: StoreConfig,
        metrics: Metrics,
        clock_ns: Callable[[], int],
        writer: WriterConnection,
        reader: aiosqlite.Connection,
        lock_fd: int,
        store_id: str,
        log_state: LogState,
        stamper: EnvelopeStamper,
    ) -> None:
        """Use `Store.open()`: it checks and prepares the file and opens the connections."""
        self.path = path
        self.config = config
        self._metrics = metrics
        self._clock_ns = clock_ns
        self._conn = writer
        self._db = writer.aio  # the same connection, behind aiosqlite (appliance state, maintenance reads)
        self._reader = reader
        self._lock_fd = lock_fd
        self._log = log_state
        self._stamper = stamper
        self._wal_path = path.with_name(path.name + "-wal")
        self._writer = Writer(
            path=path, config=config, metrics=metrics, clock_ns=clock_ns, db=writer, state=log_state
        )
        self._maintenance = Maintenance(
            path=path,
            config=config,
            metrics=metrics,
            clock_ns=clock_ns,
            writer=self._writer,
            db=writer.aio,  # the one writer connection: its writes never race the writer's
            state=log_state,
            stamper=stamper,
        )
        self._side_file = SideFile(integrity.side_file(path), store_id, log_state)
        self._writer.housekeeping = _Housekeeping(self._maintenance, self._side_file, self._rows_added)
        self._checkpointer = Checkpointer(
            path,
            metrics,
            self._writer,
            log_state.lock,
            wal_trigger=wal_trigger_bytes(config.hard_cap_mb * _MB),
        )
        self._writer.on_commit = self._on_commit
        self.commits = outbox.CommitSignal()  # sinks wait on it for new rows (amoskys.forwarders)
        self._notified_seq = log_state.head.tip.last_seq
        self.state = ApplianceState(
            writer.aio, reader, log_state.lock, clock_ns, str(path), lambda: log_state.lifecycle.closed
        )

    def _on_commit(self, wal_bytes: int) -> None:
        self._checkpointer.nudge(wal_bytes)
        self._notified_seq = self._log.head.tip.last_seq
        self.commits.notify()

    def _rows_added(self) -> None:
        """After housekeeping: wake the sinks when it committed rows (a LossReport at the hard cap)."""
        if self._log.head.tip.last_seq != self._notified_seq:
            self._notified_seq = self._log.head.tip.last_seq
            self.commits.notify()

    # ------------------------------------------------------------------ open

    @classmethod
    async def open(
        cls,
        path: Path,
        config: StoreConfig,
        metrics: Metrics,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        stamper: EnvelopeStamper | None = None,
        source_name: str = "appliance",
    ) -> Store:
        """Open (creating, checking, repairing and migrating as needed) the store at `path`.

        `stamper` stamps the events the store writes about itself (LossReports): pass the process's
        one stamper, so everything it writes in one life carries one boot_id. Without it the store
        makes its own, named `source_name` (for tools that open the store outside `amoskys run`).

        Raises StoreError when the file is in use by another process or cannot be used at all; a
        corrupt file is moved aside and reported instead (see integrity.prepare).
        """
        t0 = time.monotonic()
        lock_fd = await asyncio.to_thread(lock_file, path)
        writer = reader = None
        try:
            prepared = await asyncio.to_thread(
                integrity.prepare,
                path,
                quick_check_max_bytes=config.quick_check_max_mb * _MB,
                now_ns=clock_ns(),
            )
            writer = await WriterConnection.open(path, config)
            reader = await connect(path, config, query_only=True)
            log_state = LogState(
                await load_head(writer.aio), SpaceLadder(config.high_water_mb * _MB, config.hard_cap_mb * _MB)
            )
            store = cls(
                path=path,
                config=config,
                metrics=metrics,
                clock_ns=clock_ns,
                writer=writer,
                reader=reader,
                lock_fd=lock_fd,
                store_id=prepared.store_id,
                log_state=log_state,
                stamper=stamper or EnvelopeStamper(source_name),
            )
            if prepared.losses:
                await store._report_losses(prepared.losses)
            await store._maintenance.measure()
            await store._side_file.write(force=True)
        except sqlite3.Error as err:
            await close_quietly(writer, reader, lock_fd)
            raise StoreError(f"store {path}: cannot open: {err}") from err
        except BaseException:
            await close_quietly(writer, reader, lock_fd)
            raise
        tip = log_state.head.tip
        metrics.store_rows.set(tip.rows)
        log.info(
            "store_opened",
            path=str(path),
            rows=tip.rows,
            last_seq=tip.last_seq,
            created=prepared.created,
            quick_check=prepared.quick_check,
            migrations=prepared.migrations,
            synchronous=config.synchronous,
            space_state=log_state.space.ladder.state.value,
            took_ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return store

    async def _report_losses(self, losses: list[integrity.Loss]) -> None:
        """Write LossReports for what integrity.prepare found (in one transaction)."""
        now = self._clock_ns()
        records = [
            loss_record(
                self._stamper,
                ts_ns=now,
                reason=loss.reason,
                count=loss.count,
                range_start=loss.range_start,
                range_end=loss.range_end,
            )
            for loss in losses
        ]
        await self._writer.write_own(records)
        for loss in losses:
            self._metrics.store_lost.labels(loss.reason).inc(loss.count)

    # ------------------------------------------------------------------ writing

    def submit(
        self, records: Sequence[Record], *, local: bool = False, anchor: ChainAnchor | None = None
    ) -> asyncio.Future[list[Outcome]]:
        """Queue records for the writer and return a future of their outcomes (in order).

        Never blocks. The future resolves only after the COMMIT that stored them, or fails with
        StoreError when that transaction failed. Raises SubmitRefusedError (a StoreFullError with
        `reason`) when the work cannot be taken now; nothing is queued then.

        `local` marks the appliance's own collectors: their events are still taken above the
        high-water mark (up to the hard cap, where the oldest rows make room); remote publishers
        are refused there. `anchor`, when given, is written in the same transaction as the events.
        """
        return self._writer.submit(records, local=local, anchor=anchor)

    async def run(self) -> None:
        """The writer loop and the checkpointer. Returns after `close()` drained the queue; cancelling
        it fails what is queued (with StoreError: nothing of it is acked)."""
        checkpoints = asyncio.create_task(self._checkpointer.run(), name="store-checkpointer")
        try:
            await self._writer.run()
        finally:
            checkpoints.cancel()
            await asyncio.wait({checkpoints})

    # ------------------------------------------------------------------ the outbox (amoskys.store.outbox)

    def submit_outbox(self, ops: Sequence[outbox.OutboxOp]) -> asyncio.Future[list[Outcome]]:
        """Queue outbox writes (cursor advances, sealed batches, the configured sinks): they ride the
        writer's next group commit, and the future resolves after its COMMIT. Raises
        SubmitRefusedError when the store is closing."""
        return self._writer.submit_ops(ops)

    def submit_ops(self, ops: Sequence[StoreOp]) -> asyncio.Future[list[Outcome]]:
        """Queue writes of another part of the store (amoskys.store.alerts' ops): they ride the
        writer's next group commit, and the future resolves after its COMMIT. Raises
        SubmitRefusedError when the store is closing."""
        return self._writer.submit_ops(ops)

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """Run `fn` (a read of another part of the store, e.g. amoskys.store.alerts) on the read
        connection; an SQLite error becomes StoreError."""
        try:
            return await fn(self._open_reader())
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: read failed: {err}") from err

    @property
    def last_seq(self) -> int:
        """The highest store_seq committed."""
        return self._log.head.tip.last_seq

    async def outbox_read(
        self, *, after_seq: int, kinds: frozenset[str] | None, limit: int
    ) -> outbox.OutboxRead:
        """Rows of `kinds` (None: every kind) after `after_seq`, in store order (see outbox.read_after)."""
        try:
            return await outbox.read_after(
                self._open_reader(), after_seq=after_seq, kinds=kinds, limit=limit, last_seq=self.last_seq
            )
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read the outbox: {err}") from err

    async def outbox_range(
        self, *, first_seq: int, last_seq: int, kinds: frozenset[str] | None
    ) -> list[outbox.Row]:
        """The rows of a sealed batch (see outbox.read_range)."""
        try:
            return await outbox.read_range(
                self._open_reader(), first_seq=first_seq, last_seq=last_seq, kinds=kinds
            )
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read the outbox: {err}") from err

    async def sink_cursor(self, name: str) -> outbox.SinkCursor | None:
        try:
            return await outbox.cursor(self._open_reader(), name)
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read the cursor of sink {name!r}: {err}") from err

    async def sealed_batches(self, sink: str) -> list[outbox.SealedBatch]:
        try:
            return await outbox.sealed_batches(self._open_reader(), sink)
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read the batches of sink {sink!r}: {err}") from err

    async def maintain(self) -> MaintenanceReport:
        """Run the space ladder now: retention, then the hard cap, then incremental vacuum.

        The writer calls it every minute and when the space state climbs; call it directly after
        changing sink cursors or in tests. Safe to call while the writer runs.
        """
        return await self._maintenance.maintain()

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop taking work, commit what is queued, write the side file and close the files."""
        life = self._log.lifecycle
        if life.closed:
            return
        life.closing = True
        self._writer.wake()
        if life.running:
            await life.stopped.wait()
        await self._writer.drain()  # the writer never ran, or was cancelled after close() began
        self._writer.close()
        life.closed = True
        try:
            await self._side_file.write(force=True)
            try:
                async with self._log.lock:
                    await self._db.execute_fetchall("PRAGMA optimize")
            except sqlite3.Error as err:
                log.debug("store_optimize_failed", error=str(err))
        finally:
            async with self._log.lock:  # after any state change that holds it
                await self._checkpointer.close()
                await close_quietly(self._conn, self._reader, self._lock_fd)
        tip = self._log.head.tip
        log.info("store_closed", path=str(self.path), last_seq=tip.last_seq, rows=tip.rows)

    # ------------------------------------------------------------------ reads

    @property
    def running(self) -> bool:
        """The writer loop is running."""
        return self._log.lifecycle.running

    @property
    def boot_id(self) -> str:
        """The boot_id of the events the store writes about itself (its stamper's)."""
        return self._stamper.boot_id

    def _open_reader(self) -> aiosqlite.Connection:
        if self._log.lifecycle.closed:
            raise StoreError(f"store {self.path} is closed")
        return self._reader

    async def events(
        self,
        *,
        kind: str | None = None,
        source: str | None = None,
        since_ns: int | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Stored events after `after_seq`, in store_seq order (see queries.events)."""
        return await queries.events(
            self._open_reader(),
            kind=kind,
            source=source,
            since_ns=since_ns,
            after_seq=after_seq,
            limit=limit,
            path=str(self.path),
        )

    async def stats(self) -> StoreStats:
        """Rows, file sizes and space state, measured now."""
        reader = self._open_reader()
        try:
            # both in one trip to the reader's thread (and the WAL's stat beside it)
            measured, (low, _) = await asyncio.gather(
                space.measure(reader, self._wal_path), queries.seq_bounds(reader)
            )
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read its size: {err}") from err
        tip, ladder = self._log.head.tip, self._log.space.ladder
        return StoreStats(
            rows=tip.rows,
            first_seq=low,
            last_seq=tip.last_seq,
            db_bytes=measured.db_bytes,
            wal_bytes=measured.wal_bytes,
            free_bytes=measured.free_bytes,
            used_bytes=measured.used_bytes,
            space_state=ladder.state,
            high_water_bytes=ladder.high_water_bytes,
            hard_cap_bytes=ladder.hard_cap_bytes,
            queue_events=self._writer.queued_events,
            synthetic_rows=self._log.head.synthetic_rows,
        )

    @property
    def space_state(self) -> SpaceState:
        return self._log.space.ladder.state

    def high_water(self, source: str) -> tuple[str, int] | None:
        """The (boot_id, source_seq) most recently raised for `source` in this run or a previous
        one: the boot with the latest events and the highest sequence number stored from it."""
        best: tuple[int, str, int] | None = None
        for (s, boot), mark in self._log.head.marks.items():
            if s == source and (best is None or mark.last_received_ns > best[0]):
                best = (mark.last_received_ns, boot, mark.max_seq)
        return None if best is None else (best[1], best[2])

    async def verify_chain(self, *, after_seq: int = 0) -> chain.ChainCheck:
        """Recompute the chain digest over the log (paged short reads)."""
        try:
            return await chain.verify_chain(self._open_reader(), after_seq=after_seq)
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot verify the chain: {err}") from err

    async def devices(self, *, source: str | None = None, present_only: bool = False) -> list[dict[str, Any]]:
        return await queries.devices(
            self._open_reader(), source=source, present_only=present_only, path=str(self.path)
        )

    async def snmp_targets(self) -> list[dict[str, Any]]:
        return await queries.snmp_targets(self._open_reader(), path=str(self.path))

    async def snmp_interfaces(self, *, target: str | None = None) -> list[dict[str, Any]]:
        return await queries.snmp_interfaces(self._open_reader(), target=target, path=str(self.path))

    async def processes(self, *, source: str | None = None) -> list[dict[str, Any]]:
        return await queries.processes(self._open_reader(), source=source, path=str(self.path))


class _Housekeeping:
    """What the writer loop runs between transactions and while idle: the space ladder, then the side
    file."""

    def __init__(self, maintenance: Maintenance, side_file: SideFile, rows_added: Callable[[], None]) -> None:
        self._maintenance = maintenance
        self._side_file = side_file
        self._rows_added = rows_added  # maintenance may commit rows of its own (LossReports)

    def due_at(self) -> float:
        due = self._maintenance.due_at()
        side = self._side_file.due_at()
        return due if side is None else min(due, side)

    async def when_idle(self) -> None:
        await self._side_file.write()
        await self._maintenance.when_idle()
        self._rows_added()

    async def after_write(self) -> None:
        if await self._maintenance.after_write():
            await self._side_file.write()
        self._rows_added()
