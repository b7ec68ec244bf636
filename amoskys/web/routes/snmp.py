"""SNMP routes: polled targets, a page of one target's interfaces, and one interface's recent rates.

A target may have tens of thousands of interfaces: they come a page at a time, never all at once."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import snmp as snmp_reads
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import Limit

router = Router("snmp")

#: targets one answer lists at most
TARGETS_LIMIT = 500


class TargetPath(msgspec.Struct, frozen=True):
    target: str


class InterfacesQuery(msgspec.Struct, frozen=True):
    after_source: Annotated[
        str, msgspec.Meta(description="page on: with `after`, the last item's source (`next`)")
    ] = ""
    after: (
        Annotated[int, msgspec.Meta(ge=0, description="page on: the interfaces after this ifIndex (`next`)")]
        | None
    ) = None
    limit: Limit = 100


class RatesQuery(msgspec.Struct, frozen=True):
    if_index: Annotated[int, msgspec.Meta(ge=0, description="the interface's ifIndex")]
    limit: Annotated[
        int, msgspec.Meta(ge=1, le=24 * 60, description="minutes back (1-minute averages), 1..1440")
    ] = 120


@router.get("/api/v1/snmp/targets", "Polled SNMP devices with their latest state")
async def snmp_targets(call: Call) -> Any:
    rows = await snmp_reads.targets(call.ctx.reads, limit=TARGETS_LIMIT)
    return {"items": rows}


@router.get(
    "/api/v1/snmp/targets/{target}/interfaces",
    "Interfaces of one SNMP device (latest values), a page at a time by source and ifIndex",
)
async def snmp_interfaces(call: Call, *, path: TargetPath, query: InterfacesQuery) -> Any:
    after = (query.after_source, query.after) if query.after is not None else None
    rows = await snmp_reads.interfaces(call.ctx.reads, target=path.target, after=after, limit=query.limit)
    more = len(rows) == query.limit
    nxt = {"after_source": rows[-1]["source"], "after": rows[-1]["if_index"]} if more else None
    return {"items": rows, "next": nxt}


@router.get(
    "/api/v1/snmp/targets/{target}/rates",
    "In/out bit rates of one interface: 1-minute averages, oldest first",
)
async def snmp_rates(call: Call, *, path: TargetPath, query: RatesQuery) -> Any:
    points = await snmp_reads.rates(
        call.ctx.reads,
        target=path.target,
        if_index=query.if_index,
        now_ns=call.ctx.clock_ns(),
        minutes=query.limit,
    )
    return {"target": path.target, "if_index": query.if_index, "points": points}
