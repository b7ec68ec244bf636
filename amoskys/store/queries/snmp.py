"""SNMP reads: polled targets, a page of one target's interfaces, and one interface's rate series.

An agent may report tens of thousands of interfaces: no read here returns all of them. Interfaces are
paged in (source, if_index) order on the table's primary key; rates come from the per-minute series
(series_snmp_if) by primary-key lookups, one per minute asked for.
"""

from __future__ import annotations

import json
from typing import Any

from amoskys.store.queries.reader import SYNTHETIC_SOURCE, Reader

MINUTE_NS = 60 * 10**9


async def targets(reader: Reader, *, limit: int = 500) -> list[dict[str, Any]]:
    """Polled targets with their latest state, by source then target (at most `limit`); `synthetic`
    when a loadgen identity reported them."""
    rows = await reader.dicts(
        f"SELECT *, {SYNTHETIC_SOURCE} FROM snmp_targets ORDER BY source, target LIMIT ?", (limit,)
    )
    for r in rows:
        r["synthetic"] = bool(r["synthetic"])
    return rows


async def interfaces(
    reader: Reader,
    *,
    target: str,
    after: tuple[str, int] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Up to `limit` interfaces of `target` (its latest values), by source then if_index, after
    (source, if_index) `after`."""
    sql = (  # the sources that poll `target` (snmp_targets), so every row read is on the primary key
        "SELECT * FROM snmp_interfaces WHERE source IN (SELECT source FROM snmp_targets WHERE target = ?) "
        "AND target = ?"
    )
    params: tuple[Any, ...] = (target, target)
    if after is not None:
        sql += " AND (source, target, if_index) > (?, ?, ?)"  # the primary key's order
        params += (after[0], target, after[1])
    return await reader.dicts(sql + " ORDER BY source, target, if_index LIMIT ?", (*params, limit))


async def rates(
    reader: Reader, *, target: str, if_index: int, now_ns: int, minutes: int = 120
) -> list[dict[str, Any]]:
    """Per-minute average in/out bit rates of one interface over the last `minutes` minutes, oldest
    first (minutes without a rated poll are left out)."""
    last = now_ns - now_ns % MINUTE_NS
    buckets = json.dumps([last - i * MINUTE_NS for i in range(minutes)])
    sql = (
        "SELECT bucket_ns, SUM(samples) AS n, SUM(in_bps_sum) AS i, SUM(out_bps_sum) AS o "
        "FROM series_snmp_if WHERE step = 60 AND bucket_ns IN (SELECT value FROM json_each(?)) "
        "AND source IN (SELECT source FROM snmp_targets WHERE target = ?) AND target = ? AND if_index = ? "
        "GROUP BY bucket_ns HAVING n > 0 ORDER BY bucket_ns"
    )
    rows = await reader.rows(sql, (buckets, target, target, if_index))
    return [{"ts_ns": r[0], "in_bps": r[2] / r[1], "out_bps": r[3] / r[1]} for r in rows]
