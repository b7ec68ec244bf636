"""events.origin: who an event came through, written with the event, read back everywhere, and filled in
for rows stored before it existed (schema version 2)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record, chain, schema

from .helpers import open_store, running


def _beat(stamper: EnvelopeStamper) -> ev.Envelope:
    return stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat(version="1")))


async def _fill(path: Path) -> None:
    """Local, agent and relayed rows; `agent-1` and `relay-1` enrolled."""
    async with running(await open_store(path)) as store:
        await store.state.enroll_identity("agent-1", "agent", b"\x01" * 32, "1")
        await store.state.enroll_identity("relay-1", "relay", b"\x02" * 32, "2")
        await store.submit(
            [
                Record.from_envelope(_beat(EnvelopeStamper("appliance"))),
                Record.from_envelope(_beat(EnvelopeStamper("agent-1")), origin="agent-1"),
                Record.from_envelope(_beat(EnvelopeStamper("downstream-1")), origin="relay-1"),
            ]
        )


async def test_origin_is_stored_with_each_event_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _fill(path)
    async with running(await open_store(path)) as store:
        rows = await store.events(limit=10)
        assert [(e.source, e.origin, e.remote) for e in rows] == [
            ("appliance", "", False),
            ("agent-1", "agent-1", True),
            ("downstream-1", "relay-1", True),
        ]
        assert (await store.verify_chain()).ok  # origin is beside the chain, not in it


def _v1_database(path: Path) -> None:
    """A database exactly as a version 1 build left it: local, agent and relayed rows, two identities."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in schema.statements(schema.MIGRATIONS[0].script):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        schema.ensure_meta(conn, now_ns=1, first_seq=1)
        digest = schema.GENESIS_DIGEST
        for seq, source in enumerate(("appliance", "agent-1", "downstream-1"), start=1):
            env = _beat(EnvelopeStamper(source))
            data = env.SerializeToString()
            digest = chain.next_digest(digest, data)
            conn.execute(
                "INSERT INTO events (store_seq, source, event_id, boot_id, source_seq, kind, ts_ns, "
                "received_ns, envelope, digest) VALUES (?, ?, ?, ?, ?, 'heartbeat', ?, ?, ?, ?)",
                (seq, source, env.event_id, env.boot_id, env.source_seq, env.ts_ns, env.ts_ns, data, digest),
            )
        conn.execute("UPDATE store_meta SET last_seq = 3, last_digest = ?, row_count = 3", (digest,))
        for name, role in (("agent-1", "agent"), ("relay-1", "relay")):
            conn.execute(
                "INSERT INTO identities (name, role, public_key, cert_serial, enrolled_ns) VALUES (?, ?, ?, '1', 1)",
                (name, role, b"\x01" * 32),
            )
    finally:
        conn.close()


async def test_migration_to_v2_marks_rows_of_enrolled_identities_as_remote(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _v1_database(path)
    async with running(await open_store(path)) as store:
        rows = await store.events(limit=10)
        assert [(e.source, e.origin) for e in rows] == [
            ("appliance", ""),
            ("agent-1", "agent-1"),  # an enrolled identity's own rows came through the bus
            ("downstream-1", ""),  # what a relay forwarded before v2 cannot be told apart
        ]
        assert (await store.verify_chain()).ok
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION >= 2
    finally:
        conn.close()
