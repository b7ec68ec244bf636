"""The joined routes: one host (a source: the appliance or an agent) and one LAN device, each with what
several tables know about it. What no single collector shows on its own: a host's processes as a tree,
its exec stream, its flows (by the addresses its heartbeat reports) and its alerts; a device's inventory
rows, IP/MAC history, probe results, flows and top peers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import alerts as alert_queries
from amoskys.store.queries import history, joined
from amoskys.store.queries.names import address_names
from amoskys.store.queries.search import classify
from amoskys.web.endpoints import ApiError, Call, Router
from amoskys.web.flowview import present
from amoskys.web.routes.common import After, page

router = Router("joined")

#: flows, execs and alerts one host or device answer lists at most
JOINED_LIMIT = 50


class HostPath(msgspec.Struct, frozen=True):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="the source's name")]


class HostQuery(msgspec.Struct, frozen=True):
    before: After | None = None


class DevicePath(msgspec.Struct, frozen=True):
    key: Annotated[
        str, msgspec.Meta(min_length=1, max_length=100, description="the device's MAC (any spelling) or IP")
    ]


@router.get(
    "/api/v1/hosts/{source}",
    "One host (the appliance or an agent): its newest heartbeat, its process table as a parent→child "
    f"tree (at most {joined.MAX_PROCESSES} processes), a page of its exec stream (`before`: keyset), the "
    "newest flows of the addresses its heartbeat reports, and its alerts",
)
async def host(call: Call, *, path: HostPath, query: HostQuery) -> Any:
    reads, source = call.ctx.reads, path.source
    if not await joined.known(reads, source):
        raise ApiError(404, f"no source named {source!r} has events in the store")
    beat = await joined.heartbeat(reads, source)
    body = beat["body"] if beat else {}
    addresses = [str(a) for a in body.get("addresses", [])]
    procs = await joined.processes(reads, source)
    execs = await history.execs(reads, source=source, before=query.before, limit=JOINED_LIMIT)
    flows = await joined.flows_of(reads, addresses, limit=JOINED_LIMIT)
    names = await present(reads, flows)
    alerts, _ = await alert_queries.page(reads, state="any", host=source, limit=JOINED_LIMIT)
    return {
        "source": source,
        "hostname": str(body.get("hostname", "")),
        "mode": str(body.get("mode", "")),
        "os": str(body.get("os", "")),
        "version": str(body.get("version", "")),
        "addresses": addresses,
        "heartbeat_ns": beat["ts_ns"] if beat else None,
        "processes": joined.process_tree(procs),
        "processes_truncated": len(procs) >= joined.MAX_PROCESSES,
        "execs": page(execs, JOINED_LIMIT),
        "flows": flows,
        "names": names,
        "alerts": alerts,
    }


def macs_of(rows: list[dict[str, Any]]) -> list[bytes]:
    return sorted({bytes.fromhex(r["mac"].replace(":", "")) for r in rows if r["mac"]})


def device_key(key: str) -> tuple[bytes | None, str]:
    """(MAC, '') or (None, IP) from a device page's key; ApiError 400 when it is neither."""
    shape, value = classify(key)
    if shape == "mac":
        return bytes.fromhex(value.replace(":", "")), ""
    if shape == "ip":
        return None, value
    raise ApiError(400, f"path parameter 'key': {key!r} is neither a MAC nor an IP address")


@router.get(
    "/api/v1/devices/{key}",
    "One LAN device, by MAC or IP: its inventory rows (vendor, first and last seen), its IP/MAC history and "
    "probe results (from device events), the switch port it is behind (SNMP fdb profile), the newest flows "
    "of its addresses and its top peers",
)
async def device(call: Call, *, path: DevicePath) -> Any:
    reads = call.ctx.reads
    mac, ip = device_key(path.key)
    rows = await joined.devices_at(reads, mac=mac, ip=ip)
    macs = sorted(set(macs_of(rows)) | ({mac} if mac else set()))
    ips = sorted({r["ip"] for r in rows if r["ip"]} | ({ip} if ip else set()))
    hist = await joined.device_history(reads, macs, ips)
    moved = next((e["body"]["mac"] for e in hist if e["body"].get("mac")), "")
    if not rows and moved:  # an address it had before: the device is the MAC that had it
        rows = await joined.devices_at(reads, mac=bytes.fromhex(moved.replace(":", "")))
        ips = sorted(set(ips) | {r["ip"] for r in rows if r["ip"]})
        macs = sorted(set(macs) | set(macs_of(rows)))
    ports = await joined.switch_ports(reads, macs)
    if not rows and not hist and not ports:
        raise ApiError(404, f"no device known by {path.key!r}")
    latest = hist[0]["body"] if hist else {}
    flows = await joined.flows_of(reads, ips, limit=JOINED_LIMIT)
    names = await present(reads, flows)
    current_ip = rows[0]["ip"] if rows and rows[0]["ip"] else (ips[0] if ips else "")
    peers = await joined.top_peers(reads, current_ip) if current_ip else []
    return {
        "key": path.key,
        "mac": rows[0]["mac"] if rows else (mac.hex(":") if mac else ""),
        "ip": current_ip,
        "vendor": next((r["vendor"] for r in rows if r["vendor"]), ""),
        "hostname": next((r["hostname"] for r in rows if r["hostname"]), ""),
        "first_seen_ns": min((r["first_seen_ns"] for r in rows), default=None),
        "last_seen_ns": max((r["last_seen_ns"] for r in rows), default=None),
        "inventory": rows,
        "history": hist,
        "probe": {
            "open_tcp_ports": latest.get("open_tcp_ports", []),
            "seen_by": latest.get("seen_by", []),
            "dhcp_vendor_class": latest.get("dhcp_vendor_class", ""),
            "mac_locally_administered": bool(latest.get("mac_locally_administered", False)),
        },
        "switch_ports": ports,
        "flows": flows,
        "names": names,
        "peers": peers,
        "peer_names": await address_names(reads, [p["addr"] for p in peers]),
    }
