"""The snmp_fdb read-model table (Migration 11): each SNMP target's newest bridge forwarding table, from
the SnmpSamples that polled it (`fdb_polled`). A sample replaces its target's older rows; within one
writer transaction only the newest sample of each target counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from amoskys.proto import events_pb2

DELETE_OLDER = "DELETE FROM snmp_fdb WHERE source = ? AND target = ? AND ts_ns < ?"
UPSERT = """
INSERT INTO snmp_fdb (mac, source, target, vlan, port, if_index, if_name, status, ts_ns, store_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (mac, source, target, vlan) DO UPDATE SET
    port = excluded.port, if_index = excluded.if_index, if_name = excluded.if_name,
    status = excluded.status, ts_ns = excluded.ts_ns, store_seq = excluded.store_seq
WHERE excluded.ts_ns >= snmp_fdb.ts_ns
"""


class FdbBatch:
    """The newest forwarding table of each (source, target) in one writer transaction."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], tuple[int, int, events_pb2.SnmpSample]] = {}

    def __bool__(self) -> bool:
        return bool(self._tables)

    def add(self, store_seq: int, source: str, ts_ns: int, sample: events_pb2.SnmpSample) -> None:
        key = (source, sample.target)
        held = self._tables.get(key)
        if held is None or ts_ns >= held[0]:
            self._tables[key] = (ts_ns, store_seq, sample)

    def statements(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        if not self._tables:
            return
        yield DELETE_OLDER, [(source, target, ts) for (source, target), (ts, _, _) in self._tables.items()]
        rows = [
            (e.mac, source, target, e.vlan, e.port, e.if_index, e.if_name, e.status, ts, seq)
            for (source, target), (ts, seq, sample) in self._tables.items()
            for e in sample.fdb
            if e.mac
        ]
        if rows:
            yield UPSERT, rows
