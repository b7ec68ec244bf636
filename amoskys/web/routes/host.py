"""The host route: each source's latest minute of host metrics, and one source's recent minutes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import sources
from amoskys.web.endpoints import Call, Router

router = Router("host")


class HostQuery(msgspec.Struct, frozen=True):
    source: Annotated[
        str | None, msgspec.Meta(description="only this source (the appliance or an agent), with its minutes")
    ] = None
    minutes: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=1440,
            description="how far back to look (a source silent for longer is left out); with `source`, "
            "its minute points over that time",
        ),
    ] = 60


@router.get(
    "/api/v1/host",
    "Host metrics (from the host collector) per source: each one's latest minute within `minutes` "
    "(averages, CPU and load maxima); with `source`, only that source and its minute points",
)
async def host(call: Call, *, query: HostQuery) -> Any:
    reads = call.ctx.reads
    since = call.ctx.clock_ns() - query.minutes * 60 * 10**9
    latest = await sources.host_latest(reads, since, source=query.source)
    series: list[dict[str, Any]] = []
    if query.source is not None:
        series = await sources.host_series(reads, query.source, since)
    return {"items": latest, "series": series, "sources": await sources.sources(reads)}
