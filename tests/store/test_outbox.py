"""The store as an outbox (amoskys/store/outbox.py): cursors through the group commit, reads after a
cursor, sealed batches, the commit signal, and retention that waits for every configured sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store.outbox import AdvanceCursor, DropBatches, RegisterSinks, SaveBatch, SealedBatch

from .helpers import HOUR_NS, Clock, flow_records, open_store, running, small_config


def heartbeat(stamper: EnvelopeStamper) -> Record:
    return Record.from_envelope(stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat())))


async def test_a_cursor_advance_rides_the_next_group_commit_and_never_moves_back(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    async with running(store):
        await store.submit_outbox([RegisterSinks({"bus": None})])
        assert (await store.sink_cursor("bus")).store_seq == 0  # type: ignore[union-attr]
        await store.submit(flow_records(EnvelopeStamper("a"), 10))
        commits = store._writer.commits
        # queued together with events, without yielding: one transaction for both
        events = store.submit(flow_records(EnvelopeStamper("b"), 5))
        advanced = store.submit_outbox([AdvanceCursor("bus", 7)])
        await asyncio.gather(events, advanced)
        assert store._writer.commits == commits + 1
        assert (await store.sink_cursor("bus")).store_seq == 7  # type: ignore[union-attr]
        await store.submit_outbox([AdvanceCursor("bus", 3)])
        assert (await store.sink_cursor("bus")).store_seq == 7  # type: ignore[union-attr]
        # an idle writer commits a lone advance on its own
        await asyncio.wait_for(store.submit_outbox([AdvanceCursor("bus", 12)]), 5)
        assert (await store.sink_cursor("bus")).store_seq == 12  # type: ignore[union-attr]
    store = await open_store(tmp_path / "events.db")  # durable
    async with running(store):
        cursor = await store.sink_cursor("bus")
        assert cursor is not None and cursor.store_seq == 12 and cursor.kinds is None and cursor.enabled


async def test_registering_the_configured_sinks_disables_the_others(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    async with running(store):
        await store.submit_outbox([RegisterSinks({"bus": None, "alerts": frozenset({"alert"})})])
        await store.submit_outbox([RegisterSinks({"bus": frozenset({"flow", "alert"})})])
        bus, alerts = await store.sink_cursor("bus"), await store.sink_cursor("alerts")
        assert bus is not None and bus.enabled and bus.kinds == frozenset({"flow", "alert"})
        assert alerts is not None and not alerts.enabled
        await store.submit_outbox([RegisterSinks({})])
        assert not (await store.sink_cursor("bus")).enabled  # type: ignore[union-attr]


async def test_reads_after_a_cursor_keep_store_order_and_the_kinds_filter(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    stamper = EnvelopeStamper("a")
    async with running(store):
        for i in range(20):  # flows and heartbeats interleaved: heartbeats at 3, 6, 9, ...
            await store.submit([*flow_records(stamper, 2, start=2 * i), heartbeat(stamper)])
        everything = await store.outbox_read(after_seq=0, kinds=None, limit=1000)
        assert [r[0] for r in everything.rows] == list(range(1, 61)) and everything.scanned_to == 60
        first = await store.outbox_read(after_seq=10, kinds=None, limit=5)
        assert [r[0] for r in first.rows] == [11, 12, 13, 14, 15] and first.scanned_to == 15
        beats = await store.outbox_read(after_seq=0, kinds=frozenset({"heartbeat"}), limit=4)
        assert [r[0] for r in beats.rows] == [3, 6, 9, 12] and beats.scanned_to == 12
        rest = await store.outbox_read(after_seq=58, kinds=frozenset({"heartbeat"}), limit=4)
        assert [r[0] for r in rest.rows] == [60]
        none = await store.outbox_read(after_seq=60, kinds=frozenset({"alert"}), limit=4)
        assert none.rows == [] and none.scanned_to == 60
        stored = {e.store_seq: e for e in await store.events(limit=100)}
        for seq, received_ns, envelope in everything.rows:  # plain rows: the stored bytes as they are
            assert envelope == stored[seq].envelope and received_ns == stored[seq].received_ns
        windowed = await _windowed_read(store, window=7)
        assert [r[0] for r in windowed] == list(range(3, 61, 3))


async def _windowed_read(store, *, window: int):  # type: ignore[no-untyped-def]
    from amoskys.store import outbox

    read = await outbox.read_after(
        store._reader, after_seq=0, kinds=frozenset({"heartbeat"}), limit=1000, last_seq=60, window=window
    )
    return read.rows


async def test_sealed_batches_are_kept_until_acked_but_for_the_newest(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")

    def sealed(first: int, last: int, prev: bytes, digest: bytes) -> SealedBatch:
        return SealedBatch("bus", first, last, last - first + 1, None, prev, digest, 1)

    async with running(store):
        await store.submit(flow_records(EnvelopeStamper("a"), 30))
        await store.submit_outbox([RegisterSinks({"bus": None})])
        batches = [sealed(1, 10, b"", b"d1"), sealed(11, 20, b"d1", b"d2"), sealed(21, 30, b"d2", b"d3")]
        await store.submit_outbox([SaveBatch(b) for b in batches])
        assert await store.sealed_batches("bus") == batches
        await store.submit_outbox([AdvanceCursor("bus", 10)])
        assert [b.first_seq for b in await store.sealed_batches("bus")] == [1, 11, 21]
        await store.submit_outbox([AdvanceCursor("bus", 20)])
        # the newest acked one stays: the unacked one after it names its digest
        assert [b.first_seq for b in await store.sealed_batches("bus")] == [11, 21]
        await store.submit_outbox([AdvanceCursor("bus", 30)])
        assert [b.digest for b in await store.sealed_batches("bus")] == [b"d3"]  # the chain's tip stays
        rows = await store.outbox_range(first_seq=21, last_seq=30, kinds=None)
        assert [r[0] for r in rows] == list(range(21, 31))
        await store.submit_outbox([DropBatches("bus")])
        assert await store.sealed_batches("bus") == []


async def test_the_commit_signal_wakes_a_waiter_on_the_next_commit(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    async with running(store):
        waiter = asyncio.create_task(store.commits.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.submit(flow_records(EnvelopeStamper("a"), 1))
        await asyncio.wait_for(waiter, 5)


async def test_retention_waits_for_every_configured_sink_and_only_for_its_kinds(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock, config=small_config(retention_hours=1))
    stamper = EnvelopeStamper("a")
    async with running(store):
        await store.submit(flow_records(stamper, 10))  # 1..10
        await store.submit([heartbeat(stamper)])  # 11
        await store.submit(flow_records(stamper, 5, start=10))  # 12..16
        await store.submit_outbox(
            [RegisterSinks({"bus": None, "beats": frozenset({"heartbeat"}), "gone": None})]
        )
        await store.submit_outbox([AdvanceCursor("bus", 14)])
        clock.advance(2 * HOUR_NS)
        # "gone" has acked nothing and holds everything while it is configured ...
        assert (await store.maintain()).retention_deleted == 0
        await store.submit_outbox([RegisterSinks({"bus": None, "beats": frozenset({"heartbeat"})})])
        # ... and nothing once it is not; "beats" has acked nothing: the heartbeat at 11 holds
        # retention below it, the flows before it count as acked by "beats"
        assert (await store.maintain()).retention_deleted == 10
        await store.submit_outbox([AdvanceCursor("beats", 11)])
        # the flows after 11 count as acked by "beats" too: "bus" decides
        assert (await store.maintain()).retention_deleted == 4
        assert [r.store_seq for r in await store.events()] == [15, 16]


async def test_acked_rows_are_deleted_delete_acked_after_seconds_after_every_sink_acked_them(
    tmp_path: Path,
) -> None:
    clock = Clock()
    config = small_config(retention_hours=168, delete_acked_after_seconds=3600)
    store = await open_store(tmp_path / "events.db", clock=clock, config=config)
    async with running(store):
        await store.submit(flow_records(EnvelopeStamper("a"), 20))
        await store.submit_outbox([RegisterSinks({"bus": None})])
        await store.submit_outbox([AdvanceCursor("bus", 12)])
        assert (await store.maintain()).retention_deleted == 0  # acked just now
        clock.advance(1800 * 1_000_000_000)
        await store.submit_outbox([AdvanceCursor("bus", 20)])
        assert (await store.maintain()).retention_deleted == 0  # acked half an hour ago
        clock.advance(1800 * 1_000_000_000)
        assert (await store.maintain()).retention_deleted == 12  # what was acked an hour ago
        clock.advance(1800 * 1_000_000_000)
        assert (await store.maintain()).retention_deleted == 8
        assert await store.events() == []


async def test_the_hard_cap_drops_unacked_rows_and_the_loss_report_is_after_the_cursor(
    tmp_path: Path,
) -> None:
    config = small_config(high_water_mb=1, hard_cap_mb=2)
    store = await open_store(tmp_path / "events.db", config=config, metrics=Metrics())
    local = EnvelopeStamper("agent")
    async with running(store):
        await store.submit_outbox([RegisterSinks({"bus": None})])  # acks nothing
        n = 0
        while not await store.events(kind="loss"):
            await store.submit(flow_records(local, 500, start=n), local=True)
            n += 500
            assert n < 40_000, "never reached the hard cap"
        losses = await store.events(kind="loss")
        cursor = await store.sink_cursor("bus")
        unsent = await store.outbox_read(after_seq=cursor.store_seq, kinds=None, limit=100_000)  # type: ignore[union-attr]
    report = losses[0].parse().loss
    assert report.reason == "hard_cap" and report.range_start == 1 and report.count > 0
    # the report is a row the sink has not sent: it goes upstream
    assert losses[0].store_seq in {row[0] for row in unsent.rows}
