"""Build a DiscoveryCollector with a ListSink (and a FakeClock unless told otherwise)."""

from __future__ import annotations

from pathlib import Path

from amoskys.collectors.clock import Clock
from amoskys.collectors.discovery.collector import DiscoveryCollector
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.taps import PacketTaps
from amoskys.proto import events_pb2

from support import ListSink, make_context


def make(
    tmp_path: Path,
    config: DiscoveryConfig | None = None,
    *,
    clock: Clock | None = None,
    taps: PacketTaps | None = None,
) -> tuple[DiscoveryCollector, ListSink]:
    sink = ListSink()
    ctx = make_context("discovery", tmp_path, publish=sink, clock=clock)
    return DiscoveryCollector(config or DiscoveryConfig(), ctx, taps=taps), sink


def devices(sink: list[events_pb2.Envelope], change: int | None = None) -> list[events_pb2.DeviceEvent]:
    return [e.device for e in sink if e.HasField("device") and (change is None or e.device.change == change)]
