"""Flow routes: recent flow records with search (SQL over the `flows` table), and the top talkers (the
flow time series)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import flows as flow_reads
from amoskys.web.endpoints import Call, Router
from amoskys.web.flowview import present
from amoskys.web.routes.common import After, Limit, page

router = Router("flows")


class FlowsQuery(msgspec.Struct, frozen=True):
    ip: Annotated[str, msgspec.Meta(description="an address, as source or destination")] = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535, description="the destination port")] | None = None
    community_id: str = ""
    before: After | None = None
    limit: Limit = 50


class TopQuery(msgspec.Struct, frozen=True):
    minutes: Annotated[
        int, msgspec.Meta(ge=1, le=2880, description="how far back to sum (minute points)")
    ] = 15
    limit: Limit = 20


@router.get(
    "/api/v1/flows",
    "Recent flow records, newest first by observation time; search by IP, destination port or Community "
    "ID. Each has `protocol_name`, `service` and `duration_seconds`; `names` gives the device or host "
    "behind the page's addresses",
)
async def flows(call: Call, *, query: FlowsQuery) -> Any:
    rows = await flow_reads.flows(
        call.ctx.reads,
        ip=query.ip,
        port=query.port,
        community_id=query.community_id,
        before=query.before,
        limit=query.limit,
    )
    # each record's protocol, service and duration; the device or host behind each address
    return page(rows, query.limit) | {"names": await present(call.ctx.reads, rows)}


@router.get(
    "/api/v1/flows/top",
    "Top talkers by octets over the last `minutes` of real traffic (the flow time series; loadgen's "
    "flows are not in it)",
)
async def top_talkers(call: Call, *, query: TopQuery) -> Any:
    since = call.ctx.clock_ns() - query.minutes * 60 * 10**9
    items = await flow_reads.top_talkers(call.ctx.reads, since_ns=since, limit=query.limit)
    return {"items": items, "minutes": query.minutes}
