"""What the flow table emits (``FlowRecordData``, ``FlowLoss``) and their JSON and protobuf forms.

Records are plain Python objects, built only when the table emits one (never per packet); the
protobuf message is built only when a record is published, so ``amoskys flows read`` never pays
for it. JSON field names are documented in the flow README (section Events).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amoskys.proto import events_pb2

# IPFIX flowEndReason (IE 136), as in events.proto's FlowEndReason.
IDLE_TIMEOUT = 1
ACTIVE_TIMEOUT = 2
END_OF_FLOW = 3
FORCED_END = 4
LACK_OF_RESOURCES = 5

END_REASONS: dict[int, str] = {
    IDLE_TIMEOUT: "idle_timeout",
    ACTIVE_TIMEOUT: "active_timeout",
    END_OF_FLOW: "end_of_flow",
    FORCED_END: "forced_end",
    LACK_OF_RESOURCES: "lack_of_resources",
}

_TCP_FLAG_LETTERS = "FSRPAUEC"  # bit 0 (FIN) .. bit 7 (CWR)


@dataclass(slots=True)
class FlowRecordData:
    """One record of a bidirectional flow; counters are deltas since the flow's previous record.

    ``forward`` is the direction of the flow's first packet: ``src``/``src_port`` sent it. For ICMP the
    ports are the first packet's type and code. ``first_ts_ns``/``last_ts_ns`` are the times of the
    first and last packet counted in this record (both the flow's last packet time when a final
    record counts none). ``final`` is False on interim (active-timeout) records.
    """

    src: bytes
    dst: bytes
    src_port: int
    dst_port: int
    protocol: int
    vlan: int
    inner_vlan: int
    fwd_packets: int
    fwd_octets: int
    fwd_flags: int
    rev_packets: int
    rev_octets: int
    rev_flags: int
    first_ts_ns: int
    last_ts_ns: int
    final: bool
    end_reason: int
    community_id: str
    src_mac: bytes = b""
    dst_mac: bytes = b""
    interface: str = ""

    @property
    def ip_version(self) -> int:
        return 4 if len(self.src) == 4 else 6

    @property
    def src_addr(self) -> str:
        return ip_text(self.src)

    @property
    def dst_addr(self) -> str:
        return ip_text(self.dst)


@dataclass(slots=True, frozen=True)
class FlowLoss:
    """Flows the table ended early because it was full (``max_flows``), in a packet-time window.

    Their counters were not lost — each went out as a final record with end reason
    ``lack_of_resources`` — but each such flow is split in two records sets.
    """

    count: int
    window_start_ns: int
    window_end_ns: int


def ip_text(raw: bytes) -> str:
    """``10.0.0.1`` or the RFC 5952 text of an IPv6 address, from its 4 or 16 raw bytes."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def mac_text(raw: bytes) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw else None


def ts_text(ts_ns: int) -> str:
    """RFC 3339 UTC with all nine fractional digits: ``2026-01-02T03:04:05.123456789Z``."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def tcp_flags_text(flags: int) -> str:
    """Letters of the set TCP flags in the order ``FSRPAUEC`` (``SA`` for SYN+ACK), ``-`` for none."""
    return "".join(c for i, c in enumerate(_TCP_FLAG_LETTERS) if flags >> i & 1) or "-"


def to_json(rec: FlowRecordData) -> dict[str, Any]:
    """The documented JSON object of a record (``amoskys flows read --format jsonl``)."""
    return {
        "community_id": rec.community_id,
        "src_addr": rec.src_addr,
        "src_port": rec.src_port,
        "dst_addr": rec.dst_addr,
        "dst_port": rec.dst_port,
        "protocol": rec.protocol,
        "ip_version": rec.ip_version,
        "vlan": rec.vlan,
        "inner_vlan": rec.inner_vlan,
        "src_mac": mac_text(rec.src_mac),
        "dst_mac": mac_text(rec.dst_mac),
        "forward": {"packets": rec.fwd_packets, "octets": rec.fwd_octets, "tcp_flags": rec.fwd_flags},
        "reverse": {"packets": rec.rev_packets, "octets": rec.rev_octets, "tcp_flags": rec.rev_flags},
        "first_ts": ts_text(rec.first_ts_ns),
        "last_ts": ts_text(rec.last_ts_ns),
        "end_reason": END_REASONS[rec.end_reason],
        "final": rec.final,
        "interface": rec.interface or None,
    }


def to_envelope(rec: FlowRecordData) -> events_pb2.Envelope:
    """A FlowRecord envelope (not yet stamped) whose ``ts_ns`` is the record's last packet time."""
    envelope = events_pb2.Envelope(ts_ns=rec.last_ts_ns)
    body = envelope.flow
    body.src_addr = rec.src_addr
    body.dst_addr = rec.dst_addr
    body.src_port = rec.src_port
    body.dst_port = rec.dst_port
    body.protocol = rec.protocol
    body.vlan = rec.vlan
    body.inner_vlan = rec.inner_vlan
    body.ip_version = rec.ip_version
    fwd = body.forward
    fwd.packets = rec.fwd_packets
    fwd.octets = rec.fwd_octets
    fwd.tcp_flags = rec.fwd_flags
    rev = body.reverse
    rev.packets = rec.rev_packets
    rev.octets = rec.rev_octets
    rev.tcp_flags = rec.rev_flags
    body.first_ts_ns = rec.first_ts_ns
    body.last_ts_ns = rec.last_ts_ns
    body.final = rec.final
    # the stubs want a FlowEndReason member; protobuf stores the plain number, which is what we hold
    body.end_reason = rec.end_reason  # type: ignore[assignment]
    body.community_id = rec.community_id
    body.interface = rec.interface
    body.src_mac = rec.src_mac
    body.dst_mac = rec.dst_mac
    return envelope


def loss_envelope(loss: FlowLoss, *, where: str = "flow.table") -> events_pb2.Envelope:
    """A LossReport envelope (not yet stamped) for flows ended early by a full table."""
    return events_pb2.Envelope(
        ts_ns=loss.window_end_ns,
        loss=events_pb2.LossReport(
            what="flows",
            where=where,
            count=loss.count,
            reason="table_full",
            window_start_ns=loss.window_start_ns,
            window_end_ns=loss.window_end_ns,
        ),
    )


def kernel_loss_envelope(drops: int, window_start_ns: int, window_end_ns: int) -> events_pb2.Envelope:
    """A LossReport envelope (not yet stamped) for frames the kernel dropped because the capture
    ring was full (PACKET_STATISTICS), in a wall-clock window."""
    return events_pb2.Envelope(
        ts_ns=window_end_ns,
        loss=events_pb2.LossReport(
            what="packets",
            where="flow.capture",
            count=drops,
            reason="kernel_drop",
            window_start_ns=window_start_ns,
            window_end_ns=window_end_ns,
        ),
    )
