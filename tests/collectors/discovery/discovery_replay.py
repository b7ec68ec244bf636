"""Replay a discovery testcase: captured ARP and DHCP frames through the collector's passive path.

A case (``testcases/<case>/``) holds:

- ``input.pcap``: Ethernet frames (a pcap: ``tcpdump -w`` writes one; Wireshark opens it);
- ``oui.csv`` (optional): the vendor registry, rows cut from Debian's ieee-data (none: no vendors);
- ``config.toml`` (optional): a ``[collectors.discovery]`` section;
- ``expected.jsonl``: the reviewed output (see ``render``).

Each frame goes where the capture path puts it — the collector's ``PassiveWatch`` — and through the
collector's own ``drain`` (``arp.parse_frame``, ``dhcp.parse_frame``, what each tells about whom,
our own ARP frames left out) into its ``Inventory``, and ``flush`` publishes the events. Time is the
capture's: before each frame the inventory expires devices unseen for ``gone_after_seconds`` at that
frame's time (what the collector's periodic check does at its own time). The appliance's own MAC is
``APPLIANCE_MAC``.
"""

from __future__ import annotations

import json
import struct
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from amoskys.collectors.clock import FakeClock
from amoskys.collectors.discovery import arp, dhcp
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.discovery.oui import OuiRegistry
from amoskys.config import from_mapping
from amoskys.proto import events_pb2

from discovery_harness import make

CASES_DIR = Path(__file__).resolve().parent / "testcases"
REGENERATE = ".venv/bin/python tests/collectors/discovery/make_discovery_testcases.py --expected"
T0_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
APPLIANCE_MAC = bytes.fromhex("020000a0a0a0")
#: pcap magic → (byte order, ns per unit of the fraction)
PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
LINKTYPE_ETHERNET = 1


def cases() -> list[str]:
    return sorted(p.name for p in CASES_DIR.iterdir() if (p / "input.pcap").is_file())


def case_config(name: str) -> DiscoveryConfig:
    """The case's [collectors.discovery] settings (its config.toml over the defaults)."""
    path = CASES_DIR / name / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    return from_mapping(data, source=str(path)).collectors.discovery


def pcap_bytes(frames: list[tuple[int, bytes]]) -> bytes:
    """A little-endian, nanosecond pcap of Ethernet frames: (ts_ns, frame)."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET)]
    for ts_ns, frame in frames:
        out.append(
            struct.pack("<IIII", ts_ns // 1_000_000_000, ts_ns % 1_000_000_000, len(frame), len(frame))
        )
        out.append(frame)
    return b"".join(out)


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """(ts_ns, frame) of every record of an Ethernet pcap (either byte order, micro- or nanosecond
    times: ``pcap_bytes`` or ``tcpdump -w``)."""
    data = path.read_bytes()
    if data[:4] not in PCAP_MAGIC:
        raise ValueError(f"{path}: not a pcap file")
    order, scale = PCAP_MAGIC[data[:4]]
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected {LINKTYPE_ETHERNET} (Ethernet)")
    frames = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _length = struct.unpack_from(order + "IIII", data, offset)
        frames.append((seconds * 1_000_000_000 + fraction * scale, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return frames


def ip(raw: bytes) -> str:
    return ".".join(map(str, raw))


def parsed(frame: bytes) -> dict[str, Any]:
    """What the collector's parsers make of a frame (ARP first, as ``observe_frame`` tries them)."""
    packet = arp.parse_frame(frame)
    if packet is not None:
        return {
            "arp": {
                "op": packet.op,
                "sender": f"{packet.sender_mac.hex(':')} {ip(packet.sender_ip)}",
                "target": f"{packet.target_mac.hex(':')} {ip(packet.target_ip)}",
            }
        }
    info = dhcp.parse_frame(frame)
    if info is not None:
        fields = {"op": info.op, "message_type": info.message_type, "client_mac": info.client_mac.hex(":")}
        fields |= {"ip": ip(info.ip), "hostname": info.hostname, "vendor_class": info.vendor_class}
        return {"dhcp": fields}
    return {"ignored": "neither ARP nor DHCP"}


def event(envelope: events_pb2.Envelope) -> dict[str, Any]:
    """A DeviceEvent in the proto JSON mapping, MAC addresses as hex (the publisher's ids left out)."""
    body = json_format.MessageToDict(envelope.device, preserving_proto_field_name=True)
    for key in ("mac", "previous_mac"):
        if getattr(envelope.device, key):
            body[key] = getattr(envelope.device, key).hex(":")
    return {"ts_ns": envelope.ts_ns, "device": body}


async def replay(name: str) -> list[dict[str, Any]]:
    """One line per frame (what it parsed as, the events it caused), expiries between frames, then a
    summary of the inventory."""
    folder = CASES_DIR / name
    collector, sink = make(Path(tempfile.gettempdir()), case_config(name), clock=FakeClock(wall_ns=T0_NS))
    oui = folder / "oui.csv"
    collector.inventory.oui = OuiRegistry.load(oui) if oui.exists() else OuiRegistry()
    collector.port.mac = APPLIANCE_MAC
    lines: list[dict[str, Any]] = []
    kinds = {"arp": 0, "dhcp": 0, "ignored": 0}
    for number, (ts_ns, frame) in enumerate(read_pcap(folder / "input.pcap"), 1):
        expired = collector.inventory.expire(ts_ns)
        if expired:
            lines.append({"expired_at_ns": ts_ns, "events": [event(e) for e in expired]})
        before = len(sink)
        collector.watch.observe(ts_ns, frame, None)
        collector.drain()
        await collector.flush()
        what = parsed(frame)
        kinds[next(iter(what))] += 1
        lines.append({"frame": number, "ts_ns": ts_ns, **what, "events": [event(e) for e in sink[before:]]})
    devices = collector.inventory.devices.values()
    summary = {
        "frames": kinds,
        "present": sorted(d.mac.hex(":") for d in devices if d.present),
        "gone": sorted(d.mac.hex(":") for d in devices if not d.present),
    }
    return [*lines, {"summary": summary}]


def render(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


async def run_case(name: str) -> str:
    return render(await replay(name))
