"""The Starlette application served on the web port: pages, JSON API, SSE, /metrics and health."""

from __future__ import annotations

import asyncio
import hmac

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.web import api, live, pages
from amoskys.web.context import WebContext
from amoskys.web.security import SecurityHeaders

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_app(
    metrics: Metrics,
    health: Health,
    *,
    metrics_token: str = "",
    ctx: WebContext | None = None,
    hsts: bool = False,
) -> Starlette:
    """/metrics (bearer token when configured), /healthz, /readyz; with a context, also the dashboard
    pages, the /api/v1 JSON API with its OpenAPI document, the SSE stream and the static assets."""

    async def metrics_endpoint(request: Request) -> Response:
        if metrics_token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {metrics_token}".encode()):
                return Response(
                    "bearer token required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        # alive: the loop answered. Degraded components are listed, not hidden.
        return JSONResponse({"status": "ok", **health.snapshot()})

    async def readyz(request: Request) -> Response:
        snap = health.snapshot()
        return JSONResponse(snap, status_code=200 if snap["ready"] else 503)

    routes: list[Route | Mount] = [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    if ctx is not None:
        web_ctx = ctx

        async def stream(request: Request) -> Response:
            return await live.stream(request, web_ctx)

        routes += api.routes(ctx)
        routes.append(Route("/api/v1/stream", stream))
        routes += pages.routes(ctx)
        routes.append(Mount("/static", app=StaticFiles(packages=[("amoskys", "static")]), name="static"))
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, hsts=hsts)])
