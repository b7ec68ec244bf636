"""Live updates: Server-Sent Events for the pages, and the events/s history for the overview.

Each SSE client has its own bounded subscription to the bus's committed events: a slow browser
drops its own oldest events (counted in amoskys_bus_subscriber_dropped_total{subscriber="sse"},
never by user; who dropped how many is logged when the stream ends), never the bus's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from amoskys.bus.fanout import Subscription
from amoskys.store.records import Record
from amoskys.web.context import RateHistory, WebContext

SSE_QUEUE = 1000  # committed events buffered per browser
TICK_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0

log = structlog.get_logger(__name__)


async def count_rates(sub: Subscription[Record], rates: RateHistory) -> None:
    """Feed the overview's events/s history from the committed-event fan-out (runs until cancelled);
    synthetic events are counted apart."""
    with sub:
        while True:
            batch = await sub.get_many(10_000)
            rates.add(len(batch), synthetic=sum(1 for r in batch if r.synthetic))


def _summary(r: Record) -> dict[str, object]:
    return {
        "kind": r.kind,
        "source": r.source,
        "origin": r.origin,
        "synthetic": r.synthetic,
        "event_id": r.event_id,
        "ts_ns": r.ts_ns,
    }


def _per_second(series: list[tuple[int, int]]) -> float:
    recent = [c for _, c in series[-10:]]
    return round(sum(recent) / len(recent), 1) if recent else 0.0


async def stream(request: Request, ctx: WebContext) -> Response:
    principal = await ctx.auth.authenticate(request, ctx.cookie_name)
    if principal is None:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    kinds = {k for k in request.query_params.get("kinds", "").split(",") if k}

    async def events() -> AsyncIterator[str]:
        with ctx.bus.subscribe(f"sse:{principal.user}", maxlen=SSE_QUEUE) as sub:
            try:
                async with aclosing(_stream(sub)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                if sub.dropped:
                    log.info("sse_stream_dropped", user=principal.user, dropped=sub.dropped)

    async def _stream(sub: Subscription[Record]) -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        loop = asyncio.get_running_loop()
        last_tick = last_data = loop.time()
        while not ctx.health.stopping:
            try:
                batch = await asyncio.wait_for(sub.get_many(200), TICK_SECONDS)
            except TimeoutError:
                batch = []
            now = loop.time()
            chosen = [_summary(r) for r in batch if not kinds or r.kind in kinds]
            if chosen:
                yield f"event: events\ndata: {json.dumps(chosen)}\n\n"
                last_data = now
            if now - last_tick >= TICK_SECONDS:
                tick = {
                    "events_per_second": _per_second(ctx.rates.series()),
                    "synthetic_events_per_second": _per_second(ctx.rates.synthetic_series()),
                    "dropped": sub.dropped,
                }
                yield f"event: tick\ndata: {json.dumps(tick)}\n\n"
                last_tick = last_data = now
            elif now - last_data >= KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                last_data = now

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
