"""What one publisher may put in the store: the per-event size limit, the byte quota, and the fair share
of recent ingest that decides who is refused first above the store's high-water mark."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from amoskys.bus.core import Bus
from amoskys.bus.quota import FairShare, TokenBuckets
from amoskys.config import StoreConfig
from amoskys.events import uuid7
from amoskys.metrics import Metrics
from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev
from amoskys.store import Store
from amoskys.store.space import SpaceState

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Maker:
    """Envelopes of one source, about `size` bytes each."""

    def __init__(self, source: str) -> None:
        self.source, self.boot, self.seq = source, str(uuid.uuid4()), 0

    def __call__(self, size: int = 0) -> bytes:
        self.seq += 1
        return ev.Envelope(
            event_id=uuid7(),
            source=self.source,
            boot_id=self.boot,
            source_seq=self.seq,
            ts_ns=time.time_ns(),
            alert=ev.Alert(rule="bulk", summary=os.urandom(max(0, size - 200) // 2).hex()),
        ).SerializeToString()


# ---------------------------------------------------------------------- the pieces, on a fake clock


def test_byte_bucket_refuses_past_the_burst_and_names_the_wait() -> None:
    clock = Clock()
    bucket = TokenBuckets(1000, 4000, clock=clock)
    assert bucket.wait("a", 3000) == 0.0 and bucket.take("a", 3000) == 0.0
    assert bucket.wait("a", 3000) == pytest.approx(2.0)  # 1000 left, 2000 more at 1000/s
    assert bucket.wait("a", 3000) == pytest.approx(2.0), "wait() takes nothing"
    assert bucket.take("b", 4000) == 0.0, "each source has its own bucket"
    clock.now += 2.0
    assert bucket.take("a", 3000) == 0.0


def test_fair_share_refuses_the_heavy_publisher_and_not_the_light_one() -> None:
    clock = Clock()
    fair = FairShare(10.0, clock=clock)
    fair.add("heavy", 9 * MIB)
    fair.add("light", 1 * MIB)
    assert fair.above_fair_share("heavy")
    assert not fair.above_fair_share("light")
    assert not fair.above_fair_share("newcomer"), "nothing recent among active publishers: below its share"


def test_a_lone_publisher_is_at_its_fair_share_and_refused() -> None:
    clock = Clock()
    fair = FairShare(10.0, clock=clock)
    assert fair.above_fair_share("only"), "nobody with recent ingest: nobody to be fair to"
    fair.add("only", 1000)
    assert fair.above_fair_share("only")


def test_recent_ingest_fades_so_a_past_burst_is_forgiven() -> None:
    clock = Clock()
    fair = FairShare(10.0, clock=clock)
    fair.add("heavy", 100 * MIB)
    clock.now += 60.0  # six time constants: 100 MiB decayed to ~260 KB
    fair.add("light", 1 * MIB)
    assert not fair.above_fair_share("heavy")
    assert fair.above_fair_share("light")
    clock.now += 600.0  # both faded below a byte: forgotten, and so not active any more
    assert fair.above_fair_share("heavy"), "alone again: at its fair share"


def test_equal_publishers_are_all_at_their_share() -> None:
    clock = Clock()
    fair = FairShare(10.0, clock=clock)
    for name in ("a", "b", "c"):
        fair.add(name, MIB)
    assert all(fair.above_fair_share(n) for n in ("a", "b", "c"))
    assert not fair.above_fair_share("d")


# ---------------------------------------------------------------------- the bus over a real store


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()  # reads /proc: made before the loop runs


@asynccontextmanager
async def bus_over(
    tmp_path: Path, metrics: Metrics, store_config: StoreConfig, **kw: float
) -> AsyncIterator[Bus]:
    store = await Store.open(tmp_path / "amoskys.db", store_config, metrics, source_name="appliance")
    writer = asyncio.create_task(store.run())
    bus = Bus(
        store,
        metrics,
        appliance_name="appliance",
        quota_events_per_second=1_000_000,
        quota_burst_events=1_000_000,
        ack_timeout_seconds=30,
        max_event_bytes=int(kw.pop("max_event_bytes", MIB)),
        quota_bytes_per_second=kw.pop("quota_bytes_per_second", 32 * MIB),
        quota_burst_bytes=kw.pop("quota_burst_bytes", 128 * MIB),
        clock=kw.pop("clock", time.monotonic),  # type: ignore[arg-type]
    )
    try:
        yield bus
    finally:
        await bus.close()
        await store.close()
        await writer


def _counter(bus: Bus, name: str, **labels: str) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_an_event_above_max_event_bytes_is_rejected_and_its_batch_goes_on(
    tmp_path: Path, metrics: Metrics
) -> None:
    async with bus_over(tmp_path, metrics, StoreConfig(), max_event_bytes=4096) as bus:
        make = Maker("agent-1")
        raws = [make(100), make(5000), make(4000)]
        assert len(raws[2]) <= 4096 < len(raws[1])
        result = await bus.ingest(raws, sender="agent-1", relay=False)
        assert result.status == bus_pb2.OK
        assert [(r.index, r.reason) for r in result.rejected] == [(1, "event_too_large")]
        assert result.accepted == 2
        assert _counter(bus, "amoskys_bus_events_total", outcome="rejected", reason="event_too_large") == 1


async def test_the_byte_quota_answers_retry_with_a_hint_and_spares_other_publishers(
    tmp_path: Path, metrics: Metrics
) -> None:
    clock = Clock()
    async with bus_over(
        tmp_path, metrics, StoreConfig(), quota_bytes_per_second=10_000, quota_burst_bytes=50_000, clock=clock
    ) as bus:
        heavy, light = Maker("heavy"), Maker("light")
        batch = [heavy(20_000), heavy(20_000)]
        first = await bus.ingest(batch, sender="heavy", relay=False)
        assert first.status == bus_pb2.OK and first.accepted == 2
        big = heavy(20_000)
        second = await bus.ingest([big], sender="heavy", relay=False)
        assert (second.status, second.reason) == (bus_pb2.RETRY, "quota_bytes")
        left = 50_000 - sum(map(len, batch))  # ~10 KB left of 50 KB; 20 KB wanted, at 10 KB/s
        assert second.backoff_hint_ms == int((len(big) - left) / 10_000 * 1000) + 1
        assert (await bus.ingest([light(20_000)], sender="light", relay=False)).accepted == 1
        clock.now += second.backoff_hint_ms / 1000 - 0.1
        assert (await bus.ingest([big], sender="heavy", relay=False)).status == bus_pb2.RETRY
        clock.now += 0.1
        assert (await bus.ingest([big], sender="heavy", relay=False)).accepted == 1
        assert _counter(bus, "amoskys_bus_quota_exceeded_total") == 2
        assert _counter(bus, "amoskys_bus_events_total", outcome="accepted", reason="") == 4


async def test_above_high_water_only_publishers_below_their_fair_share_are_taken(
    tmp_path: Path, metrics: Metrics
) -> None:
    async with bus_over(tmp_path, metrics, StoreConfig(high_water_mb=2, hard_cap_mb=512)) as bus:
        heavy, light = Maker("heavy"), Maker("light")
        for _ in range(40):  # ~600 KB a batch: the store reaches its 2 MB mark within a few
            result = await bus.ingest([heavy(300_000), heavy(300_000)], sender="heavy", relay=False)
            if result.status == bus_pb2.RETRY:
                break
        assert bus.store.space_state is SpaceState.HIGH_WATER
        assert (result.reason, result.backoff_hint_ms) == ("store_high_water", 5000)
        assert "fair share" in result.message, "alone, the heavy publisher is at its share"

        taken = await bus.ingest([light(1000), light(1000)], sender="light", relay=False)
        assert (taken.status, taken.accepted) == (bus_pb2.OK, 2)
        again = await bus.ingest([heavy(1000)], sender="heavy", relay=False)
        assert (again.status, again.reason) == (bus_pb2.RETRY, "store_high_water")
        assert len(await bus.store.events(source="light", after_seq=0, limit=10)) == 2
