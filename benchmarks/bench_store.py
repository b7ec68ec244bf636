"""The store: append throughput (FULL and NORMAL, batches of 100 and 1000) against raw sqlite3
executemany of the same rows, and commit latency at 5,000 events/s offered.

Run: `.venv/bin/python benchmarks/bench_store.py` (prints a Markdown section; < 2 minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from amoskys.config import StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store.schema import MIGRATIONS, statements

EVENTS = int(os.environ.get("AMOSKYS_BENCH_STORE_EVENTS", "60000"))
LATENCY_SECONDS = float(os.environ.get("AMOSKYS_BENCH_STORE_LATENCY_SECONDS", "6"))
OFFERED_RATE = 5000
REPEATS = int(os.environ.get("AMOSKYS_BENCH_STORE_REPEATS", "5"))


def make_records(n: int, source: str = "edge-7") -> list[Record]:
    """Realistic flow envelopes (what dominates a sensor's traffic), serialized once."""
    stamper = EnvelopeStamper(source)
    out = []
    for i in range(n):
        env = stamper.stamp(
            ev.Envelope(
                flow=ev.FlowRecord(
                    src_addr=f"10.{i % 200}.{(i // 200) % 250}.{i % 250 + 1}",
                    dst_addr=f"172.16.{i % 13}.{i % 97 + 1}",
                    src_port=32768 + i % 28000,
                    dst_port=(443, 53, 80, 22, 123)[i % 5],
                    protocol=6 if i % 5 != 1 else 17,
                    vlan=100,
                    ip_version=4,
                    forward=ev.FlowDirection(
                        packets=3 + i % 40, octets=240 + 1400 * (i % 40), tcp_flags=0x1B
                    ),
                    reverse=ev.FlowDirection(
                        packets=2 + i % 30, octets=180 + 1200 * (i % 30), tcp_flags=0x1B
                    ),
                    first_ts_ns=1_764_250_000_000_000_000 + i * 1000,
                    last_ts_ns=1_764_250_000_900_000_000 + i * 1000,
                    final=i % 3 == 0,
                    end_reason=ev.END_OF_FLOW if i % 3 == 0 else ev.ACTIVE_TIMEOUT,
                    community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
                    interface="eth1",
                    src_mac=bytes.fromhex("02000000%04x" % (i % 65536)),
                    dst_mac=bytes.fromhex("020000000002"),
                )
            ),
            ts_ns=1_764_250_001_000_000_000 + i * 1000,
        )
        out.append(Record.from_envelope(env))
    return out


def raw_rate(path: Path, records: list[Record], synchronous: str, batch: int) -> float:
    """sqlite3 executemany of the same rows into the same table, one transaction per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    for statement in statements(MIGRATIONS[0].script):
        if "CREATE TABLE events (" in statement or "CREATE INDEX events_kind" in statement:
            conn.execute(statement)
    now = time.time_ns()
    digest = bytes(32)
    rows = []
    for seq, r in enumerate(records, 1):
        digest = hashlib.sha256(digest + r.envelope).digest()
        rows.append(
            (seq, r.source, r.event_id, r.boot_id, r.source_seq, r.kind, r.ts_ns, now, r.envelope, digest)
        )
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[i : i + batch])
        conn.execute("COMMIT")
    took = time.perf_counter() - t0
    conn.close()
    return len(rows) / took


async def store_rate(path: Path, records: list[Record], synchronous: str, batch: int) -> float:
    """Store.submit in chunks of `batch` (one transaction each), with up to 8 submissions in flight."""
    config = StoreConfig(synchronous=synchronous, max_batch_events=batch, queue_max_events=1_000_000)  # type: ignore[arg-type]
    store = await Store.open(path, config, Metrics())
    writer = asyncio.create_task(store.run())
    in_flight: list[asyncio.Future[object]] = []
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        in_flight.append(store.submit(records[i : i + batch]))  # type: ignore[arg-type]
        if len(in_flight) >= 8:
            await in_flight.pop(0)
    for f in in_flight:
        await f
    took = time.perf_counter() - t0
    await store.close()
    await writer
    return len(records) / took


async def latency(path: Path, synchronous: str) -> tuple[float, float, float, int]:
    """Offer OFFERED_RATE events/s (25 events every 5 ms) and time each submit → ack."""
    config = StoreConfig(synchronous=synchronous)  # type: ignore[arg-type]
    store = await Store.open(path, config, Metrics())
    writer = asyncio.create_task(store.run())
    records = make_records(int(OFFERED_RATE * LATENCY_SECONDS) + 100, source="edge-lat")
    per_tick, tick = 25, 0.005
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(chunk: list[Record]) -> None:
        t = time.perf_counter()
        await store.submit(chunk)
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    sent = 0
    while sent + per_tick <= len(records) and time.perf_counter() - start < LATENCY_SECONDS:
        due = start + (sent // per_tick) * tick
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(records[sent : sent + per_tick]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += per_tick
    await asyncio.gather(*pending)
    took = time.perf_counter() - start
    await store.close()
    await writer
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return p50 * 1000, p99 * 1000, sent / took, len(latencies)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings only
    records = make_records(EVENTS)
    size = statistics.mean(len(r.envelope) for r in records)
    lines = [
        "## Store",
        "",
        f"Append throughput: {EVENTS:,} flow envelopes ({size:.0f} bytes each on average) per run, "
        "one transaction per batch, `Store.submit` with 8 batches in flight vs. raw `sqlite3` "
        "`executemany` of the same rows into the same `events` table (same indexes; the store's database "
        "also pays for `auto_vacuum=INCREMENTAL`) in the same run: medians of "
        f"{REPEATS} interleaved runs, and the range of the per-run ratios.",
        "",
        "| synchronous | batch | raw sqlite3 (rows/s) | Store (events/s) | Store / raw | range of runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="amoskys-bench-store-") as tmp:
        d = Path(tmp)
        for synchronous in ("full", "normal"):
            for batch in (100, 1000):
                raws, stores = [], []
                for rep in range(REPEATS):  # interleaved, so a noisy neighbour hits both alike
                    tag = f"{synchronous}-{batch}-{rep}"
                    raws.append(raw_rate(d / f"raw-{tag}.db", records, synchronous.upper(), batch))
                    stores.append(asyncio.run(store_rate(d / f"store-{tag}.db", records, synchronous, batch)))
                raw, store = statistics.median(raws), statistics.median(stores)
                ratios = sorted(s / r for s, r in zip(stores, raws, strict=True))
                lines.append(
                    f"| {synchronous.upper()} | {batch} | {raw:,.0f} | {store:,.0f} | {store / raw:.0%} "
                    f"| {ratios[0]:.0%}–{ratios[-1]:.0%} |"
                )
        lines += [
            "",
            f"Commit latency (submit → ack) at {OFFERED_RATE:,} events/s offered, 25 events every 5 ms "
            f"for {LATENCY_SECONDS:.0f} s, default config (max_batch_wait_ms 5):",
            "",
            "| synchronous | p50 (ms) | p99 (ms) | achieved (events/s) | submits |",
            "|---|---:|---:|---:|---:|",
        ]
        for synchronous in ("full", "normal"):
            p50, p99, achieved, n = asyncio.run(latency(d / f"lat-{synchronous}.db", synchronous))
            lines.append(f"| {synchronous.upper()} | {p50:.2f} | {p99:.2f} | {achieved:,.0f} | {n} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
