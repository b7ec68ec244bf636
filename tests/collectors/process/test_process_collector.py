"""ProcessCollector as a whole: snapshots of real processes, and life under the real supervisor."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from process_harness import SNAPSHOT, Harness, require_root, spawn

from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.process.collector import ProcessCollector
from amoskys.collectors.process.config import ProcessConfig
from amoskys.config import CollectorsConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.wiring import build_collectors

from support import ListSink, eventually

SH = os.path.realpath("/bin/sh")
SH_SHA256 = hashlib.sha256(Path(SH).read_bytes()).digest()


async def test_snapshot_describes_a_running_child(tmp_path: Path) -> None:
    busy = spawn([SH, "-c", "while :; do :; done"])  # burns CPU until killed
    try:
        async with Harness(tmp_path, mode="polling", poll_interval_seconds=60) as h:
            await h.eventually(
                lambda: h.collector.table.get(busy.pid) or h.processes(pid=busy.pid), what="the child"
            )
            before = len(h.processes(SNAPSHOT, busy.pid))
            await asyncio.sleep(0.2)  # let it use some CPU between the two snapshots
            await h.collector.snapshot()
            snaps = h.processes(SNAPSHOT, busy.pid)
    finally:
        busy.kill()
        busy.wait()
    assert len(snaps) == before + 1
    snap = snaps[-1]
    assert snap.exe == SH and list(snap.argv) == [SH, "-c", "while :; do :; done"]
    assert snap.ppid == os.getpid() and snap.uid == os.getuid() and snap.user
    assert snap.exe_sha256 == SH_SHA256
    assert snap.rss_bytes > 0 and snap.cpu_seconds > 0 and snap.cpu_percent > 10
    assert snap.cgroup and not snap.unreadable and snap.start_time_ns > 0
    stats = h.collector.stats
    assert stats.snapshots == 2 and stats.last_snapshot_seconds > 0
    metric = h.ctx.metrics.registry.get_sample_value
    assert (metric("amoskys_process_snapshot_processes") or 0) >= 2  # the child and this process
    assert metric("amoskys_process_events_total", {"kind": "snapshot", "via": "snapshot"}) == len(
        h.processes(SNAPSHOT)
    )


@pytest.mark.needs_root
async def test_under_the_supervisor_the_mode_is_shown(tmp_path: Path) -> None:
    require_root()
    sink = ListSink()
    sup = build_collectors(
        CollectorsConfig(process=ProcessConfig(snapshot_interval_seconds=3600)),
        registry={"process": ProcessCollector},
        publish=sink,
        stamper=EnvelopeStamper("box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("box", "0", "host", "appliance", 0),
    )
    task = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: any(e.process.kind == SNAPSHOT for e in sink), within=10, what="a snapshot")
        status = sup.status_of("process")
        assert status.state == "running" and status.mode == "netlink"
        assert sup.metrics.registry.get_sample_value("amoskys_process_mode", {"mode": "netlink"}) == 1
    finally:
        async with asyncio.timeout(10):
            await sup.stop()
            await task


async def test_netlink_mode_without_the_capability_is_disabled_with_the_reason(tmp_path: Path) -> None:
    sup = build_collectors(
        CollectorsConfig(process=ProcessConfig(mode="netlink")),
        registry={"process": ProcessCollector},
        publish=ListSink(),
        stamper=EnvelopeStamper("box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("box", "0", "host", "appliance", 0),
        has_capability=lambda name: False,
    )
    task = asyncio.create_task(sup.run())
    try:
        await eventually(
            lambda: sup.status_of("process").state == "disabled", within=10, what="process disabled"
        )
        assert sup.status_of("process").reason == (
            'mode = "netlink" needs CAP_NET_ADMIN (or root); "auto" falls back to polling'
        )
    finally:
        async with asyncio.timeout(10):
            await sup.stop()
            await task


def test_auto_mode_without_the_capability_expects_polling(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.ctx.has_capability = lambda name: False
    assert harness.collector.self_check() is None
    assert harness.collector.mode == "polling (netlink needs CAP_NET_ADMIN)"
