"""The /api/v1 route modules, one per page or concept; ENDPOINTS lists every endpoint they declare."""

from __future__ import annotations

from starlette.routing import Route

from amoskys.web.context import WebContext
from amoskys.web.endpoints import Endpoint, starlette_routes
from amoskys.web.routes import (
    agents,
    alerts,
    audit,
    collectors,
    devices,
    events,
    flows,
    host,
    joined,
    overview,
    processes,
    rules,
    search,
    series,
    session,
    snmp,
    tokens,
    users,
)

ENDPOINTS: list[Endpoint] = [
    ep
    for module in (
        session,
        tokens,
        overview,
        alerts,
        rules,
        collectors,
        events,
        processes,
        host,
        flows,
        devices,
        snmp,
        series,
        agents,
        users,
        audit,
        search,
        joined,
    )
    for ep in module.router.endpoints
]


def routes(ctx: WebContext) -> list[Route]:
    """Starlette routes for every endpoint, and the OpenAPI document."""
    return starlette_routes(ctx, ENDPOINTS)
