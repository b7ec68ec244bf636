"""The read model: every derived table equals a brute-force computation from the events table, for
any mix of events and deliveries; series points expire by their own retention and row tables go with
their events; a store from before the read model is migrated and backfilled."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import posixpath
import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, schema, views
from amoskys.store.series import ADDRESS_CAP, INTERFACE_CAP

from .helpers import HOUR_NS, Clock, open_store, running, small_config

NS = 1_000_000_000
T0 = 1_764_000_000 * NS
STEPS = (60, 900)

# ---------------------------------------------------------------------------- the brute force


def _bucket(t: int, step: int) -> int:
    return t - t % (step * NS)


def _add(
    points: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], values: Iterable[Any], how: str
) -> None:
    values = list(values)
    point = points.get(key)
    if point is None:
        points[key] = values
        return
    for i, v in enumerate(values):
        combine = how[i] if len(how) > 1 else how
        point[i] = point[i] + v if combine == "s" else max(point[i], v)


def brute_force(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every derived table of the read model, computed from the events table alone, one event at a
    time in store_seq order."""
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in ("flows", "process_history", "audit", "alerts")}
    series: dict[str, dict[tuple[Any, ...], list[Any]]] = {
        t: {}
        for t in (
            "series_events",
            "series_flow_addr",
            "series_flow_iface",
            "series_process",
            "series_host",
            "series_snmp_if",
        )
    }
    admitted: dict[tuple[str, int, int, str], set[str]] = {}

    def flow_point(
        table: str, cap: int, step: int, b: int, source: str, name: str, values: list[int]
    ) -> None:
        seen = admitted.setdefault((table, step, b, source), set())
        if name != "" and name not in seen:
            if len(seen) >= cap:
                name = ""
            else:
                seen.add(name)
        _add(series[table], (step, b, source, name), values, "s")

    rows = conn.execute(
        "SELECT store_seq, source, kind, ts_ns, received_ns, envelope, origin, synthetic FROM events "
        "ORDER BY store_seq"
    ).fetchall()
    for seq, source, kind, ts, received, data, origin, synthetic in rows:
        t = min(ts, received)
        for step in STEPS:
            _add(
                series["series_events"],
                (step, _bucket(t, step), source, kind, synthetic),
                (1, len(data)),
                "s",
            )
        e = ev.Envelope.FromString(data)
        head = (seq, source, origin, synthetic, ts)
        if kind == "flow":
            f = e.flow
            a, b = f.forward, f.reverse
            out["flows"].append(
                (
                    *head,
                    f.first_ts_ns,
                    f.last_ts_ns,
                    f.protocol,
                    f.ip_version,
                    f.src_addr,
                    f.src_port,
                    f.dst_addr,
                    f.dst_port,
                    f.community_id,
                    a.octets,
                    a.packets,
                    b.octets,
                    b.packets,
                    f.interface,
                    f.vlan,
                    int(f.final),
                    f.end_reason,
                )
            )
            if not synthetic:
                for step in STEPS:
                    bk = _bucket(t, step)
                    flow_point(
                        "series_flow_addr",
                        ADDRESS_CAP,
                        step,
                        bk,
                        source,
                        f.src_addr,
                        [1, a.octets, b.octets, a.packets, b.packets],
                    )
                    flow_point(
                        "series_flow_addr",
                        ADDRESS_CAP,
                        step,
                        bk,
                        source,
                        f.dst_addr,
                        [1, b.octets, a.octets, b.packets, a.packets],
                    )
                    flow_point(
                        "series_flow_iface",
                        INTERFACE_CAP,
                        step,
                        bk,
                        source,
                        f.interface,
                        [1, a.octets + b.octets, a.packets + b.packets],
                    )
        elif kind == "process":
            p = e.process
            if p.kind in (ev.ProcessEvent.EXEC, ev.ProcessEvent.EXIT):
                is_exec = p.kind == ev.ProcessEvent.EXEC
                comm = posixpath.basename(p.exe or (p.argv[0] if p.argv else ""))
                out["process_history"].append(
                    (
                        *head,
                        "exec" if is_exec else "exit",
                        p.pid,
                        p.ppid,
                        p.exe,
                        comm,
                        _json(list(p.argv)),
                        int(p.argv_redacted),
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
                if not synthetic:
                    for step in STEPS:
                        _add(
                            series["series_process"],
                            (step, _bucket(t, step), source),
                            (1, 0) if is_exec else (0, 1),
                            "s",
                        )
        elif kind == "audit":
            au = e.audit
            out["audit"].append(
                (*head, au.actor, au.action, au.target, au.remote_addr, int(au.success), au.detail)
            )
        elif kind == "alert":
            al = e.alert
            out["alerts"].append(
                (
                    *head,
                    al.rule,
                    al.severity,
                    al.summary,
                    _json(dict(sorted(al.attributes.items()))),
                    _json(list(al.related_event_ids)),
                    # one row per alert (these have no alert_id: each event opens its own)
                    e.event_id,
                    al.rule_id,
                    al.title,
                    {1: "informational", 2: "medium", 3: "critical"}.get(al.severity, ""),
                    _json(list(al.tags)),
                    source,
                    1,
                    ts,
                    ts,
                    seq,
                    "new",
                    "",
                    0,
                    "",
                )
            )
        elif kind == "host" and not synthetic:
            h = e.host
            for step in STEPS:
                _add(
                    series["series_host"],
                    (step, _bucket(t, step), source),
                    (
                        1,
                        h.cpu_percent,
                        h.cpu_percent,
                        h.memory_used_bytes,
                        h.memory_total_bytes,
                        h.swap_used_bytes,
                        h.load1,
                        h.load1,
                    ),
                    "ssmsmssm",
                )
        elif kind == "snmp" and not synthetic:
            s = e.snmp
            for i in s.interfaces:
                if i.HasField("in_bps") and i.HasField("out_bps"):
                    for step in STEPS:
                        _add(
                            series["series_snmp_if"],
                            (step, _bucket(t, step), source, s.target, i.if_index),
                            (1, i.in_bps, i.out_bps, i.in_bps, i.out_bps),
                            "sssmm",
                        )
    for name, points in series.items():
        out[name] = sorted((*k, *v) for k, v in points.items())
    return out


def _json(value: Any) -> str:
    """The read model's JSON column text, made independently of the code under test."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def stored(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    got = {}
    for table in ("flows", "process_history", "audit", "alerts"):
        got[table] = conn.execute(f"SELECT * FROM {table} ORDER BY store_seq").fetchall()
    for table in (
        "series_events",
        "series_flow_addr",
        "series_flow_iface",
        "series_process",
        "series_host",
        "series_snmp_if",
    ):
        got[table] = sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
    return got


def assert_equal(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> None:
    """Equal table by table; REAL sums (added in another order) to a relative 1e-9."""
    assert got.keys() == want.keys()
    for table in want:
        g, w = got[table], want[table]
        assert len(g) == len(w), table
        for rg, rw in zip(g, w, strict=True):
            assert len(rg) == len(rw), table
            for x, y in zip(rg, rw, strict=True):
                if isinstance(x, float) or isinstance(y, float):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (table, rg, rw)
                else:
                    assert x == y, (table, rg, rw)


# ---------------------------------------------------------------------------- event generation

SOURCES = ("appliance", "edge-1", "edge-2")
ADDRS = ("10.0.0.1", "10.0.0.2", "192.168.1.9", "2001:db8::1", "")
u32 = st.integers(0, 2**32 - 1)
big = st.integers(0, 2**40)

flow_body = st.builds(
    lambda src, dst, sp, dp, proto, fb, fp, rb, rp, iface, final, cid: ev.Envelope(
        flow=ev.FlowRecord(
            src_addr=src,
            dst_addr=dst,
            src_port=sp,
            dst_port=dp,
            protocol=proto,
            ip_version=4,
            forward=ev.FlowDirection(octets=fb, packets=fp),
            reverse=ev.FlowDirection(octets=rb, packets=rp),
            first_ts_ns=T0,
            last_ts_ns=T0 + NS,
            final=final,
            end_reason=ev.END_OF_FLOW if final else ev.ACTIVE_TIMEOUT,
            community_id=cid,
            interface=iface,
            vlan=7,
        )
    ),
    st.sampled_from(ADDRS),
    st.sampled_from(ADDRS),
    st.integers(0, 65535),
    st.sampled_from((22, 53, 443)),
    st.sampled_from((6, 17)),
    big,
    big,
    big,
    big,
    st.sampled_from(("eth0", "eth1", "")),
    st.booleans(),
    st.sampled_from(("1:abc=", "1:def=")),
)
process_body = st.builds(
    lambda kind, pid, exe, argv, code: ev.Envelope(
        process=ev.ProcessEvent(
            kind=kind,
            pid=pid,
            ppid=1,
            exe=exe,
            argv=argv,
            user="root",
            uid=0,
            start_time_ns=T0,
            lifetime_ns=5 * NS if kind == ev.ProcessEvent.EXIT else 0,
            argv_redacted=bool(argv) and argv[-1] == "***",
            **({"exit_code": code} if kind == ev.ProcessEvent.EXIT and code is not None else {}),
        )
    ),
    st.sampled_from((ev.ProcessEvent.EXEC, ev.ProcessEvent.EXIT, ev.ProcessEvent.SNAPSHOT)),
    st.integers(1, 50),
    st.sampled_from(("/usr/bin/curl", "/bin/sh", "")),
    st.lists(st.sampled_from(("sh", "/usr/bin/python3", "-c", "***")), max_size=3),
    st.none() | st.integers(-1, 255),
)
audit_body = st.builds(
    lambda actor, action, ok: ev.Envelope(
        audit=ev.AuditEvent(
            actor=actor, action=action, target="t", remote_addr="192.0.2.1", success=ok, detail="d"
        )
    ),
    st.sampled_from(("alice", "bob", "")),
    st.sampled_from(("login", "login_failed")),
    st.booleans(),
)
alert_body = st.builds(
    lambda rule, sev, attrs: ev.Envelope(
        alert=ev.Alert(rule=rule, severity=sev, summary="s", attributes=attrs, related_event_ids=["e1", "e2"])
    ),
    st.sampled_from(("scan", "beacon")),
    st.integers(0, 3),
    st.dictionaries(st.sampled_from(("b", "a", "c")), st.sampled_from(("1", "2")), max_size=3),
)
host_body = st.builds(
    lambda cpu, used, load: ev.Envelope(
        host=ev.HostMetrics(
            cpu_percent=cpu,
            memory_used_bytes=used,
            memory_total_bytes=2**33,
            swap_used_bytes=used // 2,
            load1=load,
        )
    ),
    st.floats(0, 100),
    st.integers(0, 2**33),
    st.floats(0, 16),
)
snmp_if = st.builds(
    lambda idx, rate: ev.SnmpInterface(
        if_index=idx,
        name=f"ge-{idx}",
        in_octets=5,
        out_octets=6,
        **({"in_bps": rate[0], "out_bps": rate[1]} if rate is not None else {}),
    ),
    st.integers(1, 3),
    st.none() | st.tuples(st.floats(0, 1e9), st.floats(0, 1e9)),
)
snmp_body = st.builds(
    lambda target, ifs: ev.Envelope(
        snmp=ev.SnmpSample(target=target, address="192.0.2.2:161", reachable=True, interfaces=ifs)
    ),
    st.sampled_from(("core", "edge")),
    st.lists(snmp_if, max_size=3, unique_by=lambda i: i.if_index),
)
other_body = st.sampled_from(
    (ev.Envelope(heartbeat=ev.Heartbeat(version="1")), ev.Envelope(device=ev.DeviceEvent(ip="10.0.0.5")))
)
body = st.one_of(flow_body, process_body, audit_body, alert_body, host_body, snmp_body, other_body)
# observation times spread over 40 minutes around the receive clock, in any order, some in the future
offset = st.integers(-35 * 60 * NS, 5 * 60 * NS)
event = st.tuples(st.sampled_from(SOURCES), body, offset, st.booleans())


def _deliveries(draw: st.DrawFn) -> list[list[Record]]:
    """Batches of records: each event as its source stamped it, some delivered again (duplicates)."""
    events = draw(st.lists(event, min_size=1, max_size=60))
    stampers = {s: EnvelopeStamper(s) for s in SOURCES}
    records = []
    for source, env, off, synthetic in events:
        e = ev.Envelope()
        e.CopyFrom(env)
        stampers[source].stamp(e, ts_ns=T0 + off)
        remote = source != "appliance"
        parsed = draw(st.booleans())  # the bus hands its parsed message over; a caller may not
        record = Record.from_envelope(e, origin=source if remote else "", synthetic=remote and synthetic)
        records.append(record if parsed else msgspec.structs.replace(record, parsed=None))
    again = draw(st.lists(st.sampled_from(records), max_size=10))
    cuts = sorted(draw(st.lists(st.integers(0, len(records) + len(again)), max_size=4)))
    stream = records + again
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]


deliveries = st.composite(_deliveries)()


async def _store_batches(path: Path, batches: list[list[Record]], clock: Clock) -> None:
    async with running(await open_store(path, clock=clock)) as store:
        for batch in batches:
            await store.submit(batch)
            clock.advance(7 * NS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries)
def test_every_derived_table_equals_a_brute_force_from_the_events(batches: list[list[Record]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.db"
        asyncio.run(_store_batches(path, batches, Clock(T0)))
        conn = sqlite3.connect(path)
        try:
            assert_equal(stored(conn), brute_force(conn))
        finally:
            conn.close()


async def test_a_scan_costs_a_bounded_number_of_points_and_loses_no_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    stamper = EnvelopeStamper("appliance")
    clock = Clock(T0)
    n = ADDRESS_CAP * 3
    records = [
        Record.from_envelope(
            stamper.stamp(
                ev.Envelope(
                    flow=ev.FlowRecord(
                        src_addr="10.0.0.66",
                        dst_addr=f"10.1.{i // 250}.{i % 250}",
                        dst_port=22,
                        protocol=6,
                        forward=ev.FlowDirection(octets=60, packets=1),
                        interface=f"if{i % (INTERFACE_CAP + 6)}",
                    )
                ),
                ts_ns=T0 + i * 10_000_000,
            )
        )
        for i in range(n)
    ]
    async with running(await open_store(path, clock=clock)) as store:
        for i in range(0, n, 100):  # across transactions: admission looks at what is stored
            await store.submit(records[i : i + 100])
    conn = sqlite3.connect(path)
    try:
        assert_equal(stored(conn), brute_force(conn))
        for step in STEPS:
            per_bucket = conn.execute(
                "SELECT bucket_ns, COUNT(*), SUM(address = ''), SUM(flows), SUM(tx_bytes + rx_bytes) "
                "FROM series_flow_addr WHERE step = ? GROUP BY bucket_ns",
                (step,),
            ).fetchall()
            assert {(rows, other) for _, rows, other, _, _ in per_bucket} == {(ADDRESS_CAP + 1, 1)}
            assert sum(f for *_, f, _ in per_bucket) == 2 * n  # each flow counted at both ends
            assert sum(b for *_, b in per_bucket) == 2 * 60 * n
            ifaces = conn.execute(
                "SELECT COUNT(*), SUM(bytes) FROM series_flow_iface WHERE step = ?", (step,)
            ).fetchone()
            assert ifaces == (INTERFACE_CAP + 1, 60 * n)
    finally:
        conn.close()


async def test_series_expire_by_their_own_retention_and_row_tables_go_with_their_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    clock = Clock(T0)
    stamper = EnvelopeStamper("appliance")

    def flow(ts: int) -> Record:
        env = ev.Envelope(
            flow=ev.FlowRecord(src_addr="10.0.0.1", dst_addr="10.0.0.2", forward=ev.FlowDirection(octets=100))
        )
        return Record.from_envelope(stamper.stamp(env, ts_ns=ts))

    config = small_config(series_minute_hours=2, series_quarter_days=2, retention_hours=30)
    store = await open_store(path, clock=clock, config=config)
    async with running(store):
        # observed 3 h, 1 h and 0 h ago, and 50 h ago (an agent's backlog)
        await store.submit([flow(T0 - 3 * HOUR_NS), flow(T0 - HOUR_NS), flow(T0), flow(T0 - 50 * HOUR_NS)])

        def points(step: int) -> list[int]:
            conn = sqlite3.connect(path)
            try:
                return [
                    b
                    for (b,) in conn.execute(
                        "SELECT DISTINCT bucket_ns FROM series_events WHERE step = ? ORDER BY 1", (step,)
                    )
                ]
            finally:
                conn.close()

        def count(table: str) -> int:
            conn = sqlite3.connect(path)
            try:
                return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            finally:
                conn.close()

        assert len(points(60)) == len(points(900)) == 4
        report = await store.maintain()
        # minute points older than 2 h and quarter points older than 2 days are gone; the events stay
        assert points(60) == [_bucket(T0 - HOUR_NS, 60), _bucket(T0, 60)]
        assert points(900) == [_bucket(t, 900) for t in (T0 - 3 * HOUR_NS, T0 - HOUR_NS, T0)]
        assert report.series_deleted > 0 and report.retention_deleted == 0
        assert count("flows") == count("events") == 4
        # the rollup: a quarter point is the sum of its minute points while both are kept
        quarter = _bucket(T0, 900)
        conn = sqlite3.connect(path)
        try:
            for table, cols in (
                ("series_events", "events, bytes"),
                ("series_flow_addr", "flows, tx_bytes, rx_bytes"),
            ):
                sums = ", ".join(f"SUM({c})" for c in cols.split(", "))
                by_quarter = conn.execute(
                    f"SELECT {sums} FROM {table} WHERE step = 900 AND bucket_ns = ?", (quarter,)
                ).fetchone()
                by_minute = conn.execute(
                    f"SELECT {sums} FROM {table} WHERE step = 60 AND bucket_ns >= ? AND bucket_ns < ?",
                    (quarter, quarter + 900 * NS),
                ).fetchone()
                assert by_quarter == by_minute and by_quarter[0] > 0
        finally:
            conn.close()

        clock.advance(31 * HOUR_NS)  # past the events' retention: their rows go, quarter points stay
        report = await store.maintain()
        assert report.retention_deleted == 4
        assert count("events") == count("flows") == 0
        assert points(60) == []
        assert points(900) == [_bucket(t, 900) for t in (T0 - 3 * HOUR_NS, T0 - HOUR_NS, T0)]
        clock.advance(48 * HOUR_NS)
        await store.maintain()
        assert points(900) == [] and count("series_flow_addr") == 0


def _v4_store(path: Path, events: list[tuple[Record, int]]) -> None:
    """A store as version 4 wrote it: the events with a valid chain, no read model."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for migration in schema.MIGRATIONS[:4]:
            for statement in schema.statements(migration.script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        schema.ensure_meta(conn, now_ns=T0, first_seq=1)
        digest = schema.GENESIS_DIGEST
        for seq, (r, received) in enumerate(events, 1):
            digest = hashlib.sha256(digest + r.envelope).digest()
            conn.execute(
                "INSERT INTO events (store_seq, source, event_id, boot_id, source_seq, kind, ts_ns, received_ns, "
                "envelope, digest, origin, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    r.source,
                    r.event_id,
                    r.boot_id,
                    r.source_seq,
                    r.kind,
                    r.ts_ns,
                    received,
                    r.envelope,
                    digest,
                    r.origin,
                    int(r.synthetic),
                ),
            )
        conn.execute(
            "UPDATE store_meta SET last_seq = ?, last_digest = ?, row_count = ? WHERE id = 1",
            (len(events), digest, len(events)),
        )
    finally:
        conn.close()


def _mixed(n: int) -> list[tuple[Record, int]]:
    bodies = [
        ev.Envelope(
            flow=ev.FlowRecord(src_addr="10.0.0.1", dst_addr="10.0.0.9", forward=ev.FlowDirection(octets=9))
        ),
        ev.Envelope(process=ev.ProcessEvent(kind=ev.ProcessEvent.EXEC, pid=4, exe="/bin/ls", argv=["ls"])),
        ev.Envelope(audit=ev.AuditEvent(actor="alice", action="login", success=True)),
        ev.Envelope(alert=ev.Alert(rule="scan", severity=ev.Alert.WARNING)),
        ev.Envelope(host=ev.HostMetrics(cpu_percent=12.5, memory_used_bytes=1000)),
        ev.Envelope(heartbeat=ev.Heartbeat(version="1")),
    ]
    stamper = EnvelopeStamper("edge-1")
    out = []
    for i in range(n):
        e = ev.Envelope()
        e.CopyFrom(bodies[i % len(bodies)])
        stamper.stamp(e, ts_ns=T0 + i * NS)
        out.append((Record.from_envelope(e, origin="edge-1"), T0 + i * NS + 5))
    return out


async def test_a_store_from_before_the_read_model_is_migrated_and_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await asyncio.to_thread(_v4_store, path, _mixed(1000))
    clock = Clock(T0 + 2000 * NS)
    async with running(await open_store(path, clock=clock)) as store:
        assert (await store.verify_chain()).ok
        await store.submit([r for r, _ in _mixed(1030)[1000:]])  # new events on top, written live
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
        assert conn.execute("SELECT COUNT(*) FROM read_model_backfill").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM flows").fetchone() == (1030 // 6 + 1,)
        assert_equal(stored(conn), brute_force(conn))
    finally:
        conn.close()


class _CrashAfter:
    """A connection that fails the n-th COMMIT (a crash in the middle of the backfill)."""

    def __init__(self, conn: sqlite3.Connection, commits: int) -> None:
        self._conn, self._left = conn, commits

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self._left -= 1
            if self._left < 0:
                raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)


def test_an_interrupted_backfill_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _v4_store(path, _mixed(100))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # the backfill runs on the newest schema: migrate() applies every step before it
        conn.execute("BEGIN")
        for migration in schema.MIGRATIONS[4:]:
            for statement in schema.statements(migration.script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
        try:
            views.backfill(_CrashAfter(conn, 2), chunk=30)  # type: ignore[arg-type]
        except sqlite3.OperationalError:
            pass
        else:
            raise AssertionError("the simulated crash did not happen")
        assert conn.execute("SELECT next_seq FROM read_model_backfill").fetchone() == (61,)
        assert conn.execute("SELECT MAX(store_seq) FROM flows").fetchone() == (55,)
        # no step is left to run; the rest is backfilled
        assert schema.migrate(conn, str(path)) == []
        assert conn.execute("SELECT COUNT(*) FROM read_model_backfill").fetchone() == (0,)
        assert_equal(stored(conn), brute_force(conn))
    finally:
        conn.close()
