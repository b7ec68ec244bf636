"""ProcReadWorker: a thread that reads /proc for exec'd processes the moment they are submitted.

The reader callback submits the pids of each wake-up's execs (a queue put: no future, no waiting);
the thread reads them at once, while the processes most likely still exist. The enricher, which runs
later and in batches, collects the reads by ticket. So the /proc read of an exec never waits for the
enricher or for the event loop, and the loop pays no per-exec hop.

A daemon thread: one stuck in the kernel (a /proc read of a process in D state) never holds up the
interpreter's exit; the collector notices through ``wait()``'s deadline.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading

from amoskys.collectors.process import procfs
from amoskys.collectors.process.hashing import ExeHashes


class ProcReadWorker:
    """Reads /proc for batches of pids in submission order; tickets number the batches (1, 2, ...)."""

    def __init__(self, hashes: ExeHashes) -> None:
        self.hashes = hashes
        self._jobs: queue.SimpleQueue[tuple[int, list[int]] | None] = queue.SimpleQueue()
        self._results: dict[int, list[procfs.ProcRead]] = {}
        self._lock = threading.Lock()
        self._issued = 0
        self._done = 0
        self._waiter: tuple[int, asyncio.Future[None], asyncio.AbstractEventLoop] | None = None
        self._thread = threading.Thread(target=self._run, name="amoskys-proc-read", daemon=True)
        self._started = False
        self._closed = False

    def next_ticket(self) -> int:
        """The ticket the next submit() must use (the reader stamps its Exec records with it)."""
        return self._issued + 1

    def submit(self, ticket: int, pids: list[int]) -> None:
        """Queue a batch for reading (on the loop: never blocks)."""
        if ticket != self._issued + 1:
            raise ValueError(f"ticket {ticket} out of order (next is {self._issued + 1})")
        if not self._started:
            self._thread.start()
            self._started = True
        self._issued = ticket
        self._jobs.put((ticket, pids))

    def take(self, ticket: int) -> list[procfs.ProcRead]:
        """The reads of a finished batch (once: they are forgotten here)."""
        with self._lock:
            return self._results.pop(ticket)

    async def wait(self, ticket: int) -> None:
        """Return once every batch up to `ticket` has been read."""
        with self._lock:
            if self._done >= ticket:
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiter = (ticket, future, loop)
        try:
            await future
        finally:
            self._waiter = None

    def stop(self) -> None:
        """End the thread after the batch in hand; close the executables reads left open for hashing
        (of batches never taken, and of any the thread still finishes)."""
        with self._lock:
            self._closed = True
            leftover = list(self._results.values())
            self._results.clear()
        for reads in leftover:
            _close_fds(reads)
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ticket, pids = job
            reads = procfs.read_many(
                pids, cached_sha256=self.hashes.get, hash_max_bytes=self.hashes.max_bytes
            )
            with self._lock:
                if self._closed:
                    _close_fds(reads)
                    return
                self._results[ticket] = reads
                self._done = ticket
                waiter = self._waiter
                if waiter is not None and waiter[0] <= ticket:
                    self._waiter = None
                    waiter[2].call_soon_threadsafe(_resolve, waiter[1])


def _close_fds(reads: list[procfs.ProcRead]) -> None:
    for read in reads:
        if read.exe_fd is not None:
            os.close(read.exe_fd)
            read.exe_fd = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
