"""Each built-in detector fed recorded events (envelopes as the collectors make them), flow starts and
a clock of the test's: what it must report, and what it must leave alone."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from amoskys.config import (
    CertExpiryConfig,
    DetectionsConfig,
    ExecPathConfig,
    IocConfig,
    PortScanConfig,
    SnmpHealthConfig,
)
from amoskys.detections.builtin import registry
from amoskys.detections.builtin.cert_expiry import CertExpiry
from amoskys.detections.builtin.chain_fork import fork_alert
from amoskys.detections.builtin.exec_path import ExecPath
from amoskys.detections.builtin.ioc import Ioc, IocSet, parse
from amoskys.detections.builtin.loss import Loss
from amoskys.detections.builtin.mac_change import MacChange
from amoskys.detections.builtin.new_device import NewDevice
from amoskys.detections.builtin.port_scan import PortScan
from amoskys.detections.builtin.silent import Silent
from amoskys.detections.builtin.snmp_health import SnmpHealth
from amoskys.events import EnvelopeStamper
from amoskys.pki.issuance import create_ca, issue_client_cert
from amoskys.proto import events_pb2 as ev

from .recorded import MAC_A, MAC_B, T0, S, device, exec_of, flow_start, snmp

D = ev.DeviceEvent
stamper = EnvelopeStamper("box")


def test_a_new_device_is_reported_with_its_address_mac_and_vendor_and_a_seen_one_is_not() -> None:
    d = NewDevice()
    new = device(stamper, D.NEW, "192.168.1.50", MAC_A)
    [f] = d.event(new, T0)
    assert f.rule.id == "amoskys.new_device" and f.rule.level == "low"
    assert f.host == "box" and f.evidence == new.event_id and f.ts_ns == T0
    assert f.attributes["ip"] == "192.168.1.50" and f.attributes["mac"] == "02:00:00:00:0a:01"
    assert "192.168.1.50" in f.summary and "Acme" in f.summary
    for change in (D.SEEN, D.IP_CHANGED, D.GONE, D.MAC_CHANGED):
        assert d.event(device(stamper, change, "192.168.1.50", MAC_A), T0) == []


def test_an_address_answered_by_another_mac_is_reported_as_possible_arp_spoofing() -> None:
    d = MacChange()
    moved = device(stamper, D.MAC_CHANGED, "192.168.1.1", MAC_B, previous_mac=MAC_A)
    [f] = d.event(moved, T0)
    assert f.rule.id == "amoskys.mac_change" and f.rule.level == "high"
    assert f.attributes["previous_mac"] == "02:00:00:00:0a:01" and f.attributes["mac"] == "02:00:00:00:0b:02"
    assert f.evidence == moved.event_id
    assert d.event(device(stamper, D.NEW, "192.168.1.9", MAC_B), T0) == []
    assert d.event(device(stamper, D.IP_CHANGED, "192.168.1.9", MAC_B), T0) == []


def test_a_source_reaching_100_ports_within_the_window_is_a_scan_and_99_ports_are_not() -> None:
    d = PortScan(PortScanConfig())
    out = [
        f
        for port in range(1, 100)
        for f in d.flow(flow_start("10.0.0.66", "10.0.0.5", port, ts_ns=T0 + port))
    ]
    assert out == []  # 99 ports
    [f] = d.flow(flow_start("10.0.0.66", "10.0.0.5", 100, ts_ns=T0 + 100))
    assert f.rule.id == "amoskys.port_scan" and f.attributes["scanner"] == "10.0.0.66"
    assert f.attributes["ports"] == "100" and f.attributes["by"] == "ports" and f.host == "box"
    assert "10.0.0.66 scanned 100 ports" in f.summary and f.evidence == ""
    # it counts afresh: the next 99 ports are not a second report, the 100th is
    assert [f for p in range(101, 200) for f in d.flow(flow_start("10.0.0.66", "10.0.0.5", p))] == []
    assert len(d.flow(flow_start("10.0.0.66", "10.0.0.5", 200))) == 1


def test_a_source_reaching_50_hosts_is_a_sweep_but_repeated_ports_and_hosts_count_once() -> None:
    d = PortScan(PortScanConfig())
    for _ in range(5):  # the same 49 hosts on port 22, five times over: 49 hosts, 1 port
        for i in range(49):
            assert d.flow(flow_start("10.0.0.66", f"10.0.1.{i}", 22)) == []
    assert d.flow(flow_start("10.0.0.77", "10.0.1.200", 22)) == []  # another source counts apart
    [f] = d.flow(flow_start("10.0.0.66", "10.0.1.99", 22, proto=17))
    assert f.attributes["by"] == "hosts" and f.attributes["hosts"] == "50"


def test_ports_spread_over_more_than_the_window_are_not_a_scan() -> None:
    d = PortScan(PortScanConfig(ports=100, window_seconds=60))
    found = [f for p in range(200) for f in d.flow(flow_start("10.0.0.66", "10.0.0.5", p, ts_ns=T0 + p * S))]
    assert found == []  # one port a second: never 100 within 60 s


def test_ioc_lists_match_addresses_and_networks_on_either_side_and_reload_when_changed(
    tmp_path: Path,
) -> None:
    listed = tmp_path / "bad.txt"
    listed.write_text("# feed\n203.0.113.7\n198.51.100.0/24  # a network\n\n2001:db8:bad::/48\n")
    d = Ioc(IocConfig(ioc_files=(str(listed),)))
    d.tick(T0)
    [out] = d.flow(flow_start("10.0.0.5", "203.0.113.7", 443))
    assert out.rule.id == "amoskys.ioc" and out.attributes["side"] == "destination"
    assert out.attributes["network"] == "203.0.113.7/32" and out.attributes["list"] == str(listed)
    [inbound] = d.flow(flow_start("198.51.100.77", "10.0.0.5", 22))
    assert inbound.attributes["side"] == "source" and inbound.attributes["network"] == "198.51.100.0/24"
    assert len(d.flow(flow_start("2001:db8:bad::1", "2001:db8::2", 53, proto=17))) == 1
    assert d.flow(flow_start("10.0.0.5", "203.0.113.8", 443)) == []
    # a change to the file is taken at the next check; a bad line is skipped, the rest loads
    listed.write_text("203.0.113.8\nnot-an-address\n")
    os.utime(listed, ns=(T0, T0))
    d.tick(T0 + 10 * S)
    assert d.flow(flow_start("10.0.0.5", "203.0.113.7", 443)) == []
    assert len(d.flow(flow_start("10.0.0.5", "203.0.113.8", 443))) == 1
    # a file gone keeps what it had
    listed.unlink()
    d.tick(T0 + 20 * S)
    assert len(d.flow(flow_start("10.0.0.5", "203.0.113.8", 443))) == 1


def test_a_bad_ioc_line_is_logged_with_its_file_and_line_number(tmp_path: Path) -> None:
    found, bad = parse("10.0.0.1\n10.0.0.300\n", "feed.txt")
    assert list(map(str, found)) == ["10.0.0.1/32"]
    assert [(b.path, b.line, b.text) for b in bad] == [("feed.txt", 2, "10.0.0.300")]
    listed = tmp_path / "feed.txt"
    listed.write_text("10.0.0.300\n")
    with structlog.testing.capture_logs() as logs:
        Ioc(IocConfig(ioc_files=(str(listed),))).reload()
    [warning] = [e for e in logs if e["event"] == "ioc_line_invalid"]
    assert warning["path"] == str(listed) and warning["line"] == 1
    assert IocSet(parse("10.0.0.0/8\n10.1.0.0/16")[0]).find("10.1.2.3") is not None


def test_exec_from_tmp_dev_shm_or_a_deleted_file_is_reported_and_from_usr_bin_is_not() -> None:
    d = ExecPath(ExecPathConfig())
    for exe in ("/tmp/x", "/dev/shm/.a/b", "/usr/bin/curl (deleted)"):
        e = exec_of(stamper, exe, [exe.split(" ")[0], "-q"])
        [f] = d.event(e, T0)
        assert f.rule.id == "amoskys.exec_path" and f.evidence == e.event_id and f.attributes["exe"] == exe
    assert d.event(exec_of(stamper, "/usr/bin/tmp", ["tmp"]), T0) == []
    assert d.event(exec_of(stamper, "/tmpfoo/x", ["x"]), T0) == []
    exited = stamper.stamp(
        ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.EXIT, pid=9, exe="/tmp/x"))
    )
    assert d.event(exited, T0) == []
    strict = ExecPath(ExecPathConfig(paths=("/var/tmp",), deleted=False))
    assert strict.event(exec_of(stamper, "/usr/bin/x (deleted)", ["x"]), T0) == []
    assert len(strict.event(exec_of(stamper, "/var/tmp/x", ["x"]), T0)) == 1


def test_snmp_interface_going_down_is_reported_once_and_an_interface_down_from_the_start_is_not() -> None:
    d = SnmpHealth(SnmpHealthConfig())
    assert d.event(snmp(stamper, oper=1), T0) == []
    down = snmp(stamper, oper=2)
    [f] = d.event(down, T0)
    assert f.rule.id == "amoskys.snmp_if_down" and f.attributes["interface"] == "ge-0/0/3"
    assert f.attributes["oper_status"] == "down" and f.evidence == down.event_id
    assert d.event(snmp(stamper, oper=2), T0) == []  # still down: nothing new
    assert d.event(snmp(stamper, oper=1), T0) == []
    assert len(d.event(snmp(stamper, oper=7), T0)) == 1  # lowerLayerDown after coming back
    fresh = SnmpHealth(SnmpHealthConfig())
    assert fresh.event(snmp(stamper, oper=2), T0) == []


def test_snmp_error_rate_spike_is_reported_and_a_few_errors_in_much_traffic_are_not() -> None:
    d = SnmpHealth(SnmpHealthConfig(error_rate_percent=1.0, min_errors=10))
    d.event(snmp(stamper, errors=0, packets=0), T0)
    assert d.event(snmp(stamper, errors=9, packets=100), T0) == []  # too few errors
    assert d.event(snmp(stamper, errors=59, packets=100_000), T0) == []  # 50 in 100,000: 0.05%
    [f] = d.event(snmp(stamper, errors=109, packets=101_000), T0)  # 50 in 1,050: 4.8%
    assert f.rule.id == "amoskys.snmp_error_rate" and f.attributes["errors"] == "50"
    assert d.event(snmp(stamper, errors=159, packets=102_000), T0) == []  # still spiking: once
    assert d.event(snmp(stamper, errors=0, packets=0), T0) == []  # counters reset: no rate


def test_an_snmp_device_that_stops_answering_is_reported_once_until_it_answers_again() -> None:
    d = SnmpHealth(SnmpHealthConfig())
    d.event(snmp(stamper), T0)
    [f] = d.event(snmp(stamper, reachable=False, error="no response after 5.0 s"), T0)
    assert f.rule.id == "amoskys.snmp_unreachable" and f.rule.level == "high"
    assert "stopped answering" in f.summary and f.attributes["error"] == "no response after 5.0 s"
    assert d.event(snmp(stamper, reachable=False), T0) == []
    assert d.event(snmp(stamper), T0) == []
    assert len(d.event(snmp(stamper, reachable=False), T0)) == 1
    never = SnmpHealth(SnmpHealthConfig())
    [g] = never.event(snmp(stamper, reachable=False), T0)
    assert "does not answer" in g.summary


def test_every_loss_report_is_reported_with_what_where_and_why() -> None:
    loss = stamper.stamp(
        ev.Envelope(
            loss=ev.LossReport(what="packets", where="flow.capture", count=1234, reason="kernel_drop")
        )
    )
    [f] = Loss().event(loss, T0)
    assert f.rule.id == "amoskys.loss" and f.evidence == loss.event_id
    assert f.summary == "1234 packets lost in flow.capture: kernel_drop"
    assert Loss.kinds == frozenset({"loss"})


def test_a_source_silent_for_three_intervals_is_reported_once_and_a_heartbeat_ends_the_silence() -> None:
    d = Silent(3, ignore=frozenset({"box"}))
    agent = EnvelopeStamper("agent-1")
    beat = agent.stamp(ev.Envelope(heartbeat=ev.Heartbeat(interval_seconds=10.0)))
    d.event(beat, T0)
    d.event(stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat(interval_seconds=10.0))), T0)
    assert d.tick(T0 + 30 * S) == []  # exactly three intervals: not yet
    [f] = d.tick(T0 + 31 * S)
    assert f.rule.id == "amoskys.silent" and f.host == "agent-1" and f.evidence == beat.event_id
    assert f.attributes["silent_for_seconds"] == "31.0"
    assert d.tick(T0 + 60 * S) == []  # once per silence; the appliance itself is never judged
    d.event(agent.stamp(ev.Envelope(heartbeat=ev.Heartbeat(interval_seconds=10.0))), T0 + 61 * S)
    assert d.tick(T0 + 62 * S) == []
    assert len(d.tick(T0 + 92 * S)) == 1
    older = Silent(3)
    older.seen("old-agent", T0, 0.0, "e1")  # no interval announced: 60 s, as the Agents page takes it
    assert older.tick(T0 + 179 * S) == [] and len(older.tick(T0 + 181 * S)) == 1


def test_a_certificate_within_the_warning_days_is_reported_once_and_a_long_lived_one_is_not(
    tmp_path: Path,
) -> None:
    now = datetime.fromtimestamp(T0 / S, UTC)
    ca_cert, ca_key = create_ca(tmp_path / "ca", "test CA", now=now)
    soon, later = tmp_path / "soon.crt", tmp_path / "later.crt"
    for path, days in ((soon, 10), (later, 90)):
        issue_client_cert(
            ca_cert,
            ca_key,
            uri="spiffe://t/agent/a",
            common_name="a",
            cert_path=path,
            key_path=path.with_suffix(".key"),
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=days),
        )
    certs = [
        ("agent-1", "agent:agent-1", soon),
        ("box", "client", later),
        ("box", "gone", tmp_path / "nope.crt"),
    ]
    d = CertExpiry(CertExpiryConfig(cert_warning_days=30), lambda: certs, check_seconds=60)
    [f] = d.tick(T0)
    assert f.rule.id == "amoskys.cert_expiry" and f.host == "agent-1" and f.evidence == ""
    assert f.attributes["days_left"] == "10.0" and "in 10.0 days" in f.summary
    assert d.tick(T0 + 61 * S) == []  # reported once
    assert len(CertExpiry(CertExpiryConfig(cert_warning_days=100), lambda: certs).tick(T0)) == 2


def test_a_chain_fork_alert_carries_the_builtin_rule_and_the_sender_as_host() -> None:
    a = fork_alert("agent-7", b"\x01" * 32, b"\x02" * 32)
    assert a.rule == "bus.chain_fork" and a.rule_id == "amoskys.chain_fork" and a.host == "agent-7"
    assert a.level == ev.Alert.LEVEL_HIGH and a.count == 1 and a.attributes["prev_digest"] == "01" * 32


def test_the_registry_builds_the_enabled_detectors_from_their_sections() -> None:
    names = [d.name for d in registry.build(DetectionsConfig(), silent_after_heartbeats=3, appliance="box")]
    assert names == [n for n in registry.NAMES if n != "ioc"]  # no IOC files: no IOC detector
    cfg = DetectionsConfig(ioc=IocConfig(ioc_files=("/x",)), port_scan=PortScanConfig(enabled=False))
    names = [d.name for d in registry.build(cfg, silent_after_heartbeats=3, appliance="box")]
    assert "ioc" in names and "port_scan" not in names
    assert registry.build(DetectionsConfig(enabled=False), silent_after_heartbeats=3, appliance="box") == []
    ids = {r.id for r in registry.all_rules()}
    assert all(i.startswith("amoskys.") for i in ids) and len(ids) == 12
