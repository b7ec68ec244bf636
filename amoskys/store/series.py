"""The time series of the read model: the dashboard's charts, as points the writer keeps.

Every series table is keyed by (step, bucket_ns, ...): `step` is 60 (minute points) or 900 (quarter-hour
points), `bucket_ns` the start of the bucket. The writer adds each committed event to both steps in the
same transaction as the event (the rollup happens at write time, so a quarter point always equals the
sum of its minute points while both are kept; a batch sums its events per minute point and folds those
into the quarter points); the space ladder deletes minute points after
`[store] series_minute_hours` and quarter points after `series_quarter_days` (`delete_expired`).

An event's bucket time is min(ts_ns, received_ns): a publisher whose clock runs ahead cannot make
points that outlive their retention. Synthetic (loadgen) events count in `series_events` (with
`synthetic` in the key) and nowhere else.

Bounded under a scan: per (step, bucket, source) at most ADDRESS_CAP addresses (INTERFACE_CAP
interfaces) get their own flow row, admitted first come in store_seq order; the bytes of any later
new address go to the row whose address (interface) is '' — "other". The admission is decided in SQL
against what is stored (series_names counts the named points, kept by triggers), so it holds across
transactions and backfill chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiosqlite

from amoskys.proto import events_pb2

MINUTE_S, QUARTER_S = 60, 900
STEPS = (MINUTE_S, QUARTER_S)
#: Addresses with their own flow row per (step, bucket, source); the rest add to address ''.
ADDRESS_CAP = 256
#: Interfaces with their own flow row per (step, bucket, source); the rest add to interface ''.
INTERFACE_CAP = 64
#: Buckets (of one step) deleted per retention transaction.
DELETE_CHUNK_BUCKETS = 60

_NS = 1_000_000_000
_INT64_MAX = (1 << 63) - 1


def bucket_of(t_ns: int, step: int) -> int:
    """The start of the `step`-second bucket holding `t_ns` (floor, also for times before 1970)."""
    span = step * _NS
    return t_ns - t_ns % span


def _clamp(value: int | float) -> int | float:
    """An integer sum for an SQLite INTEGER column: beyond 2**63-1 it is stored as REAL."""
    return value if value <= _INT64_MAX else float(value)


class _Table:
    """One series table: its key and value columns, and how each value combines ('sum' or 'max')."""

    def __init__(self, name: str, key: tuple[str, ...], values: tuple[tuple[str, str], ...]) -> None:
        self.name = name
        self.key = ("step", "bucket_ns", *key)
        self.values = values
        cols = [*self.key, *(v for v, _ in values)]
        combine = ", ".join(
            f"{v} = {v} + excluded.{v}" if how == "sum" else f"{v} = MAX({v}, excluded.{v})"
            for v, how in values
        )
        self.upsert = (
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {combine}"
        )


EVENTS = _Table("series_events", ("source", "kind", "synthetic"), (("events", "sum"), ("bytes", "sum")))
PROCESS = _Table("series_process", ("source",), (("execs", "sum"), ("exits", "sum")))
HOST = _Table(
    "series_host",
    ("source",),
    (
        ("samples", "sum"),
        ("cpu_sum", "sum"),
        ("cpu_max", "max"),
        ("mem_used_sum", "sum"),
        ("mem_total_max", "max"),
        ("swap_used_sum", "sum"),
        ("load1_sum", "sum"),
        ("load1_max", "max"),
    ),
)
SNMP_IF = _Table(
    "series_snmp_if",
    ("source", "target", "if_index"),
    (
        ("samples", "sum"),
        ("in_bps_sum", "sum"),
        ("out_bps_sum", "sum"),
        ("in_bps_max", "max"),
        ("out_bps_max", "max"),
    ),
)
FLOW_ADDR = _Table(
    "series_flow_addr",
    ("source", "address"),
    (
        ("flows", "sum"),
        ("tx_bytes", "sum"),
        ("rx_bytes", "sum"),
        ("tx_packets", "sum"),
        ("rx_packets", "sum"),
    ),
)
FLOW_IFACE = _Table(
    "series_flow_iface", ("source", "interface"), (("flows", "sum"), ("bytes", "sum"), ("packets", "sum"))
)
TABLES = (EVENTS, PROCESS, HOST, SNMP_IF, FLOW_ADDR, FLOW_IFACE)


def _capped(table: _Table, column: str, cap: int) -> str:
    """The upsert of a capped table: a row's values go to its own point when that point exists or
    the bucket has room (fewer than `cap` named points, as series_names counts them), else to the ''
    point ("other"). executemany runs it row by row, so admission is first come in row order."""
    values = [v for v, _ in table.values]
    rest = ", ".join(f"?{i}" for i in range(5, 5 + len(values)))
    combine = ", ".join(f"{v} = {v} + excluded.{v}" for v in values)
    return (
        f"INSERT INTO {table.name} (step, bucket_ns, source, {column}, {', '.join(values)}) "
        f"SELECT ?1, ?2, ?3, CASE WHEN ?4 = '' "
        f"OR COALESCE((SELECT names FROM series_names WHERE step = ?1 AND bucket_ns = ?2 AND source = ?3 "
        f"AND tbl = '{table.name}'), 0) < {cap:d} "
        f"OR EXISTS (SELECT 1 FROM {table.name} WHERE step = ?1 AND bucket_ns = ?2 AND source = ?3 "
        f"AND {column} = ?4) THEN ?4 ELSE '' END, {rest} WHERE true "
        f"ON CONFLICT (step, bucket_ns, source, {column}) DO UPDATE SET {combine}"
    )


_ADDR_UPSERT = _capped(FLOW_ADDR, "address", ADDRESS_CAP)
_IFACE_UPSERT = _capped(FLOW_IFACE, "interface", INTERFACE_CAP)
#: Every table with points to expire (series_names counts the capped tables' named points).
EXPIRING = (*(t.name for t in TABLES), "series_names")

Points = dict[tuple[Any, ...], list[Any]]


_MINUTE_NS, _QUARTER_NS = MINUTE_S * _NS, QUARTER_S * _NS


def _sum(points: Points, key: tuple[Any, ...], values: tuple[Any, ...]) -> None:
    point = points.get(key)
    if point is None:
        points[key] = list(values)
    else:
        for i, v in enumerate(values):
            point[i] += v


def _rows(table: _Table, points: Points) -> list[tuple[Any, ...]]:
    """The rows of a batch's minute points and of the quarter points they fold into. Quarter keys
    come in the order of their first minute key, which is the store_seq order of their first event:
    the capped tables' first-come admission is the same as if each event had been added to both."""
    ops = [how == "max" for _, how in table.values]
    rows = [(MINUTE_S, *key, *map(_clamp, point)) for key, point in points.items()]
    quarters: Points = {}
    for key, point in points.items():
        qkey = (key[0] - key[0] % _QUARTER_NS, *key[1:])
        q = quarters.get(qkey)
        if q is None:
            quarters[qkey] = list(point)
            continue
        for i, v in enumerate(point):
            q[i] = (v if v > q[i] else q[i]) if ops[i] else q[i] + v
    rows += [(QUARTER_S, *key, *map(_clamp, point)) for key, point in quarters.items()]
    return rows


class SeriesBatch:
    """The series points of one writer transaction, summed per key (insertion order = store_seq
    order of each key's first event, which the capped tables' first-come admission relies on).
    Each method takes the event's point time `t_ns` and adds it to its minute point; the quarter
    points are folded from the minute points when the statements are made (one key per event, not
    one per step)."""

    __slots__ = ("_addr", "_events", "_host", "_iface", "_process", "_snmp")

    def __init__(self) -> None:
        self._events: Points = {}
        self._process: Points = {}
        self._host: Points = {}
        self._snmp: Points = {}
        self._addr: Points = {}
        self._iface: Points = {}

    def __bool__(self) -> bool:
        return bool(self._events or self._process or self._host or self._snmp or self._addr or self._iface)

    def points(self) -> int:
        """How many minute points the batch touches (quarter points are at most as many again)."""
        return 2 * sum(
            map(len, (self._events, self._process, self._host, self._snmp, self._addr, self._iface))
        )

    def event(self, t_ns: int, source: str, kind: str, synthetic: bool, nbytes: int) -> None:
        key = (t_ns - t_ns % _MINUTE_NS, source, kind, 1 if synthetic else 0)
        point = self._events.get(key)
        if point is None:
            self._events[key] = [1, nbytes]
        else:
            point[0] += 1
            point[1] += nbytes

    def process(self, t_ns: int, source: str, kind: int) -> None:
        if kind == events_pb2.ProcessEvent.EXEC:
            values = (1, 0)
        elif kind == events_pb2.ProcessEvent.EXIT:
            values = (0, 1)
        else:
            return
        _sum(self._process, (t_ns - t_ns % _MINUTE_NS, source), values)

    def host(self, t_ns: int, source: str, h: events_pb2.HostMetrics) -> None:
        cpu, load = h.cpu_percent, h.load1
        key = (t_ns - t_ns % _MINUTE_NS, source)
        point = self._host.get(key)
        if point is None:
            self._host[key] = [
                1, cpu, cpu, h.memory_used_bytes, h.memory_total_bytes, h.swap_used_bytes, load, load
            ]  # fmt: skip
            return
        point[0] += 1
        point[1] += cpu
        point[2] = max(point[2], cpu)
        point[3] += h.memory_used_bytes
        point[4] = max(point[4], h.memory_total_bytes)
        point[5] += h.swap_used_bytes
        point[6] += load
        point[7] = max(point[7], load)

    def snmp(self, t_ns: int, source: str, s: events_pb2.SnmpSample) -> None:
        b = t_ns - t_ns % _MINUTE_NS
        for i in s.interfaces:
            if not (i.HasField("in_bps") and i.HasField("out_bps")):
                continue
            rx, tx = i.in_bps, i.out_bps
            key = (b, source, s.target, i.if_index)
            point = self._snmp.get(key)
            if point is None:
                self._snmp[key] = [1, rx, tx, rx, tx]
                continue
            point[0] += 1
            point[1] += rx
            point[2] += tx
            point[3] = max(point[3], rx)
            point[4] = max(point[4], tx)

    def flow(self, t_ns: int, source: str, f: events_pb2.FlowRecord) -> None:
        fwd, rev = f.forward, f.reverse
        fo, fp, ro, rp = fwd.octets, fwd.packets, rev.octets, rev.packets
        b = t_ns - t_ns % _MINUTE_NS
        _sum(self._addr, (b, source, f.src_addr), (1, fo, ro, fp, rp))
        _sum(self._addr, (b, source, f.dst_addr), (1, ro, fo, rp, fp))
        _sum(self._iface, (b, source, f.interface), (1, fo + ro, fp + rp))

    def statements(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """(sql, rows) pairs for the writer: each table's minute rows, then its quarter rows."""
        for points, table, sql in (
            (self._events, EVENTS, EVENTS.upsert),
            (self._process, PROCESS, PROCESS.upsert),
            (self._host, HOST, HOST.upsert),
            (self._snmp, SNMP_IF, SNMP_IF.upsert),
            (self._addr, FLOW_ADDR, _ADDR_UPSERT),
            (self._iface, FLOW_IFACE, _IFACE_UPSERT),
        ):
            if points:
                yield sql, _rows(table, points)


def cutoffs(now_ns: int, *, minute_hours: int, quarter_days: int) -> dict[int, int]:
    """The oldest bucket start kept, per step."""
    return {MINUTE_S: now_ns - minute_hours * 3600 * _NS, QUARTER_S: now_ns - quarter_days * 86400 * _NS}


async def delete_expired_chunk(db: aiosqlite.Connection, step: int, cutoff_ns: int) -> tuple[int, bool]:
    """Delete up to DELETE_CHUNK_BUCKETS of the oldest expired buckets of `step` from every series
    table, inside the caller's transaction. Returns (rows deleted, whether expired buckets remain)."""
    deleted, more = 0, False
    span = DELETE_CHUNK_BUCKETS * step * _NS
    for table in EXPIRING:
        rows = await db.execute_fetchall(
            f"SELECT MIN(bucket_ns) FROM {table} WHERE step = ?",
            (step,),
        )
        oldest = next(iter(rows))[0]
        if oldest is None or oldest >= cutoff_ns:
            continue
        upto = min(cutoff_ns, oldest + span)
        cursor = await db.execute(
            f"DELETE FROM {table} WHERE step = ? AND bucket_ns < ?",
            (step, upto),
        )
        deleted += cursor.rowcount
        more = more or upto < cutoff_ns
    return deleted, more
