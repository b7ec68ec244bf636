"""ConnectorReader: the socket side of real-time mode — subscribe, self-test, read, queue.

A ``loop.add_reader`` callback drains the proc connector socket, decodes each datagram, checks the
kernel's sequence numbers for gaps (``sequence.SequenceTracker``), hands the pids of new execs to
the /proc reading thread at once (``worker.ProcReadWorker``: a queue put, never a wait) and queues
the records for the enricher, which it wakes every FLUSH_DELAY_SECONDS — sooner when much is queued
or something was lost. It never blocks and never touches /proc.

When too much is queued it stops reading: the kernel then drops messages (ENOBUFS) and the gaps
become LossReports — one accounting path for every kind of loss.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import deque
from typing import NamedTuple

import structlog

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.process import parse
from amoskys.collectors.process.netlink import ConnectorUnavailableError, ProcConnector, describe_ack_error
from amoskys.collectors.process.sequence import TIMED, Loss, SequenceTracker
from amoskys.collectors.process.stats import ProcessStats
from amoskys.collectors.process.worker import ProcReadWorker
from amoskys.errors import CollectorError

log = structlog.get_logger(__name__)

#: Datagrams read per wake-up of the reader, so one burst cannot hold the loop for long.
MAX_DATAGRAMS_PER_WAKEUP = 512
#: Decoded records waiting for the enricher; past this the reader pauses (the kernel then drops).
MAX_PENDING_RECORDS = 50_000
#: Records wait up to this long to be handled in one batch (their /proc reads do not wait for it).
FLUSH_DELAY_SECONDS = 0.02
#: ... or until this many records are waiting.
FLUSH_RECORDS = 256


class ExecAt(NamedTuple):
    """An exec, and the ticket of the worker batch that reads its /proc entry."""

    record: parse.Exec
    ticket: int


Queued = parse.Fork | parse.Exit | ExecAt | Loss


class ConnectorReader:
    """``start()`` subscribes and self-tests; then ``wake`` is set whenever ``take()`` has a batch."""

    def __init__(
        self, ctx: CollectorContext, worker: ProcReadWorker, stats: ProcessStats, receive_buffer_bytes: int
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.stats = stats
        self.connector = ProcConnector(receive_buffer_bytes)
        self.sequence = SequenceTracker()
        self.wake = asyncio.Event()
        self.failure: BaseException | None = None  # what broke the socket (a callback cannot raise)
        self._queue: deque[Queued] = deque()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._reading = False
        self._bad_datagrams = 0
        self._probe_pid = 0
        self._self_test: asyncio.Future[str | None] | None = None
        self._execs_seen: set[int] = set()  # during the self-test, which may see its exec early

    # ------------------------------------------------------------------ lifecycle
    async def start(self, self_test_timeout: float) -> str | None:
        """Subscribe and self-test: None when exec events arrive, else why not (then closed)."""
        try:
            self.connector.open()
        except ConnectorUnavailableError as err:
            self.close()
            return err.reason
        self._self_test = asyncio.get_running_loop().create_future()
        self.resume()
        reason = await self._probe(self_test_timeout)
        self._self_test = None
        self._execs_seen.clear()
        if reason is not None:
            self.close()
            self._queue.clear()
        return reason

    async def _probe(self, within: float) -> str | None:
        # Spawned and reaped on a worker thread, not with asyncio's subprocess support, whose child
        # watcher (Python 3.11) takes locks on the loop's thread; the suite's detector caught one.
        true = await asyncio.to_thread(shutil.which, "true") or "/bin/true"
        try:
            child = await asyncio.to_thread(
                subprocess.Popen,
                [true],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as err:
            return f"netlink self-test could not start {true!r}: {err.strerror or err}"
        self._probe_pid = child.pid
        if child.pid in self._execs_seen:  # read while the child was being created
            self._finish_self_test(None)
        try:
            if self._self_test is None:
                raise RuntimeError("self-test future missing")
            async with asyncio.timeout(within):
                return await self._self_test
        except TimeoutError:
            return (
                f"netlink self-test saw no exec event within {within:g} s; the proc connector is "
                f"silent outside the initial user/PID namespaces"
            )
        finally:
            await asyncio.to_thread(child.wait)

    def close(self) -> None:
        """Stop reading and unsubscribe."""
        self.pause()
        self.connector.close()

    def take(self) -> list[Queued]:
        """Everything queued, in kernel order; reading resumes if it was paused."""
        batch = list(self._queue)
        self._queue.clear()
        self.resume()
        return batch

    def resume(self) -> None:
        if not self._reading and self.failure is None:
            asyncio.get_running_loop().add_reader(self.connector.fileno(), self._on_readable)
            self._reading = True

    def pause(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.connector.fileno())
            self._reading = False

    # ------------------------------------------------------------------ the callback
    def _on_readable(self) -> None:
        try:
            datagrams, overrun, drained = self.connector.receive(MAX_DATAGRAMS_PER_WAKEUP)
        except OSError as err:
            self.failure = CollectorError(f"proc connector socket failed: {err.strerror or err}")
            self.pause()
            self.wake.set()
            return
        sequence = self.sequence
        if overrun:  # every CPU may have lost messages: each shows its gap at its next message
            sequence.overrun()
            self.stats.count_overrun()
        queue = self._queue
        last_seq = sequence.last
        ticket = 0
        exec_pids: dict[int, None] = {}
        for datagram in datagrams:
            try:
                records = parse.parse_datagram(datagram)
            except parse.ParseError as err:
                self._count_bad_datagram(err)
                continue
            for record in records:
                # Dispatch on type(record), fetched once (the hot path): it does not narrow the record
                # union for mypy as isinstance() would, hence the ignores below.
                kind = type(record)
                # the in-order case inline (the hot path), anything else through check()
                last = last_seq.get(record.cpu) if kind in TIMED else None  # type: ignore[union-attr]
                if last is not None and record.seq == (last[0] + 1) & 0xFFFFFFFF:  # type: ignore[union-attr]
                    last_seq[record.cpu] = (record.seq, record.ts_ns)  # type: ignore[union-attr]
                else:
                    sequence.check(record)
                if kind is parse.Exec:
                    if not ticket:
                        ticket = self.worker.next_ticket()
                    exec_pids[record.tgid] = None  # type: ignore[union-attr]
                    queue.append(ExecAt(record, ticket))  # type: ignore[arg-type]
                    if self._self_test is not None:
                        self._saw_exec(record.tgid)  # type: ignore[union-attr]
                elif kind is parse.Exit or kind is parse.Fork:
                    queue.append(record)  # type: ignore[arg-type]
                elif kind is parse.Ack:
                    self._on_ack(record)  # type: ignore[arg-type]
        if exec_pids:  # read /proc now, while they most likely still exist
            self.worker.submit(ticket, list(exec_pids))
        if drained:
            sequence.drained()
        losses = sequence.take_losses()
        queue.extend(losses)
        if losses or len(queue) >= FLUSH_RECORDS:
            self.wake.set()
            if len(queue) >= MAX_PENDING_RECORDS:
                self.pause()
        elif queue and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_DELAY_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        self.wake.set()

    def _saw_exec(self, tgid: int) -> None:
        self._execs_seen.add(tgid)
        if tgid == self._probe_pid:
            self._finish_self_test(None)

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
