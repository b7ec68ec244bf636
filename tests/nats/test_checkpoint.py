"""The stream sequence the NATS sink saves with its cursor (Migration 9, `sink_cursors.remote_seq`): a
bound below every message it may have published for a row after the cursor, kept through a restart."""

from __future__ import annotations

from pathlib import Path

from nats_harness import outbox, records, submit

from amoskys.config import NatsForwarderConfig
from amoskys.forwarders.nats import NatsForwarderMetrics, NatsSink
from amoskys.metrics import Metrics
from amoskys.store.outbox import AdvanceCursor, RegisterSinks


async def test_remote_seq_is_saved_with_the_cursor_and_never_goes_back(tmp_path: Path) -> None:
    metrics = Metrics()
    async with outbox(tmp_path / "box.db", metrics) as store:
        await store.submit_outbox([RegisterSinks({"nats": None, "bus": None})])
        await store.submit_outbox([AdvanceCursor("nats", 10, 70)])
        await store.submit_outbox([AdvanceCursor("nats", 12, 50)])  # a late, lower one loses
        await store.submit_outbox([AdvanceCursor("bus", 5)])
        nats_cursor, bus_cursor = await store.sink_cursor("nats"), await store.sink_cursor("bus")
    assert nats_cursor is not None and (nats_cursor.store_seq, nats_cursor.remote_seq) == (12, 70)
    assert bus_cursor is not None and bus_cursor.remote_seq is None  # a sink that keeps none


async def test_after_a_restart_the_saved_bound_holds_until_the_rows_sent_before_are_acked(
    tmp_path: Path,
) -> None:
    """Rows up to the store's tip at the restart may have been published by the run before, anywhere
    after the saved sequence: acks of this run must not lift the bound past them until the cursor
    passes those rows, or a reconciliation after a reconnect would miss them and publish them twice."""
    metrics = Metrics()
    async with outbox(tmp_path / "box.db", metrics) as store:
        await submit(store, records("agent-1", 1000))
        await store.submit_outbox([RegisterSinks({"nats": None})])
        await store.submit_outbox([AdvanceCursor("nats", 0, 7)])
        sink = NatsSink(
            NatsForwarderConfig(enabled=True, site="s"),
            store,
            metrics.component(NatsForwarderMetrics),
            box="b",
        )
        assert await sink.resume(0) == []
        assert sink.high_seq == 7
        rows = (await store.outbox_read(after_seq=0, kinds=None, limit=1000)).rows
        first = await sink.seal(rows[:256])
        sink.high_seq = 900  # acks of this run's publishes
        second = await sink.seal(rows[256:600])
        assert sink.checkpoint(first) == 7  # rows 257-1000 may be in the stream after 7
        third = await sink.seal(rows[600:])
        assert sink.checkpoint(second) == 7
        assert sink.checkpoint(third) == 900  # every row of the run before is acked: the bound moves
        assert first.payload.floor == 7 and second.payload.floor == 900
