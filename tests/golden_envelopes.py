"""Fixed envelopes of every body kind, whose serialized bytes are pinned in tests/fixtures/golden/.

The fixtures are written only by an explicit command and reviewed in the diff:
    .venv/bin/python tests/golden_envelopes.py --write
A normal test run only compares (tests/test_proto.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from amoskys.proto import bus_pb2
from amoskys.proto import events_pb2 as ev

GOLDEN_DIR = Path(__file__).resolve().parent / "fixtures" / "golden"


def _base(**body: object) -> ev.Envelope:
    return ev.Envelope(
        event_id="0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b",
        source="edge-1",
        boot_id="6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
        source_seq=42,
        ts_ns=1_764_250_000_123_456_789,
        **body,  # type: ignore[arg-type]
    )


def envelopes() -> dict[str, ev.Envelope]:
    """One fully-populated envelope per kind (every field set, so every field number is pinned)."""
    return {
        "process": _base(
            process=ev.ProcessEvent(
                kind=ev.ProcessEvent.EXIT,
                pid=4242,
                ppid=1,
                exe="/usr/bin/curl",
                argv=["curl", "--token=<redacted>", "https://example.org"],
                user="root",
                uid=0,
                start_time_ns=1_764_249_999_000_000_000,
                exit_code=3,
                exit_signal=0,
                lifetime_ns=12_000_000,
                cpu_percent=1.5,
                cpu_seconds=0.25,
                rss_bytes=8_388_608,
                exe_sha256=bytes(range(32)),
                cgroup="/system.slice/cron.service",
                container_id="abc123",
                unreadable=["cgroup"],
                argv_redacted=True,
            )
        ),
        "host": _base(
            host=ev.HostMetrics(
                hostname="edge-1",
                cpu_percent=12.5,
                cpu_percent_per_core=[10.0, 15.0],
                memory_total_bytes=4 << 30,
                memory_available_bytes=3 << 30,
                memory_used_bytes=1 << 30,
                swap_total_bytes=1 << 30,
                swap_used_bytes=1 << 20,
                disks=[
                    ev.DiskUsage(
                        mountpoint="/",
                        device="/dev/sda1",
                        fstype="ext4",
                        total_bytes=100,
                        used_bytes=40,
                        free_bytes=60,
                    )
                ],
                disk_io=[ev.DiskIo(device="sda", read_bytes=1, write_bytes=2, read_count=3, write_count=4)],
                net_io=[
                    ev.NetIo(
                        interface="eth0",
                        bytes_sent=1,
                        bytes_recv=2,
                        packets_sent=3,
                        packets_recv=4,
                        errors_in=5,
                        errors_out=6,
                        drops_in=7,
                        drops_out=8,
                    )
                ],
                load1=0.5,
                load5=0.25,
                load15=0.125,
                uptime_seconds=86400,
                users_logged_in=2,
                temperatures=[ev.Temperature(sensor="coretemp", label="Package id 0", celsius=48.0)],
            )
        ),
        "flow": _base(
            flow=ev.FlowRecord(
                src_addr="192.168.1.52",
                dst_addr="8.8.8.8",
                src_port=54585,
                dst_port=53,
                protocol=17,
                vlan=100,
                inner_vlan=7,
                ip_version=4,
                forward=ev.FlowDirection(packets=1, octets=60, tcp_flags=0),
                reverse=ev.FlowDirection(packets=1, octets=120, tcp_flags=0x12),
                first_ts_ns=1_764_250_000_000_000_000,
                last_ts_ns=1_764_250_000_050_000_000,
                final=True,
                end_reason=ev.IDLE_TIMEOUT,
                community_id="1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
                interface="eth1",
                src_mac=bytes.fromhex("020000000001"),
                dst_mac=bytes.fromhex("020000000002"),
            )
        ),
        "snmp": _base(
            snmp=ev.SnmpSample(
                target="core-sw1",
                address="10.0.0.2:161",
                reachable=True,
                error="",
                system=ev.SnmpSystem(
                    descr="Switch",
                    object_id="1.3.6.1.4.1.9.1.1",
                    name="core-sw1",
                    contact="noc",
                    location="rack 4",
                    uptime_ticks=123456,
                ),
                interfaces=[
                    ev.SnmpInterface(
                        if_index=1,
                        name="Gi0/1",
                        descr="GigabitEthernet0/1",
                        alias="uplink",
                        type=6,
                        speed_bps=1_000_000_000,
                        admin_status=1,
                        oper_status=1,
                        phys_address=bytes.fromhex("001122334455"),
                        hc_counters=True,
                        in_octets=10,
                        out_octets=20,
                        in_ucast_pkts=1,
                        out_ucast_pkts=2,
                        in_multicast_pkts=3,
                        out_multicast_pkts=4,
                        in_broadcast_pkts=5,
                        out_broadcast_pkts=6,
                        in_errors=7,
                        out_errors=8,
                        in_discards=9,
                        out_discards=10,
                        in_bps=800.0,
                        out_bps=1600.0,
                        last_change_ticks=99,
                        counters_reset=True,
                    )
                ],
                cpu_load_percent=[5, 7],
                storage=[ev.SnmpStorage(index=1, descr="RAM", size_bytes=1024, used_bytes=512)],
                poll_seconds=0.125,
                agent_restarted=True,
                rate_interval_seconds=60.0,
            )
        ),
        "device": _base(
            device=ev.DeviceEvent(
                change=ev.DeviceEvent.IP_CHANGED,
                ip="192.168.1.20",
                mac=bytes.fromhex("3c22fb000001"),
                vendor="Apple, Inc.",
                hostname="laptop",
                seen_by=["arp_sweep", "dhcp"],
                previous_ip="192.168.1.19",
                previous_mac=bytes.fromhex("3c22fb000002"),
                mac_locally_administered=False,
                interface="eth0",
                first_seen_ns=1,
                last_seen_ns=2,
                dhcp_vendor_class="MSFT 5.0",
                open_tcp_ports=[22, 443],
            )
        ),
        "loss": _base(
            loss=ev.LossReport(
                what="packets",
                where="flow.capture",
                count=17,
                reason="kernel_drop",
                range_start=100,
                range_end=116,
                window_start_ns=1,
                window_end_ns=2,
            )
        ),
        "alert": _base(
            alert=ev.Alert(
                rule="bus.chain_fork",
                severity=ev.Alert.CRITICAL,
                summary="chain fork from agent-7",
                attributes={"sender": "agent-7"},
                related_event_ids=["0192a3b4-0000-7000-8000-000000000000"],
            )
        ),
        "audit": _base(
            audit=ev.AuditEvent(
                actor="admin",
                action="collector_stop",
                target="snmp",
                remote_addr="127.0.0.1",
                success=True,
                detail="from dashboard",
            )
        ),
        "heartbeat": _base(
            heartbeat=ev.Heartbeat(
                version="0.1.0",
                hostname="edge-1",
                mode="appliance",
                started_ns=1,
                uptime_seconds=60.0,
                collectors_running=3,
                python="3.11.7",
                outbox_lag_events=1500,
                outbox_lag_seconds=2.5,
                os="Linux 6.1.0-18-amd64 x86_64",
                addresses=["192.0.2.10", "2001:db8::10"],
                interval_seconds=60.0,
            )
        ),
    }


def bus_messages() -> dict[str, bytes]:
    """The bus wire messages, pinned the same way."""
    batch = bus_pb2.SignedBatch(
        sender="edge-1",
        key_id="0123456789abcdef",
        events=bus_pb2.EventList(events=[envelopes()["loss"]]).SerializeToString(deterministic=True),
        prev_digest=bytes(32),
        signature=bytes(range(64)),
    )
    ack = bus_pb2.PublishAck(
        status=bus_pb2.OK,
        accepted=9,
        duplicates=1,
        rejected=[bus_pb2.RejectedEvent(index=3, reason="missing event_id")],
        backoff_hint_ms=250,
        message="ok",
        digest=bytes(range(32)),
    )
    return {
        "bus_signed_batch": batch.SerializeToString(deterministic=True),
        "bus_publish_ack": ack.SerializeToString(deterministic=True),
    }


def all_golden() -> dict[str, bytes]:
    out = {f"envelope_{k}": e.SerializeToString(deterministic=True) for k, e in envelopes().items()}
    out.update(bus_messages())
    return out


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        return 2
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in all_golden().items():
        (GOLDEN_DIR / f"{name}.bin").write_bytes(data)
        print(f"wrote {name}.bin ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main(sys.argv[1:]))
