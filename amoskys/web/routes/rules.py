"""Detection rule routes: every rule as loaded, unsupported or invalid with the reason, and the counts;
enable or disable a loaded rule at runtime (admins; audited by the detections' desk)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import msgspec

from amoskys.web.context import WebContext
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.alerts import desk

router = Router("rules")


class RuleBody(msgspec.Struct, frozen=True):
    rule_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=1000, description="the rule's id (GET /api/v1/rules)")
    ]


def rules_view_of(ctx: WebContext) -> dict[str, Any]:
    """The rules as the detections hold them now (in memory): counts, and each rule with its status."""
    found = ctx.detections
    if found is None:
        return {"loaded": 0, "unsupported": 0, "invalid": 0, "enabled": 0, "running": False, "items": []}
    view = found.rules()
    return {
        "loaded": view.loaded,
        "unsupported": view.unsupported,
        "invalid": view.invalid,
        "enabled": view.enabled,
        "running": True,
        "items": [asdict(r) | {"tags": list(r.tags)} for r in view.items],
    }


@router.get(
    "/api/v1/rules",
    "Detection rules: each loaded, unsupported or invalid (with the reason) and whether it is enabled",
)
async def rules(call: Call) -> Any:
    return rules_view_of(call.ctx)


@router.post("/api/v1/rules/enable", "Enable a loaded rule at runtime (audited)", role="admin")
async def enable_rule(call: Call, *, body: RuleBody) -> Any:
    await desk(call).set_rule_enabled(call.actor, body.rule_id, True)
    return {"rule_id": body.rule_id, "enabled": True}


@router.post("/api/v1/rules/disable", "Disable a loaded rule at runtime (audited)", role="admin")
async def disable_rule(call: Call, *, body: RuleBody) -> Any:
    await desk(call).set_rule_enabled(call.actor, body.rule_id, False)
    return {"rule_id": body.rule_id, "enabled": False}
