"""Export the event log as JSON Lines, read-only, also while an appliance is writing to it.

One JSON object per event, in store_seq order, with the fields documented in amoskys/store/README.md:
store_seq, event_id, source, origin ("" for the appliance's own events, else the enrolled identity
the event came through: the agent itself, or the relay that forwarded it), synthetic (true when a
loadgen identity published it), boot_id, source_seq, kind, ts_ns, received_ns and body (the body
message as protobuf JSON: field names as in the .proto, bytes as base64, 64-bit integers as strings,
fields at their default value left out; null when the stored envelope cannot be parsed).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any, TextIO

import aiosqlite
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from amoskys.errors import StoreError
from amoskys.proto import events_pb2
from amoskys.store import queries

#: Rows per read (each page is its own short read transaction, so the writer's WAL is never pinned).
PAGE = 1000


def event_json(row: Any) -> dict[str, Any]:
    """The export object of one StoredEvent."""
    body: dict[str, Any] | None = None
    try:
        envelope = events_pb2.Envelope.FromString(row.envelope)
        kind = envelope.WhichOneof("body")
        if kind:
            body = MessageToDict(getattr(envelope, kind), preserving_proto_field_name=True)
        else:
            body = {}
    except DecodeError:
        body = None
    return {
        "store_seq": row.store_seq,
        "event_id": row.event_id,
        "source": row.source,
        "origin": row.origin,
        "synthetic": bool(row.synthetic),
        "boot_id": row.boot_id,
        "source_seq": row.source_seq,
        "kind": row.kind,
        "ts_ns": row.ts_ns,
        "received_ns": row.received_ns,
        "body": body,
    }


async def export_events(
    db_path: Path,
    out: TextIO,
    *,
    kind: str | None = None,
    source: str | None = None,
    since_ns: int | None = None,
    limit: int | None = None,
) -> int:
    """Write matching events to `out` as JSON Lines; return how many were written.

    Opens the database read-only (never creating or changing it); works while the appliance runs.
    `since_ns` filters on observation time (ts_ns >= since_ns). `limit` None means all.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"export_events: limit must be >= 0, got {limit}")
    absolute = await asyncio.to_thread(db_path.absolute)
    if not await asyncio.to_thread(absolute.is_file):
        raise StoreError(f"store {db_path}: no such file")
    uri = f"file:{urllib.parse.quote(str(absolute))}?mode=ro"
    try:
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot open read-only: {err}") from err
    written = 0
    after = 0
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        while limit is None or written < limit:
            want = PAGE if limit is None else min(PAGE, limit - written)
            rows = await queries.events(
                conn,
                kind=kind,
                source=source,
                since_ns=since_ns,
                after_seq=after,
                limit=want,
                path=str(db_path),
            )
            if not rows:
                break
            text = "".join(json.dumps(event_json(r), separators=(",", ":")) + "\n" for r in rows)
            await asyncio.to_thread(out.write, text)
            written += len(rows)
            after = rows[-1].store_seq
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot read: {err}") from err
    finally:
        await conn.close()
    await asyncio.to_thread(out.flush)
    return written
