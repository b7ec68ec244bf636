"""Reads about the publishers themselves: which sources exist, each one's latest heartbeat, its recent
event rate, the fleet box it came through (a hub's), and the latest host metrics per source (for the
Agents and Host pages).

Every read is one bounded statement in the reader's thread. A source's latest heartbeat is found on the
(source, event_id) index, newest first (event ids are UUIDv7: time-ordered per publisher), so the walk
stops at that source's newest heartbeat and never crosses other sources' events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from amoskys.sources.origin import box_of
from amoskys.store.queries.reader import Reader

#: Minute points (series step) the rates and host views read.
MINUTE = 60
_NS = 1_000_000_000

_SOURCES_SQL = "SELECT DISTINCT source FROM source_marks ORDER BY source LIMIT ?"

# `+e.kind` keeps the planner off events_kind: the walk is on (source, event_id), newest first
_HEARTBEATS_SQL = """
WITH latest AS (
    SELECT j.value AS source,
           (SELECT e.store_seq FROM events e WHERE e.source = j.value AND +e.kind = 'heartbeat'
            ORDER BY e.event_id DESC LIMIT 1) AS seq
    FROM json_each(?1) j
)
SELECT l.source, e.ts_ns, e.received_ns, amoskys_body_json(e.envelope) AS body
FROM latest l JOIN events e ON e.store_seq = l.seq
"""

# each source's newest event on (source, event_id), newest first: the origin it last arrived through
_ORIGINS_SQL = """
SELECT j.value AS source,
       (SELECT e.origin FROM events e WHERE e.source = j.value ORDER BY e.event_id DESC LIMIT 1) AS origin
FROM json_each(?1) j
"""

_RATES_SQL = """
SELECT source, SUM(events) AS events FROM series_events
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND source IN (SELECT value FROM json_each(?4))
GROUP BY source
"""

_HOST_COLUMNS = (
    "source, bucket_ns, samples, cpu_sum / samples AS cpu_percent, cpu_max AS cpu_percent_max, "
    "mem_used_sum / samples AS memory_used_bytes, mem_total_max AS memory_total_bytes, "
    "swap_used_sum / samples AS swap_used_bytes, load1_sum / samples AS load1, load1_max"
)

# the window's minutes on the primary key (step, bucket_ns, ...): each source's newest one
_HOST_LATEST_SQL = f"""
SELECT {_HOST_COLUMNS} FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY source ORDER BY bucket_ns DESC) AS newest
    FROM series_host WHERE step = ?1 AND bucket_ns >= ?2 AND (?3 IS NULL OR source = ?3)
)
WHERE newest = 1 ORDER BY source LIMIT ?4
"""

_HOST_SERIES_SQL = f"""
SELECT {_HOST_COLUMNS} FROM series_host
WHERE step = ?1 AND source = ?2 AND bucket_ns >= ?3 ORDER BY bucket_ns
"""


async def sources(reader: Reader, *, limit: int = 1000) -> list[str]:
    """Every source with events in the store (the appliance itself, its agents, relayed ones), sorted."""
    return [str(r[0]) for r in await reader.rows(_SOURCES_SQL, (limit,))]


async def latest_heartbeats(reader: Reader, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The newest heartbeat of each of `names` that sent one: its `ts_ns`, `received_ns` and `body`
    (protobuf JSON, 64-bit counts as numbers)."""
    if not names:
        return {}
    rows = await reader.dicts(_HEARTBEATS_SQL, (json.dumps(list(names)),))
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        body = json.loads(r["body"]) or {}
        for key in ("outbox_lag_events", "started_ns"):  # int64/uint64: strings in protobuf JSON
            if key in body:
                body[key] = int(body[key])
        out[r["source"]] = {"ts_ns": r["ts_ns"], "received_ns": r["received_ns"], "body": body}
    return out


async def nats_boxes(reader: Reader, names: Sequence[str]) -> dict[str, list[str]]:
    """The fleet's boxes among the origins of `names` (a hub's: events taken from NATS are stored as
    from ``nats:<box>``), each with its sources, sorted; a source counts under the box its newest
    event came through."""
    if not names:
        return {}
    boxes: dict[str, list[str]] = {}
    for source, origin in await reader.rows(_ORIGINS_SQL, (json.dumps(list(names)),)):
        box = box_of(str(origin or ""))
        if box is not None:
            boxes.setdefault(box, []).append(str(source))
    return {box: sorted(found) for box, found in sorted(boxes.items())}


async def event_rates(
    reader: Reader, names: Sequence[str], now_ns: int, *, minutes: int = 5
) -> dict[str, float]:
    """Events per second each of `names` published over the last `minutes` whole minutes before
    `now_ns` (by observation time; synthetic ones included), from the minute series."""
    if not names:
        return {}
    end = now_ns - now_ns % (MINUTE * _NS)
    start = end - minutes * MINUTE * _NS
    rows = await reader.rows(_RATES_SQL, (MINUTE, start, end, json.dumps(list(names))))
    return {str(r[0]): round(int(r[1] or 0) / (minutes * MINUTE), 2) for r in rows}


async def host_latest(
    reader: Reader, since_ns: int, *, source: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Each source's (or one `source`'s) latest minute of host metrics since `since_ns`: averages over
    its samples, and the maxima of CPU and load. A source with no minute since then is left out."""
    since = since_ns - since_ns % (MINUTE * _NS)
    return await reader.dicts(_HOST_LATEST_SQL, (MINUTE, since, source, limit))


async def host_series(reader: Reader, source: str, since_ns: int) -> list[dict[str, Any]]:
    """One source's minute points of host metrics since `since_ns`, oldest first."""
    return await reader.dicts(_HOST_SERIES_SQL, (MINUTE, source, since_ns - since_ns % (MINUTE * _NS)))
