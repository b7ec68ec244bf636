"""Derived tables (the read model): device inventory, latest SNMP state, current process table, the
flow, process-history, audit and alert rows, and the time series (amoskys.store.series).

The writer feeds every committed event to a ViewBatch, in store_seq order, and runs its statements
(executemany, one per table) in the same transaction as the events, so a derived table never runs
ahead of or behind the log. Out-of-order arrivals are guarded by observation time (ts_ns): an older
sample never overwrites a newer one. The row tables (flows, process_history, audit) have one row per
event, keyed by its store_seq, and are pruned with it; `alerts` has one row per alert, keyed by the
store_seq of its first Alert event, updated by its follow-ups and triage (amoskys.store.alerts), and
pruned once resolved. A store migrated from before they existed is backfilled from the events table
at start (`backfill`), in chunks.
"""

from __future__ import annotations

import posixpath
import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec
import structlog
from google.protobuf.message import DecodeError

from amoskys.proto import events_pb2
from amoskys.store import alerts
from amoskys.store.bulk import insert_many
from amoskys.store.fdb import FdbBatch
from amoskys.store.records import Record
from amoskys.store.series import SeriesBatch

log = structlog.get_logger(__name__)

#: The body kinds the writer parses (other kinds only count toward series_events, unparsed).
VIEW_KINDS = frozenset({"device", "snmp", "process", "flow", "host", "audit", "alert"})
#: The row tables: one row per event, deleted with it (retention, hard cap).
ROW_TABLES = ("flows", "process_history", "audit", "alerts")
#: Bytes a row-table row costs with its index entries, and a new series point: the estimate's guess.
_ROW_TABLE_BYTES, _SERIES_POINT_BYTES = 300, 60
#: Events per backfill transaction.
BACKFILL_CHUNK = 5000
#: The page cache of the backfill's connection (KiB; the connection is closed after it).
BACKFILL_CACHE_KIB = 64 * 1024

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

_INSERT_FLOW = (
    "INSERT INTO flows (store_seq, source, origin, synthetic, ts_ns, first_ts_ns, last_ts_ns, protocol, "
    "ip_version, src_addr, src_port, dst_addr, dst_port, community_id, fwd_bytes, fwd_packets, rev_bytes, "
    "rev_packets, interface, vlan, final, end_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PROCESS_HISTORY = (
    "INSERT INTO process_history (store_seq, source, origin, synthetic, ts_ns, kind, pid, ppid, exe, comm, "
    "argv, argv_redacted, user, uid, start_time_ns, exit_code, exit_signal, lifetime_ns, exe_sha256, "
    "container_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (store_seq, source, origin, synthetic, ts_ns, actor, action, target, remote_addr, "
    "success, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


_INT64_MAX = (1 << 63) - 1


def _u64(value: int) -> int | float:
    """A uint64 for an SQLite INTEGER column (signed 64-bit): values above 2**63-1, which 64-bit
    counters near their wrap can reach, are stored as REAL (approximate) instead of failing."""
    return value if value <= _INT64_MAX else float(value)


class ViewBatch:
    """The derived-table changes of one writer transaction, collected in store_seq order.

    `received_ns` is the transaction's receive time: a series point's time is min(ts_ns, received_ns).
    `derived_only` leaves out the devices, snmp and processes tables (the backfill of a migrated store,
    whose those tables already follow its events)."""

    __slots__ = (
        "_alert_updates",
        "_alerts",
        "_audit",
        "_derived_only",
        "_devices",
        "_fdb",
        "_flows",
        "_history",
        "_interfaces",
        "_processes",
        "_received_ns",
        "_targets",
        "_triage",
        "series",
    )

    def __init__(self, received_ns: int | None = None, *, derived_only: bool = False) -> None:
        self._received_ns = received_ns
        self._derived_only = derived_only
        # Upserts of one key in one batch fold into as few rows as give the same table (see
        # `_fold_device`, `_add_snmp`): a busy publisher repeats its devices and SNMP targets, and each
        # upsert of the same row is a B-tree write the commit pays for.
        self._devices: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._targets: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        self._interfaces: dict[tuple[str, str, int], list[tuple[Any, ...]]] = {}
        self._fdb = FdbBatch()  # each target's newest bridge forwarding table (snmp_fdb)
        # (source, pid) -> ("upsert", row) | ("delete", row): the last change of the batch wins,
        # which keeps exec → exit → exec of one pid in one batch right with two executemany calls.
        self._processes: dict[tuple[str, int], tuple[str, tuple[Any, ...]]] = {}
        self._flows: list[tuple[Any, ...]] = []
        self._history: list[tuple[Any, ...]] = []
        self._audit: list[tuple[Any, ...]] = []
        self._alerts: list[tuple[Any, ...]] = []
        self._alert_updates: list[tuple[Any, ...]] = []  # follow-up Alert events (amoskys.store.alerts)
        self._triage: list[tuple[Any, ...]] = []  # triage AuditEvents applied to their alert's row
        self.series = SeriesBatch()

    def __bool__(self) -> bool:
        return bool(
            self._devices
            or self._targets
            or self._interfaces
            or self._fdb
            or self._processes
            or self._flows
            or self._history
            or self._audit
            or self._alerts
            or self._alert_updates
            or self._triage
            or self.series
        )

    def est_bytes(self) -> int:
        """A first guess of the bytes these rows add to the database (rows and index entries), for the
        space ladder's estimate between measurements."""
        rows = len(self._flows) + len(self._history) + len(self._audit) + len(self._alerts)
        return rows * _ROW_TABLE_BYTES + self.series.points() * _SERIES_POINT_BYTES

    def add_record(self, store_seq: int, record: Record) -> None:
        """Fold one committed record into the batch: every record counts toward series_events; those
        of VIEW_KINDS are parsed (unless the caller already had the message) and fold into their tables."""
        ts, received, kind = record.ts_ns, self._received_ns, record.kind
        t = ts if received is None or ts <= received else received
        self.series.event(t, record.source, kind, record.synthetic, len(record.envelope))
        if kind not in VIEW_KINDS:
            return
        envelope = record.parsed
        if envelope is None:
            try:
                envelope = events_pb2.Envelope.FromString(record.envelope)
            except DecodeError:
                log.debug(
                    "store_view_skipped",
                    source=record.source,
                    event_id=record.event_id,
                    why="unparseable envelope",
                )
                return
        self._add(store_seq, envelope, kind, t, record.origin, record.synthetic)

    def count(
        self,
        source: str,
        kind: str,
        ts_ns: int,
        synthetic: bool,
        nbytes: int,
        received_ns: int | None = None,
    ) -> None:
        """Count one event (of any kind) toward series_events."""
        self.series.event(self._point_time(ts_ns, received_ns), source, kind, synthetic, nbytes)

    def _point_time(self, ts_ns: int, received_ns: int | None) -> int:
        received = self._received_ns if received_ns is None else received_ns
        return ts_ns if received is None or ts_ns <= received else received

    def add(
        self,
        store_seq: int,
        envelope: events_pb2.Envelope,
        *,
        origin: str = "",
        synthetic: bool = False,
        received_ns: int | None = None,
    ) -> None:
        """Fold one committed event's body into the batch (kinds outside VIEW_KINDS are ignored; the
        event is not counted toward series_events: see `count`)."""
        kind = envelope.WhichOneof("body") or ""
        self._add(store_seq, envelope, kind, self._point_time(envelope.ts_ns, received_ns), origin, synthetic)

    def _add(
        self, store_seq: int, envelope: events_pb2.Envelope, kind: str, t: int, origin: str, synthetic: bool
    ) -> None:
        if kind == "flow":
            self._add_flow(store_seq, envelope, origin, synthetic)
            if not synthetic:
                self.series.flow(t, envelope.source, envelope.flow)
        elif kind == "process":
            argv = json_text(list(envelope.process.argv))  # once for both tables
            if not self._derived_only:
                self._add_process(store_seq, envelope, argv)
            self._add_history(store_seq, envelope, origin, synthetic, argv)
            if not synthetic:
                self.series.process(t, envelope.source, envelope.process.kind)
        elif kind == "snmp":
            if not self._derived_only:
                self._add_snmp(store_seq, envelope)
            if not synthetic:
                self.series.snmp(t, envelope.source, envelope.snmp)
        elif kind == "host":
            if not synthetic:
                self.series.host(t, envelope.source, envelope.host)
        elif kind == "audit":
            self._add_audit(store_seq, envelope, origin, synthetic)
        elif kind == "alert":
            self._add_alert(store_seq, envelope, origin, synthetic)
        elif kind == "device" and not self._derived_only:
            self._add_device(store_seq, envelope)

    def statements(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """(sql, rows) pairs for executemany, in an order that keeps the batch's meaning."""
        if self._devices:
            yield _UPSERT_DEVICE, list(self._devices.values())
        if self._targets:
            yield _UPSERT_SNMP_TARGET, [row for rows in self._targets.values() for row in rows]
        if self._interfaces:
            yield _UPSERT_SNMP_INTERFACE, [row for rows in self._interfaces.values() for row in rows]
        yield from self._fdb.statements()
        deletes = [row for op, row in self._processes.values() if op == "delete"]
        upserts = [row for op, row in self._processes.values() if op == "upsert"]
        if deletes:
            yield _DELETE_PROCESS, deletes
        if upserts:
            yield _UPSERT_PROCESS, upserts
        if self._flows:
            yield _INSERT_FLOW, self._flows
        if self._history:
            yield _INSERT_PROCESS_HISTORY, self._history
        if self._audit:
            yield _INSERT_AUDIT, self._audit
        if self._alerts:
            yield alerts.INSERT_ALERT, self._alerts
        if self._alert_updates:
            yield alerts.UPDATE_ALERT, self._alert_updates
        if self._triage:
            yield alerts.TRIAGE_ALERT, self._triage
        yield from self.series.statements()

    def _add_flow(self, store_seq: int, envelope: events_pb2.Envelope, origin: str, synthetic: bool) -> None:
        f = envelope.flow
        fwd, rev = f.forward, f.reverse
        self._flows.append(
            (
                store_seq,
                envelope.source,
                origin,
                1 if synthetic else 0,
                envelope.ts_ns,
                f.first_ts_ns,
                f.last_ts_ns,
                f.protocol,
                f.ip_version,
                f.src_addr,
                f.src_port,
                f.dst_addr,
                f.dst_port,
                f.community_id,
                _u64(fwd.octets),
                _u64(fwd.packets),
                _u64(rev.octets),
                _u64(rev.packets),
                f.interface,
                f.vlan,
                1 if f.final else 0,
                f.end_reason,
            )
        )

    def _add_history(
        self, store_seq: int, envelope: events_pb2.Envelope, origin: str, synthetic: bool, argv: str
    ) -> None:
        p = envelope.process
        if p.kind == events_pb2.ProcessEvent.EXEC:
            kind = "exec"
        elif p.kind == events_pb2.ProcessEvent.EXIT:
            kind = "exit"
        else:
            return  # snapshots are the live table's, not history
        self._history.append(
            (
                store_seq,
                envelope.source,
                origin,
                1 if synthetic else 0,
                envelope.ts_ns,
                kind,
                p.pid,
                p.ppid,
                p.exe,
                command_name(p.exe, p.argv),
                argv,
                1 if p.argv_redacted else 0,
                p.user,
                p.uid,
                p.start_time_ns,
                p.exit_code if p.HasField("exit_code") else None,
                p.exit_signal if p.HasField("exit_signal") else None,
                p.lifetime_ns,
                p.exe_sha256,
                p.container_id,
            )
        )

    def _add_audit(self, store_seq: int, envelope: events_pb2.Envelope, origin: str, synthetic: bool) -> None:
        a = envelope.audit
        self._audit.append(
            (
                store_seq,
                envelope.source,
                origin,
                1 if synthetic else 0,
                envelope.ts_ns,
                a.actor,
                a.action,
                a.target,
                a.remote_addr,
                1 if a.success else 0,
                a.detail,
            )
        )
        # triage is local to the box that shows the alert: only this appliance's own audit counts
        if a.action == alerts.TRIAGE_ACTION and a.success and not origin:
            t = alerts.triage_detail(a.detail)
            if t is not None:
                ts = envelope.ts_ns
                self._triage.append((t.state, a.actor, ts, t.note, t.alert_id, ts))

    def _add_alert(self, store_seq: int, envelope: events_pb2.Envelope, origin: str, synthetic: bool) -> None:
        """The first event of an alert (or one without alert_id) opens a row; a follow-up updates it."""
        a = envelope.alert
        ts = envelope.ts_ns
        evidence = json_text(list(a.related_event_ids[: alerts.MAX_EVIDENCE]))
        if a.alert_id and a.alert_id != envelope.event_id:
            self._alert_updates.append(
                (max(a.count, 1), ts, ts, store_seq, evidence, a.alert_id, envelope.source)
            )
            return
        level = alerts.LEVELS[a.level] if 0 <= a.level < len(alerts.LEVELS) else ""
        self._alerts.append(
            (
                store_seq,
                envelope.source,
                origin,
                1 if synthetic else 0,
                ts,
                a.rule,
                a.severity,
                a.summary,
                json_text(dict(a.attributes)),
                evidence,
                envelope.event_id,
                a.rule_id,
                a.title,
                level or alerts.LEVEL_OF_SEVERITY.get(a.severity, ""),
                json_text(list(a.tags)),
                a.host or envelope.source,
                max(a.count, 1),
                ts,
                ts,
                store_seq,
            )
        )

    def _add_device(self, store_seq: int, envelope: events_pb2.Envelope) -> None:
        d = envelope.device
        if d.mac:
            key = "mac:" + d.mac.hex()
        elif d.ip:
            key = "ip:" + d.ip
        else:
            return  # nothing to identify the device by
        seen = envelope.ts_ns
        self._fold_device(
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
        if s.fdb_polled:
            self._fdb.add(store_seq, envelope.source, ts, s)
        _fold_newer(
            self._targets,
            (envelope.source, s.target),
            s.reachable,  # an unreachable poll keeps the last system fields: it folds into nothing
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
            ),
        )
        for i in s.interfaces:
            _fold_newer(
                self._interfaces,
                (envelope.source, s.target, i.if_index),
                True,
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
                ),
            )

    def _fold_device(self, row: tuple[Any, ...]) -> None:
        """One device upsert, folded into the batch's row of its key as _UPSERT_DEVICE would apply both:
        non-empty fields win, first seen is the earliest, last seen the latest, the rest the newer's."""
        key = (row[0], row[1])
        old = self._devices.get(key)
        if old is not None:
            row = (
                *row[:2],
                *(new or prev for new, prev in zip(row[2:7], old[2:7], strict=True)),
                min(old[7], row[7]),
                max(old[8], row[8]),
                *row[9:],
            )
        self._devices[key] = row

    def _add_process(self, store_seq: int, envelope: events_pb2.Envelope, argv: str) -> None:
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
                argv,
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


def _fold_newer(rows: dict[Any, list[tuple[Any, ...]]], key: Any, whole: bool, row: tuple[Any, ...]) -> None:
    """Queue an upsert that applies only when its ts_ns (the row's second last column) is not older than
    the stored one's. When it overwrites every column it sets (`whole`) and is not older than the key's
    queued rows, it replaces them: after them it would leave the row as it alone does. Else it queues
    behind them."""
    queued = rows.get(key)
    if queued is None:
        rows[key] = [row]
    elif whole and all(row[-2] >= q[-2] for q in queued):
        queued[:] = [row]
    else:
        queued.append(row)


def json_text(value: Any) -> str:
    """The JSON text of a row's list or map column: compact, UTF-8, map keys sorted — the text
    json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True) makes, at a tenth
    of its cost (msgspec; one or two per process or alert event on the writer's row loop)."""
    return _JSON.encode(value).decode()


_JSON = msgspec.json.Encoder(order="sorted")


def command_name(exe: str, argv: Any) -> str:
    """The `comm` of process_history: the base name of the executable, else of argv[0]."""
    if exe:
        return posixpath.basename(exe)
    return posixpath.basename(argv[0]) if argv else ""


def backfill(conn: sqlite3.Connection, *, chunk: int = BACKFILL_CHUNK) -> int:
    """Fill the row tables and series of a migrated store from its events table, `chunk` events per
    transaction, resuming where a previous start stopped (the read_model_backfill cursor); return the
    events read. Blocking: runs before the store opens (amoskys.store.integrity.prepare, in a thread).
    `conn` must be in autocommit mode."""
    done = 0
    conn.execute(f"PRAGMA cache_size = {-BACKFILL_CACHE_KIB:d}")  # random index inserts: keep pages hot
    while True:
        cursor = conn.execute("SELECT next_seq, last_seq FROM read_model_backfill WHERE id = 1").fetchone()
        if cursor is None:
            return done
        next_seq, last_seq = cursor
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT store_seq, source, kind, ts_ns, received_ns, envelope, origin, synthetic FROM events "
                "WHERE store_seq >= ? AND store_seq <= ? ORDER BY store_seq LIMIT ?",
                (next_seq, last_seq, chunk),
            ).fetchall()
            batch = ViewBatch(derived_only=True)
            for seq, source, kind, ts_ns, received_ns, data, origin, synthetic in rows:
                batch.count(source, kind, ts_ns, bool(synthetic), len(data), received_ns)
                if kind not in VIEW_KINDS:
                    continue
                try:
                    envelope = events_pb2.Envelope.FromString(data)
                except DecodeError:
                    continue
                batch.add(seq, envelope, origin=origin, synthetic=bool(synthetic), received_ns=received_ns)
            for sql, params in batch.statements():
                insert_many(conn, sql, params)
            if len(rows) < chunk:
                conn.execute("DELETE FROM read_model_backfill")
            else:
                conn.execute("UPDATE read_model_backfill SET next_seq = ? WHERE id = 1", (rows[-1][0] + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += len(rows)
