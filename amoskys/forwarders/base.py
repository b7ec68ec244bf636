"""The loop every sink shares: read a batch after the cursor, send it, advance the cursor on OK only.

A `Forwarder` reads the store's rows after its sink's cursor in store order (only the sink's kinds),
collects up to `batch_events` of them and at most `batch_bytes` of envelopes (waiting at most
`batch_wait_ms` for more once it has one), has the sink seal them into a `Batch`, and sends up to
`max_in_flight` batches at once. Acks are taken in
order: the cursor moves past a batch only when it and every batch before it were acked OK, through the
writer's group commit (no transaction of its own). A RETRY answer or a transport error re-sends the
same batch after a backoff with jitter, never sooner than the receiver's hint; a refusal for good
(revoked, say) stops the forwarder: the data stays, the log says why once, and so does `status()`.
It waits for new rows on the store's commit signal, never by polling.

A sink is the small part that differs (`Sink`): how a batch is sealed, how it is sent, and which
sealed batches must be sent again after a restart (the bus forwarder's signed chain).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from amoskys.collectors.clock import Clock, SystemClock
from amoskys.errors import StoreError
from amoskys.metrics import Metrics
from amoskys.retry import Backoff
from amoskys.store import Store
from amoskys.store.errors import SubmitRefusedError
from amoskys.store.outbox import AdvanceCursor, Row

log = structlog.get_logger(__name__)

#: After a store error the forwarder starts again (from its durable cursor) after this backoff.
STORE_RETRY_BASE_S, STORE_RETRY_CAP_S = 0.5, 30.0


@dataclass(slots=True)
class Batch:
    """Rows sealed for one send: `payload` is what the sink sends (for the bus, a SignedBatch)."""

    rows: Sequence[Row]
    payload: Any = None

    @property
    def first_seq(self) -> int:
        return self.rows[0][0]

    @property
    def last_seq(self) -> int:
        return self.rows[-1][0]

    @property
    def first_received_ns(self) -> int:
        return self.rows[0][1]


class SendStatus(enum.Enum):
    OK = "ok"  # acked: the cursor may move past the batch
    RETRY = "retry"  # not now (a RETRY answer, a transport error): send the same batch again later
    STOP = "stop"  # refused for good (revoked, say): forwarding stops, the data stays


@dataclass(frozen=True, slots=True)
class SendResult:
    status: SendStatus
    duplicates: int = 0  # events the receiver already had
    rejected: int = 0  # events it refused for good (the rest of the batch was taken)
    retry_after_seconds: float = 0.0  # the receiver's hint (RETRY)
    message: str = ""  # why (RETRY, STOP)
    unreachable: bool = False  # RETRY because the receiver could not be reached (a transport error)


class Sink(Protocol):
    """What one kind of receiver needs beyond the shared loop."""

    name: str
    kinds: frozenset[str] | None  # the kinds it forwards (None: every kind)

    async def resume(self, acked_seq: int) -> list[Batch]:
        """The batches sealed before a restart and not acked yet, to send again first (oldest first)."""
        ...

    async def seal(self, rows: Sequence[Row]) -> Batch:
        """Make the batch of these rows (the bus forwarder signs it and records it before it is sent)."""
        ...

    async def send(self, batch: Batch) -> SendResult:
        """One attempt; transport errors are a RETRY result, never raised."""
        ...

    async def close(self) -> None: ...


class _Stopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    retries: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0


@dataclass(slots=True)
class _InFlight:
    batch: Batch
    task: asyncio.Task[SendResult]
    sealed_at: float = field(default_factory=time.monotonic)


class Forwarder:
    """One sink's loop over the store (see the module docstring). Run `run()` as a task, after the
    sink was registered as one of the store's sinks (`Forwarders.run` does it: an unregistered sink
    has no cursor to advance, so it would start from the beginning every time)."""

    def __init__(
        self,
        sink: Sink,
        store: Store,
        metrics: Metrics,
        *,
        batch_events: int,
        batch_wait_ms: int,
        max_in_flight: int,
        batch_bytes: int = 0,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 5.0,
        clock: Clock | None = None,
        detail: dict[str, Any] | None = None,
        companion: Callable[[], Coroutine[Any, Any, None]] | None = None,
        checkpoint: Callable[[Batch], int | None] | None = None,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self._store = store
        self._metrics = metrics
        self._batch_events = batch_events
        self._batch_wait = batch_wait_ms / 1000
        self._max_in_flight = max_in_flight
        self._batch_bytes = batch_bytes  # at most this many envelope bytes per batch (0: no limit)
        self._backoff = (backoff_base_seconds, backoff_cap_seconds)
        self._clock = clock or SystemClock()
        self._detail = detail or {}
        #: a task the sink needs beside the forwarding loop (the bus sink's certificate renewal)
        self.companion = companion
        #: called as the cursor moves past a batch: the sink's position in its receiver to save with the
        #: cursor (the NATS sink's stream sequence), or None
        self._checkpoint = checkpoint
        self.counts = _Counts()
        self.state = "starting"  # starting, forwarding, idle, retrying, stopped
        self.reason = ""  # why retrying or stopped
        self.acked_seq = 0  # every row up to here is acked (in memory; the cursor follows at the next commit)
        self._read_pos = 0  # every row up to here is read (sealed, or not of the sink's kinds)
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._collecting_ns = 0  # received_ns of the first row of the batch being collected (0: none)
        self._failing = False
        self._started = False
        self._rejected_logged = False
        # set while the receiver answers: a batch waiting out a transport error is sent again at once
        # when another batch got through (the receiver is back), so the window drains at full speed
        self._reachable = asyncio.Event()
        sink_label = self.name
        metrics.forwarder_lag_events.labels(sink_label).set_function(lambda: self.lag()[0])
        metrics.forwarder_lag_seconds.labels(sink_label).set_function(lambda: self.lag()[1])
        self._sent = metrics.forwarder_sent.labels(sink_label)
        self._retries = metrics.forwarder_retries.labels(sink_label)
        self._duplicates = metrics.forwarder_duplicates.labels(sink_label)
        self._rejected = metrics.forwarder_rejected.labels(sink_label)

    # ------------------------------------------------------------------ what others read

    def lag(self) -> tuple[int, float]:
        """(events, seconds) behind: rows stored and not acked (for a sink with a kinds filter, an upper
        bound), and the age of the oldest of them on the store's clock (0 when caught up)."""
        last = self._store.last_seq
        if not self._started:  # its cursor is not read yet: everything may be behind
            return last, 0.0
        if not self._inflight and self._read_pos >= last and not self._collecting_ns:
            return 0, 0.0
        events = max(0, last - self.acked_seq)
        oldest = self._inflight[0].batch.first_received_ns if self._inflight else self._collecting_ns
        seconds = max(0.0, (self._clock.time_ns() - oldest) / 1e9) if oldest else 0.0
        return events, round(seconds, 3)

    def status(self) -> dict[str, Any]:
        """A JSON-ready view for `amoskys status`."""
        events, seconds = self.lag()
        out: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "acked_seq": self.acked_seq,
            "lag_events": events,
            "lag_seconds": seconds,
            "in_flight": len(self._inflight),
            "sent": self.counts.sent,
            "retries": self.counts.retries,
            "duplicates": self.counts.duplicates,
            "rejected": self.counts.rejected,
        }
        return out | self._detail

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Forward until cancelled, or until the sink is refused for good (then it returns)."""
        backoff = Backoff(STORE_RETRY_BASE_S, STORE_RETRY_CAP_S, clock=self._clock)
        try:
            while True:
                stopped: BaseException | None = None
                failed: BaseException | None = None
                try:
                    await self._run_once()
                except* _Stopped as group:
                    stopped = group.exceptions[0]
                except* StoreError as group:
                    failed = group.exceptions[0]
                if stopped is not None:
                    self._stop(str(stopped))
                    return
                if failed is not None:
                    self.state, self.reason = "retrying", f"store: {failed}"
                    log.warning("forwarder_store_error", sink=self.name, error=str(failed))
                    await backoff.sleep()
        finally:
            await self.sink.close()

    def _stop(self, reason: str) -> None:
        self.state, self.reason = "stopped", reason
        for item in self._inflight:
            item.task.cancel()
        log.error("forwarder_stopped", sink=self.name, reason=reason, acked_seq=self.acked_seq)

    async def _run_once(self) -> None:
        self._inflight.clear()
        self._collecting_ns = 0
        cursor = await self._store.sink_cursor(self.name)
        self.acked_seq = cursor.store_seq if cursor is not None else 0
        resumed = await self.sink.resume(self.acked_seq)
        self._read_pos = max(self.acked_seq, resumed[-1].last_seq if resumed else 0)
        self._started = True
        self.state, self.reason = "forwarding", ""
        if resumed:
            log.info(
                "forwarder_resumed",
                sink=self.name,
                batches=len(resumed),
                first_seq=resumed[0].first_seq,
                last_seq=resumed[-1].last_seq,
            )
        window = asyncio.Semaphore(self._max_in_flight)
        ready = asyncio.Event()  # something was put in flight
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._acker(window, ready), name=f"forwarder-{self.name}-acks")
            pending = collections.deque(resumed)
            while True:
                await window.acquire()
                batch = pending.popleft() if pending else await self._next_batch()
                task = tg.create_task(self._deliver(batch), name=f"forwarder-{self.name}-send")
                self._inflight.append(_InFlight(batch, task))
                ready.set()

    async def _next_batch(self) -> Batch:
        """Read rows after the read position until `batch_events` of them, or until `batch_wait_ms`
        passed since the first one; wait for commits while there is nothing to read."""
        store = self._store
        loop = asyncio.get_running_loop()
        rows: list[Row] = []
        nbytes = 0
        deadline = 0.0
        if not self._inflight:
            self.state = "idle" if self.state != "retrying" else self.state
        while True:
            read = await store.outbox_read(
                after_seq=self._read_pos, kinds=self.sink.kinds, limit=self._batch_events - len(rows)
            )
            self._read_pos = max(self._read_pos, read.scanned_to)
            if read.rows and not rows:
                deadline = loop.time() + self._batch_wait
                self._collecting_ns = read.rows[0][1]
            rows += read.rows
            if self._batch_bytes:
                nbytes += sum(len(row[2]) for row in read.rows)
                if nbytes > self._batch_bytes and len(rows) > 1:
                    while len(rows) > 1 and nbytes > self._batch_bytes:
                        nbytes -= len(rows.pop()[2])
                    self._read_pos = rows[-1][0]  # the rest goes in the next batch
                    break
            if len(rows) >= self._batch_events:
                break
            remaining = deadline - loop.time()
            if rows and remaining <= 0:
                break
            if store.last_seq > self._read_pos:
                continue  # committed meanwhile: read on
            if rows:
                try:
                    await asyncio.wait_for(store.commits.wait(), remaining)
                except TimeoutError:
                    break
            else:
                await store.commits.wait()
        batch = await self.sink.seal(rows)
        self._collecting_ns = 0
        if self.state == "idle":
            self.state = "forwarding"
        return batch

    async def _deliver(self, batch: Batch) -> SendResult:
        """Send one batch until it is acked or refused for good."""
        backoff = Backoff(*self._backoff, clock=self._clock)
        while True:
            result = await self.sink.send(batch)
            if not result.unreachable:
                self._reachable.set()
            if result.status is not SendStatus.RETRY:
                return result
            self.counts.retries += 1
            self._retries.inc()
            self.state, self.reason = "retrying", result.message
            if not self._failing:  # once per streak, and once when it ends (in _acker)
                self._failing = True
                log.warning("forwarder_retrying", sink=self.name, reason=result.message)
            delay = backoff.next_delay(result.retry_after_seconds)
            if result.unreachable:
                self._reachable.clear()
                await self._sleep_until_reachable(delay)
            else:
                await self._clock.sleep(delay)  # the receiver's hint is a floor

    async def _sleep_until_reachable(self, seconds: float) -> None:
        """Sleep `seconds`, or less if another send reaches the receiver meanwhile."""
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        back = asyncio.ensure_future(self._reachable.wait())
        try:
            await asyncio.wait({sleep, back}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            back.cancel()

    async def _acker(self, window: asyncio.Semaphore, ready: asyncio.Event) -> None:
        """Take the acks in order; advance the cursor past each batch acked OK."""
        while True:
            while not self._inflight:
                ready.clear()
                await ready.wait()
            item = self._inflight[0]
            result = await item.task
            if result.status is SendStatus.STOP:
                raise _Stopped(result.message)
            self._inflight.popleft()
            batch = item.batch
            n = len(batch.rows)
            c = self.counts
            c.sent += n
            c.batches += 1
            c.duplicates += result.duplicates
            c.rejected += result.rejected
            self._sent.inc(n)
            if result.duplicates:
                self._duplicates.inc(result.duplicates)
            if result.rejected:
                self._rejected.inc(result.rejected)
                if not self._rejected_logged:  # once per run: the counter says how many since
                    self._rejected_logged = True
                    log.warning(
                        "forwarder_events_rejected",
                        sink=self.name,
                        count=result.rejected,
                        reason=result.message,
                    )
            self.acked_seq = max(self.acked_seq, batch.last_seq)
            if self._failing:
                self._failing = False
                log.info("forwarder_recovered", sink=self.name, acked_seq=self.acked_seq)
            if self.state == "retrying":
                self.state, self.reason = "forwarding", ""
            if not self._inflight and self._read_pos >= self._store.last_seq and not self._collecting_ns:
                self.state = "idle"  # caught up: waiting for new rows
            remote_seq = self._checkpoint(batch) if self._checkpoint is not None else None
            self._advance(batch.last_seq, remote_seq)
            window.release()

    def _advance(self, seq: int, remote_seq: int | None = None) -> None:
        """Queue the cursor's move on the writer (it rides the next group commit)."""
        try:
            future = self._store.submit_outbox([AdvanceCursor(self.name, seq, remote_seq)])
        except SubmitRefusedError:
            return  # the store is closing: the batch is sent again at the next start (a duplicate)

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning(
                    "forwarder_cursor_not_saved", sink=self.name, store_seq=seq, error=str(f.exception())
                )

        future.add_done_callback(done)


def worst_lag(forwarders: Sequence[Forwarder]) -> tuple[int, float]:
    """The largest lag in events and in seconds over `forwarders` ((0, 0.0) when none)."""
    events, seconds = 0, 0.0
    for f in forwarders:
        e, s = f.lag()
        events, seconds = max(events, e), max(seconds, s)
    return events, seconds
