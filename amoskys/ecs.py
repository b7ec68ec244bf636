"""Elastic Common Schema (ECS 8.11) documents for stored events: flows, processes, devices, alerts.

One mapping per supported body kind; every other kind maps to None (the caller skips and counts it).
Used by `amoskys events export --format ecs`; the field list with its ECS types is pinned by
tests/fixtures/ecs_8_11_fields.csv. Documents are nested objects, as Elasticsearch and Filebeat's
ECS loggers write them; times are RFC 3339 with nanoseconds (ECS `date`, stored as `date_nanos` by
Elastic's templates); MACs in the RFC 7042 form ECS suggests (`02-00-00-00-00-77`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from amoskys.proto import events_pb2
from amoskys.store.export import rfc3339_ns

ECS_VERSION = "8.11.0"

#: IANA protocol numbers with an ECS `network.transport` name (lowercase, as ECS asks).
TRANSPORTS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "ipv6-icmp", 132: "sctp"}
_NO_PORTS = {1, 58}  # ICMP: the FlowRecord's ports carry type and code

_DEVICE_TYPES = {
    events_pb2.DeviceEvent.NEW: ["start"],
    events_pb2.DeviceEvent.IP_CHANGED: ["change"],
    events_pb2.DeviceEvent.MAC_CHANGED: ["change"],
    events_pb2.DeviceEvent.GONE: ["end"],
    events_pb2.DeviceEvent.SEEN: ["info"],
}
_PROCESS_TYPES = {
    events_pb2.ProcessEvent.EXEC: ("event", ["start"]),
    events_pb2.ProcessEvent.EXIT: ("event", ["end"]),
    events_pb2.ProcessEvent.SNAPSHOT: ("state", ["info"]),
}


def ecs_mac(raw: bytes) -> str:
    """A MAC as ECS suggests (RFC 7042): uppercase hex octets joined by hyphens."""
    return "-".join(f"{b:02X}" for b in raw)


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted ECS field in the nested document, leaving out empty values."""
    if value is None or value == "" or value == []:
        return
    *parents, leaf = dotted.split(".")
    node = doc
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def _unique(*values: str) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _flow(doc: dict[str, Any], flow: events_pb2.FlowRecord) -> None:
    _put(doc, "event.kind", "event")
    _put(doc, "event.category", ["network"])
    _put(doc, "event.type", ["connection", "end"] if flow.final else ["connection"])
    _put(doc, "event.action", "network_flow")
    if flow.first_ts_ns and flow.last_ts_ns:
        _put(doc, "event.start", rfc3339_ns(flow.first_ts_ns))
        _put(doc, "event.end", rfc3339_ns(flow.last_ts_ns))
        _put(doc, "event.duration", flow.last_ts_ns - flow.first_ts_ns)
    if flow.end_reason:
        _put(doc, "event.reason", events_pb2.FlowEndReason.Name(flow.end_reason).lower())
    ports = flow.protocol not in _NO_PORTS
    for side, addr, port, mac, counters in (
        ("source", flow.src_addr, flow.src_port, flow.src_mac, flow.forward),
        ("destination", flow.dst_addr, flow.dst_port, flow.dst_mac, flow.reverse),
    ):
        _put(doc, f"{side}.ip", addr)
        _put(doc, f"{side}.address", addr)
        if ports:
            _put(doc, f"{side}.port", port)
        if len(mac) == 6:
            _put(doc, f"{side}.mac", ecs_mac(mac))
        _put(doc, f"{side}.bytes", counters.octets)
        _put(doc, f"{side}.packets", counters.packets)
    _put(doc, "network.transport", TRANSPORTS.get(flow.protocol))
    _put(doc, "network.iana_number", str(flow.protocol))
    _put(doc, "network.type", {4: "ipv4", 6: "ipv6"}.get(flow.ip_version))
    _put(doc, "network.community_id", flow.community_id)
    _put(doc, "network.bytes", flow.forward.octets + flow.reverse.octets)
    _put(doc, "network.packets", flow.forward.packets + flow.reverse.packets)
    if flow.vlan:
        _put(doc, "network.vlan.id", str(flow.vlan))
    if flow.inner_vlan:
        _put(doc, "network.inner.vlan.id", str(flow.inner_vlan))
    _put(doc, "observer.ingress.interface.name", flow.interface)
    _put(doc, "related.ip", _unique(flow.src_addr, flow.dst_addr))


def _process(doc: dict[str, Any], proc: events_pb2.ProcessEvent) -> None:
    kind, types = _PROCESS_TYPES.get(proc.kind, ("event", ["info"]))
    _put(doc, "event.kind", kind)
    _put(doc, "event.category", ["process"])
    _put(doc, "event.type", types)
    _put(doc, "event.action", events_pb2.ProcessEvent.Kind.Name(proc.kind).lower())
    _put(doc, "process.pid", proc.pid)
    if proc.ppid:
        _put(doc, "process.parent.pid", proc.ppid)
    _put(doc, "process.executable", proc.exe)
    _put(doc, "process.name", os.path.basename(proc.exe))
    _put(doc, "process.args", list(proc.argv))
    if proc.argv:
        _put(doc, "process.args_count", len(proc.argv))
        _put(doc, "process.command_line", " ".join(proc.argv))
    if len(proc.exe_sha256) == 32:
        _put(doc, "process.hash.sha256", proc.exe_sha256.hex())
    _put(doc, "process.user.name", proc.user)
    if proc.user or proc.uid:
        _put(doc, "process.user.id", str(proc.uid))
    if proc.start_time_ns:
        _put(doc, "process.start", rfc3339_ns(proc.start_time_ns))
    if proc.kind == events_pb2.ProcessEvent.EXIT:
        _put(doc, "process.end", doc["@timestamp"])
    if proc.HasField("exit_code"):
        _put(doc, "process.exit_code", proc.exit_code)
    _put(doc, "container.id", proc.container_id)
    _put(doc, "host.name", doc["observer"]["name"])
    _put(doc, "related.user", _unique(proc.user))


def _device(doc: dict[str, Any], dev: events_pb2.DeviceEvent) -> None:
    _put(doc, "event.kind", "event")
    _put(doc, "event.category", ["host"])
    _put(doc, "event.type", _DEVICE_TYPES.get(dev.change, ["info"]))
    change = events_pb2.DeviceEvent.Change.Name(dev.change).lower()
    _put(doc, "event.action", f"device_{change}")
    _put(doc, "host.name", dev.hostname or dev.ip or (ecs_mac(dev.mac) if len(dev.mac) == 6 else ""))
    _put(doc, "host.hostname", dev.hostname)
    _put(doc, "host.ip", _unique(dev.ip))
    if len(dev.mac) == 6:
        _put(doc, "host.mac", [ecs_mac(dev.mac)])
    _put(doc, "observer.ingress.interface.name", dev.interface)
    _put(doc, "related.ip", _unique(dev.ip, dev.previous_ip))
    _put(doc, "related.hosts", _unique(dev.hostname))


def _alert(doc: dict[str, Any], alert: events_pb2.Alert) -> None:
    _put(doc, "event.kind", "alert")
    _put(doc, "event.category", ["intrusion_detection"])
    _put(doc, "event.type", ["info"])
    _put(doc, "event.action", alert.rule)
    if alert.level:  # Sigma's level: 1 informational .. 5 critical
        _put(doc, "event.severity", alert.level)
        _put(doc, "log.level", events_pb2.Alert.Level.Name(alert.level).removeprefix("LEVEL_").lower())
    elif alert.severity:  # an alert from before levels: its severity, 1 info .. 3 critical
        _put(doc, "event.severity", alert.severity)
        _put(doc, "log.level", events_pb2.Alert.Severity.Name(alert.severity).lower())
    _put(doc, "rule.id", alert.rule_id)
    _put(doc, "rule.name", alert.title or alert.rule)
    _put(doc, "message", alert.summary)
    _put(doc, "host.name", alert.host)
    if alert.tags:
        doc["tags"] = [*doc.get("tags", []), *alert.tags]
    if alert.attributes:
        doc.setdefault("labels", {}).update(sorted(alert.attributes.items()))


_MAPPINGS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "flow": _flow,
    "process": _process,
    "device": _device,
    "alert": _alert,
}

#: The body kinds with an ECS mapping.
SUPPORTED_KINDS: tuple[str, ...] = tuple(_MAPPINGS)


def document(
    envelope: events_pb2.Envelope, *, synthetic: bool = False, origin: str = ""
) -> dict[str, Any] | None:
    """The ECS document of one event, or None when its kind has no ECS mapping."""
    kind = envelope.WhichOneof("body")
    mapping = _MAPPINGS.get(kind or "")
    if mapping is None:
        return None
    doc: dict[str, Any] = {"@timestamp": rfc3339_ns(envelope.ts_ns)}
    _put(doc, "ecs.version", ECS_VERSION)
    _put(doc, "event.id", envelope.event_id)
    _put(doc, "event.module", "amoskys")
    _put(doc, "event.dataset", f"amoskys.{kind}")
    _put(doc, "event.sequence", envelope.source_seq)
    _put(doc, "observer.name", envelope.source)
    _put(doc, "observer.vendor", "AMOSKYS")
    _put(doc, "observer.product", "amoskys")
    if origin and origin != envelope.source:
        _put(doc, "labels.origin", origin)
    if synthetic:
        _put(doc, "tags", ["synthetic"])
    mapping(doc, getattr(envelope, kind or ""))
    return doc


def stored_event(row: Any) -> dict[str, Any] | None:
    """The ECS document of a StoredEvent (None: no mapping for its kind, or an unparsable envelope)."""
    if row.kind not in _MAPPINGS:
        return None
    try:
        envelope = events_pb2.Envelope.FromString(row.envelope)
    except DecodeError:
        return None
    return document(envelope, synthetic=bool(row.synthetic), origin=row.origin)
