"""events.synthetic: set by the bus for loadgen identities, stored with the event, read back and exported,
beside the chain; schema version 3 adds it and the loadgen identity role to an existing database."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, schema
from amoskys.store.export import export_events
from amoskys.store.records import check_record

from .helpers import Clock, open_store, running, small_config


def _beat(source: str) -> ev.Envelope:
    return EnvelopeStamper(source).stamp(ev.Envelope(heartbeat=ev.Heartbeat(version="1")))


async def test_synthetic_is_stored_with_each_event_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with running(await open_store(path)) as store:
        await store.state.enroll_identity("lg-1", "loadgen", b"\x01" * 32, "1")
        await store.submit(
            [
                Record.from_envelope(_beat("appliance")),
                Record.from_envelope(_beat("agent-1"), origin="agent-1"),
                Record.from_envelope(_beat("lg-1"), origin="lg-1", synthetic=True),
            ]
        )
        rows = await store.events(limit=10)
        assert [(e.source, e.synthetic) for e in rows] == [("appliance", 0), ("agent-1", 0), ("lg-1", 1)]
        assert (await store.verify_chain()).ok  # the flag is beside the chain, not in it
        assert [i.role for i in await store.state.list_identities()] == ["loadgen"]
    out = io.StringIO()
    await export_events(path, out)
    assert [json.loads(line)["synthetic"] for line in out.getvalue().splitlines()] == [False, False, True]


def test_a_record_whose_synthetic_is_not_a_bool_is_refused() -> None:
    record = Record.from_envelope(_beat("lg-1"), origin="lg-1", synthetic=1)  # type: ignore[arg-type]
    assert check_record(record) == "bad_identity_fields"


async def test_migration_to_v3_keeps_identities_and_allows_the_loadgen_role(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for migration in schema.MIGRATIONS[:2]:
            for statement in schema.statements(migration.script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO identities (name, role, public_key, cert_serial, enrolled_ns, revoked_ns) "
            "VALUES ('agent-1', 'agent', ?, '7', 5, 9)",
            (b"\x01" * 32,),
        )
    finally:
        conn.close()
    async with running(await open_store(path)) as store:
        (old,) = await store.state.list_identities()
        assert (old.name, old.role, old.cert_serial, old.enrolled_ns, old.revoked_ns) == (
            "agent-1",
            "agent",
            "7",
            5,
            9,
        )
        await store.state.enroll_identity("lg-1", "loadgen", b"\x02" * 32, "8")
        assert {i.name: i.role for i in await store.state.list_identities()} == {
            "agent-1": "agent",
            "lg-1": "loadgen",
        }
    conn = sqlite3.connect(path)
    try:
        assert schema.schema_version(conn) == schema.SCHEMA_VERSION  # v3, and any later step
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events WHERE synthetic = 1").fetchall()
        assert "events_synthetic" in str(plan)
    finally:
        conn.close()


async def test_the_synthetic_row_count_follows_commits_deletions_and_a_reopen(tmp_path: Path) -> None:
    """The overview reads Store.stats().synthetic_rows on every request (it used to count the partial
    index each time): kept by the writer and by retention's deletions, and counted again at open."""
    path = tmp_path / "events.db"
    clock = Clock()
    store = await open_store(path, clock=clock, config=small_config(retention_hours=1))
    async with running(store):
        await store.state.enroll_identity("lg-1", "loadgen", b"\x01" * 32, "1")
        loadgen = EnvelopeStamper("lg-1")
        old = [Record.from_envelope(_beat("agent-1"), origin="agent-1")] + [
            Record.from_envelope(
                loadgen.stamp(ev.Envelope(heartbeat=ev.Heartbeat())), origin="lg-1", synthetic=True
            )
            for _ in range(5)
        ]
        await store.submit(old)
        assert (await store.stats()).synthetic_rows == 5
        clock.advance(2 * 3600 * 1_000_000_000)
        await store.submit(
            [
                Record.from_envelope(
                    loadgen.stamp(ev.Envelope(heartbeat=ev.Heartbeat())), origin="lg-1", synthetic=True
                )
                for _ in range(3)
            ]
        )
        stats = await store.stats()
        assert (stats.rows, stats.synthetic_rows) == (9, 8)
        assert (await store.maintain()).retention_deleted == 6  # the first six are past retention
        stats = await store.stats()
        assert (stats.rows, stats.synthetic_rows) == (3, 3)
    async with running(await open_store(path, clock=clock)) as reopened:
        assert (await reopened.stats()).synthetic_rows == 3
