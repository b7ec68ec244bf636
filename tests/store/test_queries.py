"""Paged reads of the log: filters, windows over gaps, limits."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.store import queries as q

from .helpers import HOUR_NS, Clock, flow_records, open_store, running, small_config


async def test_events_filter_by_kind_source_and_observation_time(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    a, b = EnvelopeStamper("a"), EnvelopeStamper("b")
    heartbeat = Record.from_envelope(a.stamp(ev.Envelope(heartbeat=ev.Heartbeat(version="1")), ts_ns=500))
    async with running(store):
        await store.submit([*flow_records(a, 3, ts_ns=100), heartbeat, *flow_records(b, 3, ts_ns=300)])
        assert [e.store_seq for e in await store.events(kind="heartbeat")] == [4]
        assert [e.store_seq for e in await store.events(source="b")] == [5, 6, 7]
        assert [e.store_seq for e in await store.events(since_ns=300)] == [4, 5, 6, 7]
        assert [e.store_seq for e in await store.events(kind="flow", source="a", since_ns=50)] == [1, 2, 3]
        assert [e.store_seq for e in await store.events(after_seq=5, limit=1)] == [6]
        assert await store.events(after_seq=7) == []
        with pytest.raises(ValueError, match="limit"):
            await store.events(limit=0)


async def test_paging_walks_windows_past_a_pruned_prefix_and_sparse_matches(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "events.db"
    store = await open_store(path, clock=clock, config=small_config(retention_hours=1))
    a, b = EnvelopeStamper("a"), EnvelopeStamper("b")
    async with running(store):
        await store.submit(flow_records(a, 100))
        clock.advance(2 * HOUR_NS)
        await store.maintain()  # the first 100 rows are gone
        await store.submit(flow_records(a, 100, start=100))
        await store.submit(flow_records(b, 1))
        await store.submit(flow_records(a, 100, start=200))
        async with aiosqlite.connect(path) as conn:  # small windows: the scan crosses many of them
            assert [e.store_seq for e in await q.events(conn, source="b", window=16)] == [201]
            page = await q.events(conn, limit=50, window=16)
            assert [e.store_seq for e in page] == list(range(101, 151))
            assert await q.events(conn, source="nobody", window=16) == []
