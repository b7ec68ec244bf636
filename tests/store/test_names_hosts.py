"""Which source is behind an address (store/queries/names.py `hosts`): the newest heartbeat of each
source, read incrementally — a refresh reads only heartbeats committed since the last one — and a source
silent for HOST_SILENT_NS (by the store's own receive clock) is no longer named."""

from __future__ import annotations

import asyncio
from pathlib import Path

from amoskys.config import StoreConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, Store
from amoskys.store.queries import names
from amoskys.store.queries.reader import Reader

T0 = 1_800_000_000_000_000_000


def _beat(stamper: EnvelopeStamper, *addresses: str) -> Record:
    return Record.from_envelope(
        stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat(hostname=stamper.source, addresses=addresses)))
    )


def _named(hosts: list[dict[str, object]]) -> dict[object, object]:
    return {h["source"]: h["addresses"] for h in hosts}


async def test_hosts_follow_the_newest_heartbeats_and_drop_silent_sources(tmp_path: Path) -> None:
    now = [T0]
    store = await Store.open(tmp_path / "events.db", StoreConfig(), Metrics(), clock_ns=lambda: now[0])
    writer = asyncio.create_task(store.run())
    reader = Reader(tmp_path / "events.db")
    await reader.open()
    a, b = EnvelopeStamper("host-a"), EnvelopeStamper("host-b")
    try:
        await store.submit([_beat(a, "10.0.0.1"), _beat(b, "10.0.0.9")])
        assert _named(await names.hosts(reader)) == {"host-a": ["10.0.0.1"], "host-b": ["10.0.0.9"]}

        now[0] += 10**9
        await store.submit([_beat(a, "10.0.0.5")])  # a moved: the next read sees it, b stays known
        assert _named(await names.hosts(reader)) == {"host-a": ["10.0.0.5"], "host-b": ["10.0.0.9"]}
        assert _named(await names.hosts(reader)) == {"host-a": ["10.0.0.5"], "host-b": ["10.0.0.9"]}

        now[0] += names.HOST_SILENT_NS + 10**9  # b silent for longer than that behind a's newest
        await store.submit([_beat(a, "10.0.0.5")])
        assert _named(await names.hosts(reader)) == {"host-a": ["10.0.0.5"]}
        assert await names.address_names(reader, ["10.0.0.9"]) == {}

        await store.submit([_beat(b, "10.0.0.9")])  # b heard again: named again
        assert _named(await names.hosts(reader)) == {"host-a": ["10.0.0.5"], "host-b": ["10.0.0.9"]}
        assert (await names.address_names(reader, ["10.0.0.9"]))["10.0.0.9"]["host"]["source"] == "host-b"

        fresh = Reader(tmp_path / "events.db")  # another reader (another open) reads from the start
        await fresh.open()
        try:
            assert _named(await names.hosts(fresh)) == _named(await names.hosts(reader))
        finally:
            await fresh.close()
    finally:
        await reader.close()
        await store.close()
        await writer
