"""The audit log route."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from amoskys.store.queries import history
from amoskys.web.endpoints import Call, Router
from amoskys.web.routes.common import After, Limit, page

router = Router("audit")


class AuditQuery(msgspec.Struct, frozen=True):
    remote: Annotated[
        bool,
        msgspec.Meta(
            description="instead, the audit events that came through the bus (relayed from other "
            "appliances), each with its source and origin"
        ),
    ] = False
    before: After | None = None
    limit: Limit = 50


@router.get(
    "/api/v1/audit",
    "Audit log: logins, failed logins, control actions, newest first (this appliance's own by default)",
)
async def audit(call: Call, *, query: AuditQuery) -> Any:
    rows = await history.audit(
        call.ctx.reads, scope="remote" if query.remote else "local", before=query.before, limit=query.limit
    )
    return page(rows, query.limit) | {"remote": query.remote}
