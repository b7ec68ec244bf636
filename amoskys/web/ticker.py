"""The numbers the live pages show, for the SSE tick: each page's status (`topic`) computed at most once
per its interval for every open stream together, and only while a stream asks for it.

A topic is what a page's /api/v1 twin answers (the same handler, so the page and its live numbers never
disagree): "overview" (/api/v1/overview: a few bounded reads), "collectors" (in memory), "agents"
(/api/v1/agents: bounded reads, every AGENTS_SECONDS) and "alerts" (the open counts: one read). The
first stream to ask after a topic's interval computes it; the others wait for that result (one lock per
topic), so N open Overview tabs cost the reads of one. A failed read (store busy or failing) keeps the
last answer; the next interval tries again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgspec
from starlette.requests import Request

from amoskys.errors import StoreError
from amoskys.store.queries import alerts as alert_reads
from amoskys.store.queries.reader import ReadsBusyError
from amoskys.web.context import WebContext
from amoskys.web.endpoints import Call
from amoskys.web.routes import agents as agents_api
from amoskys.web.routes import collectors as collectors_api
from amoskys.web.routes import overview as overview_api

#: seconds a topic's answer is reused before it is computed again
INTERVALS: dict[str, float] = {"overview": 2.0, "collectors": 1.0, "agents": 5.0, "alerts": 2.0}
TOPICS = frozenset(INTERVALS)

_ENCODER = msgspec.json.Encoder(enc_hook=str)  # collector status reasons are str subclasses


@dataclass
class _Entry:
    at: float = float("-inf")  # monotonic time it was computed
    text: str = ""  # its JSON


class StatusTicker:
    """Each topic's newest answer as JSON, computed once per interval for all streams."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self._entries: dict[tuple[str, bool], _Entry] = {}
        self._locks: dict[tuple[str, bool], asyncio.Lock] = {}
        self.computed = 0  # how many times a topic was computed (tests read it)

    async def text(self, topic: str, request: Request, *, synthetic: bool = False) -> tuple[float, str]:
        """(when computed, JSON) of `topic`'s newest answer; (-inf, "") while none could be made yet."""
        key = (topic, synthetic if topic in ("overview", "alerts") else False)
        entry = self._entries.setdefault(key, _Entry())
        if time.monotonic() - entry.at < INTERVALS[topic]:
            return entry.at, entry.text
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if time.monotonic() - entry.at >= INTERVALS[topic]:  # not made while this one waited
                try:
                    value = await self._compute(topic, request, key[1])
                except (StoreError, ReadsBusyError):
                    return entry.at, entry.text  # the last answer stands; the next interval retries
                entry.text = _ENCODER.encode(value).decode()
                entry.at = time.monotonic()
                self.computed += 1
        return entry.at, entry.text

    async def _compute(self, topic: str, request: Request, synthetic: bool) -> object:
        ctx = self.ctx
        call = Call(request, ctx, None)
        if topic == "overview":
            query = overview_api.OverviewQuery(synthetic=synthetic)
            return await overview_api.overview.handler(call, query=query)
        if topic == "collectors":
            return await collectors_api.collectors.handler(call)
        if topic == "agents":
            answer = await agents_api.agents.handler(call)
            return {"items": answer["items"], "boxes": answer["boxes"]}
        return await alert_reads.open_counts(ctx.reads, synthetic=synthetic)
