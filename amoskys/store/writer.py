"""The Store: one writer task that group-commits events, deduplicates them and chains their digests.

Publishers call `submit()`, which never blocks: it queues the records and returns a future that
resolves with one Outcome per record only after the SQLite COMMIT returned (with the configured
`synchronous` mode), or fails with StoreError when the transaction failed — never a false ack.

The writer (`run()`) takes every queued submission up to `max_batch_events`, waits at most
`max_batch_wait_ms` for more only while publishers keep submitting, and writes the batch in one
transaction: events with executemany, per-boot high-water marks, the chain tip, the derived views and
any chain anchors. Dedup is optimistic: the batch is inserted as if every event were new; when the
UNIQUE (source, event_id) constraint objects, the transaction is rolled back, the stored keys are
looked up and the batch is written again without them.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import structlog
from google.protobuf.message import DecodeError

from amoskys.config import StoreConfig
from amoskys.errors import StoreError
from amoskys.events import KINDS, EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.store import chain, integrity, queries, space
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.loss import loss_record
from amoskys.store.records import Outcome, Record, StoredEvent, check_record
from amoskys.store.space import SpaceLadder, SpaceState, StoreStats
from amoskys.store.sql import fetch_one, rollback_quietly
from amoskys.store.state import UPSERT_ANCHOR, ApplianceState, ChainAnchor
from amoskys.store.views import VIEW_KINDS, ViewBatch

log = structlog.get_logger(__name__)

_MB = 1024 * 1024
_KIND_LABELS = frozenset(KINDS)
#: Bytes a row costs beyond its envelope (ids, digest, index entries): the estimate's first guess.
_ROW_OVERHEAD_BYTES = 200
_INT64_MAX = (1 << 63) - 1
#: How often the writer runs retention when nothing else asks for it.
MAINTENANCE_INTERVAL_S = 60.0
#: The side file is written at most this often (and at close).
HIGH_WATER_INTERVAL_S = 1.0
#: Space is measured at least this often while writing (the estimate fills the gaps).
MEASURE_INTERVAL_S = 1.0
#: Rows deleted per maintenance transaction.
PRUNE_CHUNK = 20_000
#: Pages returned per incremental-vacuum transaction.
VACUUM_CHUNK_PAGES = 2048
#: Backoff after a failed transaction: first, maximum (seconds).
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 5.0

_INSERT_EVENT = (
    "INSERT INTO events (store_seq, source, event_id, boot_id, source_seq, kind, ts_ns, received_ns, "
    "envelope, digest, origin, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_MARK = (
    "INSERT INTO source_marks (source, boot_id, max_seq, pruned_seq, first_received_ns, last_received_ns) "
    "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (source, boot_id) DO UPDATE SET "
    "max_seq = MAX(max_seq, excluded.max_seq), last_received_ns = excluded.last_received_ns"
)
_UPDATE_TIP = "UPDATE store_meta SET last_seq = ?, last_digest = ?, row_count = ? WHERE id = 1"


@dataclass(slots=True)
class _Tip:
    last_seq: int
    last_digest: bytes
    rows: int


@dataclass(slots=True)
class _Mark:
    max_seq: int
    pruned_seq: int
    last_received_ns: int


@dataclass(slots=True)
class _Pending:
    records: Sequence[Record]
    future: asyncio.Future[list[Outcome]] | None
    anchor: ChainAnchor | None = None


@dataclass(slots=True)
class _Plan:
    """One transaction's worth of writes, computed before it starts."""

    rows: list[tuple[Any, ...]]
    outcomes: list[list[Outcome]]
    marks: dict[tuple[str, str], int]
    tip: _Tip
    views: ViewBatch
    anchors: list[tuple[str, bytes, int]]
    committed: dict[str, int]
    duplicates: dict[str, int]
    est_bytes: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one `Store.maintain()` pass did."""

    retention_deleted: int = 0
    hard_cap_dropped: int = 0
    vacuumed_pages: int = 0
    space_state: SpaceState = SpaceState.OK


@dataclass(slots=True)
class _Flags:
    closing: bool = False
    closed: bool = False
    running: bool = False
    failing: bool = False
    reload_needed: bool = False
    retry_at: float = 0.0
    backoff: float = 0.0
    submits: int = 0
    last_measure: float = 0.0
    last_maintenance: float = 0.0
    hw_written_seq: int = -1
    hw_written_at: float = 0.0
    hw_failing: bool = False
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


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
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        lock_fd: int,
        store_id: str,
        tip: _Tip,
        marks: dict[tuple[str, str], _Mark],
        source_name: str,
    ) -> None:
        """Use `Store.open()`: it checks and prepares the file and opens the connections."""
        self.path = path
        self.config = config
        self._metrics = metrics
        self._clock_ns = clock_ns
        self._db = writer
        self._reader = reader
        self._lock_fd = lock_fd
        self._store_id = store_id
        self._tip = tip
        self._marks = marks
        self._stamper = EnvelopeStamper(source_name)
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self._side_path = integrity.side_file(self.path)
        self._tx_lock = asyncio.Lock()
        self._maint_lock = asyncio.Lock()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_events = 0
        self._wakeup = asyncio.Event()
        self._flags = _Flags()
        self._ladder = SpaceLadder(self.config.high_water_mb * _MB, self.config.hard_cap_mb * _MB)
        self._used_bytes = 0  # last measurement plus the estimate of what was written since
        self._bytes_per_row = 0  # measured used bytes per row, a floor for the estimate
        self._writer_task: asyncio.Task[Any] | None = None
        self.state = ApplianceState(
            self._db, self._reader, self._tx_lock, self._clock_ns, str(self.path), lambda: self._flags.closed
        )

    # ------------------------------------------------------------------ open

    @classmethod
    async def open(
        cls,
        path: Path,
        config: StoreConfig,
        metrics: Metrics,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        source_name: str = "appliance",
    ) -> Store:
        """Open (creating, checking, repairing and migrating as needed) the store at `path`.

        Raises StoreError when the file is in use by another process or cannot be used at all; a
        corrupt file is moved aside and reported instead (see integrity.prepare).
        """
        t0 = time.monotonic()
        lock_fd = await asyncio.to_thread(_lock, path)
        writer = reader = None
        try:
            prepared = await asyncio.to_thread(
                integrity.prepare,
                path,
                quick_check_max_bytes=config.quick_check_max_mb * _MB,
                now_ns=clock_ns(),
            )
            writer = await _connect(path, config, query_only=False)
            reader = await _connect(path, config, query_only=True)
            tip, marks = await _load_tip(writer)
            store = cls(
                path=path,
                config=config,
                metrics=metrics,
                clock_ns=clock_ns,
                writer=writer,
                reader=reader,
                lock_fd=lock_fd,
                store_id=prepared.store_id,
                tip=tip,
                marks=marks,
                source_name=source_name,
            )
            if prepared.losses:
                await store._report_losses(prepared.losses)
            await store._measure()
            await store._write_high_water(force=True)
        except sqlite3.Error as err:
            await _close_quietly(writer, reader, lock_fd)
            raise StoreError(f"store {path}: cannot open: {err}") from err
        except BaseException:
            await _close_quietly(writer, reader, lock_fd)
            raise
        metrics.store_rows.set(store._tip.rows)
        log.info(
            "store_opened",
            path=str(path),
            rows=store._tip.rows,
            last_seq=store._tip.last_seq,
            created=prepared.created,
            quick_check=prepared.quick_check,
            migrations=prepared.migrations,
            synchronous=config.synchronous,
            space_state=store._ladder.state.value,
            took_ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return store

    # ------------------------------------------------------------------ submit

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
        flags = self._flags
        if flags.closing:
            raise SubmitRefusedError(f"store {self.path} is closing", reason="closing", backoff_hint_ms=1000)
        if flags.failing and time.monotonic() < flags.retry_at:
            wait_ms = max(1, int((flags.retry_at - time.monotonic()) * 1000))
            raise SubmitRefusedError(
                f"store {self.path}: the last transaction failed; retrying in {wait_ms} ms",
                reason="error",
                backoff_hint_ms=wait_ms,
            )
        n = len(records)
        if self._queued_events and self._queued_events + n > self.config.queue_max_events:
            raise SubmitRefusedError(
                f"store {self.path}: writer queue full ({self._queued_events} of "
                f"{self.config.queue_max_events} events queued, {n} more offered)",
                reason="queue_full",
                backoff_hint_ms=50,
            )
        if not local and self._ladder.state is not SpaceState.OK:
            raise SubmitRefusedError(
                f"store {self.path}: above the high-water mark ({self._used_bytes // _MB} MB used, "
                f"mark {self.config.high_water_mb} MB); only local events are taken",
                reason="high_water",
                backoff_hint_ms=5000,
            )
        for i, r in enumerate(records):
            if (  # the common case, inline; check_record() says what is wrong otherwise
                type(r) is Record
                and type(r.envelope) is bytes
                and r.source
                and r.event_id
                and type(r.source_seq) is int
                and 0 <= r.source_seq <= _INT64_MAX
                and type(r.ts_ns) is int
                and -_INT64_MAX <= r.ts_ns <= _INT64_MAX
            ):
                continue
            problem = check_record(r)
            if problem is not None:
                raise ValueError(
                    f"Store.submit: record {i} (source={getattr(r, 'source', None)!r}, "
                    f"event_id={getattr(r, 'event_id', None)!r}) cannot be stored: {problem}"
                )
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        if n == 0 and anchor is None:
            future.set_result([])
            return future
        self._queue.append(_Pending(records, future, anchor))
        self._queued_events += n
        flags.submits += 1
        self._metrics.store_queue_events.set(self._queued_events)
        self._wakeup.set()
        return future

    # ------------------------------------------------------------------ writer loop

    async def run(self) -> None:
        """The writer loop. Returns after `close()` drained the queue; cancelling it fails what is
        queued (with StoreError: nothing of it is acked)."""
        flags = self._flags
        if flags.running or flags.closed:
            raise StoreError(f"store {self.path}: run() is already running or the store is closed")
        flags.running = True
        self._writer_task = asyncio.current_task()
        flags.stopped.clear()
        flags.last_maintenance = time.monotonic()
        try:
            while True:
                if not self._queue:
                    if flags.closing:
                        break
                    await self._idle()
                    continue
                batch = await self._collect()
                await self._write(batch)
                await self._after_write()
        finally:
            flags.running = False
            if not flags.closing:
                self._fail_queue(
                    StoreError(f"store {self.path}: the writer stopped before these events were stored")
                )
            flags.stopped.set()

    async def _idle(self) -> None:
        """Wait for work; flush the side file and run maintenance when they come due."""
        flags = self._flags
        now = time.monotonic()
        due = [flags.last_maintenance + MAINTENANCE_INTERVAL_S]
        if flags.hw_written_seq != self._tip.last_seq:
            due.append(flags.hw_written_at + HIGH_WATER_INTERVAL_S)
        timeout = max(0.0, min(due) - now)
        self._wakeup.clear()
        if not self._queue and not flags.closing:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
        if self._queue or flags.closing:
            return
        await self._write_high_water()
        if time.monotonic() - flags.last_maintenance >= MAINTENANCE_INTERVAL_S:
            await self._maintain_quietly()

    async def _collect(self) -> list[_Pending]:
        """Take queued submissions for one transaction (group commit)."""
        limit = self.config.max_batch_events
        deadline = time.monotonic() + self.config.max_batch_wait_ms / 1000
        first = self._queue.popleft()
        batch, n = [first], len(first.records)
        try:
            while n < limit:
                while self._queue and n + len(self._queue[0].records) <= limit:
                    item = self._queue.popleft()
                    batch.append(item)
                    n += len(item.records)
                if self._queue or time.monotonic() >= deadline:
                    break
                before = self._flags.submits
                await asyncio.sleep(0)  # let publishers that are ready submit
                if self._flags.submits == before:
                    break  # idle: commit at once
        except BaseException:
            self._queue.extendleft(reversed(batch))  # cancelled while collecting: nothing was taken
            raise
        self._queued_events -= n
        self._metrics.store_queue_events.set(self._queued_events)
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        """Write one batch in one transaction and settle its futures."""
        flags = self._flags
        t0 = time.perf_counter()
        try:
            async with self._tx_lock:
                await self._reload_if_needed()
                received_ns = self._clock_ns()
                plan = self._plan([p.records for p in batch], [p.anchor for p in batch], received_ns)
                try:
                    await self._commit(plan)
                except sqlite3.IntegrityError:
                    existing = await self._existing_keys([r for p in batch for r in p.records])
                    if not existing:
                        raise
                    plan = self._plan(
                        [p.records for p in batch], [p.anchor for p in batch], received_ns, existing
                    )
                    await self._commit(plan)
        except (sqlite3.Error, OverflowError, ValueError) as err:  # ValueError: connection closed
            self._on_failure(err, batch)
            return
        except BaseException:
            flags.reload_needed = True
            error = StoreError(f"store {self.path}: the writer stopped before this batch was committed")
            for p in batch:
                _settle_error(p.future, error)
            raise
        self._on_success(plan, batch, time.perf_counter() - t0)

    async def _reload_if_needed(self) -> None:
        """After a failed or interrupted transaction, read the tip and marks back from the database
        (the caller holds the transaction lock)."""
        if self._flags.reload_needed:
            self._tip, self._marks = await _load_tip(self._db)
            self._flags.reload_needed = False

    def _plan(
        self,
        batches: Sequence[Sequence[Record]],
        anchors: Sequence[ChainAnchor | None],
        received_ns: int,
        existing: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
        base: _Tip | None = None,
    ) -> _Plan:
        """Decide every row of a transaction: dedup, store_seq, chain digest, marks, views."""
        tip = base or self._tip
        seq, digest = tip.last_seq, tip.last_digest
        marks_known = self._marks
        rows: list[tuple[Any, ...]] = []
        outcomes: list[list[Outcome]] = []
        marks: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, str]] = set()
        views = ViewBatch()
        committed: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        est = 0
        committed_outcome, duplicate_outcome = Outcome.COMMITTED, Outcome.DUPLICATE
        sha256 = hashlib.sha256
        boot: tuple[str, str] = ("", "")
        pruned = top = -1
        for records in batches:
            out: list[Outcome] = []
            for r in records:
                source, source_seq = r.source, r.source_seq
                if source != boot[0] or r.boot_id != boot[1]:  # runs of one publisher are the norm
                    if top >= 0:
                        marks[boot] = max(top, marks.get(boot, -1))
                    boot = (source, r.boot_id)
                    known = marks_known.get(boot)
                    pruned = known.pruned_seq if known is not None and known.pruned_seq > 0 else -1
                    top = -1
                key = (source, r.event_id)
                if key in seen or source_seq <= pruned or (existing and key in existing):
                    out.append(duplicate_outcome)
                    duplicates[r.kind] = duplicates.get(r.kind, 0) + 1
                    continue
                seen.add(key)
                seq += 1
                envelope = r.envelope
                digest = sha256(digest + envelope).digest()
                rows.append(
                    (
                        seq,
                        source,
                        r.event_id,
                        r.boot_id,
                        source_seq,
                        r.kind,
                        r.ts_ns,
                        received_ns,
                        envelope,
                        digest,
                        r.origin,
                        1 if r.synthetic else 0,
                    )
                )
                if source_seq > top:
                    top = source_seq
                kind = r.kind
                if kind in VIEW_KINDS:
                    self._view(views, seq, r)
                out.append(committed_outcome)
                committed[kind] = committed.get(kind, 0) + 1
                est += len(envelope)
            outcomes.append(out)
        if top >= 0:
            marks[boot] = max(top, marks.get(boot, -1))
        est += len(rows) * _ROW_OVERHEAD_BYTES
        return _Plan(
            rows=rows,
            outcomes=outcomes,
            marks=marks,
            tip=_Tip(seq, digest, tip.rows + len(rows)),
            views=views,
            anchors=[(a.sender, a.digest, a.ts_ns) for a in anchors if a is not None],
            committed=committed,
            duplicates=duplicates,
            est_bytes=est,
            received_ns=received_ns,
        )

    @staticmethod
    def _view(views: ViewBatch, seq: int, r: Record) -> None:
        envelope = r.parsed
        if envelope is None:
            try:
                envelope = events_pb2.Envelope.FromString(r.envelope)
            except DecodeError:
                log.debug(
                    "store_view_skipped", source=r.source, event_id=r.event_id, why="unparseable envelope"
                )
                return
        views.add(seq, envelope)

    async def _commit(self, plan: _Plan) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._apply(plan)
            await db.execute("COMMIT")
        except BaseException:
            await rollback_quietly(db)
            raise

    async def _apply(self, plan: _Plan) -> None:
        """The statements of a plan, inside the caller's transaction."""
        db = self._db
        if plan.rows:
            await db.executemany(_INSERT_EVENT, plan.rows)
            received = plan.received_ns
            await db.executemany(
                _UPSERT_MARK, [(s, b, top, received, received) for (s, b), top in plan.marks.items()]
            )
            await db.execute(_UPDATE_TIP, (plan.tip.last_seq, plan.tip.last_digest, plan.tip.rows))
            for sql, rows in plan.views.statements():
                await db.executemany(sql, rows)
        if plan.anchors:
            await db.executemany(UPSERT_ANCHOR, plan.anchors)

    def _adopt(self, plan: _Plan) -> None:
        """Make a committed plan the writer's in-memory state."""
        self._tip = plan.tip
        for boot, top in plan.marks.items():
            mark = self._marks.get(boot)
            if mark is None:
                self._marks[boot] = _Mark(top, 0, plan.received_ns)
            else:
                mark.max_seq = max(mark.max_seq, top)
                mark.last_received_ns = plan.received_ns
        self._used_bytes += max(plan.est_bytes, len(plan.rows) * self._bytes_per_row)
        m = self._metrics
        for kind, count in plan.committed.items():
            m.store_committed.labels(kind if kind in _KIND_LABELS else "unknown").inc(count)
        for kind, count in plan.duplicates.items():
            m.store_duplicates.labels(kind if kind in _KIND_LABELS else "unknown").inc(count)
        m.store_rows.set(plan.tip.rows)

    async def _existing_keys(self, records: Sequence[Record]) -> set[tuple[str, str]]:
        """Which (source, event_id) of `records` are already stored (the slow path of dedup)."""
        by_source: dict[str, list[str]] = collections.defaultdict(list)
        for r in records:
            by_source[r.source].append(r.event_id)
        found: set[tuple[str, str]] = set()
        for source, ids in by_source.items():
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                rows = await self._db.execute_fetchall(
                    f"SELECT event_id FROM events WHERE source = ? AND event_id IN ({','.join('?' * len(chunk))})",
                    (source, *chunk),
                )
                found.update((source, row[0]) for row in rows)
        return found

    def _on_success(self, plan: _Plan, batch: list[_Pending], took: float) -> None:
        flags = self._flags
        self._adopt(plan)
        for p, outcomes in zip(batch, plan.outcomes, strict=True):
            if p.future is not None and not p.future.done():
                p.future.set_result(outcomes)
        self._metrics.store_batch_events.observe(sum(len(p.records) for p in batch))
        self._metrics.store_commit_seconds.observe(took)
        if flags.failing:
            flags.failing = False
            flags.backoff = 0.0
            log.info("store_recovered", path=str(self.path), last_seq=self._tip.last_seq)

    def _on_failure(self, err: Exception, batch: list[_Pending]) -> None:
        """Fail the batch and everything queued behind it, and back off before taking more."""
        flags = self._flags
        reason = _error_reason(err)
        self._metrics.store_errors.labels(reason).inc()
        flags.reload_needed = True
        flags.backoff = min(max(flags.backoff * 2, BACKOFF_FIRST_S), BACKOFF_MAX_S)
        flags.retry_at = time.monotonic() + flags.backoff
        error = StoreError(f"store {self.path}: transaction failed, nothing of it was committed: {err}")
        for p in batch:
            _settle_error(p.future, error)
        self._fail_queue(error)
        if not flags.failing:
            flags.failing = True
            log.error("store_write_failed", path=str(self.path), reason=reason, error=str(err))
            if reason == "corrupt":
                integrity.request_check(self.path)  # the next start checks the file whatever its size

    def _fail_queue(self, error: StoreError) -> None:
        while self._queue:
            _settle_error(self._queue.popleft().future, error)
        self._queued_events = 0
        self._metrics.store_queue_events.set(0)

    async def _after_write(self) -> None:
        """Space bookkeeping and the side file, between transactions."""
        flags = self._flags
        now = time.monotonic()
        near = self._used_bytes >= self._ladder.next_threshold() * 0.9
        if near or now - flags.last_measure >= MEASURE_INTERVAL_S:
            before = self._ladder.state
            try:
                await self._measure()
            except StoreError as err:  # the next write fails too if this is real; never stop the writer
                flags.last_measure = now
                log.debug("store_measure_failed", path=str(self.path), error=str(err))
                return
            if self._ladder.state is not SpaceState.OK and (
                self._ladder.state is not before or now - flags.last_maintenance >= MAINTENANCE_INTERVAL_S / 6
            ):
                await self._maintain_quietly()
        await self._write_high_water()

    # ------------------------------------------------------------------ space

    async def _measure(self) -> space.SpaceMeasure:
        """Measure the files and move the ladder (logging and counting a change of rung)."""
        try:
            async with self._tx_lock:
                measured = await space.measure(self._db, self._wal_path)
        except (sqlite3.Error, ValueError) as err:  # ValueError: the connection is closed
            raise StoreError(f"store {self.path}: cannot measure its size: {err}") from err
        self._flags.last_measure = time.monotonic()
        self._used_bytes = measured.used_bytes
        if self._tip.rows > 100:  # calibrate the estimate on what rows really cost here
            self._bytes_per_row = measured.used_bytes // self._tip.rows
        before = self._ladder.state
        after = self._ladder.decide(measured.used_bytes)
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

    async def _maintain_quietly(self) -> None:
        """Maintenance from the writer loop: a failure is logged and retried later, never fatal."""
        try:
            await self.maintain()
        except StoreError as err:
            self._flags.last_maintenance = time.monotonic()
            log.warning("store_maintenance_failed", path=str(self.path), error=str(err))

    async def maintain(self) -> MaintenanceReport:
        """Run the space ladder now: retention, then the hard cap, then incremental vacuum.

        The writer calls it every minute and when the space state climbs; call it directly after
        changing sink cursors or in tests. Safe to call while the writer runs.
        """
        async with self._maint_lock:
            try:
                retention = await self._retention()
                if retention:
                    await self._forget_old_boots()
                    await self._checkpoint()
                measured = await self._measure()
                dropped, rounds = 0, 0
                while self._ladder.state is SpaceState.HARD_CAP and rounds < 20:
                    rounds += 1
                    step = await self._drop_oldest(measured)
                    if not step:
                        break  # nothing left to drop: what fills the space is not the log
                    dropped += step
                    await self._checkpoint()
                    measured = await self._measure()
                vacuumed = await self._vacuum(measured)
                if vacuumed:
                    await self._checkpoint()
                    await self._measure()
            except (sqlite3.Error, ValueError) as err:  # ValueError: the connection is closed
                raise StoreError(f"store {self.path}: maintenance failed: {err}") from err
            finally:
                self._flags.last_maintenance = time.monotonic()
        return MaintenanceReport(retention, dropped, vacuumed, self._ladder.state)

    async def _retention(self) -> int:
        """Delete the oldest rows that are past retention and acked by every enabled sink."""
        cutoff = self._clock_ns() - self.config.retention_hours * 3600 * 1_000_000_000
        deleted = 0
        while True:
            async with self._tx_lock:
                db = self._db
                await self._reload_if_needed()
                await db.execute("BEGIN IMMEDIATE")
                try:
                    count, low = await fetch_one(
                        db, "SELECT COUNT(*), MIN(store_seq) FROM sink_cursors WHERE enabled = 1"
                    )
                    acked = int(low) if count else self._tip.last_seq
                    boundary = await space.retention_boundary(
                        db, cutoff_ns=cutoff, acked_seq=acked, limit=PRUNE_CHUNK
                    )
                    pruned = await space.prune_prefix(db, boundary) if boundary else space.NOTHING_PRUNED
                    tip = _Tip(self._tip.last_seq, self._tip.last_digest, self._tip.rows - pruned.count)
                    if pruned.count:
                        await db.execute(_UPDATE_TIP, (tip.last_seq, tip.last_digest, tip.rows))
                    await db.execute("COMMIT")
                except BaseException:
                    await rollback_quietly(db)
                    self._flags.reload_needed = True
                    raise
                if not pruned.count:
                    break
                self._tip = tip
                self._adopt_pruned(pruned)
                deleted += pruned.count
            await self._yield_to_writes()
        if deleted:
            log.info("store_retention_deleted", path=str(self.path), rows=deleted)
        return deleted

    async def _forget_old_boots(self) -> None:
        """Forget the marks of publisher boots whose every row is gone and that sent nothing for
        twice the retention: the marks table would otherwise grow by one row per publisher restart."""
        cutoff = self._clock_ns() - 2 * self.config.retention_hours * 3600 * 1_000_000_000
        async with self._tx_lock:
            cursor = await self._db.execute(
                "DELETE FROM source_marks WHERE pruned_seq >= max_seq AND last_received_ns < ?", (cutoff,)
            )
            if cursor.rowcount:
                self._tip, self._marks = await _load_tip(self._db)

    async def _drop_oldest(self, measured: space.SpaceMeasure) -> int:
        """At the hard cap: drop the oldest rows down to the target and report them as lost."""
        excess = measured.used_bytes - self._ladder.hard_cap_target
        per_row = max(measured.used_bytes / max(self._tip.rows, 1), 1.0)
        count = min(max(math.ceil(excess / per_row), 1), PRUNE_CHUNK * 5)
        now = self._clock_ns()
        async with self._tx_lock:
            db = self._db
            await self._reload_if_needed()
            await db.execute("BEGIN IMMEDIATE")
            try:
                boundary = await space.oldest_boundary(db, count)
                pruned = await space.prune_prefix(db, boundary)
                if not pruned.count:
                    await db.execute("COMMIT")
                    return 0
                base = _Tip(self._tip.last_seq, self._tip.last_digest, self._tip.rows - pruned.count)
                record = loss_record(
                    self._stamper,
                    ts_ns=now,
                    reason="hard_cap",
                    count=pruned.count,
                    range_start=pruned.first_seq,
                    range_end=pruned.last_seq,
                    window_start_ns=pruned.first_ts_ns,
                    window_end_ns=pruned.last_ts_ns,
                )
                plan = self._plan([[record]], [None], now, base=base)
                await self._apply(plan)
                await db.execute("COMMIT")
            except BaseException:
                await rollback_quietly(db)
                self._flags.reload_needed = True
                raise
            self._adopt_pruned(pruned)
            self._adopt(plan)
        self._metrics.store_lost.labels("hard_cap").inc(pruned.count)
        log.warning(
            "store_hard_cap_dropped",
            path=str(self.path),
            rows=pruned.count,
            first_seq=pruned.first_seq,
            last_seq=pruned.last_seq,
            hard_cap_mb=self.config.hard_cap_mb,
        )
        return pruned.count

    async def _yield_to_writes(self) -> None:
        """Between maintenance chunks run from the writer task, commit what publishers queued."""
        if self._queue and asyncio.current_task() is self._writer_task:
            await self._write(await self._collect())

    def _adopt_pruned(self, pruned: space.Pruned) -> None:
        for top, source, boot in pruned.marks:
            mark = self._marks.get((source, boot))
            if mark is not None and top > mark.pruned_seq:
                mark.pruned_seq = top
        self._metrics.store_rows.set(self._tip.rows)

    async def _vacuum(self, measured: space.SpaceMeasure) -> int:
        """Return free pages to the file system when they pile up (more than 1/8 of the file and
        4 MB), a chunk per transaction, then checkpoint so the file really shrinks."""
        if measured.free_bytes < max(4 * _MB, measured.db_bytes // 8):
            return 0
        freed = 0
        while True:
            async with self._tx_lock:
                (free_before,) = await fetch_one(self._db, "PRAGMA freelist_count")
                if not free_before:
                    break
                await self._db.execute_fetchall(f"PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES:d})")
                (free_after,) = await fetch_one(self._db, "PRAGMA freelist_count")
            if free_after >= free_before:
                break
            freed += free_before - free_after
            await self._yield_to_writes()
        return freed

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it: deletions and vacuum write every page they
        touch into the WAL, which counts toward the budget until it is checkpointed."""
        async with self._tx_lock:
            busy, _, _ = await fetch_one(self._db, "PRAGMA wal_checkpoint(TRUNCATE)")
        if busy:
            log.debug("store_checkpoint_busy", path=str(self.path))

    # ------------------------------------------------------------------ losses, side file

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
        async with self._tx_lock:
            await self._reload_if_needed()
            plan = self._plan([records], [None], now)
            await self._commit(plan)
            self._adopt(plan)
        for loss in losses:
            self._metrics.store_lost.labels(loss.reason).inc(loss.count)

    async def _write_high_water(self, *, force: bool = False) -> None:
        """Write the side file when the tip moved and a second passed since the last write."""
        flags = self._flags
        seq = self._tip.last_seq
        if not force and (
            seq == flags.hw_written_seq or time.monotonic() - flags.hw_written_at < HIGH_WATER_INTERVAL_S
        ):
            return
        mark = integrity.HighWater(self._store_id, seq, self._tip.rows)
        try:
            await asyncio.to_thread(integrity.write_high_water, self._side_path, mark)
        except OSError as err:
            if not flags.hw_failing:
                flags.hw_failing = True
                log.warning("store_highwater_write_failed", path=str(self._side_path), error=err.strerror)
            flags.hw_written_at = time.monotonic()
            return
        if flags.hw_failing:
            flags.hw_failing = False
            log.info("store_highwater_write_recovered", path=str(self._side_path))
        flags.hw_written_seq = seq
        flags.hw_written_at = time.monotonic()

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop taking work, commit what is queued, write the side file and close the files."""
        flags = self._flags
        if flags.closed:
            return
        flags.closing = True
        self._wakeup.set()
        if flags.running:
            await flags.stopped.wait()
        while self._queue:  # the writer never ran, or was cancelled after close() began
            await self._write(await self._collect())
        flags.closed = True
        try:
            await self._write_high_water(force=True)
            try:
                async with self._tx_lock:
                    await self._db.execute_fetchall("PRAGMA optimize")
            except sqlite3.Error as err:
                log.debug("store_optimize_failed", error=str(err))
        finally:
            async with self._tx_lock:  # after any state change that holds it
                await _close_quietly(self._db, self._reader, self._lock_fd)
        log.info("store_closed", path=str(self.path), last_seq=self._tip.last_seq, rows=self._tip.rows)

    # ------------------------------------------------------------------ reads

    def _open_reader(self) -> aiosqlite.Connection:
        if self._flags.closed:
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
            measured = await space.measure(reader, self._wal_path)
            low, _ = await queries.seq_bounds(reader)
        except sqlite3.Error as err:
            raise StoreError(f"store {self.path}: cannot read its size: {err}") from err
        return StoreStats(
            rows=self._tip.rows,
            first_seq=low,
            last_seq=self._tip.last_seq,
            db_bytes=measured.db_bytes,
            wal_bytes=measured.wal_bytes,
            free_bytes=measured.free_bytes,
            used_bytes=measured.used_bytes,
            space_state=self._ladder.state,
            high_water_bytes=self._ladder.high_water_bytes,
            hard_cap_bytes=self._ladder.hard_cap_bytes,
            queue_events=self._queued_events,
        )

    @property
    def space_state(self) -> SpaceState:
        return self._ladder.state

    def high_water(self, source: str) -> tuple[str, int] | None:
        """The (boot_id, source_seq) most recently raised for `source` in this run or a previous
        one: the boot with the latest events and the highest sequence number stored from it."""
        best: tuple[int, str, int] | None = None
        for (s, boot), mark in self._marks.items():
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


# ---------------------------------------------------------------------- helpers


def _settle_error(future: asyncio.Future[list[Outcome]] | None, error: StoreError) -> None:
    if future is not None and not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a publisher that gave up waiting must not cause a log line


def _error_reason(err: Exception) -> str:
    if not isinstance(err, sqlite3.Error):
        return "invalid" if isinstance(err, OverflowError) else "closed"
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return "other"
    primary = code & 0xFF
    return {
        sqlite3.SQLITE_FULL: "disk_full",
        sqlite3.SQLITE_IOERR: "io",
        sqlite3.SQLITE_CORRUPT: "corrupt",
        sqlite3.SQLITE_NOTADB: "corrupt",
        sqlite3.SQLITE_BUSY: "busy",
        sqlite3.SQLITE_LOCKED: "busy",
        sqlite3.SQLITE_READONLY: "readonly",
        sqlite3.SQLITE_CANTOPEN: "io",
    }.get(primary, "other")


def _lock(path: Path) -> int:
    """Take the store's lock file, so two processes never write one database."""
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


async def _connect(path: Path, config: StoreConfig, *, query_only: bool) -> aiosqlite.Connection:
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


async def _load_tip(conn: aiosqlite.Connection) -> tuple[_Tip, dict[tuple[str, str], _Mark]]:
    last_seq, last_digest, row_count = await fetch_one(
        conn, "SELECT last_seq, last_digest, row_count FROM store_meta WHERE id = 1"
    )
    marks = {
        (source, boot): _Mark(int(top), int(pruned), int(received))
        for source, boot, top, pruned, received in await conn.execute_fetchall(
            "SELECT source, boot_id, max_seq, pruned_seq, last_received_ns FROM source_marks"
        )
    }
    return _Tip(int(last_seq), bytes(last_digest), int(row_count)), marks


async def _close_quietly(
    writer: aiosqlite.Connection | None, reader: aiosqlite.Connection | None, lock_fd: int
) -> None:
    for conn in (writer, reader):
        if conn is not None:
            try:
                await conn.close()
            except sqlite3.Error as err:
                log.warning("store_close_failed", error=str(err))
    os.close(lock_fd)
