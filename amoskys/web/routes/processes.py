"""Process routes: the current process table, and recent exec and exit events."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.proto import events_pb2
from amoskys.web.endpoints import Call, Router
from amoskys.web.reads import event_dict
from amoskys.web.routes.common import Before, Limit, mark_synthetic, page

router = Router("processes")


class ProcessesQuery(msgspec.Struct, frozen=True):
    source: str | None = None
    q: Annotated[str, msgspec.Meta(description="substring of exe, argv or user")] = ""


class ExecsQuery(msgspec.Struct, frozen=True):
    before: Before | None = None
    limit: Limit = 50


@router.get("/api/v1/processes", "The current process table (from the process collector)")
async def processes(call: Call, *, query: ProcessesQuery) -> Any:
    rows = await call.ctx.store.processes(source=query.source)
    await mark_synthetic(call.ctx, rows)
    q = query.q.lower()
    if q:
        rows = [
            r
            for r in rows
            if q in r["exe"].lower() or q in " ".join(r["argv"]).lower() or q in r["user"].lower()
        ]
    for r in rows:
        r["exe_sha256"] = r["exe_sha256"].hex() if isinstance(r["exe_sha256"], bytes) else r["exe_sha256"]
    return {"items": rows[:2000], "total": len(rows)}


@router.get("/api/v1/processes/execs", "Recent exec and exit events, newest first")
async def execs(call: Call, *, query: ExecsQuery) -> Any:
    def wanted(env: events_pb2.Envelope) -> bool:
        return env.process.kind in (events_pb2.ProcessEvent.EXEC, events_pb2.ProcessEvent.EXIT)

    rows = await call.ctx.reads.recent(
        kind="process", before_seq=query.before, limit=query.limit, match=wanted
    )
    return page([event_dict(e) for e in rows], query.limit)
