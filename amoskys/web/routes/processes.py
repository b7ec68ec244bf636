"""Process routes: the current process table, and recent exec and exit events (process_history)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec

from amoskys.store.queries import history
from amoskys.store.queries.reader import SYNTHETIC_SOURCE
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import After, Limit, page

router = Router("processes")

#: the process table's rows one answer carries at most (`total` counts them all)
TABLE_LIMIT = 2000


#: the process table's orders (`sort`): SQL ORDER BY clauses, each ending on the primary key
SORTS = {
    "": "source, pid",
    "cpu": "cpu_percent DESC, source, pid",
    "rss": "rss_bytes DESC, source, pid",
    "user": "user, source, pid",
    "exe": "exe, source, pid",
}


class ProcessesQuery(msgspec.Struct, frozen=True):
    source: str | None = None
    q: Annotated[str, msgspec.Meta(description="substring of exe, argv or user")] = ""
    sort: Annotated[
        str,
        msgspec.Meta(
            pattern="^(cpu|rss|user|exe)?$",
            description="order: cpu or rss (most first), user, exe; default: by source and PID",
        ),
    ] = ""


class ExecsQuery(msgspec.Struct, frozen=True):
    source: str | None = None
    exe: Annotated[str | None, msgspec.Meta(description="the executable's full path")] = None
    comm: Annotated[str | None, msgspec.Meta(description="the executable's base name")] = None
    q: Annotated[
        str,
        msgspec.Meta(
            max_length=200,
            description="substring of exe, argv or user (case-insensitive), looked for among the newest "
            "20,000 events before the page",
        ),
    ] = ""
    before: After | None = None
    limit: Limit = 50


_TABLE_SQL = (
    f"SELECT *, {SYNTHETIC_SOURCE}, COUNT(*) OVER () AS total FROM processes "
    "WHERE (?1 IS NULL OR source = ?1) AND (?2 = '' OR "
    "instr(lower(exe), ?2) OR instr(lower(user), ?2) OR "
    "instr(lower((SELECT group_concat(value, ' ') FROM json_each(argv))), ?2)) "
    "ORDER BY {order} LIMIT ?3"
)


@router.get("/api/v1/processes", "The current process table (from the process collector)")
async def processes(call: Call, *, query: ProcessesQuery) -> Any:
    sql = _TABLE_SQL.format(order=SORTS[query.sort])
    rows = await call.ctx.reads.dicts(sql, (query.source, query.q.lower(), TABLE_LIMIT))
    total = rows[0]["total"] if rows else 0
    for r in rows:
        del r["total"]
        r["argv"] = json.loads(r["argv"])
        r["synthetic"] = bool(r["synthetic"])
        r["exe_sha256"] = r["exe_sha256"].hex() if isinstance(r["exe_sha256"], bytes) else r["exe_sha256"]
    return {"items": rows, "total": total}


@router.get("/api/v1/processes/execs", "Recent exec and exit events, newest first by observation time")
async def execs(call: Call, *, query: ExecsQuery) -> Any:
    rows = await history.execs(
        call.ctx.reads,
        source=query.source,
        exe=query.exe,
        comm=query.comm,
        q=query.q,
        before=query.before,
        limit=query.limit,
    )
    return page(rows, query.limit)
