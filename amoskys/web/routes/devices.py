"""The device inventory route."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import mark_synthetic

router = Router("devices")


class DevicesQuery(msgspec.Struct, frozen=True):
    present: Annotated[bool, msgspec.Meta(description="only devices not gone")] = False
    new_within_hours: Annotated[
        int, msgspec.Meta(ge=1, le=24 * 365, description="flag devices first seen this recently")
    ] = 24


@router.get("/api/v1/devices", "The device inventory, most recently seen first")
async def devices(call: Call, *, query: DevicesQuery) -> Any:
    ctx = call.ctx
    rows = await ctx.store.devices(present_only=query.present)
    await mark_synthetic(ctx, rows)
    cutoff = ctx.clock_ns() - query.new_within_hours * 3600 * 10**9
    for r in rows:
        r["mac"] = r["mac"].hex(":") if isinstance(r["mac"], bytes) else r["mac"]
        r["new"] = r["first_seen_ns"] >= cutoff
    return {"items": rows}
