"""The collector against net-snmp's snmpd: v2c values and live counters, v3 authPriv, wrong keys,
agent restarts, rates from real loopback traffic, and secrets that never leak."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from pathlib import Path

import pytest
from snmp_agents import SnmpDaemon, net_snmp, parse_net_snmp
from snmp_harness import Harness, secret_file

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.snmp.client import SnmpClient, auth_data, session_for
from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig
from amoskys.collectors.snmp.errors import SnmpPollError
from amoskys.collectors.snmp.poller import fetch

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"

pytestmark = pytest.mark.needs_tool  # net-snmp's snmpd, snmpget, snmpbulkwalk


def v2c(snmpd: SnmpDaemon, tmp_path: Path, name: str = "agent", **kw: object) -> SnmpTargetConfig:
    return SnmpTargetConfig(
        name=name,
        address="127.0.0.1",
        port=snmpd.port,
        community_file=secret_file(tmp_path, f"{name}.community", snmpd.community),
        **kw,  # type: ignore[arg-type]
    )


def v3(snmpd: SnmpDaemon, user: str, auth: str, priv: str, **kw: object) -> SnmpTargetConfig:
    return SnmpTargetConfig(
        name=f"v3-{user}",
        address="127.0.0.1",
        port=snmpd.port,
        version="v3",
        user=user,
        auth_key_env="AUTH",
        priv_key_env="PRIV",
        **kw,  # type: ignore[arg-type]
    )


async def poll(target: SnmpTargetConfig, environ: dict[str, str] | None = None, profiles=("interfaces",)):  # type: ignore[no-untyped-def]
    client = SnmpClient()
    try:
        session = session_for(target, auth_data(target, environ or {}), timeout_seconds=1, retries=1)
        return await fetch(client, session, profiles=profiles, max_repetitions=25, clock=SystemClock())
    finally:
        client.close()


def lo_octets(snmpd: SnmpDaemon, index: int) -> tuple[int, int]:
    out = parse_net_snmp(
        net_snmp(
            "snmpget", f"{IFX}.6.{index}", f"{IFX}.10.{index}", port=snmpd.port, community=snmpd.community
        )
    )
    return int(out[f"{IFX}.6.{index}"]), int(out[f"{IFX}.10.{index}"])


async def test_static_values_equal_net_snmp_and_counters_lie_between_two_readings(
    snmpd: SnmpDaemon, tmp_path: Path, harness: Harness
) -> None:
    table = parse_net_snmp(net_snmp("snmpbulkwalk", IF, port=snmpd.port, community=snmpd.community))
    lo = next(int(k.rsplit(".", 1)[1]) for k, v in table.items() if k.startswith(f"{IF}.2.") and v == "lo")
    before = lo_octets(snmpd, lo)
    config = SnmpConfig(targets=[v2c(snmpd, tmp_path)])
    await harness.run(config, seconds=2)
    after = lo_octets(snmpd, lo)
    [sample] = harness.samples()
    assert sample.reachable, sample.error
    assert sample.system.name == "amoskys-test-agent"
    assert sample.system.descr == "AMOSKYS test agent (net-snmp)"
    assert sample.system.location == "lab bench 3" and sample.system.contact == "ops@example.org"
    xtable = parse_net_snmp(net_snmp("snmpbulkwalk", IFX, port=snmpd.port, community=snmpd.community))
    # other tests may add or remove interfaces meanwhile: compare those net-snmp saw both times
    walked = {int(k.rsplit(".", 1)[1]) for k in table if k.startswith(f"{IF}.2.")}
    rewalked = {int(k.rsplit(".", 1)[1]) for k in xtable if k.startswith(f"{IFX}.1.")}
    ours = {i.if_index: i for i in sample.interfaces}
    assert lo in ours and walked & rewalked <= set(ours)
    for n in walked & rewalked:
        iface = ours[n]
        assert iface.descr == table[f"{IF}.2.{n}"]
        assert iface.type == int(table[f"{IF}.3.{n}"])
        if_speed = int(table[f"{IF}.5.{n}"])
        high = int(xtable[f"{IFX}.15.{n}"]) * 1_000_000
        assert iface.speed_bps == (high if if_speed == 4_294_967_295 else if_speed)
        assert iface.name == xtable[f"{IFX}.1.{n}"]
        assert iface.hc_counters
    iface = next(i for i in sample.interfaces if i.if_index == lo)
    assert before[0] <= iface.in_octets <= after[0]
    assert before[1] <= iface.out_octets <= after[1]


def blast_loopback(seconds: float, payload: int = 60_000) -> int:
    """Send UDP datagrams to ourselves over lo for `seconds`; returns the bytes sent."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data, sent, end = b"x" * payload, 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sent += tx.sendto(data, rx.getsockname())
            try:
                while rx.recv(65536):
                    pass
            except BlockingIOError:
                pass
            time.sleep(0.0005)
    finally:
        tx.close()
        rx.close()
    return sent


async def test_rates_follow_real_loopback_traffic(
    snmpd: SnmpDaemon, tmp_path: Path, harness: Harness
) -> None:
    config = SnmpConfig(interval_seconds=4, deadline_seconds=3, targets=[v2c(snmpd, tmp_path)])
    blaster = asyncio.create_task(asyncio.to_thread(blast_loopback, 7.0))
    await harness.run(config, seconds=9)
    sent = await blaster
    samples = harness.samples()
    assert len(samples) == 3 and all(s.reachable for s in samples)
    lo = lambda s: next(i for i in s.interfaces if i.descr == "lo")  # noqa: E731
    # snmpd refreshes interface counters from the kernel every few seconds: check each rate against the
    # counters the same samples carry, and that traffic made the rate large
    for prev, cur in itertools.pairwise(samples):
        a, b = lo(prev), lo(cur)
        assert b.HasField("in_bps") and not b.counters_reset
        assert b.in_bps == pytest.approx(
            (b.in_octets - a.in_octets) * 8 / cur.rate_interval_seconds, rel=0.05
        )
    assert max(lo(s).in_bps for s in samples[1:]) > 8 * sent / 7.0 / 4  # at least a quarter of what we sent


@pytest.mark.parametrize(
    ("user", "auth", "priv", "auth_key", "priv_key"),
    [
        ("amoskys256", "sha256", "aes128", "auth-pass-256-xyz", "priv-pass-128-xyz"),
        ("amoskys512", "sha512", "aes256", "auth-pass-512-xyz", "priv-pass-256-xyz"),
    ],
)
async def test_v3_auth_priv_polls_the_agent(
    snmpd: SnmpDaemon, user: str, auth: str, priv: str, auth_key: str, priv_key: str
) -> None:
    target = v3(snmpd, user, auth, priv, auth_protocol=auth, priv_protocol=priv)
    data = await poll(target, {"AUTH": auth_key, "PRIV": priv_key})
    assert data.system["name"] == b"amoskys-test-agent"
    assert data.interfaces["descr"]


@pytest.mark.parametrize(
    ("user", "auth_key", "priv_key", "message"),
    [
        (
            "amoskys256",
            "wrong-auth-pass",
            "priv-pass-128-xyz",
            "authentication failed: wrong auth key or auth protocol",
        ),
        # net-snmp drops what it cannot decrypt: no answer at all, hence the hint
        (
            "amoskys256",
            "auth-pass-256-xyz",
            "wrong-priv-pass",
            "no response after 2 s (a wrong priv key or priv protocol also goes unanswered)",
        ),
        ("nobody-here", "auth-pass-256-xyz", "priv-pass-128-xyz", "unknown user (check `user`)"),
    ],
)
async def test_v3_wrong_credentials_fail_with_a_clear_error(
    snmpd: SnmpDaemon, user: str, auth_key: str, priv_key: str, message: str
) -> None:
    target = v3(snmpd, user, "sha256", "aes128")
    with pytest.raises(SnmpPollError) as info:
        await poll(target, {"AUTH": auth_key, "PRIV": priv_key})
    assert str(info.value) == f"snmp target 'v3-{user}' (127.0.0.1:{snmpd.port}): {message}"
    assert auth_key not in str(info.value) and priv_key not in str(info.value)


async def test_agent_restart_is_a_marked_reset_never_a_spike(
    snmpd: SnmpDaemon, tmp_path: Path, harness: Harness
) -> None:
    config = SnmpConfig(interval_seconds=3, deadline_seconds=2, targets=[v2c(snmpd, tmp_path)])

    async def restart_agent() -> None:
        await asyncio.sleep(4.2)  # after the second poll (3 s): the agent's uptime is > 4 s
        await asyncio.to_thread(snmpd.stop)
        await asyncio.to_thread(snmpd.start)

    restarter = asyncio.create_task(restart_agent())
    await harness.run(config, seconds=7.5)
    await restarter
    samples = harness.samples()
    assert len(samples) == 3 and all(s.reachable for s in samples), [s.error for s in samples]
    assert not samples[1].agent_restarted and samples[1].interfaces[0].HasField("in_bps")
    restarted = samples[2]
    assert restarted.agent_restarted and restarted.rate_interval_seconds == 0
    assert restarted.system.uptime_ticks < samples[1].system.uptime_ticks
    assert all(i.counters_reset and not i.HasField("in_bps") for i in restarted.interfaces)
    assert harness.events("snmp_agent_restarted")


async def test_secrets_never_appear_in_logs_events_or_metrics(
    snmpd: SnmpDaemon, tmp_path: Path, harness: Harness
) -> None:
    secrets = [snmpd.community, "auth-pass-256-xyz", "priv-pass-128-xyz", "wrong-auth-pass"]
    good = v2c(snmpd, tmp_path, name="good")
    wrong_key = SnmpTargetConfig(
        name="wrongkey",
        address="127.0.0.1",
        port=snmpd.port,
        version="v3",
        user="amoskys256",
        auth_key_env="BAD_AUTH",
        priv_key_env="PRIV",
    )
    dead = SnmpTargetConfig(
        name="dead", address="127.0.0.1", port=1, community_file=secret_file(tmp_path, "d", snmpd.community)
    )
    unreadable = SnmpTargetConfig(
        name="unreadable", address="127.0.0.1", port=snmpd.port, community_file=str(tmp_path / "missing")
    )
    environ = {"BAD_AUTH": "wrong-auth-pass", "PRIV": "priv-pass-128-xyz"}
    config = SnmpConfig(
        deadline_seconds=1,
        timeout_seconds=0.3,
        schedule="aligned",
        targets=[good, wrong_key, dead, unreadable],
    )
    await harness.run(config, seconds=2.5, environ=environ)
    assert {s.target for s in harness.samples()} == {"good", "wrongkey", "dead"}
    events = b"".join(e.SerializeToString() for e in harness.sink)
    logs = json.dumps(harness.logs, default=str)
    metrics = harness.metrics.render().decode()
    status = harness.ctx.last_error if harness.ctx else ""
    assert "snmp_target_misconfigured" in logs and str(tmp_path / "missing") in logs
    for secret in secrets:
        assert secret.encode() not in events, secret
        assert secret not in logs, secret
        assert secret not in metrics, secret
        assert secret not in status, secret


async def test_host_resources_profile_matches_the_agent(
    snmpd: SnmpDaemon, tmp_path: Path, harness: Harness
) -> None:
    config = SnmpConfig(profiles=["host_resources"], targets=[v2c(snmpd, tmp_path)])
    await harness.run(config, seconds=2.5)
    [sample] = harness.samples()
    assert sample.reachable and not sample.interfaces
    storage = parse_net_snmp(
        net_snmp("snmpbulkwalk", "1.3.6.1.2.1.25.2.3.1", port=snmpd.port, community=snmpd.community)
    )
    loads = parse_net_snmp(
        net_snmp("snmpbulkwalk", "1.3.6.1.2.1.25.3.3.1.2", port=snmpd.port, community=snmpd.community)
    )
    loads = {k: v for k, v in loads.items() if not v.startswith("No Such")}  # none inside some containers
    assert sorted(sample.cpu_load_percent) == sorted(int(v) for v in loads.values())
    by_descr = {s.descr: s for s in sample.storage}
    memory = by_descr["Physical memory"]
    index = memory.index
    units = int(storage[f"1.3.6.1.2.1.25.2.3.1.4.{index}"].split()[0])
    assert memory.size_bytes == int(storage[f"1.3.6.1.2.1.25.2.3.1.5.{index}"]) * units > 0
    assert 0 < memory.used_bytes <= memory.size_bytes
