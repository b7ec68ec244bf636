"""A real store (SQLite in tmp_path), the real bus core and the detections runtime over them, with the
rule files of rules_e2e/; exec events are made as the process collector makes them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amoskys.bus.core import Bus
from amoskys.config import BusConfig, DetectionsConfig, StoreConfig
from amoskys.detections.desk import AlertDesk
from amoskys.detections.runtime import DetectionRuntime
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Store
from amoskys.wiring import build_bus

RULES = Path(__file__).resolve().parent / "rules_e2e"
DOWNLOAD = "a32036e6-08c2-497c-bc95-6137253699ec"  # curl/wget -o /tmp/ from a shell
BASE64 = "de548bb1-f274-41ca-9a83-5cd96cc1352d"  # base64 -d in a `... | sh` pipeline
CHATTR = "805df36a-dab9-4962-9a47-c64bf230160b"  # chattr -i
MARKED_CWD = "9e4e1c40-eadf-4c55-8717-442516dacb2b"  # sleep in a directory named amoskys-marked-cwd
NAME = "box"


def exec_event(
    stamper: EnvelopeStamper,
    pid: int,
    ppid: int,
    exe: str,
    argv: Sequence[str],
    *,
    cwd: str = "/root",
    ts_ns: int | None = None,
) -> ev.Envelope:
    envelope = ev.Envelope(
        process=ev.ProcessEvent(
            kind=ev.ProcessEvent.EXEC, pid=pid, ppid=ppid, exe=exe, argv=list(argv), user="root", cwd=cwd
        )
    )
    return stamper.stamp(envelope, ts_ns=ts_ns)


def download(
    stamper: EnvelopeStamper, pid: int, *, ts_ns: int | None = None, url: str = "http://x/p"
) -> list[ev.Envelope]:
    """A shell running `curl -s -o /tmp/p URL` (the shell's exec, then curl's)."""
    return [
        exec_event(
            stamper, pid, 1, "/usr/bin/dash", ["sh", "-c", f"curl -s -o /tmp/p {url}; true"], ts_ns=ts_ns
        ),
        exec_event(stamper, pid + 1, pid, "/usr/bin/curl", ["curl", "-s", "-o", "/tmp/p", url], ts_ns=ts_ns),
    ]


@dataclass
class Running:
    store: Store
    bus: Bus
    runtime: DetectionRuntime
    desk: AlertDesk
    stamper: EnvelopeStamper
    metrics: Metrics
    db: Path

    async def publish(self, envelopes: Sequence[ev.Envelope]) -> None:
        await self.bus.publish(envelopes)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL statement on the database file (in a thread)."""

        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def alerts(self) -> list[dict[str, Any]]:
        return await alert_rows(self.db)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def alert_rows(db: Path) -> list[dict[str, Any]]:
    """Every row of the store's `alerts` table, oldest first (read-only, off the loop)."""

    def run() -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM alerts ORDER BY store_seq")]
        finally:
            conn.close()

    return await asyncio.to_thread(run)


@asynccontextmanager
async def running_store(db: Path, metrics: Metrics) -> AsyncIterator[Store]:
    store = await Store.open(db, StoreConfig(max_batch_wait_ms=2), metrics)
    task = asyncio.create_task(store.run())
    try:
        yield store
    finally:
        await store.close()
        await task


@asynccontextmanager
async def detections(
    tmp_path: Path,
    *,
    store: Store | None = None,
    metrics: Metrics | None = None,
    subscription_events: int = 50_000,
    **config: Any,
) -> AsyncIterator[Running]:
    """The runtime (started and running) over a running store (its own unless given) and a bus."""
    metrics = metrics or Metrics()
    db = tmp_path / "events.db"
    async with contextlib_nullable(store) if store is not None else running_store(db, metrics) as st:
        stamper = EnvelopeStamper(NAME)
        bus, _ = build_bus(st, metrics, BusConfig(), stamper=stamper)
        values: dict[str, Any] = {"sigma_paths": (str(RULES),), "reload_interval_seconds": 0.2}
        values.update(config)
        runtime = DetectionRuntime(
            DetectionsConfig(**values),
            store=st,
            bus=bus,
            stamper=stamper,
            metrics=metrics,
            subscription_events=subscription_events,
        )
        await runtime.start()
        task = asyncio.create_task(runtime.run())
        try:
            yield Running(
                st, bus, runtime, AlertDesk(st, bus, stamper, runtime=runtime), stamper, metrics, st.path
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await runtime.close()
            await bus.close()


@asynccontextmanager
async def contextlib_nullable(store: Store) -> AsyncIterator[Store]:
    yield store
