"""Export the event log as JSON Lines (ours or ECS), read-only, also while an appliance is writing to it.

One JSON object per event, in store_seq order, with the fields documented in amoskys/store/README.md.
`export_json` encodes a stored event for the export: a descriptor-driven walk of the body message
(proto field names; fields at their default value left out) where integers are JSON numbers, every
time field `X_ns` is the exact nanosecond integer as a decimal string next to `X`, the same instant
as an RFC 3339 string with nanoseconds, MACs are `aa:bb:cc:dd:ee:ff`, other bytes lowercase hex and
enums their names. `--format ecs` documents come from amoskys.ecs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

import aiosqlite
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message

from amoskys.errors import StoreError
from amoskys.proto import events_pb2
from amoskys.store import queries

#: Rows per read (each page is its own short read transaction, so the writer's WAL is never pinned).
PAGE = 1000

#: The body kinds, as stored in the `kind` column (the Envelope's `body` oneof).
KINDS: tuple[str, ...] = tuple(f.name for f in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields)

#: int64 `*_ns` fields that are durations, not instants: written as plain JSON numbers.
DURATION_FIELDS = frozenset({"lifetime_ns"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def rfc3339_ns(ns: int) -> str:
    """UTC nanoseconds as RFC 3339 with all nine fraction digits: 2026-12-03T10:00:00.123456789Z."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    when = _EPOCH + timedelta(seconds=seconds)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def mac_text(raw: bytes) -> str:
    """A MAC address as aa:bb:cc:dd:ee:ff."""
    return ":".join(f"{b:02x}" for b in raw)


def is_time_field(fd: FieldDescriptor) -> bool:
    """An int64 `*_ns` field holding an instant (UTC ns), not a duration."""
    return (
        fd.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64)
        and fd.name.endswith("_ns")
        and fd.name not in DURATION_FIELDS
    )


def _is_mac_field(name: str) -> bool:
    return name == "mac" or name.endswith("_mac") or name == "phys_address"


def _is_ip_field(name: str) -> bool:
    return name == "ip" or name.endswith(("_ip", "_addr", "address"))


def bytes_text(name: str, raw: bytes) -> str:
    """A bytes field as text: a 6-byte MAC field as aa:bb:cc:dd:ee:ff, a 4- or 16-byte address field
    as the IP address, anything else (digests) as lowercase hex."""
    if len(raw) == 6 and _is_mac_field(name):
        return mac_text(raw)
    if len(raw) in (4, 16) and _is_ip_field(name):
        return str(ipaddress.ip_address(raw))
    return raw.hex()


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return message_json(value)
    if fd.type == FieldDescriptor.TYPE_ENUM and fd.enum_type is not None:  # always set for an enum
        number = fd.enum_type.values_by_number.get(value)
        return number.name if number is not None else value
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return bytes_text(fd.name, value)
    if fd.type in _FLOATS:
        return value if math.isfinite(value) else None
    if fd.type in _INTEGERS and is_time_field(fd):
        return str(value)
    return value  # str, bool, other integers: JSON as they are


def message_json(message: Message) -> dict[str, Any]:
    """A protobuf message as the export's JSON object (see the module docstring)."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if (
            fd.type == FieldDescriptor.TYPE_MESSAGE
            and fd.message_type is not None  # always set for a message field
            and fd.message_type.GetOptions().map_entry
        ):
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {str(k): _scalar(value_fd, v) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.name] = [_scalar(fd, v) for v in value]
        elif is_time_field(fd):
            out[fd.name.removesuffix("_ns")] = rfc3339_ns(value)
            out[fd.name] = str(value)
        else:
            out[fd.name] = _scalar(fd, value)
    return out


def _body(row: Any, encode: Callable[[Message], dict[str, Any]]) -> dict[str, Any] | None:
    """The stored envelope's body through `encode`; None when the envelope does not parse."""
    try:
        envelope = events_pb2.Envelope.FromString(row.envelope)
    except DecodeError:
        return None
    kind = envelope.WhichOneof("body")
    return encode(getattr(envelope, kind)) if kind else {}


def _identity(row: Any) -> dict[str, Any]:
    """The fields both encodings share, in their order."""
    return {
        "store_seq": row.store_seq,
        "event_id": row.event_id,
        "source": row.source,
        "origin": row.origin,
        "synthetic": bool(row.synthetic),
        "boot_id": row.boot_id,
        "source_seq": row.source_seq,
        "kind": row.kind,
    }


def export_json(row: Any) -> dict[str, Any]:
    """The `amoskys events export` object of one StoredEvent."""
    return _identity(row) | {
        "ts": rfc3339_ns(row.ts_ns),
        "ts_ns": str(row.ts_ns),
        "received": rfc3339_ns(row.received_ns),
        "received_ns": str(row.received_ns),
        "body": _body(row, message_json),
    }


def event_json(row: Any) -> dict[str, Any]:
    """The JSON API's object of one StoredEvent (`/api/v1/events/{seq}`, amoskys.web.routes.events):
    the body in protobuf JSON, ns as numbers at the top level. Not the export's encoding (`export_json`)."""
    return _identity(row) | {
        "ts_ns": row.ts_ns,
        "received_ns": row.received_ns,
        "body": _body(row, lambda body: MessageToDict(body, preserving_proto_field_name=True)),
    }


@dataclass
class ExportSummary:
    """What one export wrote, and what it skipped (ECS: kinds without a mapping) by kind."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


async def export_events(
    db_path: Path,
    out: TextIO,
    *,
    kind: str | None = None,
    source: str | None = None,
    since_ns: int | None = None,
    limit: int | None = None,
    format: Literal["jsonl", "ecs"] = "jsonl",
) -> ExportSummary:
    """Write matching events to `out` as JSON Lines (`export_json`, or ECS documents from amoskys.ecs,
    which skips and counts the kinds it has no mapping for); return what was written and skipped.

    Opens the database read-only (never creating or changing it); works while the appliance runs.
    `since_ns` filters on observation time (ts_ns >= since_ns). `limit` (None: all) counts lines written.
    """
    from amoskys import ecs

    if limit is not None and limit < 0:
        raise ValueError(f"export_events: limit must be >= 0, got {limit}")
    if format not in ("jsonl", "ecs"):
        raise ValueError(f"export_events: format must be 'jsonl' or 'ecs', got {format!r}")
    absolute = await asyncio.to_thread(db_path.absolute)
    if not await asyncio.to_thread(absolute.is_file):
        raise StoreError(f"store {db_path}: no such file")
    uri = f"file:{urllib.parse.quote(str(absolute))}?mode=ro"
    try:
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot open read-only: {err}") from err
    summary = ExportSummary()
    after = 0
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        while limit is None or summary.written < limit:
            want = PAGE if limit is None or format == "ecs" else min(PAGE, limit - summary.written)
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
            after = rows[-1].store_seq
            lines: list[str] = []
            for row in rows:
                if limit is not None and summary.written >= limit:
                    break
                doc = export_json(row) if format == "jsonl" else ecs.stored_event(row)
                if doc is None:
                    summary.skipped[row.kind] += 1
                    continue
                lines.append(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
                summary.written += 1
            await asyncio.to_thread(out.write, "".join(lines))
    except sqlite3.Error as err:
        raise StoreError(f"store {db_path}: cannot read: {err}") from err
    finally:
        await conn.close()
    await asyncio.to_thread(out.flush)
    return summary
