"""The data of the joined pages (/hosts/<source>, /devices/<mac or ip>): what their /api/v1 twins
answer, with the page's query."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from amoskys.web.auth import Principal
from amoskys.web.context import WebContext
from amoskys.web.routes import joined as joined_api


async def host(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    data: dict[str, Any] = await joined_api.host.invoke(request, ctx, p)
    return {"h": data, "q": dict(request.query_params)}


async def device(request: Request, ctx: WebContext, p: Principal) -> dict[str, Any]:
    data: dict[str, Any] = await joined_api.device.invoke(request, ctx, p)
    return {"d": data}
