"""Pages of the event log itself (the Events page): newest first by store_seq, on the primary key or the
events_kind index. Rows are StoredEvents: a list shows their identity and a short summary, never a
decoded body; one event's detail view decodes that event only."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from amoskys.proto import events_pb2
from amoskys.store.records import StoredEvent

if TYPE_CHECKING:
    from amoskys.store.queries.reader import Reader

_COLUMNS = (
    "store_seq, event_id, source, boot_id, source_seq, kind, ts_ns, received_ns, envelope, digest, "
    "origin, synthetic"
)
#: store_seq values per statement when a filter without an index (source, time) leaves rows out
WINDOW = 20_000
#: at most this many store_seq values looked at per page: a rare filter ends a page early (then
#: `next_before` continues further back) instead of scanning the whole log
SCAN_LIMIT = 200_000


Filters = tuple[str, tuple[Any, ...]]


class LogFilters(TypedDict, total=False):
    """The filters of a page of the log (`recent`, `page`); each left out or None: no filter."""

    kind: str | None
    source: str | None
    since_ns: int | None
    until_ns: int | None
    before_seq: int | None
    scope: Literal["local", "remote"] | None
    synthetic: bool | None


def _where(
    *,
    kind: str | None = None,
    source: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    before_seq: int | None = None,
    scope: Literal["local", "remote"] | None = None,
    synthetic: bool | None = None,
) -> Filters:
    """The WHERE clause of a page: below `before_seq` (else the newest), at most SCAN_LIMIT store_seq
    values back, and the filters."""
    top = "?" if before_seq else "(SELECT MAX(store_seq) + 1 FROM events)"
    bounds: tuple[Any, ...] = (before_seq,) if before_seq else ()
    where = [f"store_seq < {top}", f"store_seq >= {top} - {SCAN_LIMIT}"]
    params: list[Any] = [*bounds, *bounds]
    for clause, value in (
        ("kind = ?", kind),
        ("source = ?", source),
        ("ts_ns >= ?", since_ns),
        ("ts_ns < ?", until_ns),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    if scope is not None:
        where.append("origin = ''" if scope == "local" else "origin != ''")
    if synthetic is not None:
        where.append("synthetic = 1" if synthetic else "synthetic = 0")
    return " AND ".join(where), tuple(params)


async def recent(
    reader: Reader,
    *,
    limit: int = 50,
    **filters: Unpack[LogFilters],
) -> list[StoredEvent]:
    """Up to `limit` stored events, newest first, with store_seq < before_seq, in one statement over a
    bounded window of store_seq (SCAN_LIMIT)."""
    where, params = _where(**filters)
    sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY store_seq DESC LIMIT ?"
    return [StoredEvent(*r) for r in await reader.rows(sql, (*params, limit))]


_ITEM_COLUMNS = (
    "store_seq, event_id, source, origin, synthetic, boot_id, source_seq, kind, ts_ns, received_ns, "
    "amoskys_body_json(envelope) AS body"
)


async def page(
    reader: Reader,
    *,
    limit: int = 50,
    **filters: Unpack[LogFilters],
) -> tuple[list[dict[str, Any]], int | None]:
    """`recent`, as the API's objects (the body in protobuf JSON, made in the reader's thread by the
    SQL function amoskys_body_json (`body_json`), never on the event loop), and the `before` of the
    next page: the last item's store_seq on a full page; else the bottom of the store_seq window this
    page covered, while there are older store_seq values to look at (None: none)."""
    where, params = _where(**filters)
    inner = f"SELECT {_ITEM_COLUMNS} FROM events WHERE {where} ORDER BY store_seq DESC LIMIT ?"
    # one row at least (the window's top, with NULLs when nothing matched): one statement, one hop
    before_seq = filters.get("before_seq")
    top = "?" if before_seq else "(SELECT MAX(store_seq) + 1 FROM events)"
    sql = (
        f"SELECT w.top, w.low, p.* FROM (SELECT {top} AS top, (SELECT MIN(store_seq) FROM events) AS low) w "
        f"LEFT JOIN ({inner}) p ON 1 ORDER BY p.store_seq DESC"
    )
    rows = await reader.rows(sql, (*((before_seq,) if before_seq else ()), *params, limit))
    out = []
    for r in rows:
        if r["store_seq"] is None:
            continue
        item = dict(zip(r.keys()[2:], tuple(r)[2:], strict=True))
        item["synthetic"] = bool(item["synthetic"])
        item["body"] = json.loads(item["body"])
        out.append(item)
    if len(out) == limit:
        return out, out[-1]["store_seq"]
    floor = (rows[0]["top"] or 1) - SCAN_LIMIT
    low = rows[0]["low"]
    return out, floor if low is not None and floor > low else None


def body_json(envelope: bytes) -> str:
    """The body of a stored envelope in protobuf JSON text ("null" when it does not parse). Registered
    on the reader's connection as the SQL function amoskys_body_json: it runs in the reader's thread."""
    try:
        env = events_pb2.Envelope.FromString(envelope)
    except DecodeError:
        return "null"
    kind = env.WhichOneof("body")
    body = MessageToDict(getattr(env, kind), preserving_proto_field_name=True) if kind else {}
    return json.dumps(body)


async def by_seq(reader: Reader, seq: int) -> StoredEvent | None:
    rows = await reader.rows(f"SELECT {_COLUMNS} FROM events WHERE store_seq = ?", (seq,))
    return StoredEvent(*rows[0]) if rows else None
