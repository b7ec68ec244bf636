"""Upserts of one key folded within a batch (devices, SNMP targets and interfaces) leave every table as
the same events applied one at a time, whatever was stored before and in whatever order they come."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, schema
from amoskys.store.bulk import insert_many
from amoskys.store.views import ViewBatch

NS = 1_000_000_000
T0 = 1_764_000_000 * NS
TABLES = ("devices", "snmp_targets", "snmp_interfaces")

text = st.sampled_from(["", "a", "b"])
device = st.builds(
    lambda mac, ip, vendor, hostname, interface, first, last, change: ev.Envelope(
        device=ev.DeviceEvent(
            mac=mac,
            ip=ip,
            vendor=vendor,
            hostname=hostname,
            interface=interface,
            first_seen_ns=first,
            last_seen_ns=last,
            change=change,
        )
    ),
    st.sampled_from([b"", bytes.fromhex("020000000001"), bytes.fromhex("020000000002")]),
    st.sampled_from(["", "192.0.2.1", "192.0.2.2"]),
    text,
    text,
    text,
    st.integers(0, 5).map(lambda k: k * NS),
    st.integers(0, 5).map(lambda k: k * NS),
    st.sampled_from(
        [ev.DeviceEvent.SEEN, ev.DeviceEvent.NEW, ev.DeviceEvent.GONE, ev.DeviceEvent.IP_CHANGED]
    ),
)
interface = st.builds(
    lambda if_index, name, octets, bps: ev.SnmpInterface(
        if_index=if_index, name=name, in_octets=octets, **({"in_bps": bps} if bps is not None else {})
    ),
    st.integers(1, 3),
    text,
    st.integers(0, 10),
    st.none() | st.floats(0, 10),
)
snmp = st.builds(
    lambda target, reachable, name, ifs: ev.Envelope(
        snmp=ev.SnmpSample(
            target=target,
            address="192.0.2.9:161",
            reachable=reachable,
            error="" if reachable else "timeout",
            system=ev.SnmpSystem(name=name, uptime_ticks=7),
            interfaces=ifs,
        )
    ),
    st.sampled_from(["sw1", "sw2"]),
    st.booleans(),
    text,
    st.lists(interface, max_size=3, unique_by=lambda i: i.if_index),
)
# events of two sources, observed within a few seconds of each other, in any order
event = st.tuples(st.sampled_from(["edge-1", "edge-2"]), device | snmp, st.integers(0, 4))


def _records(events: list[tuple[str, ev.Envelope, int]]) -> list[Record]:
    stampers = {s: EnvelopeStamper(s) for s in ("edge-1", "edge-2")}
    out = []
    for source, body, offset in events:
        e = ev.Envelope()
        e.CopyFrom(body)
        stampers[source].stamp(e, ts_ns=T0 + offset * NS)
        out.append(Record.from_envelope(e, origin=source))
    return out


def _apply(conn: sqlite3.Connection, batches: list[list[Record]], seq: list[int]) -> None:
    for records in batches:
        views = ViewBatch(T0 + 60 * NS)
        for r in records:
            seq[0] += 1
            views.add_record(seq[0], r)
        conn.execute("BEGIN")
        for sql, rows in views.statements():
            insert_many(conn, sql, rows)
        conn.execute("COMMIT")


def _tables(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _db(tmp: str, name: str) -> sqlite3.Connection:
    conn = sqlite3.connect(Path(tmp) / name, isolation_level=None)
    schema.migrate(conn, name)
    return conn


@settings(max_examples=150, deadline=None)
@given(st.lists(event, max_size=8), st.lists(event, min_size=1, max_size=25))
def test_folded_upserts_leave_the_tables_as_one_event_at_a_time(
    before: list[tuple[str, ev.Envelope, int]], batch: list[tuple[str, ev.Envelope, int]]
) -> None:
    stored, records = _records(before), _records(batch)
    with tempfile.TemporaryDirectory() as tmp:
        folded, single = _db(tmp, "folded.db"), _db(tmp, "single.db")
        try:
            _apply(folded, [stored, records], [0])  # the batch in one transaction: folded
            _apply(single, [stored] + [[r] for r in records], [0])  # each event in its own
            assert _tables(folded) == _tables(single)
        finally:
            folded.close()
            single.close()


def test_a_repeated_key_is_written_once_per_batch() -> None:
    """The fold is real: 50 polls of one target and sightings of one device make one row each."""
    records = _records(
        [
            (
                "edge-1",
                ev.Envelope(
                    snmp=ev.SnmpSample(
                        target="sw1",
                        reachable=True,
                        interfaces=[ev.SnmpInterface(if_index=1, name="ge-0/0/1", in_octets=k)],
                    )
                ),
                0,
            )
            for k in range(50)
        ]
        + [
            (
                "edge-1",
                ev.Envelope(device=ev.DeviceEvent(mac=bytes.fromhex("020000000001"), ip="192.0.2.1")),
                0,
            )
        ]
        * 50
    )
    views = ViewBatch(T0 + 60 * NS)
    for seq, r in enumerate(records, 1):
        views.add_record(seq, r)
    rows = {sql.split("INTO")[1].split()[0]: len(r) for sql, r in views.statements() if "INTO" in sql}
    assert rows["devices"] == 1
    assert rows["snmp_targets"] == 1
    assert rows["snmp_interfaces"] == 1
