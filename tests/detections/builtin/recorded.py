"""Envelopes as the collectors make them, for feeding the built-in detectors recorded events."""

from __future__ import annotations

from collections.abc import Sequence

from amoskys.detections.builtin.finding import FlowStart
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev

S = 1_000_000_000
T0 = 1_780_000_000 * S
MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b02")


def device(
    stamper: EnvelopeStamper, change: int, ip: str, mac: bytes, *, previous_mac: bytes = b"", ts_ns: int = T0
) -> ev.Envelope:
    return stamper.stamp(
        ev.Envelope(
            device=ev.DeviceEvent(
                change=change,  # type: ignore[arg-type]
                ip=ip,
                mac=mac,
                previous_mac=previous_mac,
                vendor="Acme",
                interface="eth1",
                seen_by=["arp_passive"],
            )
        ),
        ts_ns=ts_ns,
    )


def exec_of(stamper: EnvelopeStamper, exe: str, argv: Sequence[str], *, pid: int = 100) -> ev.Envelope:
    return stamper.stamp(
        ev.Envelope(
            process=ev.ProcessEvent(
                kind=ev.ProcessEvent.EXEC, pid=pid, ppid=1, exe=exe, argv=list(argv), user="root"
            )
        ),
        ts_ns=T0,
    )


def snmp(
    stamper: EnvelopeStamper,
    *,
    reachable: bool = True,
    oper: int = 1,
    errors: int = 0,
    packets: int = 0,
    ts_ns: int = T0,
    error: str = "",
) -> ev.Envelope:
    sample = ev.SnmpSample(target="core-sw1", address="10.0.0.2:161", reachable=reachable, error=error)
    if reachable:
        sample.interfaces.append(
            ev.SnmpInterface(
                if_index=3,
                name="ge-0/0/3",
                admin_status=1,
                oper_status=oper,
                in_errors=errors,
                in_ucast_pkts=packets,
            )
        )
    return stamper.stamp(ev.Envelope(snmp=sample), ts_ns=ts_ns)


def flow_start(
    src: str, dst: str, dport: int, *, ts_ns: int = T0, proto: int = 6, host: str = "box"
) -> FlowStart:
    return FlowStart(host, src, dst, 40_000, dport, proto, ts_ns, "eth1")


def flow_record(
    stamper: EnvelopeStamper, src: str, dst: str, dport: int, *, sport: int = 40_000, final: bool = True
) -> ev.Envelope:
    f = ev.FlowRecord(
        src_addr=src,
        dst_addr=dst,
        src_port=sport,
        dst_port=dport,
        protocol=6,
        first_ts_ns=T0,
        last_ts_ns=T0,
        final=final,
        community_id=f"1:{src}-{dst}-{sport}-{dport}",
        interface="eth0",
    )
    return stamper.stamp(ev.Envelope(flow=f), ts_ns=T0)
