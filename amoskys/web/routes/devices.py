"""The device inventory route."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries.reader import SYNTHETIC_SOURCE
from amoskys.web.endpoints import Call, Router

router = Router("devices")

#: devices one answer lists at most (the most recently seen)
DEVICES_LIMIT = 1000


class DevicesQuery(msgspec.Struct, frozen=True):
    present: Annotated[bool, msgspec.Meta(description="only devices not gone")] = False
    new_within_hours: Annotated[
        int, msgspec.Meta(ge=1, le=24 * 365, description="flag devices first seen this recently")
    ] = 24


@router.get("/api/v1/devices", "The device inventory, most recently seen first")
async def devices(call: Call, *, query: DevicesQuery) -> Any:
    ctx = call.ctx
    rows = await ctx.reads.dicts(
        f"SELECT *, {SYNTHETIC_SOURCE} FROM devices WHERE (? = 0 OR present = 1) "
        "ORDER BY last_seen_ns DESC LIMIT ?",
        (1 if query.present else 0, DEVICES_LIMIT),
    )
    cutoff = ctx.clock_ns() - query.new_within_hours * 3600 * 10**9
    for r in rows:
        r["mac"] = r["mac"].hex(":") if isinstance(r["mac"], bytes) else r["mac"]
        r["new"] = r["first_seen_ns"] >= cutoff
        r["synthetic"] = bool(r["synthetic"])
    return {"items": rows}
