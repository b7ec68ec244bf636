"""The syslog sink against a real rsyslogd: RFC 5424 messages over UDP, TCP (octet counting) and TLS,
parsed by rsyslog (header fields, and the structured data through mmpstrucdata)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from amoskys.config import SinksConfig, SyslogSinkConfig

from .harness import alert, alert_store, running_sinks
from .rsyslog import Rsyslog, make_certs
from support import eventually

pytestmark = pytest.mark.needs_tool

TRICKY = 'a "quoted" title ] with \\ backslash, ümlauts and 雪'


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog.make(tmp_path / "rsyslog")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sinks(server: Rsyslog, *transports: str, **keys: object) -> SinksConfig:
    ports = {"udp": server.udp_port, "tcp": server.tcp_port, "tls": server.tls_port}
    return SinksConfig(
        syslog=tuple(
            SyslogSinkConfig(
                name=f"siem-{t}",
                address=f"127.0.0.1:{ports[t]}",
                transport=t,  # type: ignore[arg-type]
                ca_file=str(server.ca_file) if t == "tls" else "",
                **keys,  # type: ignore[arg-type]
            )
            for t in transports
        )
    )


async def test_rsyslog_parses_our_messages_over_udp_tcp_and_tls(tmp_path: Path, rsyslog: Rsyslog) -> None:
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        config = sinks(rsyslog, "udp", "tcp", "tls", facility="local4", app_name="amoskys-test")
        async with running_sinks(alerts, config):
            ids = await alerts.publish(
                alert(0, level="critical"),
                alert(1, level="medium", title=TRICKY, summary=f"summary: {TRICKY}"),
                alert(2, level="informational"),
            )
            for listener in ("udp", "tcp", "tls"):
                await eventually(
                    lambda listener=listener: len(rsyslog.lines(listener)) >= 3,  # type: ignore[misc]
                    within=15,
                    what=f"3 messages in rsyslog's {listener} file",
                )
    for listener, input_name in (("udp", "imudp"), ("tcp", "imtcp"), ("tls", "imtcp")):
        lines = rsyslog.lines(listener)
        assert [line["sd"]["amoskys@32473"]["event_id"] for line in lines] == ids, listener
        first, tricky, info = lines
        for line in lines:
            assert line["input"] == input_name
            assert line["facility"] == "local4"
            assert line["hostname"] == "box-1"
            assert line["app_name"] == "amoskys-test"
            assert line["procid"] == "-"
            assert line["msgid"] == "alert"
            assert line["timestamp"].endswith("Z") and "." in line["timestamp"]
        assert (first["severity"], first["pri"]) == ("crit", str(20 * 8 + 2))
        assert (tricky["severity"], info["severity"]) == ("warning", "info")
        sd = tricky["sd"]["amoskys@32473"]
        assert sd["title"] == TRICKY  # escaped by us, unescaped by rsyslog: the same text
        assert sd["level"] == "medium"
        assert sd["rule_id"] == "amoskys.exec_from_tmp"
        assert sd["tags"] == "attack.execution,attack.t1059"
        assert sd["evidence"] == "00000000-0000-7000-8000-000000000001"
        assert sd["count"] == "1"
        assert sd["host"] == "box-1"
        assert tricky["sd"]["amoskysAttributes@32473"] == {"exe": "/tmp/x1", "pid": "1001"}
        assert tricky["msg"].strip() == f"summary: {TRICKY}"
    assert alerts.sample("amoskys_sink_alerts_total", sink="siem-tls", outcome="delivered") == 3
    assert alerts.sample("amoskys_sink_syslog_connects_total", sink="siem-tcp") == 1


async def test_a_long_alert_is_cut_to_2048_octets_on_udp_and_whole_on_tcp(
    tmp_path: Path, rsyslog: Rsyslog
) -> None:
    long_text = "é" * 3000 + " the end"  # 6008 octets: past the datagram limit, cut between characters
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, sinks(rsyslog, "udp", "tcp", min_level="high")):
            ids = await alerts.publish(alert(0, level="low"), alert(1, summary=long_text))
            for listener in ("udp", "tcp"):
                await eventually(
                    lambda listener=listener: rsyslog.lines(listener),  # type: ignore[misc]
                    within=15,
                    what=f"the long message in rsyslog's {listener} file",
                )
            await eventually(
                lambda: alerts.sample("amoskys_forwarder_lag_events", sink="siem-udp") == 0, what="caught up"
            )
    [udp], [tcp] = rsyslog.lines("udp"), rsyslog.lines("tcp")
    assert udp["sd"]["amoskys@32473"]["event_id"] == tcp["sd"]["amoskys@32473"]["event_id"] == ids[1]
    assert tcp["msg"].strip() == long_text
    assert udp["msg"].endswith("é [truncated]")
    assert long_text.startswith(udp["msg"].strip().removesuffix(" [truncated]"))
    assert alerts.sample("amoskys_sink_syslog_truncated_total", sink="siem-udp") == 1
    assert alerts.sample("amoskys_sink_syslog_truncated_total", sink="siem-tcp") == 0
    assert alerts.sample("amoskys_sink_alerts_total", sink="siem-udp", outcome="filtered") == 1


async def test_a_syslog_server_down_for_a_while_gets_every_alert_once_after(
    tmp_path: Path, rsyslog: Rsyslog
) -> None:
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, sinks(rsyslog, "tcp", "tls")):
            ids = await alerts.publish(*(alert(i) for i in range(3)))
            for listener in ("tcp", "tls"):
                await eventually(
                    lambda listener=listener: len(rsyslog.lines(listener)) == 3,  # type: ignore[misc]
                    within=15,
                    what=f"the first alerts over {listener}",
                )
            await asyncio.to_thread(rsyslog.stop)
            ids += await alerts.publish(*(alert(i) for i in range(3, 20)))
            await eventually(
                lambda: (
                    alerts.sample("amoskys_forwarder_retries_total", sink="siem-tls") >= 2
                    and alerts.sample("amoskys_forwarder_retries_total", sink="siem-tcp") >= 2
                ),
                within=15,
                what="both sinks retrying while rsyslogd is down",
            )
            await asyncio.to_thread(rsyslog.start)
            for listener in ("tcp", "tls"):
                await eventually(
                    lambda listener=listener: len(rsyslog.lines(listener)) >= 20,  # type: ignore[misc]
                    within=20,
                    what=f"every alert over {listener} after the restart",
                )
    for listener in ("tcp", "tls"):
        got = [line["sd"]["amoskys@32473"]["event_id"] for line in rsyslog.lines(listener)]
        assert got == ids, f"{listener}: each alert once, in order"
    assert alerts.sample("amoskys_sink_syslog_connects_total", sink="siem-tcp") >= 2


async def test_a_tls_server_whose_certificate_our_ca_file_does_not_sign_gets_nothing(
    tmp_path: Path, rsyslog: Rsyslog
) -> None:
    other_ca, _, _ = make_certs(tmp_path)  # another CA: rsyslog's certificate is not signed by it
    config = SinksConfig(
        syslog=(
            SyslogSinkConfig(
                name="siem-tls",
                address=f"127.0.0.1:{rsyslog.tls_port}",
                transport="tls",
                ca_file=str(other_ca),
            ),
        )
    )
    async with alert_store(tmp_path / "db.sqlite") as alerts:
        async with running_sinks(alerts, config) as forwarders:
            await alerts.publish(alert(0))
            status = await eventually(
                lambda: [s for s in forwarders.status() if s["retries"] >= 2], what="the sink retrying"
            )
    assert "CERTIFICATE_VERIFY_FAILED" in status[0]["reason"]
    assert rsyslog.lines("tls") == []
