"""SNMP routes: polled targets, their interfaces, and one interface's recent rates."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import Limit, mark_synthetic

router = Router("snmp")


class TargetPath(msgspec.Struct, frozen=True):
    target: str


class RatesQuery(msgspec.Struct, frozen=True):
    if_index: Annotated[int, msgspec.Meta(ge=0, description="the interface's ifIndex")]
    limit: Limit = 120


@router.get("/api/v1/snmp/targets", "Polled SNMP devices with their latest state")
async def snmp_targets(call: Call) -> Any:
    return {"items": await mark_synthetic(call.ctx, await call.ctx.store.snmp_targets())}


@router.get("/api/v1/snmp/targets/{target}/interfaces", "Interfaces of one SNMP device (latest values)")
async def snmp_interfaces(call: Call, *, path: TargetPath) -> Any:
    return {"items": await call.ctx.store.snmp_interfaces(target=path.target)}


@router.get("/api/v1/snmp/targets/{target}/rates", "Recent in/out bit rates of one interface")
async def snmp_rates(call: Call, *, path: TargetPath, query: RatesQuery) -> Any:
    target, if_index = path.target, query.if_index
    rows = await call.ctx.reads.recent(
        kind="snmp", limit=query.limit, match=lambda env: env.snmp.target == target
    )
    points = []
    for e in reversed(rows):
        for i in e.parse().snmp.interfaces:
            if i.if_index == if_index and i.HasField("in_bps"):
                points.append({"ts_ns": e.ts_ns, "in_bps": i.in_bps, "out_bps": i.out_bps})
    return {"target": target, "if_index": if_index, "points": points}
