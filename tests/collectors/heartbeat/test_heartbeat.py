"""The heartbeat collector under the real supervisor: Heartbeat envelopes, stamped 1, 2, 3."""

from __future__ import annotations

import asyncio
import ipaddress
import platform
import uuid
from pathlib import Path

from amoskys import __version__
from amoskys.collectors.clock import FakeClock
from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.heartbeat.collector import HeartbeatCollector, host_addresses
from amoskys.collectors.heartbeat.config import HeartbeatConfig
from amoskys.config import CollectorsConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.wiring import build_collectors

from support import ListSink, make_context


async def test_heartbeat_publishes_stamped_heartbeats_every_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ListSink()
    started_ns = clock.time_ns() - 5 * 10**9  # the appliance started 5 s before its collectors
    stamper = EnvelopeStamper("box-1")
    config = CollectorsConfig(heartbeat=HeartbeatConfig(interval_seconds=30))
    sup = build_collectors(
        config,
        registry={"heartbeat": HeartbeatCollector},  # the others would publish into this sink too
        publish=sink,
        stamper=stamper,
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo(
            "box-1", __version__, "host-1", "appliance", started_ns, outbox_lag=lambda: (1234, 7.5)
        ),
        clock=clock,
    )
    task = asyncio.create_task(sup.run())
    try:
        for _ in range(2):
            assert await clock.wait_sleeping() == [30.0]
            clock.advance(30)
        await clock.wait_sleeping()
    finally:
        async with asyncio.timeout(5):
            await sup.stop()
            await task

    assert [e.source_seq for e in sink] == [1, 2, 3]
    assert {e.boot_id for e in sink} == {stamper.boot_id} and {e.source for e in sink} == {"box-1"}
    assert len({e.event_id for e in sink}) == 3 and all(uuid.UUID(e.event_id).version == 7 for e in sink)
    assert [e.ts_ns for e in sink] == [started_ns + s * 10**9 for s in (5, 35, 65)]
    assert [e.WhichOneof("body") for e in sink] == ["heartbeat"] * 3
    hb = sink[-1].heartbeat
    assert (hb.version, hb.hostname, hb.mode, hb.started_ns) == (
        __version__,
        "host-1",
        "appliance",
        started_ns,
    )
    assert [e.heartbeat.uptime_seconds for e in sink] == [5.0, 35.0, 65.0]
    assert hb.collectors_running == 1 and hb.python == platform.python_version()
    assert (hb.outbox_lag_events, hb.outbox_lag_seconds, hb.interval_seconds) == (1234, 7.5, 30.0)
    assert hb.os == f"{platform.system()} {platform.release()} {platform.machine()}"
    assert list(hb.addresses) == host_addresses()
    assert not any(ipaddress.ip_address(a).is_loopback for a in hb.addresses)
    st = sup.status_of("heartbeat")
    assert st.events == 3 and st.mode == "timer" and st.errors == 0
    assert (
        sup.metrics.registry.get_sample_value("amoskys_collector_events_total", {"collector": "heartbeat"})
        == 3
    )


def test_heartbeat_needs_no_privilege() -> None:
    assert not hasattr(HeartbeatCollector, "self_check")


def test_heartbeat_reports_no_outbox_lag_without_forwarders(tmp_path: Path) -> None:
    ctx = make_context("heartbeat", tmp_path)  # its ApplianceInfo has no outbox_lag
    body = HeartbeatCollector(HeartbeatConfig(interval_seconds=5), ctx).build(["192.0.2.1"]).heartbeat
    assert (body.outbox_lag_events, body.outbox_lag_seconds) == (0, 0.0)
    assert (list(body.addresses), body.interval_seconds) == (["192.0.2.1"], 5.0)
