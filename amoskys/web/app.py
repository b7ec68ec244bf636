"""The Starlette application served on the web port."""

from __future__ import annotations

import asyncio
import hmac

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amoskys.health import Health
from amoskys.metrics import Metrics

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_app(metrics: Metrics, health: Health, *, metrics_token: str = "") -> Starlette:
    """The web application: /metrics (bearer token when configured), /healthz, /readyz."""

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

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
