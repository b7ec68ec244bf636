"""Build a DiscoveryCollector with a list as its sink (and a FakeClock unless told otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from amoskys import __version__
from amoskys.collectors.clock import Clock, FakeClock
from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.collectors.discovery.collector import DiscoveryCollector
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.taps import PacketTaps
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2


def make(
    tmp_path: Path,
    config: DiscoveryConfig | None = None,
    *,
    clock: Clock | None = None,
    taps: PacketTaps | None = None,
) -> tuple[DiscoveryCollector, list[events_pb2.Envelope]]:
    sink: list[events_pb2.Envelope] = []

    async def publish(envelopes: Sequence[events_pb2.Envelope]) -> None:
        sink.extend(envelopes)

    ctx = CollectorContext(
        "discovery",
        publish=publish,
        stamper=EnvelopeStamper("box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("box", __version__, "host", "appliance", 0),
        clock=clock or FakeClock(),
    )
    return DiscoveryCollector(config or DiscoveryConfig(), ctx, taps=taps), sink


def devices(sink: list[events_pb2.Envelope], change: int | None = None) -> list[events_pb2.DeviceEvent]:
    return [e.device for e in sink if e.HasField("device") and (change is None or e.device.change == change)]


async def eventually(
    predicate: Callable[[], object], *, within_seconds: float = 15.0, what: str = "condition"
) -> None:
    """Poll `predicate` on the loop until it is truthy; fail after `within_seconds`."""
    try:
        async with asyncio.timeout(within_seconds):
            while True:
                if predicate():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within_seconds} s waiting for {what}") from None
