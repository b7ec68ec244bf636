"""Flow reads: recent records with search over the read model's `flows` table, and top talkers from
the time series.

Pages are newest first by observation time, keyed by (ts_ns, store_seq): every filter runs on an index
whose order is the page's (flows_ts, flows_src, flows_dst, flows_dport, flows_community), so a page
reads at most `limit` rows per index it uses, however many flows are stored.
"""

from __future__ import annotations

from typing import Any

from amoskys.proto import events_pb2
from amoskys.store.queries.reader import Reader, proto3
from amoskys.store.series import MINUTE_S

_END_REASONS = {v.number: v.name for v in events_pb2.FlowEndReason.DESCRIPTOR.values}

_COLUMNS = (
    "store_seq, source, origin, synthetic, ts_ns, first_ts_ns, last_ts_ns, protocol, ip_version, "
    "src_addr, src_port, dst_addr, dst_port, community_id, fwd_bytes, fwd_packets, rev_bytes, "
    "rev_packets, interface, vlan, final, end_reason"
)
#: the page's order, and the key `before` continues it from (the last item's row)
_ORDER = "ts_ns DESC, store_seq DESC"
_AFTER = "(ts_ns, store_seq) < (SELECT ts_ns, store_seq FROM flows WHERE store_seq = ?)"
_IDENTITY = "e.event_id, e.boot_id, e.source_seq, e.received_ns"


Clause = tuple[str, tuple[Any, ...]]


def _branch(clauses: list[Clause], before: int | None) -> tuple[str, list[Any]]:
    """One index-ordered SELECT of at most `limit` (the last parameter) rows."""
    if before is not None:
        clauses = [*clauses, (_AFTER, (before,))]
    sql = f"SELECT {_COLUMNS} FROM flows"
    if clauses:
        sql += " WHERE " + " AND ".join(c for c, _ in clauses)
    return f"SELECT * FROM ({sql} ORDER BY {_ORDER} LIMIT ?)", [v for _, values in clauses for v in values]


async def flows(
    reader: Reader,
    *,
    ip: str = "",
    port: int | None = None,
    community_id: str = "",
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to `limit` flow records, newest first (by ts_ns, then store_seq), that involve address `ip`
    (as source or destination), have destination port `port` and Community ID `community_id` (each
    when given); after the record with store_seq `before` in that order."""
    common: list[Clause] = []
    if port is not None:
        common.append(("dst_port = ?", (port,)))
    branches: list[list[Clause]]
    if community_id:
        common.insert(0, ("community_id = ?", (community_id,)))
        if ip:
            common.append(("(src_addr = ? OR dst_addr = ?)", (ip, ip)))
        branches = [common]
    elif ip:  # one index per end; a record with the address on both ends comes from the first only
        branches = [
            [("src_addr = ?", (ip,)), *common],
            [("dst_addr = ?", (ip,)), ("src_addr != ?", (ip,)), *common],
        ]
    else:
        branches = [common]
    parts, params = [], []
    for clauses in branches:
        sql, values = _branch(clauses, before)
        parts.append(sql)
        params += [*values, limit]
    union = " UNION ALL ".join(parts)
    sql = (
        f"SELECT f.*, {_IDENTITY} FROM ({union}) f JOIN events e ON e.store_seq = f.store_seq "
        "ORDER BY f.ts_ns DESC, f.store_seq DESC LIMIT ?"
    )
    rows = await reader.rows(sql, (*params, limit))
    return [flow_item(r) for r in rows]


def flow_item(r: Any) -> dict[str, Any]:
    """The API's object of one flow record: the event's identity, and the record as `body`."""
    return {
        "store_seq": r["store_seq"],
        "event_id": r["event_id"],
        "source": r["source"],
        "origin": r["origin"],
        "synthetic": bool(r["synthetic"]),
        "boot_id": r["boot_id"],
        "source_seq": r["source_seq"],
        "kind": "flow",
        "ts_ns": r["ts_ns"],
        "received_ns": r["received_ns"],
        "body": proto3(
            {
                "src_addr": r["src_addr"],
                "dst_addr": r["dst_addr"],
                "src_port": r["src_port"],
                "dst_port": r["dst_port"],
                "protocol": r["protocol"],
                "vlan": r["vlan"],
                "ip_version": r["ip_version"],
                "forward": {"packets": r["fwd_packets"], "octets": r["fwd_bytes"]},
                "reverse": {"packets": r["rev_packets"], "octets": r["rev_bytes"]},
                "first_ts_ns": r["first_ts_ns"],
                "last_ts_ns": r["last_ts_ns"],
                "final": bool(r["final"]),
                "end_reason": _END_REASONS.get(r["end_reason"], str(r["end_reason"]))
                if r["end_reason"]
                else None,
                "community_id": r["community_id"],
                "interface": r["interface"],
            }
        ),
    }


async def top_talkers(reader: Reader, *, since_ns: int, limit: int = 20) -> list[dict[str, Any]]:
    """Addresses by octets (sent and received) in the flows of real traffic since `since_ns`, most
    first, ties by address: the sum of the minute points of series_flow_addr (loadgen's flows are not
    in the series; an address beyond a minute's cap of named addresses is not listed). A flow counts for
    both its ends. It reads at most the window's minutes × sources × the cap rows, on the primary key,
    however many flows there were."""
    rows = await reader.rows(_TOP_SQL, (MINUTE_S, since_ns - since_ns % (MINUTE_S * 10**9), limit))
    return [{"addr": r[0], "octets": r[1], "packets": r[2]} for r in rows]


_TOP_SQL = (
    "SELECT address, SUM(tx_bytes + rx_bytes) AS octets, SUM(tx_packets + rx_packets) AS packets "
    "FROM series_flow_addr WHERE step = ? AND bucket_ns >= ? AND address != '' "
    "GROUP BY address ORDER BY octets DESC, address LIMIT ?"
)
