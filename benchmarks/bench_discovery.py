"""Discovery: an ARP sweep of a /24 with 5 live hosts (network namespaces on a bridge, made and removed
here; needs root), at the default rate and faster — sweep time, packets sent, CPU — next to arp-scan on
the same network in the same run.

    .venv/bin/python benchmarks/bench_discovery.py

CPU is this process's user + system time during the sweep (the sweep waits on timers most of the time).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "collectors" / "discovery"))

import structlog  # noqa: E402

from amoskys.collectors.discovery.config import DiscoveryConfig  # noqa: E402

from discovery_harness import make  # noqa: E402
from discovery_lan import lan  # noqa: E402

HOSTS = [
    "b8:27:eb:00:00:11",
    "00:1b:63:00:00:12",
    "f4:f5:d8:00:00:13",
    "00:16:3e:00:00:14",
    "3c:5a:b4:00:00:15",
]
#: (rate packets/s, retries, reply timeout s): the defaults, then faster settings.
SETTINGS = [(100, 2, 1.0), (1000, 2, 1.0), (1000, 1, 0.3), (5000, 0, 0.3)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sweep(bridge: str, subnet: str, rate: int, retries: int, reply_timeout: float) -> dict[str, float]:
    config = DiscoveryConfig(
        interface=bridge,
        subnets=[subnet],
        rate_packets_per_second=rate,
        retries=retries,
        reply_timeout_seconds=reply_timeout,
    )
    with tempfile.TemporaryDirectory() as tmp:
        collector, _ = make(Path(tmp), config)
        await collector.start()
        try:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            found = await collector.sweep_once()
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        finally:
            collector.stop()
        sent = collector._m_requests._value.get()
    return {"wall": wall, "cpu": cpu, "sent": sent, "found": len(found)}


def arp_scan(bridge: str, subnet: str) -> dict[str, float] | None:
    if shutil.which("arp-scan") is None:
        return None
    t0 = time.perf_counter()
    out = subprocess.run(
        ["arp-scan", "-q", "-x", "-I", bridge, subnet], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    wall = time.perf_counter() - t0
    return {"wall": wall, "found": sum(1 for line in out.splitlines() if line.strip())}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_discovery needs root (network namespaces, a bridge, AF_PACKET)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with lan() as net:
        for i, mac in enumerate(HOSTS):
            net.add_host(mac, 11 + i)
        rows = [(s, asyncio.run(sweep(net.bridge, net.subnet, *s))) for s in SETTINGS]
        peer = arp_scan(net.bridge, net.subnet)
    print("## Discovery: ARP sweep of a /24 with 5 live hosts\n")
    print(
        "253 addresses asked (the appliance's own skipped), on a bridge with 5 hosts in network namespaces.\n"
    )
    print("| Sweep | Hosts found | Requests sent | Time | CPU |")
    print("| --- | --- | --- | --- | --- |")
    for (rate, retries, timeout), m in rows:
        default = " (defaults)" if (rate, retries, timeout) == SETTINGS[0] else ""
        print(
            f"| {rate} pkt/s, {retries} retries, {timeout} s reply timeout{default} | {m['found']:.0f} "
            f"| {m['sent']:.0f} | {m['wall']:.2f} s | {m['cpu']:.3f} s |"
        )
    if peer is not None:
        print(
            f"| arp-scan (its defaults: 2 tries, 500 ms timeout, 256 kbit/s) | {peer['found']:.0f} | — "
            f"| {peer['wall']:.2f} s | — |"
        )
    print()


if __name__ == "__main__":
    main()
