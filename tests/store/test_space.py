"""The space ladder: retention, high water (remote refused, local taken), hard cap, vacuum."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Outcome, SpaceState, SubmitRefusedError
from amoskys.store.space import SpaceLadder

from .helpers import HOUR_NS, Clock, flow_records, open_store, running, small_config


def _file_size(path: Path) -> int:
    return os.path.getsize(path)


def test_ladder_climbs_at_the_marks_and_leaves_high_water_with_hysteresis() -> None:
    ladder = SpaceLadder(high_water_bytes=1000, hard_cap_bytes=2000)
    assert ladder.decide(999) is SpaceState.OK
    assert ladder.decide(1000) is SpaceState.HIGH_WATER
    assert ladder.decide(2000) is SpaceState.HARD_CAP
    assert ladder.decide(1500) is SpaceState.HIGH_WATER
    assert ladder.decide(960) is SpaceState.HIGH_WATER  # within 5% below the mark: stay
    assert ladder.decide(940) is SpaceState.OK
    assert ladder.hard_cap_target == 1960


async def test_retention_without_sinks_deletes_only_rows_past_retention(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock, config=small_config(retention_hours=24))
    old_stamper, new_stamper = EnvelopeStamper("agent-1"), EnvelopeStamper("agent-2")
    old = flow_records(old_stamper, 30)
    async with running(store):
        await store.submit(old)
        clock.advance(23 * HOUR_NS)
        await store.submit(flow_records(new_stamper, 20))
        clock.advance(2 * HOUR_NS)  # the first batch is 25 h old, the second 2 h
        report = await store.maintain()
        assert report.retention_deleted == 30 and report.hard_cap_dropped == 0
        rows = await store.events()
        assert [r.source for r in rows] == ["agent-2"] * 20
        assert rows[0].store_seq == 31
        # a replay of the deleted events is still recognised (per-boot pruned mark)
        assert await store.submit(old[5:10]) == [Outcome.DUPLICATE] * 5
        # and nothing was reported lost: retention is not loss
        assert await store.events(kind="loss") == []
        assert await store.verify_chain()
    store = await open_store(tmp_path / "events.db", clock=clock)  # the mark survives a restart
    async with running(store):
        assert await store.submit(old[:2]) == [Outcome.DUPLICATE] * 2
        assert (await store.stats()).rows == 20


async def test_retention_keeps_rows_an_enabled_sink_has_not_acked(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "events.db", clock=clock, config=small_config(retention_hours=1))
    async with running(store):
        await store.submit(flow_records(EnvelopeStamper("a"), 10))
        await store.state.register_sink("nats")
        await store.state.register_sink("upstream")
        await store.state.ack_sink("nats", 8)
        await store.state.ack_sink("upstream", 4)
        clock.advance(2 * HOUR_NS)
        assert (await store.maintain()).retention_deleted == 4
        await store.state.set_sink_enabled("upstream", False)  # a disabled sink holds nothing back
        assert (await store.maintain()).retention_deleted == 4
        assert [r.store_seq for r in await store.events()] == [9, 10]


async def test_high_water_refuses_remote_publishers_but_takes_local_events(tmp_path: Path) -> None:
    clock = Clock()
    metrics = Metrics()
    config = small_config(high_water_mb=1, hard_cap_mb=3, retention_hours=1)
    store = await open_store(tmp_path / "events.db", clock=clock, config=config, metrics=metrics)
    local = EnvelopeStamper("appliance")
    async with running(store):
        n = 0
        while store.space_state is SpaceState.OK:
            await store.submit(flow_records(local, 500, start=n), local=True)
            n += 500
            assert n < 20_000, "never reached the high-water mark"
        assert metrics.store_space_state.labels("high_water")._value.get() == 1
        with pytest.raises(SubmitRefusedError) as info:
            store.submit(flow_records(EnvelopeStamper("agent-9"), 1))
        assert info.value.reason == "high_water" and info.value.backoff_hint_ms >= 1000
        assert await store.submit(flow_records(local, 10, start=n), local=True) == [Outcome.COMMITTED] * 10
        # retention frees space: remote publishers are taken again without a restart
        clock.advance(2 * HOUR_NS)
        report = await store.maintain()
        assert report.retention_deleted > 0 and report.space_state is SpaceState.OK
        assert store.space_state is SpaceState.OK
        assert await store.submit(flow_records(EnvelopeStamper("agent-9"), 1)) == [Outcome.COMMITTED]


async def test_hard_cap_drops_the_oldest_rows_and_reports_the_range(tmp_path: Path) -> None:
    metrics = Metrics()
    config = small_config(high_water_mb=1, hard_cap_mb=2)
    path = tmp_path / "events.db"
    store = await open_store(path, config=config, metrics=metrics)
    local = EnvelopeStamper("appliance")
    async with running(store):
        n = 0
        while not await store.events(kind="loss"):
            await store.submit(flow_records(local, 500, start=n), local=True)
            n += 500
            assert n < 40_000, "never reached the hard cap"
        await store.maintain()  # settle: writes may have raced the first drop
        losses = await store.events(kind="loss")
        stats = await store.stats()
        check = await store.verify_chain()
    reports = [row.parse().loss for row in losses]
    first = reports[0]
    assert (first.what, first.where, first.reason) == ("events", "store", "hard_cap")
    assert first.range_start == 1 and first.count == first.range_end
    assert all(row.source == "appliance" for row in losses)
    for before, after in itertools.pairwise(reports):  # later drops continue the range
        assert after.range_start == before.range_end + 1
    dropped = sum(r.count for r in reports)
    assert stats.first_seq == reports[-1].range_end + 1  # the oldest went, nothing else
    assert stats.used_bytes < config.hard_cap_mb * 1024 * 1024
    assert stats.space_state is not SpaceState.HARD_CAP
    assert stats.rows == n - dropped + len(reports)
    assert metrics.store_lost.labels("hard_cap")._value.get() == dropped
    assert check.ok


async def test_incremental_vacuum_returns_space_after_retention(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "events.db"
    store = await open_store(path, clock=clock, config=small_config(retention_hours=1))
    async with running(store):
        stamper = EnvelopeStamper("a")
        for i in range(20):
            await store.submit(flow_records(stamper, 1000, start=i * 1000))
        big = (await store.stats()).db_bytes
        clock.advance(2 * HOUR_NS)
        report = await store.maintain()
        small = (await store.stats()).db_bytes
    assert report.retention_deleted == 20_000
    assert report.vacuumed_pages > 0
    assert small < big / 4
    assert _file_size(path) < big / 4


async def test_loss_report_envelopes_parse_as_envelopes(tmp_path: Path) -> None:
    config = small_config(high_water_mb=1, hard_cap_mb=2)
    store = await open_store(tmp_path / "events.db", config=config)
    async with running(store):
        n = 0
        while not await store.events(kind="loss"):
            await store.submit(flow_records(EnvelopeStamper("appliance"), 1000, start=n), local=True)
            n += 1000
        (row,) = await store.events(kind="loss")
    envelope = ev.Envelope.FromString(row.envelope)
    assert envelope.event_id == row.event_id and envelope.source_seq == row.source_seq == 1


async def test_hard_cap_counts_each_lost_event_once_when_a_sink_has_not_sent_the_earlier_reports(
    tmp_path: Path,
) -> None:
    """With a sink that sent nothing, a drop that takes an earlier LossReport carries its count into
    the new report; the metric counts the events themselves, once each."""
    metrics = Metrics()
    store = await open_store(
        tmp_path / "events.db", config=small_config(high_water_mb=1, hard_cap_mb=2), metrics=metrics
    )
    local = EnvelopeStamper("appliance")
    async with running(store):
        await store.state.register_sink("upstream")  # enabled, acked nothing: every drop is a loss
        n = 0
        first_report = 0  # the store_seq of the first LossReport, until a later drop takes it
        while True:
            await store.submit(flow_records(local, 500, start=n), local=True)
            n += 500
            assert n < 80_000, "never dropped an earlier LossReport at the hard cap"
            held = [row.store_seq for row in await store.events(kind="loss")]
            first_report = first_report or min(held, default=0)
            if first_report and held and first_report not in held:
                break
        await store.maintain()  # settle
        reports = [row.parse().loss for row in await store.events(kind="loss")]
        flows_held = (await store.stats()).rows - len(reports)
    lost = n - flows_held
    assert lost > 0
    assert sum(r.count for r in reports) == lost  # the reports held account for every flow gone, once
    assert metrics.store_lost.labels("hard_cap")._value.get() == lost
