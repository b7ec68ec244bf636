"""Event routes: stored events filtered and paged, and one event decoded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from amoskys.events import KINDS
from amoskys.store.export import event_json
from amoskys.store.queries import alerts, log
from amoskys.web.endpoints import ApiError, Call, Router
from amoskys.web.routes.common import Before, Limit, time_ns

router = Router("events")

Kind = Annotated[
    str, msgspec.Meta(pattern=f"^({'|'.join(KINDS)})$", description="one of " + ", ".join(KINDS))
]

Time = Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class EventsQuery(msgspec.Struct, frozen=True):
    kind: Kind | None = None
    source: str | None = None
    since: Annotated[Time | None, msgspec.Meta(description="RFC 3339: observed at or after")] = None
    until: Annotated[Time | None, msgspec.Meta(description="RFC 3339: observed before")] = None
    synthetic: Annotated[
        bool | None,
        msgspec.Meta(
            description="0: leave out synthetic events (from loadgen identities), 1: only those; "
            "default: every event, synthetic ones marked `synthetic: true`"
        ),
    ] = None
    before: Before | None = None
    limit: Limit = 50


class EventPath(msgspec.Struct, frozen=True):
    seq: Annotated[int, msgspec.Meta(ge=0, description="its store_seq")]


@router.get("/api/v1/events", "Stored events, newest first, filtered by kind, source and time")
async def events(call: Call, *, query: EventsQuery) -> Any:
    rows, next_before = await log.page(
        call.ctx.reads,
        kind=query.kind,
        source=query.source,
        since_ns=time_ns(query.since),
        until_ns=time_ns(query.until),
        before_seq=query.before,
        limit=query.limit,
        synthetic=query.synthetic,
    )
    return {"items": rows, "next_before": next_before}


@router.get(
    "/api/v1/events/{seq}",
    "One stored event, decoded (also an alert's evidence event kept past retention: `kept_as_evidence`)",
)
async def event(call: Call, *, path: EventPath) -> Any:
    row = await log.by_seq(call.ctx.reads, path.seq)
    kept = False
    if row is None:  # an alert's evidence outlives retention: the log no longer has it, the alert does
        row = await alerts.kept_evidence(call.ctx.reads, path.seq)
        kept = True
    if row is None:
        raise ApiError(404, f"no event with store_seq {path.seq}")
    # one event's detail: the only read that decodes its body on the loop
    return event_json(row) | {
        "digest": row.digest.hex(),
        "envelope_bytes": len(row.envelope),
        "kept_as_evidence": kept,
    }
