"""Reads for the joined pages: one host (a source: the appliance or an agent) and one LAN device, each
gathered from several tables. Every read is one bounded statement in the reader's thread; protobuf
bodies are decoded there too (the SQL function amoskys_body_json), never on the event loop."""

from __future__ import annotations

import base64
import json
from typing import Any

from amoskys.store.queries import flows as flow_queries
from amoskys.store.queries.names import device_item
from amoskys.store.queries.reader import Reader

#: heartbeats looked through for a source's newest (at one a minute, 100 sources' last 3 hours)
HEARTBEAT_WINDOW = 20_000
#: rows of a host's process table read at most (its tree is built from them)
MAX_PROCESSES = 500
#: addresses of a host whose flows are read (a heartbeat's list; more are left out)
MAX_HOST_ADDRESSES = 8
#: device events looked through for one device's history: the newest ones, on events_kind
DEVICE_EVENTS_WINDOW = 20_000
#: history entries one device page shows at most
MAX_HISTORY = 200
#: flows of a device looked through for its top peers (the newest of each end)
PEER_WINDOW = 5000

_PROCESSES_SQL = (
    "SELECT pid, ppid, exe, argv, user, start_time_ns, cpu_percent, rss_bytes, last_ts_ns FROM processes "
    "WHERE source = ? ORDER BY pid LIMIT ?"
)

# the source's newest among the newest HEARTBEAT_WINDOW heartbeats (events_kind): bounded however many
# other events the source has (a loadgen source has millions and no heartbeat)
_HEARTBEAT_SQL = """
SELECT ts_ns, amoskys_body_json(envelope) AS body FROM events WHERE store_seq = (
    SELECT MAX(store_seq) FROM (
        SELECT store_seq, source FROM events WHERE kind = 'heartbeat' ORDER BY store_seq DESC LIMIT ?2
    ) WHERE source = ?1
)
"""

_DEVICES_SQL = (
    "SELECT ip, mac, hostname, vendor, source, device_key, present, last_seen_ns, first_seen_ns, interface, "
    "last_change FROM devices WHERE {where} ORDER BY last_seen_ns DESC LIMIT 50"
)

# the newest device events (events_kind index), their bodies decoded in the reader's thread, and of
# those the ones naming this MAC or address (now or before)
_HISTORY_SQL = """
SELECT store_seq, source, ts_ns, body FROM (
    SELECT store_seq, source, ts_ns, amoskys_body_json(envelope) AS body FROM events
    WHERE kind = 'device' ORDER BY store_seq DESC LIMIT ?1
)
WHERE json_extract(body, '$.mac') IN (SELECT value FROM json_each(?2))
   OR json_extract(body, '$.previous_mac') IN (SELECT value FROM json_each(?2))
   OR json_extract(body, '$.ip') IN (SELECT value FROM json_each(?3))
   OR json_extract(body, '$.previous_ip') IN (SELECT value FROM json_each(?3))
ORDER BY store_seq DESC LIMIT ?4
"""

# bytes exchanged with each peer over the newest PEER_WINDOW flows of each end of the address
_PEERS_SQL = """
SELECT peer, SUM(bytes) AS octets, SUM(packets) AS packets, COUNT(*) AS flows FROM (
    SELECT * FROM (SELECT dst_addr AS peer, fwd_bytes + rev_bytes AS bytes,
                          fwd_packets + rev_packets AS packets
                   FROM flows WHERE src_addr = ?1 ORDER BY ts_ns DESC LIMIT ?2)
    UNION ALL
    SELECT * FROM (SELECT src_addr AS peer, fwd_bytes + rev_bytes AS bytes,
                          fwd_packets + rev_packets AS packets
                   FROM flows WHERE dst_addr = ?1 AND src_addr != ?1 ORDER BY ts_ns DESC LIMIT ?2)
)
GROUP BY peer ORDER BY octets DESC, peer LIMIT ?3
"""


# the switch ports a MAC is behind (snmp_fdb, the SNMP fdb profile), the port with the fewest MACs (the
# edge port, not an uplink) first
_PORTS_SQL = """
SELECT f.source, f.target, f.vlan, f.port, f.if_index, f.if_name, f.status, f.ts_ns,
       COALESCE(t.sys_name, '') AS sys_name,
       (SELECT COUNT(*) FROM snmp_fdb g
        WHERE g.source = f.source AND g.target = f.target AND g.port = f.port) AS macs_on_port
FROM snmp_fdb f LEFT JOIN snmp_targets t ON t.source = f.source AND t.target = f.target
WHERE f.mac = ? ORDER BY macs_on_port, f.ts_ns DESC LIMIT 20
"""


# ---------------------------------------------------------------------- a host
async def known(reader: Reader, source: str) -> bool:
    """Whether `source` has events in the store."""
    return bool(await reader.rows("SELECT 1 FROM source_marks WHERE source = ? LIMIT 1", (source,)))


async def heartbeat(reader: Reader, source: str) -> dict[str, Any] | None:
    """The source's newest heartbeat among the newest HEARTBEAT_WINDOW: `ts_ns` and its body (protobuf
    JSON), or None."""
    rows = await reader.rows(_HEARTBEAT_SQL, (source, HEARTBEAT_WINDOW))
    if not rows:
        return None
    return {"ts_ns": rows[0]["ts_ns"], "body": json.loads(rows[0]["body"]) or {}}


async def processes(reader: Reader, source: str, *, limit: int = MAX_PROCESSES) -> list[dict[str, Any]]:
    """Up to `limit` rows of the source's current process table, by pid."""
    rows = await reader.dicts(_PROCESSES_SQL, (source, limit))
    for r in rows:
        r["argv"] = json.loads(r["argv"]) if r["argv"] else []
    return rows


def process_tree(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in tree order (each parent before its children, children by pid), each with `depth`; a
    process whose parent is not among the rows is a root. Pid cycles (pid reuse) cannot loop: a row
    is placed once."""
    by_pid = {r["pid"]: r for r in rows}
    children: dict[int, list[dict[str, Any]]] = {}
    roots = []
    for r in sorted(rows, key=lambda r: r["pid"]):
        parent = r["ppid"]
        if parent in by_pid and parent != r["pid"]:
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[dict[str, Any]] = []
    placed: set[int] = set()
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        row, depth = stack.pop()
        if row["pid"] in placed:
            continue
        placed.add(row["pid"])
        kids = children.get(row["pid"], [])
        out.append(row | {"depth": depth, "children": len(kids)})
        stack.extend((k, depth + 1) for k in reversed(kids))
    # rows only reachable through a cycle: shown at the top level, not lost
    out.extend(r | {"depth": 0, "children": 0} for r in rows if r["pid"] not in placed)
    return out


async def flows_of(reader: Reader, addresses: list[str], *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` flow records with any of `addresses` (at most MAX_HOST_ADDRESSES) at either
    end, newest first."""
    items: dict[int, dict[str, Any]] = {}
    for addr in addresses[:MAX_HOST_ADDRESSES]:
        for item in await flow_queries.flows(reader, ip=addr, limit=limit):
            items[item["store_seq"]] = item
    ordered = sorted(items.values(), key=lambda i: (i["ts_ns"], i["store_seq"]), reverse=True)
    return ordered[:limit]


# ---------------------------------------------------------------------- a device
async def devices_at(reader: Reader, *, mac: bytes | None = None, ip: str = "") -> list[dict[str, Any]]:
    """The inventory rows (any source) with this MAC, else at this address, most recently seen first."""
    if mac is not None:
        rows = await reader.rows(_DEVICES_SQL.format(where="mac = ?"), (mac,))
    else:
        rows = await reader.rows(_DEVICES_SQL.format(where="ip = ?"), (ip,))
    return [
        device_item(r)
        | {"first_seen_ns": r["first_seen_ns"], "interface": r["interface"], "last_change": r["last_change"]}
        for r in rows
    ]


async def device_history(reader: Reader, macs: list[bytes], ips: list[str]) -> list[dict[str, Any]]:
    """The device events naming any of `macs` or `ips` (as now or before), newest first, among the
    newest DEVICE_EVENTS_WINDOW device events: each one's time, source and body (MACs as hex)."""
    b64 = [base64.b64encode(m).decode() for m in macs]
    rows = await reader.rows(
        _HISTORY_SQL, (DEVICE_EVENTS_WINDOW, json.dumps(b64), json.dumps(ips), MAX_HISTORY)
    )
    out = []
    for r in rows:
        body = json.loads(r["body"]) or {}
        for key in ("mac", "previous_mac"):
            if body.get(key):
                body[key] = base64.b64decode(body[key]).hex(":")
        out.append({"store_seq": r["store_seq"], "source": r["source"], "ts_ns": r["ts_ns"], "body": body})
    return out


async def top_peers(reader: Reader, ip: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The addresses `ip` exchanged most bytes with, over its newest PEER_WINDOW flows of each end."""
    rows = await reader.rows(_PEERS_SQL, (ip, PEER_WINDOW, limit))
    return [{"addr": r[0], "octets": r[1], "packets": r[2], "flows": r[3]} for r in rows]


async def switch_ports(reader: Reader, macs: list[bytes]) -> list[dict[str, Any]]:
    """Where SNMP saw each of `macs` in a bridge forwarding table: the target, its port, interface and
    VLAN, and how many MACs that port has (1: an edge port; many: an uplink), edge ports first."""
    out: list[dict[str, Any]] = []
    for mac in macs[:4]:
        for r in await reader.dicts(_PORTS_SQL, (mac,)):
            out.append(r | {"mac": mac.hex(":")})
    return out
