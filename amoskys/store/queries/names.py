"""Who is behind an address: the LAN device the inventory knows at it (`devices`), and the source (the
appliance or an agent) whose newest heartbeat reports it. For naming the ends of a page of flows and for
search; every read is one bounded statement in the reader's thread."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from amoskys.store.queries.reader import Reader

#: sources whose heartbeats are read to map addresses to hosts
MAX_SOURCES = 500
#: devices one address lookup returns at most (the inventory is a LAN's: a scan of it is cheap)
MAX_DEVICES = 500

#: heartbeats looked through to map addresses to hosts: the newest ones (at one a minute per source,
#: 500 sources' last 10 minutes); a source silent for longer is not named
RECENT_HEARTBEATS = 5000

# the newest heartbeat of each source among the newest RECENT_HEARTBEATS, on events_kind
_RECENT_HEARTBEATS_SQL = """
SELECT e.source, amoskys_body_json(e.envelope) AS body FROM events e
WHERE e.store_seq IN (
    SELECT MAX(store_seq) FROM (
        SELECT store_seq, source FROM events WHERE kind = 'heartbeat' ORDER BY store_seq DESC LIMIT ?1
    ) GROUP BY source
)
ORDER BY e.source LIMIT ?2
"""

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
    """Each source with a heartbeat among the newest RECENT_HEARTBEATS: its newest one's host name, mode
    and addresses (bounded by the events_kind index, however many events each source has)."""
    out = []
    for r in await reader.rows(_RECENT_HEARTBEATS_SQL, (RECENT_HEARTBEATS, MAX_SOURCES)):
        body = json.loads(r["body"]) or {}
        out.append(
            {
                "source": r["source"],
                "hostname": str(body.get("hostname", "")),
                "mode": str(body.get("mode", "")),
                "addresses": [str(a) for a in body.get("addresses", [])],
            }
        )
    return out


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
