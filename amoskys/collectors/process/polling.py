"""The fallback without the proc connector: diff the process list every poll interval.

Its limits (they show in the collector's README): a process that starts and ends between two polls
is never seen; an exec found this way is stamped with the process's start time and an exit with
the time it was noticed (so ``lifetime_ns`` may be up to one interval long); the exit code is
unknown (``unreadable`` lists ``exit_code``); a process that replaces its program (``exec`` without
a fork) keeps its pid and start time and is not seen again. A process younger than
``SETTLE_NS`` is left for the next poll: a fork is often caught before its exec, and read then it
would be reported with its parent's program for good.
"""

from __future__ import annotations

import time
from collections import Counter

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.process import events, procfs
from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.redact import Redactor
from amoskys.collectors.process.stats import ProcessStats
from amoskys.collectors.process.table import ProcessTable, proc_from_read
from amoskys.collectors.workers import in_worker
from amoskys.proto import events_pb2

#: A new process is read once it is this old (else at the next poll): the fork-to-exec window.
SETTLE_NS = 50_000_000


class PollingTracker:
    """Turns differences between successive /proc listings into EXEC and EXIT events."""

    def __init__(
        self,
        ctx: CollectorContext,
        *,
        table: ProcessTable,
        redactor: Redactor,
        hashes: ExeHashes,
        stats: ProcessStats,
        boot_ns: int,
    ) -> None:
        self.ctx = ctx
        self.table = table
        self.redactor = redactor
        self.hashes = hashes
        self.stats = stats
        self.boot_ns = boot_ns

    async def tick(self) -> None:
        """One diff against the table; publishes what started and what ended since the last."""
        known = {pid: p.start_ticks for pid, p in self.table.procs.items()}
        current, reads = await in_worker(self._scan, known)
        now_ns = time.time_ns()
        envelopes: list[events_pb2.Envelope] = []
        enrichment: Counter[str] = Counter()
        for pid, ticks in known.items():
            if current.get(pid) != ticks:  # gone, or its pid now belongs to another process
                proc = self.table.pop(pid)
                if proc is None:
                    continue
                unreadable = sorted({*proc.unreadable, "exit_code"}, key=procfs.FIELD_ORDER.index)
                envelopes.append(
                    events.exit_event(
                        proc,
                        now_ns,
                        exit_code=None,
                        exit_signal=None,
                        lifetime_ns=now_ns - proc.start_time_ns if proc.start_time_ns else 0,
                        unreadable=unreadable,
                    )
                )
        for read in reads:
            if read.gone:
                continue  # ended before it could be read: as if never seen
            proc = proc_from_read(read, self.redactor, self.boot_ns)
            self.table.put(proc)
            enrichment["partial" if {"exe", "argv"} & set(proc.unreadable) else "complete"] += 1
            envelopes.append(events.exec_event(proc, proc.start_time_ns or now_ns))
        self.stats.metrics.process_tracked.set(len(self.table))
        if enrichment:
            self.stats.count_enrichment(enrichment)
        if envelopes:
            await self.ctx.publish_many(envelopes)
            self.stats.count_published(envelopes, "polling")
            self.stats.count_hashes(self.hashes)

    def _scan(self, known: dict[int, int | None]) -> tuple[dict[int, int], list[procfs.ProcRead]]:
        """(pid → start ticks now, reads of the new processes). Blocking: runs in a worker thread."""
        current = procfs.scan_start_ticks()
        settled = procfs.wall_ns_to_ticks(time.time_ns() - SETTLE_NS, self.boot_ns)
        young = {pid for pid, ticks in current.items() if ticks > settled and known.get(pid, -1) != ticks}
        for pid in young:  # not known yet: the next poll finds them new again
            del current[pid]
        new = [pid for pid, ticks in current.items() if known.get(pid, -1) != ticks]
        reads = procfs.read_many(new, cached_sha256=self.hashes.get, hash_max_bytes=self.hashes.max_bytes)
        for read in reads:
            if read.exe_fd is not None and read.exe_key is not None:
                read.sha256 = self.hashes.digest_fd(read.exe_fd, read.exe_key)
                read.exe_fd = None
                if read.sha256 is None:
                    read.missing.append("exe_sha256")
                    read.missing.sort(key=procfs.FIELD_ORDER.index)
        return current, reads
