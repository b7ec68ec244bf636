"""The host collector against /proc: memory, CPUs, uptime, filesystems, and real traffic on lo."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import namedtuple
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from amoskys.collectors.clock import FakeClock, SystemClock
from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.host.collector import HostCollector
from amoskys.collectors.host.config import HostConfig
from amoskys.collectors.host.sample import cpu_busy_percent
from amoskys.config import CollectorsConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.wiring import build_collectors

from support import ListSink, make_context


def make(tmp_path: Path, config: HostConfig | None = None) -> tuple[HostCollector, ListSink]:
    sink = ListSink()
    ctx = make_context("host", tmp_path, publish=sink, clock=SystemClock())
    return HostCollector(config or HostConfig(), ctx), sink


def read_proc() -> dict[str, float]:
    """MemTotal, SwapTotal, MemAvailable (bytes), uptime (s) and load1 as /proc says them now."""
    values: dict[str, float] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "SwapTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    values["uptime"] = float(Path("/proc/uptime").read_text().split()[0])
    values["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
    return values


def send_on_loopback(total: int) -> None:
    """Push `total` bytes of UDP through lo (received, so they count both ways)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        chunk = b"x" * 8192
        for _ in range(total // len(chunk)):
            tx.sendto(chunk, rx.getsockname())
            rx.recv(65536)


async def test_host_metrics_agree_with_proc(tmp_path: Path) -> None:
    collector, sink = make(tmp_path)
    await collector.collect()
    await asyncio.to_thread(send_on_loopback, 2 << 20)
    await collector.collect()
    first, second = (e.host for e in sink)
    proc = read_proc()
    assert sink[1].ts_ns > sink[0].ts_ns > 0 and sink[0].source == "box"
    assert second.memory_total_bytes == proc["MemTotal"]
    assert second.swap_total_bytes == proc["SwapTotal"]
    assert abs(second.memory_available_bytes - proc["MemAvailable"]) < 256 << 20
    assert len(second.cpu_percent_per_core) == os.cpu_count()
    assert 0 <= second.cpu_percent <= 100 and all(0 <= c <= 100 for c in second.cpu_percent_per_core)
    assert abs(second.uptime_seconds - proc["uptime"]) <= 2
    assert second.load1 == pytest.approx(proc["load1"], abs=1.0)
    root = next(d for d in second.disks if d.mountpoint == "/")
    st = os.statvfs("/")
    assert root.total_bytes == st.f_blocks * st.f_frsize
    lo1 = next(n for n in first.net_io if n.interface == "lo")
    lo2 = next(n for n in second.net_io if n.interface == "lo")
    assert lo2.bytes_recv - lo1.bytes_recv >= 2 << 20 and lo2.packets_recv - lo1.packets_recv >= 256
    assert second.hostname == socket.gethostname()


async def test_gauges_follow_the_latest_sample(tmp_path: Path) -> None:
    collector, sink = make(tmp_path)
    metrics = collector.ctx.metrics
    assert metrics.registry.get_sample_value("amoskys_host_uptime_seconds") is None  # no sample yet
    await collector.collect()
    m = sink[-1].host
    get = metrics.registry.get_sample_value
    assert get("amoskys_host_memory_bytes", {"kind": "total"}) == m.memory_total_bytes
    assert get("amoskys_host_cpu_utilization_ratio", {"cpu": "total"}) == pytest.approx(m.cpu_percent / 100)
    assert get("amoskys_host_cpu_utilization_ratio", {"cpu": "0"}) is not None
    lo = next(n for n in m.net_io if n.interface == "lo")
    assert get("amoskys_host_network_received_bytes_total", {"interface": "lo"}) == lo.bytes_recv
    assert get("amoskys_host_filesystem_bytes", {"mountpoint": "/", "kind": "total"}) > 0
    assert get("amoskys_host_load_average", {"period": "15m"}) == pytest.approx(m.load15)
    text = (await asyncio.to_thread(metrics.render)).decode()
    assert "# TYPE amoskys_host_network_received_bytes_total counter" in text
    assert "# TYPE amoskys_host_memory_bytes gauge" in text


async def test_excluded_and_excess_devices_are_left_out_and_logged_once(tmp_path: Path) -> None:
    structlog.reset_defaults()
    collector, sink = make(tmp_path, HostConfig(exclude_interfaces=["lo"], max_label_values=1))
    with capture_logs() as logs:
        await collector.collect()
        await collector.collect()
    for sample in (e.host for e in sink):
        assert len(sample.net_io) <= 1 and all(n.interface != "lo" for n in sample.net_io)
        assert len(sample.disks) <= 1 and len(sample.disk_io) <= 1
    truncated = [e for e in logs if e["event"] == "host_labels_truncated"]
    assert len(truncated) == len({e["kind"] for e in truncated})  # once per kind, not per sample


def test_cpu_busy_percent_counts_iowait_as_idle_and_guest_once() -> None:
    T = namedtuple("T", "user nice system idle iowait guest guest_nice")
    before = T(100, 0, 50, 800, 50, 0, 0)
    after = T(200, 0, 100, 1500, 150, 50, 0)  # guest time is already inside user time
    # total 2000-1000 = 1000, minus guest 50 = 950; idle+iowait grew 800; busy 150
    assert cpu_busy_percent(before, after) == pytest.approx(150 / 950 * 100, abs=0.01)
    assert cpu_busy_percent(after, after) == 0.0


async def test_under_the_supervisor_it_samples_every_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ListSink()
    sup = build_collectors(
        CollectorsConfig(host=HostConfig(interval_seconds=30)),
        registry={"host": HostCollector},
        publish=sink,
        stamper=EnvelopeStamper("box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("box", "0", "host", "appliance", clock.time_ns()),
        clock=clock,
    )
    task = asyncio.create_task(sup.run())
    try:
        assert await clock.wait_sleeping() == [30.0]
        clock.advance(30)
        await clock.wait_sleeping()
    finally:
        async with asyncio.timeout(5):
            await sup.stop()
            await task
    assert [e.WhichOneof("body") for e in sink] == ["host", "host"]
    assert sink[1].ts_ns - sink[0].ts_ns == 30 * 10**9  # ts from the collector's clock
    assert sup.status_of("host").mode == "psutil" and sup.status_of("host").errors == 0
