"""Real-time exec and exit from the proc connector: the enricher and the publisher.

The socket side (subscribe, self-test, read, loss accounting) is ``reader.ConnectorReader``; the
/proc reads of new execs start from there in ``worker.ProcReadWorker``'s thread. Here:

- The **enricher** wakes when the reader has a batch, collects the /proc reads of its execs (done
  meanwhile), updates the process table in kernel order and builds the envelopes. Executables not
  yet hashed go to a second worker thread, so hashing never delays the /proc reads. Batching the
  envelope work keeps the loop's cost per exec low; the /proc reads never wait for it.
- The enricher publishes each batch itself (``ctx.publish_many``) unless an envelope waits for its
  executable's hash: then that batch, and every one after it until the queue is empty, goes through
  the **publisher**, which publishes in order once the hash is known.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import structlog

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.process import events, parse, procfs
from amoskys.collectors.process.config import ProcessConfig
from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.reader import ConnectorReader, ExecAt, Queued
from amoskys.collectors.process.redact import Redactor
from amoskys.collectors.process.sequence import Loss
from amoskys.collectors.process.stats import ProcessStats
from amoskys.collectors.process.table import (
    Proc,
    ProcessTable,
    inherit_program,
    mark_unreadable,
    proc_from_read,
)
from amoskys.collectors.process.worker import ProcReadWorker
from amoskys.errors import CollectorError
from amoskys.proto import events_pb2

log = structlog.get_logger(__name__)

#: Envelopes waiting for the publisher; past this the enricher waits.
MAX_PENDING_ENVELOPES = 20_000
#: Envelopes per publish_many call.
PUBLISH_BATCH = 1000
#: A batch of /proc reads that takes longer than this is stuck: the collector fails (and is
#: restarted by the supervisor with a fresh worker thread).
READ_TIMEOUT_SECONDS = 10.0
#: The enricher lets other callbacks run after this many records of a batch (each costs ~30-60 µs).
YIELD_EVERY = 32

#: What an exit event of a process never seen before cannot say.
_UNKNOWN_PROCESS = ["exe", "argv", "user", "uid", "start_time_ns", "cgroup", "cwd"]


class _Outgoing(NamedTuple):
    envelope: events_pb2.Envelope
    digest: asyncio.Future[bytes | None] | None  # the exe's sha256, still being computed
    proc: Proc | None


class RealtimeTracker:
    """The proc connector pipeline. ``start()`` self-tests it; ``run()`` then runs it until cancelled."""

    def __init__(
        self,
        config: ProcessConfig,
        ctx: CollectorContext,
        *,
        table: ProcessTable,
        redactor: Redactor,
        hashes: ExeHashes,
        stats: ProcessStats,
        boot_ns: int,
        on_loss: Callable[[], None],
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.table = table
        self.redactor = redactor
        self.hashes = hashes
        self.stats = stats
        self.boot_ns = boot_ns
        self.on_loss = on_loss
        self._worker = ProcReadWorker(hashes)
        self.reader = ConnectorReader(ctx, self._worker, stats, config.receive_buffer_bytes)
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(MAX_PENDING_ENVELOPES)
        self._publishing = False  # the publisher holds envelopes taken from the outbox
        self._pending_digests: dict[procfs.ExeKey, asyncio.Future[bytes | None]] = {}
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="amoskys-proc-hash")
        self._offset = 0
        self._offset_measured_ns = -(10**18)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str | None:
        """Subscribe and self-test: None when exec events arrive, else why not (then closed)."""
        reason = await self.reader.start(self.config.self_test_timeout_seconds)
        if reason is not None:
            self.close()
        return reason

    async def run(self) -> None:
        """Enrich and publish until cancelled; raises what broke the socket."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._enrich_loop(), name="process:enrich")
                tg.create_task(self._publish_loop(), name="process:publish")
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading and unsubscribe. Hashing already started still finishes (and closes its
        file descriptor); reads not taken have theirs closed."""
        self.reader.close()
        self._worker.stop()
        self._hash_pool.shutdown(wait=False)

    # ------------------------------------------------------------------ enricher
    async def _enrich_loop(self) -> None:
        reader = self.reader
        while True:
            await reader.wake.wait()
            reader.wake.clear()
            if reader.failure is not None:
                raise reader.failure
            batch = reader.take()
            if batch:
                with self.ctx.busy():
                    await self._handle(batch)

    async def _handle(self, batch: list[Queued]) -> None:
        tickets = sorted({item.ticket for item in batch if isinstance(item, ExecAt)})
        reads: dict[tuple[int, int], procfs.ProcRead] = {}
        if tickets:
            try:
                async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                    await self._worker.wait(tickets[-1])
            except TimeoutError:  # a /proc read blocked (a process stuck in D state): start afresh
                raise CollectorError(
                    f"reading /proc of new processes took longer than {READ_TIMEOUT_SECONDS:g} s"
                ) from None
            for ticket in tickets:
                for read in self._worker.take(ticket):
                    reads[ticket, read.pid] = read
        offset = self._wall_offset()
        out: list[_Outgoing] = []
        enrichment: Counter[str] = Counter()
        for n, record in enumerate(batch, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the reader drain the socket (and submit new execs)
            if isinstance(record, parse.Fork):
                self._on_fork(record, offset)
            elif isinstance(record, ExecAt):
                read = reads[record.ticket, record.record.tgid]
                out.append(self._on_exec(record.record, read, offset, enrichment))
            elif isinstance(record, parse.Exit):
                if record.pid == record.tgid:  # else a thread ended, not the process
                    out.append(self._on_exit(record, offset))
            elif isinstance(record, Loss):
                out.append(self._on_loss(record, offset))
        self.stats.metrics.process_tracked.set(len(self.table))
        if enrichment:
            self.stats.count_enrichment(enrichment)
        if not out:
            return
        if self._outbox.empty() and not self._publishing and all(item.digest is None for item in out):
            await self._publish([item.envelope for item in out])  # the common case: no queue hop
        else:  # behind envelopes that wait for a hash: keep the order
            for item in out:
                await self._outbox.put(item)

    def _wall_offset(self) -> int:
        """UTC ns minus CLOCK_MONOTONIC ns (the kernel's timestamps), re-measured once a second so
        that the times of one process's exec and exit agree to the nanosecond with its lifetime."""
        now = time.monotonic_ns()
        if now - self._offset_measured_ns > 1_000_000_000:
            self._offset = time.time_ns() - time.monotonic_ns()
            self._offset_measured_ns = now
        return self._offset

    def _on_fork(self, fork: parse.Fork, offset: int) -> None:
        if fork.child_pid != fork.child_tgid:
            return  # a new thread, not a new process
        parent = self.table.get(fork.parent_tgid)
        if parent is not None and not parent.exec_mono_ns and parent.program is not None:
            parent = parent.program  # a fork of a fork: both run the same program
        child = Proc(
            fork.child_tgid,
            ppid=fork.parent_tgid,
            start_time_ns=fork.ts_ns + offset,
            fork_mono_ns=fork.ts_ns,
            program=parent,
        )
        self.table.put(child)

    def _on_exec(
        self, record: parse.Exec, read: procfs.ProcRead, offset: int, enrichment: Counter[str]
    ) -> _Outgoing:
        forked = self.table.get(record.tgid)
        proc = proc_from_read(read, self.redactor, self.boot_ns, ppid=forked.ppid if forked else 0)
        proc.exec_mono_ns = record.ts_ns
        if forked is not None:
            proc.fork_mono_ns = forked.fork_mono_ns
            if read.stat is None and forked.fork_mono_ns:
                proc.start_time_ns = forked.fork_mono_ns + offset
                proc.unreadable.remove("start_time_ns")
        self.table.put(proc)
        if read.read_mono_ns >= record.ts_ns:
            self.stats.metrics.process_enrich_delay.observe((read.read_mono_ns - record.ts_ns) / 1e9)
        if read.gone:
            enrichment["gone"] += 1
        elif "exe" in proc.unreadable or "argv" in proc.unreadable:
            enrichment["partial"] += 1
        else:
            enrichment["complete"] += 1
        digest = None
        if read.exe_key is not None and read.sha256 is None:
            fd, read.exe_fd = read.exe_fd, None  # one read may serve two execs of one pid: once only
            digest = self._digest(fd, read.exe_key)
        return _Outgoing(events.exec_event(proc, record.ts_ns + offset), digest, proc)

    def _on_exit(self, record: parse.Exit, offset: int) -> _Outgoing:
        proc = self.table.pop(record.tgid)
        if proc is None:
            proc = Proc(record.tgid, ppid=record.parent_tgid)
            unreadable = list(_UNKNOWN_PROCESS)
        elif not proc.exec_mono_ns and proc.fork_mono_ns:  # forked, never exec'd
            unreadable = inherit_program(proc)
        else:
            unreadable = list(proc.unreadable)
        if record.parent_tgid:
            proc.ppid = record.parent_tgid
        started = proc.exec_mono_ns or proc.fork_mono_ns
        if started:
            lifetime = record.ts_ns - started
        elif proc.start_time_ns:
            lifetime = record.ts_ns + offset - proc.start_time_ns
        else:
            lifetime = 0
        code, signal = parse.decode_status(record.status)
        envelope = events.exit_event(
            proc,
            record.ts_ns + offset,
            exit_code=code,
            exit_signal=signal,
            lifetime_ns=lifetime,
            unreadable=unreadable,
        )
        return _Outgoing(envelope, None, None)

    def _on_loss(self, loss: Loss, offset: int) -> _Outgoing:
        self.stats.count_lost(loss.count, loss.reason)
        log.warning(
            "process_events_lost",
            count=loss.count,
            reason=loss.reason,
            receive_buffer_bytes=self.reader.connector.buffer_bytes,
        )
        envelope = events.loss_event(
            loss.count,
            loss.reason,
            window_start_ns=loss.start_mono_ns + offset,
            window_end_ns=loss.end_mono_ns + offset,
        )
        self.on_loss()
        return _Outgoing(envelope, None, None)

    def _digest(self, fd: int | None, key: procfs.ExeKey) -> asyncio.Future[bytes | None] | None:
        """The future sha256 of an executable: one hashing job per (dev, inode, size, mtime).

        `fd` (closed here or by the hasher) starts the job unless one runs already; without it, a
        running job or the cache (a job that finished since the reader looked) can answer (None
        otherwise: the hash is left empty)."""
        pending = self._pending_digests.get(key)
        if pending is not None:
            if fd is not None:
                os.close(fd)
            return pending
        loop = asyncio.get_running_loop()
        if fd is None:
            # the job that hashed it may have finished since the reader missed the cache
            cached = self.hashes.get(key)
            if cached is None:
                return None
            done: asyncio.Future[bytes | None] = loop.create_future()
            done.set_result(cached)
            return done
        future = loop.run_in_executor(self._hash_pool, self.hashes.digest_fd, fd, key)
        self._pending_digests[key] = future
        future.add_done_callback(lambda _: self._pending_digests.pop(key, None))
        return future

    # ------------------------------------------------------------------ publisher
    async def _publish_loop(self) -> None:
        """Publishes what the enricher queued (envelopes waiting for their exe's hash, and all
        after them), in order."""
        outbox = self._outbox
        while True:
            items = [await outbox.get()]
            self._publishing = True
            try:
                while len(items) < PUBLISH_BATCH and not outbox.empty():
                    items.append(outbox.get_nowait())
                envelopes = []
                for envelope, digest, proc in items:
                    if digest is not None:
                        await self._apply_digest(envelope, digest, proc)
                    envelopes.append(envelope)
                await self._publish(envelopes)
            finally:
                self._publishing = False

    async def _publish(self, envelopes: list[events_pb2.Envelope]) -> None:
        await self.ctx.publish_many(envelopes)
        self.stats.count_published(envelopes, "netlink")
        self.stats.count_hashes(self.hashes)

    async def _apply_digest(
        self, envelope: events_pb2.Envelope, digest: asyncio.Future[bytes | None], proc: Proc | None
    ) -> None:
        value = await digest
        body = envelope.process
        if value is None:
            names = list(body.unreadable)
            if "exe_sha256" not in names:
                names.append("exe_sha256")
                names.sort(key=procfs.FIELD_ORDER.index)
                del body.unreadable[:]
                body.unreadable.extend(names)
            if proc is not None:
                mark_unreadable(proc, "exe_sha256")
            return
        body.exe_sha256 = value
        if proc is not None:
            proc.sha256 = value
