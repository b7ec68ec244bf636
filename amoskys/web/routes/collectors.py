"""Collector routes: list them; start, stop or restart one (through the control service)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.control_service import COLLECTOR_ACTIONS
from amoskys.web.endpoints import Call, Router

router = Router("collectors")


class CollectorActionPath(msgspec.Struct, frozen=True):
    name: Annotated[str, msgspec.Meta(description="the collector's name (GET /api/v1/collectors)")]
    action: Annotated[str, msgspec.Meta(description=f"{', '.join(COLLECTOR_ACTIONS)} (another action: 404)")]


@router.get("/api/v1/collectors", "Every collector: state, mode, events, errors, restarts, last error")
async def collectors(call: Call) -> Any:
    return {"items": [c.to_dict() | {"state_text": c.state_text} for c in call.ctx.supervisor.status()]}


@router.post(
    "/api/v1/collectors/{name}/{action}",
    "Start, stop or restart a collector (409 with the reason when its state does not allow it, or it "
    "did not start)",
    role="admin",
)
async def collector_action(call: Call, *, path: CollectorActionPath) -> Any:
    status = await call.ctx.control.collector(call.actor, path.action, path.name)
    return status.to_dict() | {"state_text": status.state_text}
