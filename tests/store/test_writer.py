"""The writer: group commit, dedup, chain digest, marks, views, submit contract."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import ChainAnchor, Outcome, Record, Store, SubmitRefusedError, writer
from amoskys.store.chain import next_digest
from amoskys.store.records import check_record
from amoskys.store.schema import GENESIS_DIGEST

from .helpers import flow_records, open_store, running, small_config
from support import eventually


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


async def test_duplicate_event_is_acked_but_stored_once(tmp_path: Path) -> None:
    metrics = Metrics()
    store = await open_store(tmp_path / "events.db", metrics=metrics)
    stamper = EnvelopeStamper("agent-1")
    first = flow_records(stamper, 5)
    async with running(store):
        assert await store.submit(first) == [Outcome.COMMITTED] * 5
        again = await store.submit([first[1], *flow_records(stamper, 1), first[3]])
        assert again == [Outcome.DUPLICATE, Outcome.COMMITTED, Outcome.DUPLICATE]
        rows = await store.events()
    assert [r.event_id for r in rows] == [r.event_id for r in first] + [rows[-1].event_id]
    assert [r.store_seq for r in rows] == [1, 2, 3, 4, 5, 6]  # no gap where the duplicates were
    assert metrics.store_duplicates.labels("flow")._value.get() == 2
    assert metrics.store_committed.labels("flow")._value.get() == 6


async def test_duplicates_within_one_batch_and_across_submits_in_one_transaction(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    stamper = EnvelopeStamper("agent-1")
    recs = flow_records(stamper, 3)
    # both submits are queued before the writer runs, so they share one transaction
    f1 = store.submit([recs[0], recs[1], recs[0]])
    f2 = store.submit([recs[1], recs[2]])
    async with running(store):
        assert await f1 == [Outcome.COMMITTED, Outcome.COMMITTED, Outcome.DUPLICATE]
        assert await f2 == [Outcome.DUPLICATE, Outcome.COMMITTED]
    assert _count(tmp_path / "events.db") == 3


async def test_same_event_id_from_two_sources_is_two_events(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    a = flow_records(EnvelopeStamper("agent-a"), 1)[0]
    b = Record(
        source="agent-b",
        event_id=a.event_id,
        boot_id="b",
        source_seq=1,
        kind=a.kind,
        ts_ns=a.ts_ns,
        envelope=a.envelope,
    )
    async with running(store):
        assert await store.submit([a, b]) == [Outcome.COMMITTED, Outcome.COMMITTED]


async def test_duplicate_is_recognised_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    recs = flow_records(EnvelopeStamper("agent-1"), 4)
    async with running(await open_store(path)) as store:
        await store.submit(recs[:2])
    async with running(await open_store(path)) as store:
        assert await store.submit(recs) == [Outcome.DUPLICATE] * 2 + [Outcome.COMMITTED] * 2
        assert [r.store_seq for r in await store.events()] == [1, 2, 3, 4]


async def test_future_resolves_only_after_commit_is_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await open_store(path)
    seen_at_resolution: list[int] = []
    async with running(store):
        for n in (1, 10, 100):
            fut = store.submit(flow_records(EnvelopeStamper("agent-1"), n))
            fut.add_done_callback(lambda _f: seen_at_resolution.append(_count(path)))
            await fut
    assert seen_at_resolution == [1, 11, 111]


async def test_concurrent_submits_are_group_committed(tmp_path: Path) -> None:
    metrics = Metrics()
    store = await open_store(
        tmp_path / "events.db", metrics=metrics, config=small_config(max_batch_events=500)
    )
    stamper = EnvelopeStamper("agent-1")
    async with running(store):
        futures = [store.submit(flow_records(stamper, 10, start=i * 10)) for i in range(100)]
        results = await asyncio.gather(*futures)
    assert all(r == [Outcome.COMMITTED] * 10 for r in results)
    batches = metrics.store_batch_events.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    total = next(s.value for s in batches if s.name.endswith("_sum"))
    assert total == 1000
    assert count <= 4  # 1000 events in batches of up to 500, not 100 transactions


async def test_a_long_queue_is_written_in_chained_transactions_and_every_future_resolves(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    store = await open_store(tmp_path / "events.db", metrics=metrics, config=small_config(max_batch_events=5))
    stamper = EnvelopeStamper("agent-1")
    recs = flow_records(stamper, 500)
    # queued before the writer starts: 100 transactions back to back, planned ahead of each other,
    # with re-sends mixed in so some transactions take the dedup slow path
    futures = [store.submit(recs[i : i + 5]) for i in range(0, 500, 5)]
    resent = [store.submit([recs[i], recs[i + 1]]) for i in range(0, 500, 50)]
    async with running(store):
        results = await asyncio.wait_for(asyncio.gather(*futures), 10)
        dups = await asyncio.wait_for(asyncio.gather(*resent), 10)
        rows = await store.events(limit=1000)
        check = await store.verify_chain()
    assert all(r == [Outcome.COMMITTED] * 5 for r in results)
    assert all(d == [Outcome.DUPLICATE] * 2 for d in dups)
    assert [r.store_seq for r in rows] == list(range(1, 501))
    assert [r.event_id for r in rows] == [r.event_id for r in recs]
    assert check.ok


async def test_the_writer_thread_commits_what_was_queued_without_waiting_for_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a COMMIT the writer thread takes the next queued batch itself: with the loop blocked
    (as a busy bus keeps it), the queue is still written, one transaction after another."""
    monkeypatch.setattr(writer, "CHAIN_BUDGET_S", 30.0)  # the chain may not hand back on a slow box
    path = tmp_path / "events.db"
    store = await open_store(path, config=small_config(max_batch_events=50))
    stamper = EnvelopeStamper("agent-1")
    async with running(store):
        futures = [store.submit(flow_records(stamper, 50, start=i * 50)) for i in range(40)]
        first = await eventually(lambda: _count(path), what="the first transaction")
        assert first < 2000  # the loop is blocked below while most of the queue is still to write
        deadline = time.monotonic() + 30
        while _count(path) < 2000 and time.monotonic() < deadline:  # the loop does not run meanwhile
            pass
        assert _count(path) == 2000
        results = await asyncio.gather(*futures)
    assert all(r == [Outcome.COMMITTED] * 50 for r in results)


async def test_a_writer_cancelled_mid_chain_acks_exactly_what_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await open_store(path, config=small_config(max_batch_events=20))
    stamper = EnvelopeStamper("agent-1")
    batches = [flow_records(stamper, 20, start=i * 20) for i in range(50)]
    futures = [store.submit(b) for b in batches]
    task = asyncio.create_task(store.run())
    await eventually(lambda: _count(path) > 0, what="the first transaction")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    acked: set[str] = set()
    for batch, future in zip(batches, futures, strict=True):
        assert future.done()
        if future.exception() is None:
            assert future.result() == [Outcome.COMMITTED] * 20
            acked.update(r.event_id for r in batch)
    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()
    assert acked == stored  # nothing acked is missing, nothing stored went unacked
    assert 0 < len(acked) < 1000  # the chain stopped after the transaction it was in
    await store.close()


async def test_a_duplicate_found_while_the_next_transaction_was_planned_ahead_leaves_no_gap(
    tmp_path: Path,
) -> None:
    """Transaction k re-sends a stored event: its dedup retry commits one row fewer than planned; k+1,
    planned ahead while k commits, re-sends one of k's events, which its plan could not know. The log
    stays gapless and its chain verifies."""
    store = await open_store(tmp_path / "events.db", config=small_config(max_batch_events=5))
    recs = flow_records(EnvelopeStamper("agent-1"), 30)
    async with running(store):
        assert await store.submit(recs[:1]) == [Outcome.COMMITTED]
        futures = [
            store.submit([recs[0], *recs[1:5]]),  # k: recs[0] is stored already
            store.submit([recs[4], *recs[5:9]]),  # k+1: recs[4] is in k
            store.submit(recs[9:14]),
            store.submit(recs[14:19]),
        ]
        results = await asyncio.gather(*futures)
        rows = await store.events(limit=100)
        check = await store.verify_chain()
    assert results[0] == [Outcome.DUPLICATE] + [Outcome.COMMITTED] * 4
    assert results[1] == [Outcome.DUPLICATE] + [Outcome.COMMITTED] * 4
    assert results[2] == results[3] == [Outcome.COMMITTED] * 5
    assert [r.store_seq for r in rows] == list(range(1, 20))
    assert [r.event_id for r in rows] == [r.event_id for r in recs[:19]]
    assert check.ok


class _DeferredViolation:
    """A write riding a group commit whose foreign key fails only at its COMMIT (deferred)."""

    def run(self, conn: sqlite3.Connection, now_ns: int) -> None:
        conn.execute("INSERT INTO t_child (parent) VALUES (42)")


async def test_a_commit_that_fails_after_the_next_batch_was_handed_to_the_planner_acks_nothing_of_either(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = await open_store(path, config=small_config(max_batch_events=10))
    await store._db.execute("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)")
    await store._db.execute(
        "CREATE TABLE t_child (parent INTEGER REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    stamper = EnvelopeStamper("agent-1")
    async with running(store):
        assert await store.submit(flow_records(stamper, 10)) == [Outcome.COMMITTED] * 10
        failing = store.submit_ops([_DeferredViolation()])  # its statements go in; its COMMIT fails
        behind = [store.submit(flow_records(stamper, 10, start=10 + i * 10)) for i in range(5)]
        with pytest.raises(StoreError):
            await failing
        for future in behind:  # queued, or taken for the next plan: failed with the queue, not acked
            with pytest.raises(StoreError):
                await asyncio.wait_for(future, 10)
    assert _count(path) == 10


async def test_chain_digest_verifies_over_store_seq_order(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await open_store(path)
    async with running(store):
        for i in range(5):
            await store.submit(flow_records(EnvelopeStamper(f"agent-{i}"), 7))
        check = await store.verify_chain()
    assert check.ok and check.checked == 34 and check.first_seq == 1 and check.last_seq == 35
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT envelope, digest FROM events ORDER BY store_seq").fetchall()
    prev = GENESIS_DIGEST
    for envelope, digest in rows:
        assert digest == next_digest(prev, envelope)
        prev = digest
    # tampering with one stored envelope breaks the chain at that row
    conn.execute("UPDATE events SET envelope = x'00' WHERE store_seq = 20")
    conn.commit()
    conn.close()
    store = await open_store(path)
    try:
        check = await store.verify_chain()
    finally:
        await store.close()
    assert not check.ok and check.bad_seq == 20


async def test_envelope_bytes_are_stored_exactly_as_received(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    rec = flow_records(EnvelopeStamper("agent-1"), 1)[0]
    # an unknown field appended: a re-serialization would drop or reorder it
    raw = rec.envelope + b"\xf8\x3f\x01"
    odd = Record(rec.source, rec.event_id, rec.boot_id, rec.source_seq, rec.kind, rec.ts_ns, raw)
    async with running(store):
        await store.submit([odd])
        (row,) = await store.events()
    assert row.envelope == raw


async def test_high_water_mark_per_source_follows_the_latest_boot(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first, second = EnvelopeStamper("agent-1"), EnvelopeStamper("agent-1")
    async with running(await open_store(path)) as store:
        await store.submit(flow_records(first, 5))
        assert store.high_water("agent-1") == (first.boot_id, 5)
        assert store.high_water("nobody") is None
    clock_ns = 2_000_000_000_000_000_000
    async with running(await open_store(path, clock=lambda: clock_ns)) as store:
        assert store.high_water("agent-1") == (first.boot_id, 5)
        await store.submit(flow_records(second, 3))
        assert store.high_water("agent-1") == (second.boot_id, 3)


async def test_received_ns_comes_from_the_store_clock_and_ts_ns_from_the_event(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db", clock=lambda: 123_456)
    rec = flow_records(EnvelopeStamper("agent-1"), 1, ts_ns=42)[0]
    async with running(store):
        await store.submit([rec])
        (row,) = await store.events()
    assert (row.ts_ns, row.received_ns) == (42, 123_456)


async def test_submit_is_refused_when_closing_and_when_the_queue_is_full(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db", config=small_config(queue_max_events=10))
    stamper = EnvelopeStamper("agent-1")
    queued = store.submit(flow_records(stamper, 8))  # the writer is not running yet
    with pytest.raises(SubmitRefusedError) as info:
        store.submit(flow_records(stamper, 3))
    assert info.value.reason == "queue_full" and info.value.backoff_hint_ms > 0
    store.submit(flow_records(stamper, 2))  # exactly full is fine
    await store.close()  # drains what was queued even without run()
    assert await queued == [Outcome.COMMITTED] * 8
    with pytest.raises(SubmitRefusedError) as info:
        store.submit(flow_records(stamper, 1))
    assert info.value.reason == "closing"


async def test_a_submission_larger_than_the_queue_is_taken_when_the_queue_is_empty(tmp_path: Path) -> None:
    store = await open_store(
        tmp_path / "events.db", config=small_config(queue_max_events=10, max_batch_events=5)
    )
    async with running(store):
        assert await store.submit(flow_records(EnvelopeStamper("a"), 25)) == [Outcome.COMMITTED] * 25


async def test_submit_rejects_malformed_records_without_queueing(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    good = flow_records(EnvelopeStamper("agent-1"), 1)[0]
    bad = Record(good.source, "", good.boot_id, 1, "flow", 1, good.envelope)
    huge = Record(good.source, "x", good.boot_id, 1 << 63, "flow", 1, good.envelope)
    with pytest.raises(ValueError, match=r"record 1 .*missing_event_id"):
        store.submit([good, bad])
    with pytest.raises(ValueError, match="not_a_record"):
        store.submit([good.envelope])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="source_seq_out_of_range"):
        store.submit([huge])
    assert check_record(good) is None and check_record(huge) == "source_seq_out_of_range"
    stats = await store.stats()
    await store.close()
    assert stats.queue_events == 0 and stats.rows == 0


async def test_cancelled_writer_fails_queued_futures_without_acking(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    task = asyncio.create_task(store.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # queued after the writer died: close() drains it itself
    fut = store.submit(flow_records(EnvelopeStamper("a"), 2))
    await store.close()
    assert await fut == [Outcome.COMMITTED] * 2


async def test_open_refuses_a_store_already_open(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    try:
        with pytest.raises(Exception, match="in use by pid"):
            await open_store(tmp_path / "events.db")
    finally:
        await store.close()


async def test_chain_anchor_is_written_with_the_batch(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db", clock=lambda: 99)
    async with running(store):
        anchor = ChainAnchor("agent-1", b"\x01" * 32, 77)
        await store.submit(flow_records(EnvelopeStamper("agent-1"), 2), anchor=anchor)
        assert await store.state.get_chain_anchor("agent-1") == anchor
        # an all-duplicate batch still moves the anchor (the batch was accepted)
        anchor2 = ChainAnchor("agent-1", b"\x02" * 32, 78)
        await store.submit([], anchor=anchor2)
        assert await store.state.get_chain_anchor("agent-1") == anchor2


async def test_derived_views_follow_device_snmp_and_process_events(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    s = EnvelopeStamper("edge-1")
    mac = bytes.fromhex("3c22fb000001")

    def rec(ts: int, **body: object) -> Record:
        return Record.from_envelope(s.stamp(ev.Envelope(**body), ts_ns=ts))  # type: ignore[arg-type]

    async with running(store):
        await store.submit(
            [
                rec(
                    10,
                    device=ev.DeviceEvent(
                        change=ev.DeviceEvent.NEW, ip="192.168.1.20", mac=mac, vendor="Apple"
                    ),
                ),
                rec(20, device=ev.DeviceEvent(change=ev.DeviceEvent.IP_CHANGED, ip="192.168.1.21", mac=mac)),
                rec(
                    30,
                    snmp=ev.SnmpSample(
                        target="core-sw1",
                        address="10.0.0.2:161",
                        reachable=True,
                        system=ev.SnmpSystem(name="core-sw1", uptime_ticks=100),
                        interfaces=[
                            ev.SnmpInterface(if_index=1, name="Gi0/1", in_octets=5, in_bps=8.0),
                            ev.SnmpInterface(if_index=2, name="Gi0/2", out_octets=(1 << 64) - 1),
                        ],
                    ),
                ),
                rec(
                    40,
                    process=ev.ProcessEvent(
                        kind=ev.ProcessEvent.EXEC, pid=100, exe="/bin/sleep", argv=["sleep", "9"]
                    ),
                ),
                rec(41, process=ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=101, exe="/bin/true")),
                rec(42, process=ev.ProcessEvent(kind=ev.ProcessEvent.EXIT, pid=101, exit_code=0)),
            ]
        )
        # a later batch: the switch becomes unreachable (system info kept), an old sample arrives late
        await store.submit(
            [
                rec(
                    50,
                    snmp=ev.SnmpSample(
                        target="core-sw1", address="10.0.0.2:161", reachable=False, error="timeout"
                    ),
                ),
                rec(
                    25,
                    snmp=ev.SnmpSample(
                        target="core-sw1",
                        reachable=True,
                        interfaces=[ev.SnmpInterface(if_index=1, name="Gi0/1", in_octets=1)],
                    ),
                ),
                rec(60, device=ev.DeviceEvent(change=ev.DeviceEvent.GONE, mac=mac)),
                rec(
                    61,
                    process=ev.ProcessEvent(
                        kind=ev.ProcessEvent.SNAPSHOT, pid=100, exe="/bin/sleep", rss_bytes=4096
                    ),
                ),
            ]
        )
        (device,) = await store.devices()
        (target,) = await store.snmp_targets()
        iface, near_wrap = await store.snmp_interfaces(target="core-sw1")
        procs = await store.processes()
    assert (device["ip"], device["vendor"], device["present"], device["last_change"]) == (
        "192.168.1.21",
        "Apple",
        0,
        "gone",
    )
    assert device["first_seen_ns"] == 10 and device["last_seen_ns"] == 60
    assert (target["reachable"], target["error"], target["sys_name"], target["ts_ns"]) == (
        0,
        "timeout",
        "core-sw1",
        50,
    )
    assert (iface["in_octets"], iface["in_bps"], iface["ts_ns"]) == (5, 8.0, 30)  # the late sample lost
    assert near_wrap["out_octets"] == float((1 << 64) - 1) and near_wrap["in_bps"] is None
    assert [(p["pid"], p["rss_bytes"], p["argv"]) for p in procs] == [(100, 4096, [])]


async def test_run_twice_is_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    async with running(store):
        await eventually(lambda: store.running, within=5, what="the writer to start")
        with pytest.raises(Exception, match="already running"):
            await store.run()


async def test_store_open_returns_a_store(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "events.db", small_config(), Metrics())
    assert isinstance(store, Store)
    await store.close()
    await store.close()  # idempotent
