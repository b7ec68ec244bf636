"""Global search over the read model: an IP address, a MAC, a host name, a process name, a user or a
Community ID, across devices, hosts (sources and their heartbeats), flows, the process table, the exec
history (process_history), SNMP targets and the audit log.

What the text looks like decides where to look (`classify`), and every statement is bounded: exact
matches run on an index (flows by address or Community ID, exec history by comm, audit by actor);
substring matches scan small tables (devices, processes, SNMP targets) with a LIMIT, or only the newest
HISTORY_WINDOW rows of the exec history.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Literal

from amoskys.store.queries import flows as flow_reads
from amoskys.store.queries import history, sources
from amoskys.store.queries.names import device_item, hosts
from amoskys.store.queries.reader import SYNTHETIC_SOURCE, Reader

Shape = Literal["ip", "mac", "community_id", "text"]

#: exec history rows a substring search looks through (the newest ones)
HISTORY_WINDOW = 20_000

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_COMMUNITY_ID = re.compile(r"^1:[A-Za-z0-9+/]{27}=$")

_DEVICE_COLUMNS = "ip, mac, hostname, vendor, source, device_key, present, last_seen_ns"


def classify(q: str) -> tuple[Shape, str]:
    """What `q` is, and its normal form: an IP address (compressed), a MAC (lower case, colons), a
    Community ID (as given), else text (lower case, for case-insensitive matching)."""
    text = q.strip()
    try:
        return "ip", str(ipaddress.ip_address(text))
    except ValueError:
        pass
    low = text.lower()
    if _MAC.match(low):
        digits = re.sub(r"[^0-9a-f]", "", low)
        return "mac", ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if _COMMUNITY_ID.match(text):
        return "community_id", text
    return "text", low


async def _devices_where(
    reader: Reader, where: str, params: tuple[Any, ...], limit: int
) -> list[dict[str, Any]]:
    sql = f"SELECT {_DEVICE_COLUMNS}, {SYNTHETIC_SOURCE} FROM devices WHERE {where} ORDER BY last_seen_ns DESC LIMIT ?"
    rows = await reader.rows(sql, (*params, limit))
    return [device_item(r) | {"synthetic": bool(r["synthetic"])} for r in rows]


_PROCESS_SQL = (
    f"SELECT source, pid, ppid, user, exe, argv, cpu_percent, rss_bytes, start_time_ns, {SYNTHETIC_SOURCE} "
    "FROM processes WHERE instr(lower(exe), ?1) OR lower(user) = ?1 ORDER BY source, pid LIMIT ?2"
)

_HISTORY_SQL = (  # by comm on process_history_comm (any age), or in the newest HISTORY_WINDOW rows
    "SELECT store_seq FROM (SELECT store_seq FROM process_history WHERE comm = ?1 ORDER BY ts_ns DESC LIMIT ?4) "
    "UNION SELECT store_seq FROM (SELECT store_seq, comm, exe, user FROM process_history "
    "ORDER BY ts_ns DESC LIMIT ?3) WHERE instr(lower(comm), ?2) OR instr(lower(exe), ?2) OR lower(user) = ?2"
)

_SNMP_SQL = (
    f"SELECT source, target, address, reachable, sys_name, sys_location, ts_ns, {SYNTHETIC_SOURCE} "
    "FROM snmp_targets WHERE {where} ORDER BY source, target LIMIT ?"
)

_AUDIT_SQL = (
    "SELECT store_seq, source, ts_ns, actor, action, target, remote_addr, success FROM audit "
    "WHERE actor = ? ORDER BY ts_ns DESC LIMIT ?"
)


async def _execs(reader: Reader, name: str, low: str, limit: int) -> list[dict[str, Any]]:
    """Exec and exit events whose comm is `name` (any age), or, among the newest HISTORY_WINDOW, whose
    comm or exe contains it or whose user is it; newest first."""
    seqs = await reader.rows(
        f"SELECT store_seq FROM ({_HISTORY_SQL}) ORDER BY store_seq DESC LIMIT ?4",
        (name, low, HISTORY_WINDOW, limit),
    )
    if not seqs:
        return []
    return await history.execs_by_seq(reader, [int(r[0]) for r in seqs])


async def search(reader: Reader, q: str, *, limit: int = 20) -> dict[str, Any]:
    """Up to `limit` matches of `q` per kind of thing."""
    shape, value = classify(q)
    out: dict[str, Any] = {
        "q": q,
        "as": shape,
        "devices": [],
        "hosts": [],
        "flows": [],
        "processes": [],
        "execs": [],
        "snmp": [],
        "audit": [],
    }
    if not value:
        return out
    if shape == "ip":
        out["devices"] = await _devices_where(reader, "ip = ?", (value,), limit)
        out["hosts"] = [h for h in await hosts(reader) if value in h["addresses"]][:limit]
        out["flows"] = await flow_reads.flows(reader, ip=value, limit=limit)
        where = "address = ? OR address LIKE ? OR address LIKE ?"
        rows = await reader.dicts(_SNMP_SQL.format(where=where), (value, f"{value}:%", f"[{value}]:%", limit))
        out["snmp"] = [r | {"synthetic": bool(r["synthetic"])} for r in rows]
    elif shape == "mac":
        out["devices"] = await _devices_where(
            reader, "mac = ?", (bytes.fromhex(value.replace(":", "")),), limit
        )
    elif shape == "community_id":
        out["flows"] = await flow_reads.flows(reader, community_id=value, limit=limit)
    else:
        where = "instr(lower(hostname), ?) OR instr(lower(vendor), ?)"
        out["devices"] = await _devices_where(reader, where, (value, value), limit)
        known = await hosts(reader)
        beating = {h["source"] for h in known}
        quiet = [  # sources with no recent heartbeat (loadgen, a relayed one): found by name alone
            {"source": name, "hostname": "", "mode": "", "addresses": []}
            for name in await sources.sources(reader)
            if name not in beating
        ]
        out["hosts"] = [
            h for h in known + quiet if value in h["source"].lower() or value in h["hostname"].lower()
        ][:limit]
        procs = await reader.dicts(_PROCESS_SQL, (value, limit))
        out["processes"] = [
            p | {"argv": json.loads(p["argv"]), "synthetic": bool(p["synthetic"])} for p in procs
        ]
        out["execs"] = await _execs(reader, q.strip(), value, limit)
        where = "instr(lower(target), ?) OR instr(lower(sys_name), ?)"
        rows = await reader.dicts(_SNMP_SQL.format(where=where), (value, value, limit))
        out["snmp"] = [r | {"synthetic": bool(r["synthetic"])} for r in rows]
        out["audit"] = await reader.dicts(_AUDIT_SQL, (q.strip(), limit))
    return out
