"""Who is behind an address: the LAN device the inventory knows at it (`devices`), and the source (the
appliance or an agent) whose newest heartbeat reports it. For naming the ends of a page of flows and for
search; every read is one bounded statement in the reader's thread."""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from amoskys.store.queries.reader import Reader

#: sources whose heartbeats are read to map addresses to hosts
MAX_SOURCES = 500
#: devices one address lookup returns at most (the inventory is a LAN's: a scan of it is cheap)
MAX_DEVICES = 500

#: heartbeats looked through at most in one refresh (the first one, or after a burst): the newest ones
RECENT_HEARTBEATS = 5000
#: a source whose newest heartbeat is this much older than the newest of any source is no longer named
HOST_SILENT_NS = 600 * 10**9

# the newest heartbeat of each source among the newest RECENT_HEARTBEATS committed after ?1, on
# events_kind: a refresh reads only what arrived since the last one
_NEW_HEARTBEATS_SQL = """
SELECT e.store_seq, e.source, e.received_ns, amoskys_body_json(e.envelope) AS body FROM events e
WHERE e.store_seq IN (
    SELECT MAX(store_seq) FROM (
        SELECT store_seq, source FROM events WHERE kind = 'heartbeat' AND store_seq > ?1
        ORDER BY store_seq DESC LIMIT ?2
    ) GROUP BY source
)
ORDER BY e.store_seq DESC LIMIT ?3
"""


@dataclass
class _Hosts:
    """One reader's view of the sources' newest heartbeats, and the store_seq it has read up to."""

    after_seq: int = 0
    newest: dict[str, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)  # (seq, received, host)


#: per reader (per open store): a page of flows names its addresses on every request, and re-reading the
#: newest heartbeats each time grew with the heartbeats a busy box receives (loadgen's: ~700/s)
_HOSTS: weakref.WeakKeyDictionary[Reader, _Hosts] = weakref.WeakKeyDictionary()

_DEVICES_AT_SQL = (
    "SELECT ip, mac, hostname, vendor, source, device_key, present, last_seen_ns FROM devices "
    "WHERE ip IN (SELECT value FROM json_each(?1)) ORDER BY last_seen_ns DESC LIMIT ?2"
)


def device_item(r: Any) -> dict[str, Any]:
    mac = r["mac"]
    return {
        "ip": r["ip"],
        "mac": mac.hex(":") if isinstance(mac, bytes) else str(mac or ""),
        "hostname": r["hostname"],
        "vendor": r["vendor"],
        "source": r["source"],
        "device_key": r["device_key"],
        "present": bool(r["present"]),
        "last_seen_ns": r["last_seen_ns"],
    }


async def hosts(reader: Reader) -> list[dict[str, Any]]:
    """Each source whose newest heartbeat is within HOST_SILENT_NS of the newest of all (at most
    MAX_SOURCES, the most recently heard): its host name, mode and addresses. Only the heartbeats
    committed since the reader's last call are read (bounded by the events_kind index)."""
    known = _HOSTS.get(reader)
    if known is None:
        known = _HOSTS[reader] = _Hosts()
    rows = await reader.rows(_NEW_HEARTBEATS_SQL, (known.after_seq, RECENT_HEARTBEATS, MAX_SOURCES))
    for r in rows:
        seq, source = int(r["store_seq"]), r["source"]
        if seq <= known.newest.get(source, (0, 0, {}))[0]:
            continue  # a concurrent refresh already took a newer one
        body = json.loads(r["body"]) or {}
        known.newest[source] = (
            seq,
            int(r["received_ns"]),
            {
                "source": source,
                "hostname": str(body.get("hostname", "")),
                "mode": str(body.get("mode", "")),
                "addresses": [str(a) for a in body.get("addresses", [])],
            },
        )
        known.after_seq = max(known.after_seq, seq)
    if not known.newest:
        return []
    latest = max(received for _, received, _ in known.newest.values())
    heard = sorted(known.newest.items(), key=lambda kv: kv[1][1], reverse=True)
    known.newest = {
        source: entry for source, entry in heard[:MAX_SOURCES] if entry[1] >= latest - HOST_SILENT_NS
    }
    return sorted((entry[2] for entry in known.newest.values()), key=lambda h: str(h["source"]))


async def address_names(reader: Reader, addresses: Iterable[str]) -> dict[str, dict[str, Any]]:
    """For each of `addresses` that has one: `host` (the source whose heartbeat reports it, and its host
    name) and `device` (the most recently seen inventory device at it)."""
    wanted = sorted({a for a in addresses if a})
    if not wanted:
        return {}
    out: dict[str, dict[str, Any]] = {}
    rows = await reader.rows(_DEVICES_AT_SQL, (json.dumps(wanted), MAX_DEVICES))
    for r in rows:
        out.setdefault(r["ip"], {}).setdefault("device", device_item(r))
    want = set(wanted)
    for h in await hosts(reader):
        for addr in h["addresses"]:
            if addr in want:
                out.setdefault(addr, {}).setdefault(
                    "host", {"source": h["source"], "hostname": h["hostname"]}
                )
    return out
