"""The Starlette application served on the web port: pages, JSON API, SSE, /metrics and health."""

from __future__ import annotations

import hmac

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from amoskys.config import Config, parse_listen
from amoskys.health import Health
from amoskys.metrics import Metrics
from amoskys.store.queries.reader import ReadsBusyError
from amoskys.web import assets, live, pages
from amoskys.web.body_limit import BodyLimit
from amoskys.web.context import WebContext
from amoskys.web.exposition import Exposition
from amoskys.web.hosts import AllowedHosts, default_hosts, resolve
from amoskys.web.metrics import WebMetrics
from amoskys.web.routes import routes as api_routes
from amoskys.web.security import SecurityHeaders

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the login endpoints (JSON and form) take small bodies whatever `[web] max_body_bytes` says
LOGIN_MAX_BODY_BYTES = 8 * 1024
LOGIN_PATHS = ("/api/v1/login", "/login")


def build_app(
    metrics: Metrics,
    health: Health,
    *,
    metrics_token: str = "",
    ctx: WebContext | None = None,
    hsts: bool = False,
    config: Config | None = None,
) -> Starlette:
    """/metrics (bearer token when configured), /healthz, /readyz; with a context, also the dashboard
    pages, the /api/v1 JSON API with its OpenAPI document, the SSE stream and the static assets.
    Request bodies are limited here, once, for every route (`[web] max_body_bytes`; 8 KiB to log in),
    after the Host header check (`[web] allowed_hosts`): a request for another host is refused before
    any of its body is read, and still gets the security headers. Without a context, `config` gives
    the web settings (an agent's)."""

    exposition = Exposition(metrics.render)

    async def metrics_endpoint(request: Request) -> Response:
        if metrics_token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {metrics_token}".encode()):
                return Response(
                    "bearer token required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        body = await exposition.body()
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
        live_streams = live.LiveStreams(ctx)

        async def stream(request: Request) -> Response:
            return await live_streams.stream(request)

        routes += api_routes(ctx)
        routes.append(Route("/api/v1/stream", stream))
        routes += pages.routes(ctx)
        routes += assets.routes()
    config = ctx.config if ctx is not None else config or Config()
    max_body = config.web.max_body_bytes
    refused = metrics.component(WebMetrics).requests_refused
    shed = metrics.component(WebMetrics).requests_shed

    async def shed_request(request: Request, exc: Exception) -> Response:
        # every read slot stayed taken ([web] max_concurrent_reads): refuse now, not after seconds
        shed.inc()
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    bus = config.bus
    tls_names = (*bus.server_dns_names, *bus.server_ip_addresses) if config.web.tls == "on" else ()
    allowed = resolve(  # read once, at build time: before the loop serves
        config.web.allowed_hosts,
        lambda: default_hosts(parse_listen(config.web.listen)[0], tls_names=tls_names),
    )
    return Starlette(
        routes=routes,
        exception_handlers={ReadsBusyError: shed_request},
        middleware=[
            Middleware(SecurityHeaders, hsts=hsts),
            Middleware(AllowedHosts, allowed=allowed, on_refused=refused.labels("host_not_allowed").inc),
            Middleware(
                BodyLimit,
                default=max_body,
                limits=dict.fromkeys(LOGIN_PATHS, min(LOGIN_MAX_BODY_BYTES, max_body)),
                on_refused=refused.labels("body_too_large").inc,
            ),
        ],
    )
