"""The dashboard's chart reads: one bounded statement per chart over the read model's time series
(amoskys.store.series), for a window of whole buckets of one step.

A window is `Window(first_ns, end_ns, step)`: the buckets from `first_ns` up to (not including) `end_ns`.
Every statement reads the window's buckets on the series tables' primary key (step, bucket_ns, ...), so
what it reads is bounded by the window's length times the sources (and, for flows, the capped
addresses per bucket), never by the event count. Values come back as stored sums per bucket: the
caller turns them into rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amoskys.store.queries.reader import Reader

#: sources one host chart draws at most (one line each)
HOST_SOURCES = 20

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Window:
    """The buckets of `step` seconds from `first_ns` (a bucket start) up to `end_ns` (exclusive)."""

    first_ns: int
    end_ns: int
    step: int

    @classmethod
    def ending_at(cls, now_ns: int, seconds: int, step: int) -> Window:
        """The `seconds // step` buckets up to and including the one holding `now_ns`."""
        span = step * _NS
        current = now_ns - now_ns % span
        return cls(current - (seconds // step - 1) * span, current + span, step)


_EVENTS_SQL = """
SELECT bucket_ns, kind, SUM(events) FROM series_events
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND (?4 OR synthetic = 0)
GROUP BY bucket_ns, kind ORDER BY bucket_ns, kind
"""

# private (RFC 1918), link-local and unique-local addresses: the site's side of a flow. The row of
# addresses beyond the per-bucket cap ('') has no address and is left out.
_LOCAL = (
    "(address GLOB '10.*' OR address GLOB '192.168.*' OR address GLOB '172.1[6-9].*' "
    "OR address GLOB '172.2[0-9].*' OR address GLOB '172.3[01].*' OR address GLOB '169.254.*' "
    "OR address GLOB '[fF][cCdD]*:*' OR address GLOB '[fF][eE][89aAbB]*:*')"
)

_BANDWIDTH_LOCAL_SQL = f"""
SELECT bucket_ns, SUM(rx_bytes), SUM(tx_bytes) FROM series_flow_addr
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND {_LOCAL}
GROUP BY bucket_ns ORDER BY bucket_ns
"""

_BANDWIDTH_ADDRESS_SQL = """
SELECT bucket_ns, SUM(rx_bytes), SUM(tx_bytes) FROM series_flow_addr
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND address = ?4
GROUP BY bucket_ns ORDER BY bucket_ns
"""

_EXECS_SQL = """
SELECT bucket_ns, SUM(execs), SUM(exits) FROM series_process
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND (?4 IS NULL OR source = ?4)
GROUP BY bucket_ns ORDER BY bucket_ns
"""

_HOST_SQL = """
SELECT bucket_ns, source, cpu_sum / samples, cpu_max, mem_used_sum / samples, mem_total_max
FROM series_host
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND samples > 0
  AND source IN (SELECT DISTINCT source FROM series_host
                 WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND (?4 IS NULL OR source = ?4)
                 ORDER BY source LIMIT ?5)
ORDER BY bucket_ns, source
"""

# the sources that poll `target` (snmp_targets), so every row read is on the primary key
_SNMP_SQL = """
SELECT bucket_ns, SUM(in_bps_sum) / SUM(samples), SUM(out_bps_sum) / SUM(samples),
       MAX(in_bps_max), MAX(out_bps_max)
FROM series_snmp_if
WHERE step = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3
  AND source IN (SELECT source FROM snmp_targets WHERE target = ?4) AND target = ?4 AND if_index = ?5
GROUP BY bucket_ns HAVING SUM(samples) > 0 ORDER BY bucket_ns
"""

_SNMP_IF_SQL = """
SELECT MAX(speed_bps), MAX(COALESCE(NULLIF(name, ''), descr)) FROM snmp_interfaces
WHERE source IN (SELECT source FROM snmp_targets WHERE target = ?1) AND target = ?1 AND if_index = ?2
"""


def _range(w: Window) -> tuple[int, int, int]:
    return (w.step, w.first_ns, w.end_ns)


async def events_by_kind(reader: Reader, w: Window, *, synthetic: bool) -> list[tuple[int, str, int]]:
    """(bucket_ns, kind, events) of every kind with events in the window; synthetic (loadgen) events
    only when `synthetic`."""
    rows = await reader.rows(_EVENTS_SQL, (*_range(w), 1 if synthetic else 0))
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


async def bandwidth(reader: Reader, w: Window, *, address: str | None) -> list[tuple[int, int, int]]:
    """(bucket_ns, bytes in, bytes out) per bucket: received and sent by `address`, or without one by
    the site's addresses (private, link-local and unique-local; traffic between two of them counts
    both ways)."""
    if address:
        rows = await reader.rows(_BANDWIDTH_ADDRESS_SQL, (*_range(w), address))
    else:
        rows = await reader.rows(_BANDWIDTH_LOCAL_SQL, _range(w))
    return [(int(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in rows]


async def execs(reader: Reader, w: Window, *, source: str | None) -> list[tuple[int, int, int]]:
    """(bucket_ns, execs, exits) per bucket, of every source or of `source`."""
    rows = await reader.rows(_EXECS_SQL, (*_range(w), source))
    return [(int(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in rows]


async def host(reader: Reader, w: Window, *, source: str | None) -> list[dict[str, Any]]:
    """Host metrics per bucket and source (`source`, or the first HOST_SOURCES by name): average and
    maximum CPU %, average memory used and the memory total, in bytes."""
    rows = await reader.rows(_HOST_SQL, (*_range(w), source, HOST_SOURCES))
    return [
        {
            "bucket_ns": int(r[0]),
            "source": str(r[1]),
            "cpu_percent": float(r[2]),
            "cpu_percent_max": float(r[3]),
            "memory_used_bytes": float(r[4]),
            "memory_total_bytes": int(r[5]),
        }
        for r in rows
    ]


async def snmp_interface(
    reader: Reader, w: Window, *, target: str, if_index: int
) -> tuple[list[tuple[int, float, float, float, float]], int | None, str]:
    """One interface's (bucket_ns, average in bit/s, average out bit/s, max in, max out) per bucket with
    a rated poll, its speed in bit/s (None: unknown or not polled) and its name."""
    rows = await reader.rows(_SNMP_SQL, (*_range(w), target, if_index))
    info = await reader.rows(_SNMP_IF_SQL, (target, if_index))
    speed, name = (info[0][0], info[0][1]) if info else (None, None)
    points = [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in rows]
    return points, int(speed) if speed else None, str(name or "")
