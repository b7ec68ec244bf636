"""Envelope factories, a settable clock and a running-store context for the store tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from amoskys.config import StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store

HOUR_NS = 3600 * 1_000_000_000


class Clock:
    """A wall clock the test moves by hand (the only thing the store tests fake)."""

    def __init__(self, start_ns: int = 1_764_000_000 * 1_000_000_000) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


def flow_envelope(stamper: EnvelopeStamper, i: int, *, ts_ns: int | None = None) -> ev.Envelope:
    """A realistic FlowRecord envelope (~200 bytes serialized)."""
    return stamper.stamp(
        ev.Envelope(
            flow=ev.FlowRecord(
                src_addr=f"192.168.{i % 250}.{(i * 7) % 250 + 1}",
                dst_addr="93.184.216.34",
                src_port=40000 + i % 20000,
                dst_port=443,
                protocol=6,
                ip_version=4,
                forward=ev.FlowDirection(packets=10 + i % 50, octets=1500 * (i % 50 + 1), tcp_flags=0x1B),
                reverse=ev.FlowDirection(packets=8 + i % 40, octets=9000 + i, tcp_flags=0x1B),
                first_ts_ns=1_764_250_000_000_000_000 + i,
                last_ts_ns=1_764_250_000_050_000_000 + i,
                final=True,
                end_reason=ev.END_OF_FLOW,
                community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
                interface="eth1",
                src_mac=bytes.fromhex("020000000001"),
                dst_mac=bytes.fromhex("020000000002"),
            )
        ),
        ts_ns=ts_ns if ts_ns is not None else time.time_ns(),
    )


def flow_records(
    stamper: EnvelopeStamper, n: int, *, start: int = 0, ts_ns: int | None = None
) -> list[Record]:
    return [Record.from_envelope(flow_envelope(stamper, start + i, ts_ns=ts_ns)) for i in range(n)]


def small_config(**overrides: object) -> StoreConfig:
    """A StoreConfig for tests (small queue, quick checks always on)."""
    values: dict[str, object] = {"max_batch_wait_ms": 2, "quick_check_max_mb": 64}
    values.update(overrides)
    return StoreConfig(**values)  # type: ignore[arg-type]


async def open_store(
    path: Path,
    *,
    config: StoreConfig | None = None,
    clock: Callable[[], int] | None = None,
    metrics: Metrics | None = None,
) -> Store:
    return await Store.open(
        path, config or small_config(), metrics or Metrics(), clock_ns=clock or time.time_ns
    )


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[Store]:
    """Run the writer while the block runs; close (drain) and wait for it after."""
    task = asyncio.create_task(store.run())
    try:
        yield store
    finally:
        await store.close()
        await task
