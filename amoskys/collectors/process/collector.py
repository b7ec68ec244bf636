"""ProcessCollector: chooses netlink or polling, runs it, and takes the inventory snapshots."""

from __future__ import annotations

import asyncio
import sys
import time

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.process import events, procfs
from amoskys.collectors.process.config import ProcessConfig
from amoskys.collectors.process.hashing import ExeHashes
from amoskys.collectors.process.metrics import ProcessMetrics
from amoskys.collectors.process.polling import PollingTracker
from amoskys.collectors.process.realtime import RealtimeTracker
from amoskys.collectors.process.redact import Redactor
from amoskys.collectors.process.snapshot import Snapshotter
from amoskys.collectors.process.stats import ProcessStats
from amoskys.collectors.process.table import ProcessTable
from amoskys.collectors.workers import in_worker
from amoskys.errors import FatalCollectorError

#: Envelopes per publish_many call of a snapshot.
_SNAPSHOT_CHUNK = 500
#: Shortest time between two snapshots that resynchronise the table after lost events.
RESYNC_MIN_SECONDS = 10.0


class ProcessCollector:
    """Exec and exit as they happen (proc connector) or by polling diffs, plus periodic snapshots.

    ``mode`` is ``netlink``, or ``polling (<why netlink is not used>)``.
    """

    name = "process"
    Config = ProcessConfig
    Metrics = ProcessMetrics

    def __init__(self, config: ProcessConfig, ctx: CollectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.mode = "netlink" if config.mode != "polling" else 'polling (mode = "polling" in the config)'
        self.redactor = Redactor(config.redact_patterns)
        self.hashes = ExeHashes(config.hash_cache_entries, config.hash_max_mb * 1024 * 1024)
        self.table = ProcessTable()
        self.stats = ProcessStats(ctx.metrics.component(ProcessMetrics))
        self.snapshotter = Snapshotter(self.redactor, self.hashes)
        self.boot_ns = 0
        self._resync = asyncio.Event()
        self._snapshot_lock = asyncio.Lock()
        self._first_snapshot = asyncio.Event()
        self.mode_known = asyncio.Event()  # set once run() has settled on netlink or polling

    def self_check(self) -> str | None:
        """Linux only; ``mode = "netlink"`` also needs CAP_NET_ADMIN. Sets the expected mode."""
        if not sys.platform.startswith("linux"):
            return "needs Linux (/proc)"
        if self.config.mode == "polling":
            return None
        if not self.ctx.has_capability("CAP_NET_ADMIN"):
            if self.config.mode == "netlink":
                return 'mode = "netlink" needs CAP_NET_ADMIN (or root); "auto" falls back to polling'
            self.mode = "polling (netlink needs CAP_NET_ADMIN)"
        return None

    async def run(self) -> None:
        self.boot_ns = procfs.boot_wall_ns()
        if self.mode == "netlink":
            tracker = self._realtime()
            try:
                reason = await tracker.start()
            except BaseException:  # cancelled during the self-test: the socket must not leak
                tracker.close()
                raise
            if reason is None:
                self._set_mode("netlink")
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(tracker.run(), name="process:netlink")
                        tg.create_task(self._snapshot_loop(), name="process:snapshot")
                        tg.create_task(self._resync_loop(), name="process:resync")
                finally:
                    tracker.close()
                return
            if self.config.mode == "netlink":
                raise FatalCollectorError(f'process collector: mode = "netlink" but {reason}')
            self.mode = f"polling ({reason})"
        self._set_mode(self.mode)
        polling = PollingTracker(
            self.ctx,
            table=self.table,
            redactor=self.redactor,
            hashes=self.hashes,
            stats=self.stats,
            boot_ns=self.boot_ns,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._snapshot_loop(), name="process:snapshot")
            tg.create_task(self._poll_after_first_snapshot(polling), name="process:poll")

    def _realtime(self) -> RealtimeTracker:
        return RealtimeTracker(
            self.config,
            self.ctx,
            table=self.table,
            redactor=self.redactor,
            hashes=self.hashes,
            stats=self.stats,
            boot_ns=self.boot_ns,
            on_loss=self._resync.set,
        )

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.mode_known.set()
        self.stats.set_mode("netlink" if mode == "netlink" else "polling")
        if mode == "netlink":
            self.ctx.log.info("process_mode", mode=mode)
        else:
            self.ctx.log.warning("process_mode", mode=mode)

    async def _poll_after_first_snapshot(self, polling: PollingTracker) -> None:
        await self._first_snapshot.wait()  # the snapshot is the baseline the first diff starts from
        await self.ctx.poll(self.config.poll_interval_seconds, polling.tick)

    async def _snapshot_loop(self) -> None:
        await self.ctx.poll(self.config.snapshot_interval_seconds, self.snapshot)

    async def _resync_loop(self) -> None:
        """After lost events, a snapshot (at most one per RESYNC_MIN_SECONDS) repairs the table."""
        while True:
            await self._resync.wait()
            self._resync.clear()
            with self.ctx.busy():
                await self.snapshot()
            await self.ctx.clock.sleep(RESYNC_MIN_SECONDS)

    async def snapshot(self) -> None:
        """Publish every process as a SNAPSHOT event and reconcile the table with what was seen."""
        async with self._snapshot_lock:
            started = time.monotonic()
            ts_ns = self.ctx.clock.time_ns()
            realtime = self.mode == "netlink"
            if realtime:
                self.table.begin_sync()
            rows = await in_worker(self.snapshotter.take, self.boot_ns)
            if realtime:
                dropped = self.table.finish_sync(row.proc for row in rows)
                if dropped:
                    self.ctx.log.debug("process_table_resynced", dropped=dropped)
            elif not self._first_snapshot.is_set():
                self.table.seed(row.proc for row in rows)
            envelopes = [
                events.snapshot_event(
                    row.proc,
                    ts_ns,
                    cpu_percent=row.cpu_percent,
                    cpu_seconds=row.cpu_seconds,
                    rss_bytes=row.rss_bytes,
                )
                for row in rows
            ]
            for start in range(0, len(envelopes), _SNAPSHOT_CHUNK):
                chunk = envelopes[start : start + _SNAPSHOT_CHUNK]
                await self.ctx.publish_many(chunk)
                self.stats.count_published(chunk, "snapshot")
            self.stats.count_snapshot(len(rows), time.monotonic() - started)
            self.stats.count_hashes(self.hashes)
            self.stats.metrics.process_tracked.set(len(self.table))
            self._first_snapshot.set()
