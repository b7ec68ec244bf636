"""The collector against snmpsim (recorded and generated devices): values, rates, wraps, dead devices."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from snmp_agents import SnmpSim, device_snmprec, free_udp_port, net_snmp, parse_net_snmp
from snmp_harness import Harness

from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig
from amoskys.collectors.snmp.metrics import SnmpMetrics

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"

pytestmark = pytest.mark.needs_tool  # net-snmp's snmpget (every SnmpSim.start waits with it)


def var(community: str) -> str:
    return "C_" + community.replace("-", "_").upper()


def target(name: str, port: int, community: str, **kw: object) -> SnmpTargetConfig:
    return SnmpTargetConfig(name=name, address="127.0.0.1", port=port, community_env=var(community), **kw)  # type: ignore[arg-type]


def env(*communities: str) -> dict[str, str]:
    return {var(c): c for c in communities}


async def test_recorded_device_values_equal_what_net_snmp_reads_from_the_same_agent(
    sim: SnmpSim, harness: Harness
) -> None:
    community = "linux-full-walk"
    config = SnmpConfig(interval_seconds=60, targets=[target("cray", sim.port, community)])
    await harness.run(config, seconds=3, environ=env(community))
    [sample] = harness.samples("cray")
    assert sample.reachable, sample.error
    system = parse_net_snmp(
        net_snmp(
            "snmpget", *(f"1.3.6.1.2.1.1.{i}.0" for i in (1, 2, 4, 5, 6)), port=sim.port, community=community
        )
    )
    assert (
        sample.system.descr
        == system["1.3.6.1.2.1.1.1.0"]
        == "Linux cray 2.6.21.5-smp #2 SMP Tue Jun 19 14:58:11 CDT 2007 i686"
    )
    assert sample.system.object_id == system["1.3.6.1.2.1.1.2.0"].lstrip(".")
    assert sample.system.name == system["1.3.6.1.2.1.1.5.0"] == "tt"
    assert sample.system.contact == system["1.3.6.1.2.1.1.4.0"]
    assert sample.system.location == system["1.3.6.1.2.1.1.6.0"]
    assert sample.system.uptime_ticks == 233425120  # recorded, static
    table = parse_net_snmp(net_snmp("snmpbulkwalk", IF, port=sim.port, community=community))
    xtable = parse_net_snmp(net_snmp("snmpbulkwalk", IFX, port=sim.port, community=community))
    assert [i.if_index for i in sample.interfaces] == [1, 2]
    for iface in sample.interfaces:
        n = iface.if_index
        assert iface.descr == table[f"{IF}.2.{n}"]
        assert iface.type == int(table[f"{IF}.3.{n}"])
        assert iface.speed_bps == int(table[f"{IF}.5.{n}"])
        assert iface.name == xtable[f"{IFX}.1.{n}"]
        assert iface.hc_counters
        assert iface.in_octets == int(xtable[f"{IFX}.6.{n}"])
        assert iface.out_octets == int(xtable[f"{IFX}.10.{n}"])
        assert iface.oper_status == int(table[f"{IF}.8.{n}"])
    assert sample.interfaces[1].phys_address == bytes.fromhex("00127962f940")
    assert (sample.interfaces[0].descr, sample.interfaces[1].descr) == ("lo", "eth0")


async def test_rates_over_two_polls_match_the_simulated_counters(sim: SnmpSim, harness: Harness) -> None:
    # switch24: interface i receives 1000*i octets/s (8000*i bit/s) and sends half that; legacy4 the
    # same on 32-bit counters only
    config = SnmpConfig(
        interval_seconds=2,
        deadline_seconds=2,
        targets=[target("sw24", sim.port, "switch24"), target("legacy", sim.port, "legacy4")],
    )
    await harness.run(config, seconds=5.5, environ=env("switch24", "legacy4"))
    for name, count, hc in (("sw24", 24, True), ("legacy", 4, False)):
        samples = harness.samples(name)
        assert len(samples) >= 2 and all(s.reachable for s in samples)
        first, later = samples[0], samples[1:]
        assert len(first.interfaces) == count and not first.interfaces[0].HasField("in_bps")
        for sample in later:
            assert sample.rate_interval_seconds == pytest.approx(2.0, abs=0.3)
            for iface in sample.interfaces:
                i = iface.if_index
                assert iface.hc_counters is hc
                # sysUpTime has 10 ms ticks: over ~2 s, rates are exact to ~1%
                assert iface.in_bps == pytest.approx(8000 * i, rel=0.02), (name, i)
                assert iface.out_bps == pytest.approx(4000 * i, rel=0.02), (name, i)
                assert not iface.counters_reset
    assert [i.oper_status for i in harness.samples("sw24")[0].interfaces[:5]] == [1, 1, 1, 1, 2]


async def test_32bit_counter_wrap_gives_the_true_rate_never_a_spike(tmp_path: Path, harness: Harness) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # ifInOctets.1 (32-bit only) at 100 MB/s, starting 400 MB short of 2^32: it wraps ~4 s after start
    (data / "wrap.snmprec").write_text(
        device_snmprec(
            "wrap",
            1,
            hc=False,
            octets_per_second=100_000_000,
            in32_initial=2**32 - 400_000_000,
            in32_wrap=True,
        )
    )
    sim = SnmpSim(data, [free_udp_port()]).start("wrap")
    try:
        config = SnmpConfig(
            interval_seconds=1, deadline_seconds=1, targets=[target("wrap", sim.port, "wrap")]
        )
        await harness.run(config, seconds=7.5, environ=env("wrap"))
    finally:
        sim.stop()
    samples = [s for s in harness.samples("wrap") if s.reachable]
    values = [s.interfaces[0].in_octets for s in samples]
    wrapped = [i for i in range(1, len(values)) if values[i] < values[i - 1]]
    assert wrapped, f"the counter never wrapped during the test: {values}"
    for sample in samples[1:]:
        iface = sample.interfaces[0]
        assert not iface.counters_reset
        assert iface.in_bps == pytest.approx(800_000_000, rel=0.03)  # never a ~34 Gbit/s spike


async def test_a_dead_device_does_not_delay_the_live_ones(sim: SnmpSim, harness: Harness) -> None:
    dead_port = free_udp_port()  # nothing listens there: requests vanish, no ICMP answer on loopback UDP
    config = SnmpConfig(
        interval_seconds=2,
        deadline_seconds=1.5,
        timeout_seconds=0.5,
        retries=5,  # pysnmp alone would wait 3 s: the deadline cuts it at 1.5 s
        concurrency=2,
        schedule="aligned",
        targets=[
            target("dead", dead_port, "switch24"),
            target("live1", sim.port, "switch24"),
            target("live2", sim.port, "legacy4"),
            target("live3", sim.port, "linux-full-walk"),
        ],
    )
    started = time.monotonic()
    await harness.run(config, seconds=7.2, environ=env("switch24", "legacy4", "linux-full-walk"))
    elapsed = time.monotonic() - started
    dead = harness.samples("dead")
    assert dead and not any(s.reachable for s in dead)
    assert dead[0].error == f"snmp target 'dead' (127.0.0.1:{dead_port}): no response after 1.5 s"
    assert dead[0].poll_seconds == pytest.approx(1.5, abs=0.2)
    for name in ("live1", "live2", "live3"):
        samples = harness.samples(name)
        assert all(s.reachable for s in samples), (name, [s.error for s in samples])
        # due at 0, 2, 4, 6 s: even those that waited for a slot the dead device held made every tick
        assert len(samples) == 4, (name, len(samples), elapsed)
        assert max(s.poll_seconds for s in samples) < 1.0
    # one poll per tick: a poll may wait for a slot the dead device holds (at most its 1.5 s
    # deadline), so consecutive polls are between 2 - 1.5 and 2 + 1.5 s apart, never a tick skipped
    stamps = [e.ts_ns for e in harness.sink if e.snmp.target == "live3"]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    assert all(0.5 < g < 3.5 for g in gaps), gaps
    # backoff: the dead device was tried at 0 and 2 s, then not at 4 s (2 × interval), again at 6 s
    # (that poll was still waiting out its deadline when the collector stopped)
    assert len(dead) == 2
    assert (
        harness.metrics.component(SnmpMetrics).snmp_polls_skipped.labels("dead", "backoff")._value.get() == 1
    )
    assert len(harness.events("snmp_target_unreachable")) == 1
    assert harness.metrics.component(SnmpMetrics).snmp_target_up.labels("dead")._value.get() == 0


async def test_unreachable_is_logged_once_and_recovered_once(tmp_path: Path, harness: Harness) -> None:
    port = free_udp_port()
    data = tmp_path / "data"
    data.mkdir()
    (data / "late.snmprec").write_text(device_snmprec("late", 2))
    sim = SnmpSim(data, [port])
    config = SnmpConfig(
        interval_seconds=1,
        deadline_seconds=0.8,
        timeout_seconds=0.3,
        backoff_max_seconds=1,  # keep trying every second
        targets=[target("late", port, "late")],
    )

    async def start_agent_later() -> None:
        await asyncio.sleep(2.5)
        await asyncio.to_thread(sim.start, "late")

    try:
        starter = asyncio.create_task(start_agent_later())
        await harness.run(config, seconds=7.5, environ=env("late"))
        await starter
    finally:
        sim.stop()
    reachable = [s.reachable for s in harness.samples("late")]
    assert reachable[0] is False and reachable[-1] is True
    assert len(harness.events("snmp_target_unreachable")) == 1
    [recovered] = harness.events("snmp_target_recovered")
    assert recovered["failed_polls"] == reachable.index(True)
    assert harness.ctx is not None and harness.ctx.errors == reachable.count(False)


async def test_per_interface_series_only_when_enabled_and_capped(sim: SnmpSim, harness: Harness) -> None:
    off = SnmpConfig(interval_seconds=1, deadline_seconds=1, targets=[target("sw24", sim.port, "switch24")])
    running = asyncio.create_task(harness.run(off, seconds=1.5, environ=env("switch24")))
    await asyncio.sleep(1.2)
    text = harness.metrics.render().decode()
    await running
    assert 'amoskys_snmp_target_interfaces{target="sw24"} 24.0' in text
    assert "amoskys_snmp_interface_oper_up{" not in text

    on = SnmpConfig(
        interval_seconds=1,
        deadline_seconds=1,
        interface_metrics="on",
        max_interface_series=10,
        targets=[target("sw24", sim.port, "switch24")],
    )
    capped = Harness(harness.tmp_path)
    running = asyncio.create_task(capped.run(on, seconds=5, environ=env("switch24")))
    rate = 'amoskys_snmp_interface_in_bits_per_second{interface="Gi0/3",target="sw24"} 24'
    for _ in range(90):  # until the second poll brought rates (1 s after the first)
        text = capped.metrics.render().decode()
        if rate in text:
            break
        await asyncio.sleep(0.05)
    await running
    assert text.count("amoskys_snmp_interface_oper_up{") == 10
    assert 'amoskys_snmp_interface_oper_up{interface="Gi0/5",target="sw24"} 0.0' in text
    assert rate in text
    assert len(capped.events("snmp_interface_series_capped")) == 1
    # a stopped collector leaves no stale gauges behind
    assert "amoskys_snmp_interface_oper_up{" not in capped.metrics.render().decode()
    assert 'amoskys_snmp_target_up{target="sw24"}' not in capped.metrics.render().decode()
