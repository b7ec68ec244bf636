"""SNMP collector: walk time next to snmpbulkwalk, a burst of devices, and a 60-s cycle of 200.

Agents are snmpsim (two processes, 100 UDP endpoints each on 127.0.0.1), serving generated switches
with 20-28 interfaces whose counters move (snmpsim's numeric variation); one more target is a port
where nothing listens. The collector runs in this process, so its CPU is this process's CPU.
Run alone: `.venv/bin/python benchmarks/bench_snmp.py` (about 2 minutes).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from amoskys.collectors.snmp.metrics import SnmpMetrics

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "collectors" / "snmp")]

from snmp_agents import SnmpDaemon, SnmpSim, device_snmprec, free_udp_port  # noqa: E402

from amoskys.collectors.clock import SystemClock  # noqa: E402
from amoskys.collectors.context import ApplianceInfo, CollectorContext  # noqa: E402
from amoskys.collectors.snmp.client import SnmpClient, auth_data, session_for  # noqa: E402
from amoskys.collectors.snmp.collector import SnmpCollector  # noqa: E402
from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig  # noqa: E402
from amoskys.collectors.snmp.poller import fetch  # noqa: E402
from amoskys.events import EnvelopeStamper  # noqa: E402
from amoskys.metrics import Metrics  # noqa: E402
from amoskys.proto import events_pb2  # noqa: E402

DEVICES = int(os.environ.get("AMOSKYS_BENCH_SNMP_DEVICES", "200"))
CYCLE_SECONDS = float(os.environ.get("AMOSKYS_BENCH_SNMP_CYCLE_SECONDS", "60"))
BURST_DEVICES = min(DEVICES, int(os.environ.get("AMOSKYS_BENCH_SNMP_BURST_DEVICES", "100")))
MODELS = {f"model{n}": n for n in (20, 24, 26, 28)}  # community → interfaces
ENV = {"BENCH_" + name.upper(): name for name in MODELS}


def targets(ports: Sequence[int], dead_port: int) -> list[SnmpTargetConfig]:
    models = list(MODELS)
    out = [
        SnmpTargetConfig(
            name=f"sw{i:03d}",
            address="127.0.0.1",
            port=port,
            community_env="BENCH_" + models[i % len(models)].upper(),
        )
        for i, port in enumerate(ports)
    ]
    out.append(
        SnmpTargetConfig(name="dead", address="127.0.0.1", port=dead_port, community_env="BENCH_MODEL20")
    )
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_collector(
    config: SnmpConfig, seconds: float, *, after: float = 0.0
) -> tuple[list[events_pb2.SnmpSample], CollectorContext, float, float]:
    """Run the collector until, after `after` seconds, every target has published once (at most
    `seconds`); returns the samples, the context, wall and CPU seconds."""
    sink: list[events_pb2.SnmpSample] = []
    arrivals: list[float] = []  # when each sample was published (monotonic)
    seen: set[str] = set()
    everyone = {t.name for t in config.targets}
    done, all_seen = asyncio.Event(), asyncio.Event()

    async def publish(envelopes: Sequence[events_pb2.Envelope]) -> None:
        sink.extend(e.snmp for e in envelopes)
        arrivals.extend(time.monotonic() for _ in envelopes)
        seen.update(e.snmp.target for e in envelopes)
        if seen == everyone:
            all_seen.set()

    async def watch() -> None:
        await asyncio.sleep(after)
        await all_seen.wait()
        done.set()

    ctx = CollectorContext(
        "snmp",
        publish=publish,
        stamper=EnvelopeStamper("bench"),
        metrics=Metrics(),
        data_dir=Path(tempfile.gettempdir()),
        appliance=ApplianceInfo("bench", "0", "bench", "appliance", 0),
    )
    task = asyncio.create_task(SnmpCollector(config, ctx, environ=ENV).run())
    watcher = asyncio.create_task(watch())
    wall0, cpu0 = time.monotonic(), time.process_time()
    try:
        await asyncio.wait_for(done.wait(), seconds)
    except TimeoutError:
        pass
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    watcher.cancel()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    last_live = max((t for t, s in zip(arrivals, sink, strict=True) if s.target != "dead"), default=wall0)
    ctx.last_live_seconds = last_live - wall0  # type: ignore[attr-defined]
    return sink, ctx, wall, cpu


def bulkwalk_seconds(port: int, community: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    lines = 0
    for table in ("1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"):
        r = subprocess.run(
            ["snmpbulkwalk", "-v2c", "-c", community, "-Cr25", "-On", f"127.0.0.1:{port}", table],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, MIBS=""),
        )
        lines += len(r.stdout.splitlines())
    return time.perf_counter() - t0, lines


async def walk_comparison(port: int, community: str) -> dict[str, float]:
    """The collector's fetch of one device versus snmpbulkwalk of ifTable + ifXTable, same agent."""
    client = SnmpClient()
    ours, theirs, cpu_per_kvb, varbinds, requests, theirs_vb = [], [], [], 0, 0, 0
    try:
        target = SnmpTargetConfig(name="cmp", address="127.0.0.1", port=port, community_env="CMP")
        session = session_for(target, auth_data(target, {"CMP": community}), timeout_seconds=2, retries=1)
        warm = False
        for _ in range(8):
            t0, c0 = time.perf_counter(), time.process_time()
            data = await fetch(
                client,
                session,
                profiles=["interfaces"],
                max_repetitions=25,
                clock=SystemClock(),
            )
            if warm:  # the first poll also loads pysnmp's MIB builder: compare later ones
                ours.append(time.perf_counter() - t0)
                cpu_per_kvb.append((time.process_time() - c0) / data.varbinds * 1000)
                varbinds, requests = data.varbinds, data.requests
            warm = True
            seconds, theirs_vb = await asyncio.to_thread(bulkwalk_seconds, port, community)
            theirs.append(seconds)
    finally:
        client.close()
    return {
        "ours": statistics.median(ours),
        "theirs": statistics.median(theirs[1:]),
        "cpu_ms_per_kvb": statistics.median(cpu_per_kvb) * 1000,
        "varbinds": varbinds,
        "requests": requests,
        "theirs_varbinds": theirs_vb,
    }


async def main() -> None:
    from amoskys import logs

    logs.setup("error")  # the dead device's one warning is expected: keep stdout for the results
    root = Path(tempfile.mkdtemp(prefix="amoskys-bench-snmp-"))
    ports = [free_udp_port() for _ in range(DEVICES)]
    dead_port = free_udp_port()
    sims: list[SnmpSim] = []
    setup0 = time.monotonic()
    for half, chunk in enumerate((ports[: DEVICES // 2], ports[DEVICES // 2 :])):
        data = root / f"sim{half}" / "data"
        data.mkdir(parents=True)
        for name, count in MODELS.items():
            (data / f"{name}.snmprec").write_text(device_snmprec(name, count))
        sims.append(SnmpSim(data, list(chunk)))
    try:
        for sim in sims:
            sim.start("model20", timeout=60)
        setup = time.monotonic() - setup0
        all_targets = targets(ports, dead_port)

        cmp = await walk_comparison(ports[1], "model24")
        snmpd = SnmpDaemon(root / "snmpd", free_udp_port()).start()
        try:
            native = await walk_comparison(snmpd.port, snmpd.community)
        finally:
            snmpd.stop()

        # burst: BURST_DEVICES (and the dead one) due at once, 16 at a time: what the agents can serve
        burst_targets = [*all_targets[:BURST_DEVICES], all_targets[-1]]
        burst_config = SnmpConfig(interval_seconds=600, schedule="aligned", targets=burst_targets)
        burst, burst_ctx, _, burst_cpu = await run_collector(burst_config, 120)
        burst_live_wall = burst_ctx.last_live_seconds  # type: ignore[attr-defined]
        live = [s for s in burst if s.target != "dead" and s.reachable]
        burst_lat = [s.poll_seconds for s in live]
        dead_burst = [s for s in burst if s.target == "dead"]

        # steady state: one interval with the devices spread over it (the dead one among them), then
        # until the last ones (due at the very end) have been polled; early ones poll again meanwhile
        cycle_config = SnmpConfig(
            interval_seconds=CYCLE_SECONDS, deadline_seconds=min(20, CYCLE_SECONDS), targets=all_targets
        )
        cycle, ctx, cycle_wall, cycle_cpu = await run_collector(
            cycle_config, CYCLE_SECONDS + cycle_config.deadline_seconds, after=CYCLE_SECONDS
        )
        cycle_live = [s for s in cycle if s.target != "dead"]
        ok = [s for s in cycle_live if s.reachable]
        polled = {s.target for s in ok}
        missed = (len(all_targets) - 1 - len(polled)) + (len(cycle_live) - len(ok)) + ctx.ticks_skipped
        cycle_lat = [s.poll_seconds for s in ok]
        dead_cycle = [s for s in cycle if s.target == "dead"]
        vb_cycle = ctx.metrics.component(SnmpMetrics).snmp_varbinds
        total_vb = sum(vb_cycle.labels(t.name)._value.get() for t in all_targets)
    finally:
        for sim in sims:
            sim.stop()

    ratio = cmp["ours"] / cmp["theirs"]
    interfaces = f"{min(MODELS.values())}-{max(MODELS.values())}"
    print("## SNMP collector (pysnmp 7 against snmpsim, `bench_snmp.py`)\n")
    print(
        f"{DEVICES} simulated devices ({interfaces} interfaces, counters moving) on {DEVICES} UDP ports of two "
        f"snmpsim processes, plus one target where nothing listens; agents ready in {setup:.0f} s. "
        "The collector runs in the benchmark process (its CPU is that process's); the agents share the "
        "same 2 cores, so latencies include waiting for snmpsim (~150 µs per var-bind of its own).\n"
    )
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| one device's poll (system + ifTable/ifXTable, steady state), median of 7 | "
        f"{cmp['ours'] * 1000:.0f} ms ({cmp['varbinds']:.0f} var-binds in {cmp['requests']:.0f} requests) | |"
    )
    print(
        f"| `snmpbulkwalk -Cr25` of ifTable + ifXTable, same agent, same run, median | "
        f"{cmp['theirs'] * 1000:.0f} ms ({cmp['theirs_varbinds']:.0f} var-binds) | |"
    )
    print(f"| collector ÷ snmpbulkwalk | {ratio:.1f}× | ≤ 10× |")
    print(
        f"| the same against net-snmp's snmpd (C agent: the client's cost shows), {native['varbinds']:.0f} "
        f"var-binds / {native['theirs_varbinds']:.0f} | {native['ours'] * 1000:.1f} ms vs "
        f"{native['theirs'] * 1000:.1f} ms: {native['ours'] / native['theirs']:.1f}× | |"
    )
    print(f"| collector CPU per 1,000 var-binds received | {cmp['cpu_ms_per_kvb']:.0f} ms | |")
    print(
        f"| burst: {BURST_DEVICES} devices + the dead one due at once, concurrency 16 | {len(live)} polled in {burst_live_wall:.1f} s: "
        f"{len(live) / burst_live_wall:.1f} devices/s; collector CPU {burst_cpu / max(1, len(live)) * 1000:.0f} ms per device | |"
    )
    print(
        f"| burst poll latency p50 / p95 / max (live devices) | {percentile(burst_lat, 0.5) * 1000:.0f} / "
        f"{percentile(burst_lat, 0.95) * 1000:.0f} / {max(burst_lat) * 1000:.0f} ms | |"
    )
    print(
        f"| the dead device in the burst | {dead_burst[0].poll_seconds:.1f} s, then given up "
        f"(`{dead_burst[0].error.split(': ', 1)[1]}`); {len(live)}/{BURST_DEVICES} live devices polled | |"
        if dead_burst
        else "| the dead device in the burst | not finished | |"
    )
    print(
        f"| one {CYCLE_SECONDS:.0f}-s cycle, polls spread over it | {len(ok)} polls of {len(polled)}/{DEVICES} "
        f"devices, {total_vb:.0f} var-binds; latency p50 / p95 / max "
        f"{percentile(cycle_lat, 0.5) * 1000:.0f} / {percentile(cycle_lat, 0.95) * 1000:.0f} / "
        f"{max(cycle_lat) * 1000:.0f} ms | |"
    )
    print(f"| missed polls in that cycle (live devices) | {missed} | 0 |")
    print(
        f"| collector CPU over that cycle | {cycle_cpu / cycle_wall * 100:.1f}% of one core "
        f"({cycle_cpu:.1f} s in {cycle_wall:.0f} s) | < 40% |"
    )
    print(
        f"| the dead device in that cycle | {len(dead_cycle)} attempt(s), each "
        f"{statistics.median([s.poll_seconds for s in dead_cycle]) if dead_cycle else 0:.1f} s | never delays the rest |"
    )


if __name__ == "__main__":
    asyncio.run(main())
