"""Live updates: Server-Sent Events for the pages, and the events/s history for the overview.

Each SSE client has its own bounded subscription to the bus's committed events: a slow browser
drops its own oldest events (counted in amoskys_bus_subscriber_dropped_total{subscriber="sse"},
never by user; who dropped how many is logged when the stream ends), never the bus's. Publishing to
a subscription costs the bus O(1) per batch (`amoskys.bus.fanout`); the events are filtered and
serialized here, only when the browser reads, each event's summary once for all streams
(`SummaryCache`), and at most `SSE_EVENTS_PER_SECOND` per stream (beyond, its queue drops its oldest).

Each tick (once a second) carries the events/s; a stream opened with `?status=overview,agents,...`
also gets, as `event: status`, each of those pages' numbers when they changed (`amoskys.web.ticker`
computes each once per interval for all the streams).

Streams are limited: `[web] max_sse_streams_per_session` per session and `[web] max_sse_streams` in
all; one more is refused with 429 (counted in amoskys_web_sse_streams_refused_total{reason=<key>}).

A stream ends when its session does: at logout or revocation at once (`Auth.watch`), at its absolute
expiry, and within `RECHECK_SECONDS` when the store no longer has the session or its user (another
process, such as the CLI, revoked it). An open stream counts as activity: the idle timeout does not
end it, and the session is not idle while it is open. A stream ending says why (`event: end`); one
whose client does not read is cut `END_GRACE_SECONDS` later.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from amoskys.bus.fanout import Subscription
from amoskys.errors import StoreError
from amoskys.store.records import Record
from amoskys.web.auth import Principal
from amoskys.web.context import RateHistory, WebContext
from amoskys.web.metrics import WebMetrics
from amoskys.web.ticker import TOPICS, StatusTicker

SSE_QUEUE = 1000  # committed events buffered per browser
#: events one stream reads per second at most (a browser counts them; it cannot show more); beyond,
#: its queue drops its oldest (counted): what the streams cost the loop is bounded by their number,
#: not by the ingest rate
SSE_EVENTS_PER_SECOND = 200
TICK_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 5.0  # how often an open stream asks the store whether its session still stands
END_GRACE_SECONDS = 5.0  # how long a stream whose session ended may take to say so before it is cut
RETRY_AFTER_SECONDS = 10

log = structlog.get_logger(__name__)
_synthetic = operator.attrgetter("synthetic")


async def count_rates(sub: Subscription[Record], rates: RateHistory) -> None:
    """Feed the overview's events/s history from the committed-event fan-out (runs until cancelled);
    synthetic events are counted apart."""
    with sub:
        while True:
            batch = await sub.get_many(10_000)
            rates.add(len(batch), synthetic=sum(map(_synthetic, batch)))  # in C: no frame per event


def _summary(r: Record) -> dict[str, object]:
    return {
        "kind": r.kind,
        "source": r.source,
        "origin": r.origin,
        "synthetic": r.synthetic,
        "event_id": r.event_id,
        "ts_ns": r.ts_ns,
    }


class SummaryCache:
    """The JSON summary of each recently read event, made once for all the streams that send it (the
    first reader pays for it). Bounded; an entry holds its record, so an id is never mistaken."""

    def __init__(self, size: int = 4 * SSE_QUEUE) -> None:
        self.size = size
        self._texts: dict[int, tuple[Record, str]] = {}

    def text(self, r: Record) -> str:
        hit = self._texts.get(id(r))
        if hit is not None and hit[0] is r:
            return hit[1]
        text = json.dumps(_summary(r))
        self._texts[id(r)] = (r, text)
        if len(self._texts) > self.size:
            del self._texts[next(iter(self._texts))]  # the oldest entry
        return text


def _per_second(series: list[tuple[int, int]]) -> float:
    recent = [c for _, c in series[-10:]]
    return round(sum(recent) / len(recent), 1) if recent else 0.0


class LiveStreams:
    """The open SSE streams: admission against the two limits, and the end of each with its session."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.per_session_limit = ctx.config.web.max_sse_streams_per_session
        self.total_limit = ctx.config.web.max_sse_streams
        self._open: Counter[bytes] = Counter()
        self._total = 0
        self._metrics = ctx.metrics.component(WebMetrics)
        self.summaries = SummaryCache()
        self.ticker = StatusTicker(ctx)
        self.recheck_seconds = RECHECK_SECONDS
        self.end_grace_seconds = END_GRACE_SECONDS

    @property
    def total(self) -> int:
        return self._total

    def open_for(self, session: bytes) -> int:
        return self._open[session]

    def admit(self, session: bytes) -> str:
        """Take a slot for a stream of `session`, or return the key of the limit that refuses it.
        Synchronous: no other stream can be admitted between the check and the take."""
        if self._open[session] >= self.per_session_limit:
            refused = "max_sse_streams_per_session"
        elif self._total >= self.total_limit:
            refused = "max_sse_streams"
        else:
            self._open[session] += 1
            self._total += 1
            self._metrics.sse_streams_open.set(self._total)
            return ""
        self._metrics.sse_streams_refused.labels(refused).inc()
        return refused

    def release(self, session: bytes) -> None:
        self._open[session] -= 1
        if self._open[session] <= 0:
            del self._open[session]
        self._total -= 1
        self._metrics.sse_streams_open.set(self._total)

    def refusal(self, key: str) -> Response:
        limit = self.per_session_limit if key == "max_sse_streams_per_session" else self.total_limit
        what = "for this session" if key == "max_sse_streams_per_session" else "on this appliance"
        return JSONResponse(
            {
                "error": f"too many live streams {what}: at most {limit} ([web] {key}); "
                "close one (another tab) and retry",
                "key": f"web.{key}",
                "limit": limit,
            },
            status_code=429,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )

    async def stream(self, request: Request) -> Response:
        principal = await self.ctx.auth.authenticate(request, self.ctx.cookie_name)
        if principal is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        kinds = frozenset(k for k in request.query_params.get("kinds", "").split(",") if k)
        topics = frozenset(t for t in request.query_params.get("status", "").split(",") if t)
        if topics - TOPICS:
            unknown = ", ".join(sorted(topics - TOPICS))
            return JSONResponse(
                {"error": f"status: unknown topic {unknown} (one of {', '.join(sorted(TOPICS))})"},
                status_code=400,
            )
        synthetic = request.query_params.get("synthetic", "") in ("1", "true", "yes")
        status = _Status(self.ticker, request, topics, synthetic)
        return _StreamResponse(self, principal, kinds, status)

    async def until_ended(self, principal: Principal, ended: asyncio.Event) -> str:
        """Wait until `principal`'s session ends and say why: ended (logged out or revoked, told by
        `Auth`), expired, revoked (the store no longer has the session or its user: revoked by another
        process, such as the CLI) or store_error (the session cannot be confirmed)."""
        ctx = self.ctx
        while True:
            wait_s = self.recheck_seconds
            if principal.expires_ns:
                wait_s = min(wait_s, max(0.0, (principal.expires_ns - ctx.clock_ns()) / 1e9))
            try:
                await asyncio.wait_for(ended.wait(), wait_s)
                return "ended"
            except TimeoutError:
                pass
            if principal.expires_ns and ctx.clock_ns() >= principal.expires_ns:
                return "expired"
            try:
                if await ctx.auth.state.active_session(principal.session) is None:
                    return "revoked"
                if await ctx.auth.state.get_user(principal.user) is None:
                    return "revoked"
            except StoreError:
                return "store_error"  # the session cannot be confirmed: the browser reconnects
            _still_active(ctx, principal)


def _still_active(ctx: WebContext, principal: Principal) -> None:
    """An open stream is activity: keep a cookie session's idle clock from running out under it."""
    if principal.via == "cookie":
        ctx.auth.touch(principal.session)


@dataclass
class _End:
    reason: str = ""


@dataclass
class _Status:
    """What a stream's ticks carry besides the rates: the status of `topics` (amoskys.web.ticker),
    each sent when it changed since the stream last sent it."""

    ticker: StatusTicker
    request: Request
    topics: frozenset[str]
    synthetic: bool
    sent: dict[str, float] = field(default_factory=dict)

    async def texts(self) -> list[str]:
        out = []
        for topic in sorted(self.topics):
            at, text = await self.ticker.text(topic, self.request, synthetic=self.synthetic)
            if text and at > self.sent.get(topic, float("-inf")):
                self.sent[topic] = at
                out.append(f'{{"topic": "{topic}", "data": {text}}}')
        return out


class _StreamResponse(Response):
    """One SSE stream: takes its slot when served (or answers 429), gives it back when done."""

    def __init__(
        self, streams: LiveStreams, principal: Principal, kinds: frozenset[str], status: _Status
    ) -> None:
        super().__init__(status_code=200)
        self.streams = streams
        self.principal = principal
        self.kinds = kinds
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams, principal = self.streams, self.principal
        refused = streams.admit(principal.session)
        if refused:
            await streams.refusal(refused)(scope, receive, send)
            return
        ctx = streams.ctx
        ended = ctx.auth.watch(principal.session)
        end = _End()
        try:
            with ctx.bus.subscribe(f"sse:{principal.user}", maxlen=SSE_QUEUE) as sub:
                try:
                    await self._serve(sub, ended, end, scope, receive, send)
                finally:
                    if sub.dropped:
                        log.info("sse_stream_dropped", user=principal.user, dropped=sub.dropped)
                    if end.reason:
                        log.info("sse_stream_ended", user=principal.user, reason=end.reason)
        finally:
            ctx.auth.unwatch(principal.session, ended)
            streams.release(principal.session)

    async def _serve(
        self,
        sub: Subscription[Record],
        ended: asyncio.Event,
        end: _End,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        response = StreamingResponse(
            _events(self.streams.ctx, sub, self.kinds, end, self.streams.summaries, self.status),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        body = asyncio.ensure_future(response(scope, receive, send))
        ending = asyncio.ensure_future(self.streams.until_ended(self.principal, ended))
        try:
            # the body ends when served to the end or when the client goes away
            await asyncio.wait((body, ending), return_when=asyncio.FIRST_COMPLETED)
            if not body.done():
                end.reason = ending.result()
                sub.close()  # the reader wakes, says why and finishes the response
                await asyncio.wait((body,), timeout=self.streams.end_grace_seconds)
        finally:
            ending.cancel()
            body.cancel()  # a client that does not read is cut
            await asyncio.wait((body, ending))
        if not body.cancelled():
            body.result()  # its error, if it failed


async def _events(
    ctx: WebContext,
    sub: Subscription[Record],
    kinds: frozenset[str],
    end: _End,
    summaries: SummaryCache,
    status: _Status,
) -> AsyncIterator[str]:
    yield "retry: 3000\n\n"
    loop = asyncio.get_running_loop()
    last_tick = last_data = window = loop.time()
    sent = 0  # events read (sent, or left out by `kinds`) since `window` began
    while not ctx.health.stopping and not sub.closed:
        if loop.time() - window >= 1.0:
            window, sent = loop.time(), 0
        elif sent >= SSE_EVENTS_PER_SECOND:
            await asyncio.sleep(window + 1.0 - loop.time())  # over budget: the queue drops meanwhile
            continue
        try:
            batch = await asyncio.wait_for(sub.get_many(min(200, SSE_EVENTS_PER_SECOND - sent)), TICK_SECONDS)
        except TimeoutError:
            batch = []
        if sub.closed:
            break  # the session ended: nothing more for it
        now = loop.time()
        chosen = [summaries.text(r) for r in batch if not kinds or r.kind in kinds]
        sent += len(batch)
        if chosen:
            yield f"event: events\ndata: [{', '.join(chosen)}]\n\n"
            last_data = now
        if now - last_tick >= TICK_SECONDS:
            tick = {
                "events_per_second": _per_second(ctx.rates.series()),
                "synthetic_events_per_second": _per_second(ctx.rates.synthetic_series()),
                "dropped": sub.dropped,
            }
            yield f"event: tick\ndata: {json.dumps(tick)}\n\n"
            for text in await status.texts():  # each topic's numbers, when they changed
                yield f"event: status\ndata: {text}\n\n"
            last_tick = last_data = now
        elif now - last_data >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            last_data = now
    if end.reason:
        yield f"event: end\ndata: {json.dumps({'reason': end.reason})}\n\n"
