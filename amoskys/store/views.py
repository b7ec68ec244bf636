"""Derived views: device inventory, latest SNMP state, current process table.

The writer feeds every committed device, snmp and process event to a ViewBatch, in store_seq order,
and runs its statements in the same transaction as the events, so a view never runs ahead of or
behind the log. Out-of-order arrivals are guarded by observation time (ts_ns): an older sample never
overwrites a newer one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from amoskys.proto import events_pb2

#: The body kinds that feed a view (other kinds are never parsed by the writer).
VIEW_KINDS = frozenset({"device", "snmp", "process"})

_DEVICE_CHANGES = {
    events_pb2.DeviceEvent.NEW: "new",
    events_pb2.DeviceEvent.IP_CHANGED: "ip_changed",
    events_pb2.DeviceEvent.MAC_CHANGED: "mac_changed",
    events_pb2.DeviceEvent.GONE: "gone",
    events_pb2.DeviceEvent.SEEN: "seen",
}

_UPSERT_DEVICE = """
INSERT INTO devices (source, device_key, mac, ip, vendor, hostname, interface, first_seen_ns,
                     last_seen_ns, present, last_change, store_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, device_key) DO UPDATE SET
    mac = CASE WHEN length(excluded.mac) > 0 THEN excluded.mac ELSE mac END,
    ip = CASE WHEN excluded.ip != '' THEN excluded.ip ELSE ip END,
    vendor = CASE WHEN excluded.vendor != '' THEN excluded.vendor ELSE vendor END,
    hostname = CASE WHEN excluded.hostname != '' THEN excluded.hostname ELSE hostname END,
    interface = CASE WHEN excluded.interface != '' THEN excluded.interface ELSE interface END,
    first_seen_ns = MIN(first_seen_ns, excluded.first_seen_ns),
    last_seen_ns = MAX(last_seen_ns, excluded.last_seen_ns),
    present = excluded.present,
    last_change = excluded.last_change,
    store_seq = excluded.store_seq
"""

_UPSERT_SNMP_TARGET = """
INSERT INTO snmp_targets (source, target, address, reachable, error, sys_name, sys_descr, sys_location,
                          uptime_ticks, poll_seconds, ts_ns, store_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, target) DO UPDATE SET
    address = excluded.address,
    reachable = excluded.reachable,
    error = excluded.error,
    sys_name = CASE WHEN excluded.reachable THEN excluded.sys_name ELSE sys_name END,
    sys_descr = CASE WHEN excluded.reachable THEN excluded.sys_descr ELSE sys_descr END,
    sys_location = CASE WHEN excluded.reachable THEN excluded.sys_location ELSE sys_location END,
    uptime_ticks = CASE WHEN excluded.reachable THEN excluded.uptime_ticks ELSE uptime_ticks END,
    poll_seconds = excluded.poll_seconds,
    ts_ns = excluded.ts_ns,
    store_seq = excluded.store_seq
WHERE excluded.ts_ns >= snmp_targets.ts_ns
"""

_UPSERT_SNMP_INTERFACE = """
INSERT INTO snmp_interfaces (source, target, if_index, name, descr, alias, speed_bps, admin_status,
                             oper_status, in_octets, out_octets, in_errors, out_errors, in_discards,
                             out_discards, in_bps, out_bps, ts_ns, store_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, target, if_index) DO UPDATE SET
    name = excluded.name, descr = excluded.descr, alias = excluded.alias,
    speed_bps = excluded.speed_bps, admin_status = excluded.admin_status,
    oper_status = excluded.oper_status, in_octets = excluded.in_octets,
    out_octets = excluded.out_octets, in_errors = excluded.in_errors,
    out_errors = excluded.out_errors, in_discards = excluded.in_discards,
    out_discards = excluded.out_discards, in_bps = excluded.in_bps, out_bps = excluded.out_bps,
    ts_ns = excluded.ts_ns, store_seq = excluded.store_seq
WHERE excluded.ts_ns >= snmp_interfaces.ts_ns
"""

_UPSERT_PROCESS = """
INSERT INTO processes (source, pid, ppid, exe, argv, user, uid, start_time_ns, cpu_percent, rss_bytes,
                       exe_sha256, last_ts_ns, store_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, pid) DO UPDATE SET
    ppid = excluded.ppid, exe = excluded.exe, argv = excluded.argv, user = excluded.user,
    uid = excluded.uid, start_time_ns = excluded.start_time_ns, cpu_percent = excluded.cpu_percent,
    rss_bytes = excluded.rss_bytes, exe_sha256 = excluded.exe_sha256,
    last_ts_ns = excluded.last_ts_ns, store_seq = excluded.store_seq
WHERE excluded.last_ts_ns >= processes.last_ts_ns
"""

# An exit removes the process unless a newer exec or snapshot of the same pid (pid reuse) is there.
_DELETE_PROCESS = "DELETE FROM processes WHERE source = ? AND pid = ? AND last_ts_ns <= ?"


_INT64_MAX = (1 << 63) - 1


def _u64(value: int) -> int | float:
    """A uint64 for an SQLite INTEGER column (signed 64-bit): values above 2**63-1, which 64-bit
    counters near their wrap can reach, are stored as REAL (approximate) instead of failing."""
    return value if value <= _INT64_MAX else float(value)


class ViewBatch:
    """The view changes of one writer transaction, collected in store_seq order."""

    __slots__ = ("_devices", "_interfaces", "_processes", "_targets")

    def __init__(self) -> None:
        self._devices: list[tuple[Any, ...]] = []
        self._targets: list[tuple[Any, ...]] = []
        self._interfaces: list[tuple[Any, ...]] = []
        # (source, pid) -> ("upsert", row) | ("delete", row): the last change of the batch wins,
        # which keeps exec → exit → exec of one pid in one batch right with two executemany calls.
        self._processes: dict[tuple[str, int], tuple[str, tuple[Any, ...]]] = {}

    def __bool__(self) -> bool:
        return bool(self._devices or self._targets or self._interfaces or self._processes)

    def add(self, store_seq: int, envelope: events_pb2.Envelope) -> None:
        """Fold one committed event into the batch (kinds outside VIEW_KINDS are ignored)."""
        kind = envelope.WhichOneof("body")
        if kind == "device":
            self._add_device(store_seq, envelope)
        elif kind == "snmp":
            self._add_snmp(store_seq, envelope)
        elif kind == "process":
            self._add_process(store_seq, envelope)

    def statements(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """(sql, rows) pairs for executemany, in an order that keeps the batch's meaning."""
        if self._devices:
            yield _UPSERT_DEVICE, self._devices
        if self._targets:
            yield _UPSERT_SNMP_TARGET, self._targets
        if self._interfaces:
            yield _UPSERT_SNMP_INTERFACE, self._interfaces
        deletes = [row for op, row in self._processes.values() if op == "delete"]
        upserts = [row for op, row in self._processes.values() if op == "upsert"]
        if deletes:
            yield _DELETE_PROCESS, deletes
        if upserts:
            yield _UPSERT_PROCESS, upserts

    def _add_device(self, store_seq: int, envelope: events_pb2.Envelope) -> None:
        d = envelope.device
        if d.mac:
            key = "mac:" + d.mac.hex()
        elif d.ip:
            key = "ip:" + d.ip
        else:
            return  # nothing to identify the device by
        seen = envelope.ts_ns
        self._devices.append(
            (
                envelope.source,
                key,
                d.mac,
                d.ip,
                d.vendor,
                d.hostname,
                d.interface,
                d.first_seen_ns or seen,
                d.last_seen_ns or seen,
                0 if d.change == events_pb2.DeviceEvent.GONE else 1,
                _DEVICE_CHANGES.get(d.change, "unspecified"),
                store_seq,
            )
        )

    def _add_snmp(self, store_seq: int, envelope: events_pb2.Envelope) -> None:
        s = envelope.snmp
        if not s.target:
            return
        ts = envelope.ts_ns
        self._targets.append(
            (
                envelope.source,
                s.target,
                s.address,
                1 if s.reachable else 0,
                s.error,
                s.system.name,
                s.system.descr,
                s.system.location,
                _u64(s.system.uptime_ticks),
                s.poll_seconds,
                ts,
                store_seq,
            )
        )
        for i in s.interfaces:
            self._interfaces.append(
                (
                    envelope.source,
                    s.target,
                    i.if_index,
                    i.name,
                    i.descr,
                    i.alias,
                    _u64(i.speed_bps),
                    i.admin_status,
                    i.oper_status,
                    _u64(i.in_octets),
                    _u64(i.out_octets),
                    _u64(i.in_errors),
                    _u64(i.out_errors),
                    _u64(i.in_discards),
                    _u64(i.out_discards),
                    i.in_bps if i.HasField("in_bps") else None,
                    i.out_bps if i.HasField("out_bps") else None,
                    ts,
                    store_seq,
                )
            )

    def _add_process(self, store_seq: int, envelope: events_pb2.Envelope) -> None:
        p = envelope.process
        key = (envelope.source, p.pid)
        if p.kind == events_pb2.ProcessEvent.EXIT:
            self._processes[key] = ("delete", (envelope.source, p.pid, envelope.ts_ns))
        elif p.kind in (events_pb2.ProcessEvent.EXEC, events_pb2.ProcessEvent.SNAPSHOT):
            row = (
                envelope.source,
                p.pid,
                p.ppid,
                p.exe,
                json.dumps(list(p.argv)),
                p.user,
                p.uid,
                p.start_time_ns,
                p.cpu_percent,
                _u64(p.rss_bytes),
                p.exe_sha256,
                envelope.ts_ns,
                store_seq,
            )
            self._processes[key] = ("upsert", row)
