"""Submitting events and group-committing them: the store's one writer task.

Publishers call `submit()`, which never blocks: it queues the records and returns a future that
resolves with one Outcome per record only after the SQLite COMMIT returned (with the configured
`synchronous` mode), or fails with StoreError when the transaction failed — never a false ack.

The writer (`run()`) takes every queued submission up to `max_batch_events`, waits at most
`max_batch_wait_ms` for more only while publishers keep submitting, and writes the batch in one
transaction: events with executemany, per-boot high-water marks, the chain tip, the derived views and
any chain anchors. Dedup is optimistic: the batch is inserted as if every event were new; when the
UNIQUE (source, event_id) constraint objects, the transaction is rolled back, the stored keys are
looked up and the batch is written again without them. Between transactions, and while idle, it hands
the loop to its `Housekeeping` (the space ladder and the side file).

A transaction runs on the writer connection's own thread: planning (dedup, store_seq, the chaining
SHA-256 of every envelope, the views' rows), BEGIN…COMMIT and the dedup retry all run there in one
closure, so a group commit costs the loop one thread hop instead of one per statement, and the loop
never waits for the GIL-hungry row loop. After a COMMIT the thread does not wait for the loop: it posts
the committed plan (the loop adopts it and acks its publishers) and goes on with what publishers queued
meanwhile — a chain of transactions, each planned on the previous one's tip, for at most
`CHAIN_BUDGET_S`, then the writer loop gets its turn (housekeeping, the space ladder). The next batch is
planned on a planner thread while the COMMIT before it writes and syncs the WAL (see `_chain`). On a busy loop the
hop back took 1–1.5 ms per transaction, during which the writer thread sat idle: the bus's throughput at
batch 100 was bound by it. The loop holds the transaction lock for the whole chain and adopts each plan
while holding it; nothing else changes the log state's head meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from amoskys.config import StoreConfig
from amoskys.errors import StoreError
from amoskys.events import KINDS
from amoskys.metrics import Metrics
from amoskys.store import integrity
from amoskys.store.bulk import insert_many
from amoskys.store.connection import WriterConnection, outlive
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.logstate import LogState, Tip
from amoskys.store.records import Outcome, Record, check_record
from amoskys.store.space import SpaceState
from amoskys.store.state import UPSERT_ANCHOR, ChainAnchor
from amoskys.store.views import ViewBatch

log = structlog.get_logger(__name__)

_MB = 1024 * 1024
_KIND_LABELS = frozenset(KINDS)
#: Bytes a row costs beyond its envelope (ids, digest, index entries): the estimate's first guess.
_ROW_OVERHEAD_BYTES = 200
_INT64_MAX = (1 << 63) - 1
#: Backoff after a failed transaction: first, maximum (seconds); LogState.fail walks them with
#: amoskys.retry.Backoff, without jitter.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 5.0
#: How long the writer thread may go on committing what was queued meanwhile before the writer loop
#: (housekeeping, the space ladder, other holders of the transaction lock) gets its turn.
CHAIN_BUDGET_S = 0.1

_INSERT_EVENT = (
    "INSERT INTO events (store_seq, source, event_id, boot_id, source_seq, kind, ts_ns, received_ns, "
    "envelope, digest, origin, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_MARK = (
    "INSERT INTO source_marks (source, boot_id, max_seq, pruned_seq, first_received_ns, last_received_ns) "
    "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (source, boot_id) DO UPDATE SET "
    "max_seq = MAX(max_seq, excluded.max_seq), last_received_ns = excluded.last_received_ns"
)
UPDATE_TIP = "UPDATE store_meta SET last_seq = ?, last_digest = ?, row_count = ? WHERE id = 1"


class StoreOp(Protocol):
    """A write of another part of the store that rides a group commit (amoskys.store.outbox)."""

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None: ...


@dataclass(slots=True)
class _Pending:
    records: Sequence[Record]
    future: asyncio.Future[list[Outcome]] | None
    anchor: ChainAnchor | None = None
    ops: Sequence[StoreOp] = ()


@dataclass(slots=True)
class Plan:
    """One transaction's worth of writes, computed before it starts."""

    rows: list[tuple[Any, ...]]
    outcomes: list[list[Outcome]]
    marks: dict[tuple[str, str], int]
    tip: Tip
    views: ViewBatch
    anchors: list[tuple[str, bytes, int]]
    committed: dict[str, int]
    duplicates: dict[str, int]
    est_bytes: int
    received_ns: int
    synthetic: int = 0  # rows of loadgen identities among `rows`
    ops: Sequence[StoreOp] = ()
    wal_bytes: int = 0  # the WAL's size after the COMMIT
    prev: Tip | None = None  # the tip it was planned on


@dataclass(slots=True)
class _Committed:
    """A transaction of a chain, committed on the writer thread, for the loop to adopt and ack."""

    plan: Plan
    batch: list[_Pending]
    took: float
    taken: int  # events the writer thread took from the queue for it (0: the loop took them)


@dataclass(slots=True)
class _Failed:
    """The transaction of a chain that failed (rolled back): the chain ended with it."""

    error: BaseException
    batch: list[_Pending]
    taken: int


class Housekeeping(Protocol):
    """What the writer loop hands the loop to between transactions and while idle."""

    def due_at(self) -> float:
        """The monotonic time idle work is next due."""
        ...

    async def when_idle(self) -> None:
        """Idle work that came due (the writer calls it when the queue is empty)."""
        ...

    async def after_write(self) -> None:
        """Bookkeeping after a transaction."""
        ...


class Writer:
    """The queue, the writer loop and the transactions of one store."""

    def __init__(
        self,
        *,
        path: Path,
        config: StoreConfig,
        metrics: Metrics,
        clock_ns: Callable[[], int],
        db: WriterConnection,
        state: LogState,
    ) -> None:
        self.path = path
        self.config = config
        self._metrics = metrics
        self._clock_ns = clock_ns
        self._db = db
        self._state = state
        self._lock = state.lock
        self._queue: collections.deque[_Pending] = collections.deque()
        self.queued_events = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self.housekeeping: Housekeeping | None = None
        #: monotonic time of the last commit, and how many there were (the checkpointer reads them)
        self.last_commit = 0.0
        self.commits = 0
        #: called on the loop after each group commit with the WAL's size then (the checkpointer's nudge)
        self.on_commit: Callable[[int], None] | None = None
        self._wal_path = path.with_name(path.name + "-wal")
        self._chain_stop = False  # set on the loop when the writer is cancelled: the chain ends early
        self._planner: concurrent.futures.ThreadPoolExecutor | None = None  # started on first use

    # ------------------------------------------------------------------ submit

    def submit(
        self, records: Sequence[Record], *, local: bool = False, anchor: ChainAnchor | None = None
    ) -> asyncio.Future[list[Outcome]]:
        """Queue records for the writer and return a future of their outcomes (see `Store.submit`)."""
        state = self._state
        if state.lifecycle.closing:
            raise SubmitRefusedError(f"store {self.path} is closing", reason="closing", backoff_hint_ms=1000)
        backoff = state.backoff
        if backoff.failing and time.monotonic() < backoff.retry_at:
            wait_ms = max(1, int((backoff.retry_at - time.monotonic()) * 1000))
            raise SubmitRefusedError(
                f"store {self.path}: the last transaction failed; retrying in {wait_ms} ms",
                reason="error",
                backoff_hint_ms=wait_ms,
            )
        n = len(records)
        if self.queued_events and self.queued_events + n > self.config.queue_max_events:
            raise SubmitRefusedError(
                f"store {self.path}: writer queue full ({self.queued_events} of "
                f"{self.config.queue_max_events} events queued, {n} more offered)",
                reason="queue_full",
                backoff_hint_ms=50,
            )
        if not local and state.space.ladder.state is not SpaceState.OK:
            raise SubmitRefusedError(
                f"store {self.path}: above the high-water mark ({state.space.used_bytes // _MB} MB used, "
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
        self.queued_events += n
        state.lifecycle.submits += 1
        self._metrics.store_queue_events.set(self.queued_events)
        self._wakeup.set()
        return future

    def submit_ops(self, ops: Sequence[StoreOp]) -> asyncio.Future[list[Outcome]]:
        """Queue writes that ride the next group commit; the future resolves (with []) after its COMMIT."""
        if self._state.lifecycle.closing:
            raise SubmitRefusedError(f"store {self.path} is closing", reason="closing", backoff_hint_ms=1000)
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending((), future, None, ops))
        self._wakeup.set()
        return future

    def wake(self) -> None:
        """Make an idle writer loop look again (close() began)."""
        self._wakeup.set()

    # ------------------------------------------------------------------ writer loop

    async def run(self) -> None:
        """The writer loop (see `Store.run`)."""
        life = self._state.lifecycle
        if life.running or life.closed:
            raise StoreError(f"store {self.path}: run() is already running or the store is closed")
        life.running = True
        self._task = asyncio.current_task()
        life.stopped.clear()
        self._state.schedule.last_maintenance = time.monotonic()
        try:
            while True:
                if not self._queue:
                    if life.closing:
                        break
                    await self._idle()
                    continue
                batch = await self._collect()
                await self._write(batch)
                if self.housekeeping is not None:
                    await self.housekeeping.after_write()
        finally:
            life.running = False
            if not life.closing:
                self._fail_queue(
                    StoreError(f"store {self.path}: the writer stopped before these events were stored")
                )
            life.stopped.set()

    async def _idle(self) -> None:
        """Wait for work; run housekeeping when it comes due."""
        life = self._state.lifecycle
        hk = self.housekeeping
        timeout = None if hk is None else max(0.0, hk.due_at() - time.monotonic())
        self._wakeup.clear()
        if not self._queue and not life.closing:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
        if self._queue or life.closing or hk is None:
            return
        await hk.when_idle()

    async def flush_between(self) -> None:
        """Between maintenance chunks run from the writer task, commit what publishers queued."""
        if self._queue and asyncio.current_task() is self._task:
            await self._write(await self._collect())

    async def drain(self) -> None:
        """Commit what is queued when the writer loop is not there to (close() after run() ended)."""
        while self._queue:
            await self._write(await self._collect())

    async def _collect(self) -> list[_Pending]:
        """Take queued submissions for one transaction (group commit)."""
        limit = self.config.max_batch_events
        deadline = time.monotonic() + self.config.max_batch_wait_ms / 1000
        life = self._state.lifecycle
        batch: list[_Pending] = []
        n = 0
        try:
            while n < limit:
                n = self._take(batch, n)
                if self._queue or time.monotonic() >= deadline:
                    break
                before = life.submits
                await asyncio.sleep(0)  # let publishers that are ready submit
                if life.submits == before:
                    break  # idle: commit at once
        except BaseException:
            self._queue.extendleft(reversed(batch))  # cancelled while collecting: nothing was taken
            raise
        self._dequeued(n)
        return batch

    def _take(self, batch: list[_Pending], n: int) -> int:
        """Move queued submissions into `batch` while it stays within `max_batch_events` (the first
        always); return its event count. Runs on the loop (`_collect`) or, while a chain runs, on the
        writer thread: only those pop, and only one of them at a time; `submit()` only appends."""
        queue, limit = self._queue, self.config.max_batch_events
        while queue and (not batch or n + len(queue[0].records) <= limit):
            item = queue.popleft()
            batch.append(item)
            n += len(item.records)
        return n

    def _dequeued(self, n: int) -> None:
        self.queued_events -= n
        self._metrics.store_queue_events.set(self.queued_events)

    async def _write(self, batch: list[_Pending]) -> None:
        """Commit `batch`, and after it, on the writer thread, what publishers queued meanwhile (see
        the module's docstring); adopt each committed plan and settle its futures as it arrives."""
        arrived: asyncio.Queue[_Committed | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def post(item: _Committed | None) -> None:  # on the writer thread
            loop.call_soon_threadsafe(arrived.put_nowait, item)

        try:
            async with self._lock:
                try:
                    await self._state.reload_if_needed(self._db.aio)
                    self._chain_stop = False
                    chain = self._db.start(self._chain, batch, post, time.monotonic() + CHAIN_BUDGET_S)
                    try:
                        while (item := await arrived.get()) is not None:
                            self._on_success(item)
                        failed = await chain
                    except BaseException:  # cancelled: the chain ends after its current transaction
                        self._chain_stop = True
                        await outlive(chain)
                        self._after_interrupted_chain(arrived, chain)
                        raise
                    if failed is not None:
                        self._dequeued(failed.taken)
                        if not isinstance(failed.error, (sqlite3.Error, OverflowError, ValueError)):
                            _settle_all(failed.batch, self._stopped_error())
                            raise failed.error
                        self._on_failure(failed.error, failed.batch)  # ValueError: connection closed
                except BaseException:
                    self._state.mark_reload()
                    raise
        except BaseException:  # cancelled (also while waiting for the lock): nothing of it is acked
            _settle_all(batch, self._stopped_error())
            raise

    def _after_interrupted_chain(
        self, arrived: asyncio.Queue[_Committed | None], chain: asyncio.Future[_Failed | None]
    ) -> None:
        """Ack what an interrupted chain committed, and fail what it did not."""
        while not arrived.empty():
            if (item := arrived.get_nowait()) is not None:
                try:
                    self._on_success(item)
                except Exception:  # committed: ack it even if counting it failed
                    _ack(item)
        if not chain.cancelled() and chain.exception() is None and (failed := chain.result()) is not None:
            self._dequeued(failed.taken)
            _settle_all(failed.batch, self._stopped_error())

    def _stopped_error(self) -> StoreError:
        return StoreError(f"store {self.path}: the writer stopped before this batch was committed")

    def _chain(
        self,
        conn: sqlite3.Connection,
        batch: list[_Pending],
        post: Callable[[_Committed | None], None],
        until: float,
    ) -> _Failed | None:
        """On the writer thread: commit `batch`, then batches of what was queued meanwhile until the
        queue is empty or `until` (monotonic) passed; post each committed plan, then None. The failed
        transaction, if any, ends the chain and is returned.

        While a transaction's COMMIT writes and syncs the WAL, what was queued by then is planned on its
        tip on the planner thread (`_plan_ahead`): planning is Python that needs the GIL, the COMMIT is
        SQLite and fsync that do not, so the two overlap and the next transaction starts with its plan
        ready."""
        base: Tip | None = None
        taken = 0
        ahead: concurrent.futures.Future[Plan] | None = None
        following: list[_Pending] = []
        following_taken = 0

        def hand_off(plan: Plan) -> None:  # the plan's statements are in; its COMMIT is next
            nonlocal ahead, following_taken
            if following or self._chain_stop or time.monotonic() >= until:
                return
            following_taken = self._take(following, 0)
            if following:
                ahead = self._plan_ahead(following, plan.tip)

        try:
            while True:
                t0 = time.perf_counter()
                try:
                    plan = ahead.result() if ahead is not None else self._plan_batch(batch, base)
                except BaseException as err:
                    return _Failed(err, batch, taken)
                ahead, following, following_taken = None, [], 0
                try:
                    committed = self._commit_plan(
                        conn, plan, [p.records for p in batch], [p.anchor for p in batch], hand_off
                    )
                except BaseException as err:
                    if following:  # not taken after all: it fails with what is queued
                        if ahead is not None:
                            concurrent.futures.wait([ahead])
                        self._queue.extendleft(reversed(following))
                    return _Failed(err, batch, taken)
                post(_Committed(committed, batch, time.perf_counter() - t0, taken))
                base = committed.tip
                if not following:
                    if self._chain_stop or time.monotonic() >= until or not self._queue:
                        return None
                    following_taken = self._take(following, 0)
                batch, taken = following, following_taken
        finally:
            post(None)

    def _plan_batch(self, batch: Sequence[_Pending], base: Tip | None) -> Plan:
        plan = self.plan([p.records for p in batch], [p.anchor for p in batch], self._clock_ns(), base=base)
        plan.ops = [op for p in batch for op in p.ops]
        return plan

    def _plan_ahead(self, batch: Sequence[_Pending], base: Tip) -> concurrent.futures.Future[Plan]:
        if self._planner is None:
            self._planner = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="amoskys-store-planner"
            )
        return self._planner.submit(self._plan_batch, batch, base)

    def close(self) -> None:
        """Let the planner thread go (the store is closing; nothing is queued any more)."""
        if self._planner is not None:
            self._planner.shutdown(wait=False)

    async def write_own(self, records: list[Record]) -> None:
        """Commit records the store made about itself (LossReports found at open) in one transaction."""
        now = self._clock_ns()
        async with self._lock:
            await self._state.reload_if_needed(self._db.aio)
            plan = await self._db.call(self._transact, [records], [None], now)
            self.adopt(plan)

    def _transact(
        self,
        conn: sqlite3.Connection,
        batches: Sequence[Sequence[Record]],
        anchors: Sequence[ChainAnchor | None],
        received_ns: int,
        ops: Sequence[StoreOp] = (),
        base: Tip | None = None,
    ) -> Plan:
        """One group commit, on the writer thread: plan it (on `base`, else the head's tip) and commit
        it (`_commit_plan`)."""
        plan = self.plan(batches, anchors, received_ns, base=base)
        plan.ops = ops
        return self._commit_plan(conn, plan, batches, anchors)

    def _commit_plan(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        batches: Sequence[Sequence[Record]],
        anchors: Sequence[ChainAnchor | None],
        before_commit: Callable[[Plan], None] | None = None,
    ) -> Plan:
        """Commit a plan of `batches`; when UNIQUE (source, event_id) objects, look up the stored keys
        and plan and commit it again without them. Returns the plan committed (`before_commit` gets it
        before its COMMIT)."""
        try:
            commit(conn, plan, before_commit)
        except sqlite3.IntegrityError:
            existing = _existing_keys(conn, [r for records in batches for r in records])
            if not existing:
                raise
            ops = plan.ops
            plan = self.plan(batches, anchors, plan.received_ns, existing, plan.prev)
            plan.ops = ops
            commit(conn, plan, before_commit)
        try:
            plan.wal_bytes = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            plan.wal_bytes = 0
        return plan

    def plan(
        self,
        batches: Sequence[Sequence[Record]],
        anchors: Sequence[ChainAnchor | None],
        received_ns: int,
        existing: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
        base: Tip | None = None,
    ) -> Plan:
        """Decide every row of a transaction: dedup, store_seq, chain digest, marks, views."""
        tip = base or self._state.head.tip
        seq, digest = tip.last_seq, tip.last_digest
        marks_known = self._state.head.marks
        rows: list[tuple[Any, ...]] = []
        outcomes: list[list[Outcome]] = []
        marks: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, str]] = set()
        views = ViewBatch(received_ns)
        committed: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        est = synthetic = 0
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
                if r.synthetic:
                    synthetic += 1
                views.add_record(seq, r)  # parses only VIEW_KINDS, and only when r.parsed is None
                out.append(committed_outcome)
                committed[kind] = committed.get(kind, 0) + 1
                est += len(envelope)
            outcomes.append(out)
        if top >= 0:
            marks[boot] = max(top, marks.get(boot, -1))
        est += len(rows) * _ROW_OVERHEAD_BYTES + views.est_bytes()
        return Plan(
            rows=rows,
            outcomes=outcomes,
            marks=marks,
            tip=Tip(seq, digest, tip.rows + len(rows)),
            views=views,
            anchors=[(a.sender, a.digest, a.ts_ns) for a in anchors if a is not None],
            committed=committed,
            duplicates=duplicates,
            est_bytes=est,
            received_ns=received_ns,
            synthetic=synthetic,
            prev=tip,
        )

    async def apply(self, plan: Plan) -> None:
        """The statements of a plan, inside the transaction the caller (holding the lock) began on
        the writer connection."""
        await self._db.call(apply, plan)

    def adopt(self, plan: Plan) -> None:
        """Make a committed plan the head of the log state (under the lock) and count it."""
        self._state.adopt_commit(
            plan.tip, plan.marks, plan.received_ns, plan.est_bytes, len(plan.rows), plan.synthetic
        )
        m = self._metrics
        for kind, count in plan.committed.items():
            m.store_committed.labels(kind if kind in _KIND_LABELS else "unknown").inc(count)
        for kind, count in plan.duplicates.items():
            m.store_duplicates.labels(kind if kind in _KIND_LABELS else "unknown").inc(count)
        m.store_rows.set(plan.tip.rows)

    def _on_success(self, done: _Committed) -> None:
        plan, batch = done.plan, done.batch
        self._dequeued(done.taken)
        self.adopt(plan)
        self.last_commit = time.monotonic()
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit(plan.wal_bytes)
        _ack(done)
        self._metrics.store_batch_events.observe(sum(len(p.records) for p in batch))
        self._metrics.store_commit_seconds.observe(done.took)
        if self._state.recover():
            log.info("store_recovered", path=str(self.path), last_seq=self._state.head.tip.last_seq)

    def _on_failure(self, err: Exception, batch: list[_Pending]) -> None:
        """Fail the batch and everything queued behind it, and back off before taking more."""
        reason = error_reason(err)
        self._metrics.store_errors.labels(reason).inc()
        self._state.mark_reload()
        began = self._state.fail(time.monotonic(), BACKOFF_FIRST_S, BACKOFF_MAX_S)
        error = StoreError(f"store {self.path}: transaction failed, nothing of it was committed: {err}")
        for p in batch:
            _settle_error(p.future, error)
        self._fail_queue(error)
        if began:
            log.error("store_write_failed", path=str(self.path), reason=reason, error=str(err))
            if reason == "corrupt":
                integrity.request_check(self.path)  # the next start checks the file whatever its size

    def _fail_queue(self, error: StoreError) -> None:
        while self._queue:
            _settle_error(self._queue.popleft().future, error)
        self.queued_events = 0
        self._metrics.store_queue_events.set(0)


def commit(conn: sqlite3.Connection, plan: Plan, before_commit: Callable[[Plan], None] | None = None) -> None:
    """Run a plan in its own transaction (on the writer thread); `before_commit(plan)` runs once its
    statements are in, before the COMMIT."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        apply(conn, plan)
        if before_commit is not None:
            before_commit(plan)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def apply(conn: sqlite3.Connection, plan: Plan) -> None:
    """The statements of a plan, inside the caller's transaction (on the writer thread)."""
    if plan.rows:
        insert_many(conn, _INSERT_EVENT, plan.rows)
        received = plan.received_ns
        conn.executemany(
            _UPSERT_MARK, [(s, b, top, received, received) for (s, b), top in plan.marks.items()]
        )
        conn.execute(UPDATE_TIP, (plan.tip.last_seq, plan.tip.last_digest, plan.tip.rows))
        for sql, rows in plan.views.statements():
            insert_many(conn, sql, rows)
    if plan.anchors:
        conn.executemany(UPSERT_ANCHOR, plan.anchors)
    for op in plan.ops:
        op.run(conn, plan.received_ns)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (SQLite may already have rolled it back itself)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # "cannot rollback - no transaction is active"


def _existing_keys(conn: sqlite3.Connection, records: Sequence[Record]) -> set[tuple[str, str]]:
    """Which (source, event_id) of `records` are already stored (the slow path of dedup)."""
    by_source: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        by_source[r.source].append(r.event_id)
    found: set[tuple[str, str]] = set()
    for source, ids in by_source.items():
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = conn.execute(
                f"SELECT event_id FROM events WHERE source = ? AND event_id IN ({','.join('?' * len(chunk))})",
                (source, *chunk),
            ).fetchall()
            found.update((source, row[0]) for row in rows)
    return found


def _ack(done: _Committed) -> None:
    for p, outcomes in zip(done.batch, done.plan.outcomes, strict=True):
        if p.future is not None and not p.future.done():
            p.future.set_result(outcomes)


def _settle_all(batch: Sequence[_Pending], error: StoreError) -> None:
    for p in batch:
        _settle_error(p.future, error)


def _settle_error(future: asyncio.Future[list[Outcome]] | None, error: StoreError) -> None:
    if future is not None and not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a publisher that gave up waiting must not cause a log line


def error_reason(err: Exception) -> str:
    """The `reason` label of amoskys_store_errors_total for a failed transaction."""
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
