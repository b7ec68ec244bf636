"""Real-time exec and exit from the proc connector: reader → enricher → publisher.

- The **reader** (a ``loop.add_reader`` callback) drains the socket, decodes each datagram, checks
  the kernel's per-CPU sequence numbers for gaps (lost messages), hands the pids of new execs to the
  /proc reading thread at once (``worker.ProcReadWorker``: a queue put, never a wait) and queues the
  records. It never blocks and never touches /proc.
- The **enricher** wakes every FLUSH_DELAY_SECONDS (or sooner when much is queued, or on a loss),
  takes everything queued as one batch, collects the /proc reads of its execs (done meanwhile),
  updates the process table in kernel order and builds the envelopes. Executables not yet hashed go
  to a second worker thread, so hashing never delays the /proc reads. Batching the envelope work
  keeps the loop's cost per exec low; the /proc reads themselves never wait for it.
- The enricher publishes each batch itself (``ctx.publish_many``) unless an envelope waits for its
  executable's hash: then that batch, and every one after it until the queue is empty, goes through
  the **publisher**, which publishes in order once the hash is known.

When the queues are full the reader stops reading: the kernel then drops messages (ENOBUFS) and the
gaps become LossReports — one accounting path for every kind of loss.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import structlog

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.process import events, parse, procfs
from amoskys.collectors.process.config import ProcessConfig
from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.netlink import ConnectorUnavailableError, ProcConnector, describe_ack_error
from amoskys.collectors.process.redact import Redactor
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

#: Datagrams read per wake-up of the reader, so one burst cannot hold the loop for long.
MAX_DATAGRAMS_PER_WAKEUP = 512
#: Decoded records waiting for the enricher; past this the reader pauses (the kernel then drops).
MAX_PENDING_RECORDS = 50_000
#: Envelopes waiting for the publisher; past this the enricher waits.
MAX_PENDING_ENVELOPES = 20_000
#: Envelopes per publish_many call.
PUBLISH_BATCH = 1000
#: A batch of /proc reads that takes longer than this is stuck: the collector fails (and is
#: restarted by the supervisor with a fresh worker thread).
READ_TIMEOUT_SECONDS = 10.0
#: After an overrun, how long a CPU's first gap is still put down to it.
OVERRUN_ATTRIBUTION_SECONDS = 10.0
#: The enricher lets other callbacks run after this many records of a batch (each costs ~30-60 µs).
YIELD_EVERY = 32
#: Records wait up to this long to be handled in one batch (their /proc reads do not wait for it).
FLUSH_DELAY_SECONDS = 0.02
#: ... or until this many records are waiting.
FLUSH_RECORDS = 256

#: What an exit event of a process never seen before cannot say.
_UNKNOWN_PROCESS = ["exe", "argv", "user", "uid", "start_time_ns", "cgroup"]


class Loss(NamedTuple):
    """Messages lost before this point in the stream (a gap in the kernel's sequence numbers)."""

    count: int
    reason: str  # netlink_overrun, sequence_gap
    start_mono_ns: int
    end_mono_ns: int


#: Records that carry a per-CPU sequence number and a kernel time (an Ack's sequence is checked
#: apart: see _check_sequence).
_TIMED = frozenset({parse.Fork, parse.Exec, parse.Exit, parse.Other})


class _ExecAt(NamedTuple):
    """An exec, and the ticket of the worker batch that reads its /proc entry."""

    record: parse.Exec
    ticket: int


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
        self.connector = ProcConnector(config.receive_buffer_bytes)
        self._inbox: deque[parse.Record | _ExecAt | Loss] = deque()
        self._wake = asyncio.Event()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(MAX_PENDING_ENVELOPES)
        self._publishing = False  # the publisher holds envelopes taken from the outbox
        self._reading = False
        self._failure: BaseException | None = None
        self._last_seq: dict[int, tuple[int, int]] = {}  # cpu → (seq, ts) of its last message
        # After an ENOBUFS, each CPU's next gap is that overrun's (until the kernel's queue was once
        # drained, every gap is): see ProcConnector.receive.
        self._overrun_mono = -1e9
        self._explained_cpus: set[int] = set()
        self._congested = False
        self._bad_datagrams = 0
        self._probe_pid = 0
        self._self_test: asyncio.Future[str | None] | None = None
        self._execs_seen: set[int] = set()  # during the self-test, which may see its exec early
        self._pending_digests: dict[procfs.ExeKey, asyncio.Future[bytes | None]] = {}
        self._worker = ProcReadWorker(hashes)
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="amoskys-proc-hash")
        self._hash_max_bytes = hashes.max_bytes
        self._offset = 0
        self._offset_measured_ns = -(10**18)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str | None:
        """Subscribe and self-test: None when exec events arrive, else why not (then closed)."""
        try:
            self.connector.open()
        except ConnectorUnavailableError as err:
            self.close()
            return err.reason
        loop = asyncio.get_running_loop()
        self._self_test = loop.create_future()
        self._resume_reading()
        reason = await self._probe()
        self._self_test = None
        self._execs_seen.clear()
        if reason is not None:
            self.close()
            self._inbox.clear()
        return reason

    async def _probe(self) -> str | None:
        timeout = self.config.self_test_timeout_seconds
        true = shutil.which("true") or "/bin/true"
        try:
            child = await asyncio.create_subprocess_exec(
                true, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as err:
            return f"netlink self-test could not start {true!r}: {err.strerror or err}"
        self._probe_pid = child.pid
        if child.pid in self._execs_seen:  # read while the child was being created
            self._finish_self_test(None)
        try:
            if self._self_test is None:
                raise RuntimeError("self-test future missing")
            async with asyncio.timeout(timeout):
                return await self._self_test
        except TimeoutError:
            return (
                f"netlink self-test saw no exec event within {timeout:g} s; the proc connector is "
                f"silent outside the initial user/PID namespaces"
            )
        finally:
            await child.wait()

    async def run(self) -> None:
        """Enrich and publish until cancelled; raises what broke the socket."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._enrich_loop(), name="process:enrich")
                tg.create_task(self._publish_loop(), name="process:publish")
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading and unsubscribe. Work already handed to the worker threads still finishes
        (and closes its file descriptors)."""
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.connector.fileno())
            self._reading = False
        self.connector.close()
        self._worker.stop()
        self._hash_pool.shutdown(wait=False)

    # ------------------------------------------------------------------ reader
    def _resume_reading(self) -> None:
        if not self._reading:
            asyncio.get_running_loop().add_reader(self.connector.fileno(), self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.connector.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        try:
            datagrams, overrun, drained = self.connector.receive(MAX_DATAGRAMS_PER_WAKEUP)
        except OSError as err:  # the socket broke: let the enricher raise it (a callback cannot)
            self._failure = CollectorError(f"proc connector socket failed: {err.strerror or err}")
            self._pause_reading()
            self._wake.set()
            return
        if overrun:  # every CPU may have lost messages: each shows its gap at its next message
            self._explained_cpus = set()
            self._overrun_mono = time.monotonic()
            self._congested = True
            self.stats.count_overrun()
        losses: dict[str, list[int]] = {}  # reason → [count, window start, window end]
        inbox = self._inbox
        urgent = False
        ticket = 0
        exec_pids: dict[int, None] = {}
        last_seq = self._last_seq
        for datagram in datagrams:
            try:
                records = parse.parse_datagram(datagram)
            except parse.ParseError as err:
                self._count_bad_datagram(err)
                continue
            for record in records:
                kind = type(record)
                last = last_seq.get(record.cpu) if kind in _TIMED else None  # type: ignore[union-attr]
                if last is not None and record.seq == (last[0] + 1) & 0xFFFFFFFF:  # type: ignore[union-attr]
                    last_seq[record.cpu] = (record.seq, record.ts_ns)  # type: ignore[union-attr]  # in order
                else:
                    gap = self._check_sequence(record)
                    if gap is not None:
                        self._add_loss(losses, record, *gap)
                if kind is parse.Exec:
                    if not ticket:
                        ticket = self._worker.next_ticket()
                    exec_pids[record.tgid] = None
                    inbox.append(_ExecAt(record, ticket))
                    if self._self_test is not None:
                        self._execs_seen.add(record.tgid)
                        if record.tgid == self._probe_pid:
                            self._finish_self_test(None)
                elif kind is parse.Exit or kind is parse.Fork:
                    inbox.append(record)
                elif kind is parse.Ack:
                    self._on_ack(record)  # type: ignore[arg-type]
        if exec_pids:  # read /proc now, while they most likely still exist
            self._worker.submit(ticket, list(exec_pids))
        if drained:  # the kernel reports the next overrun again
            self._congested = False
        for reason, (count, start, end) in losses.items():
            inbox.append(Loss(count, reason, start, end))
            urgent = True
        if urgent or len(inbox) >= FLUSH_RECORDS:
            self._wake.set()
            if len(inbox) >= MAX_PENDING_RECORDS:
                self._pause_reading()
        elif inbox and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_DELAY_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        self._wake.set()

    def _add_loss(
        self, losses: dict[str, list[int]], record: parse.Record, count: int, start: int, end: int
    ) -> None:
        cpu = getattr(record, "cpu", -1)
        recent = time.monotonic() - self._overrun_mono < OVERRUN_ATTRIBUTION_SECONDS
        overrun = self._congested or (recent and cpu not in self._explained_cpus)
        reason = "netlink_overrun" if overrun else "sequence_gap"
        self._explained_cpus.add(cpu)
        total = losses.get(reason)
        if total is None:
            losses[reason] = [count, start, end]
        else:
            total[0] += count
            total[1] = min(total[1], start)
            total[2] = max(total[2], end)

    def _check_sequence(self, record: parse.Record) -> tuple[int, int, int] | None:
        """(lost, from, to) when the per-CPU sequence skipped messages before `record`."""
        if isinstance(record, parse.NetlinkError | parse.Overrun):
            return None
        cpu, seq = record.cpu, record.seq
        ts = 0 if isinstance(record, parse.Ack) else record.ts_ns
        last = self._last_seq.get(cpu)
        if isinstance(record, parse.Ack) and (last is None or seq != (last[0] + 1) & 0xFFFFFFFF):
            return None  # an older kernel echoes the subscriber's seq in acks instead of counting
        self._last_seq[cpu] = (seq, ts or (last[1] if last else 0))
        if last is None:
            return None
        gap = (seq - last[0] - 1) & 0xFFFFFFFF
        if gap == 0 or gap >= 1 << 31:  # in order, or the counter went back (not a loss we can size)
            return None
        return gap, last[1], ts or last[1]

    def _on_ack(self, ack: parse.Ack) -> None:
        if ack.ack != self.connector.subscribe_ack + 1:
            return  # another subscriber's
        if ack.err:
            self._finish_self_test(describe_ack_error(ack.err))

    def _finish_self_test(self, reason: str | None) -> None:
        if self._self_test is not None and not self._self_test.done():
            self._self_test.set_result(reason)

    def _count_bad_datagram(self, err: parse.ParseError) -> None:
        self._bad_datagrams += 1
        self.ctx.count_error(f"malformed proc connector datagram: {err}")
        if self._bad_datagrams == 1:
            log.warning("process_netlink_malformed", error=str(err))

    # ------------------------------------------------------------------ enricher
    async def _enrich_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._failure is not None:
                raise self._failure
            if not self._inbox:
                continue
            batch = list(self._inbox)
            self._inbox.clear()
            self._resume_reading()
            with self.ctx.busy():
                await self._handle(batch)

    async def _handle(self, batch: list[parse.Record | _ExecAt | Loss]) -> None:
        tickets = sorted({item.ticket for item in batch if isinstance(item, _ExecAt)})
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
            elif isinstance(record, _ExecAt):
                read = reads[record.ticket, record.record.tgid]
                out.append(self._on_exec(record.record, read, offset, enrichment))
            elif isinstance(record, parse.Exit):
                if record.pid == record.tgid:  # else a thread ended, not the process
                    out.append(self._on_exit(record, offset))
            elif isinstance(record, Loss):
                out.append(self._on_loss(record, offset))
        self.ctx.metrics.process_tracked.set(len(self.table))
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
            self.ctx.metrics.process_enrich_delay.observe((read.read_mono_ns - record.ts_ns) / 1e9)
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
            receive_buffer_bytes=self.connector.buffer_bytes,
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

        `fd` (closed here or by the hasher) starts the job unless one runs already; without it, only
        a running job can answer (None otherwise: the hash is left empty)."""
        pending = self._pending_digests.get(key)
        if pending is not None:
            if fd is not None:
                os.close(fd)
            return pending
        if fd is None:
            return None
        loop = asyncio.get_running_loop()
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
