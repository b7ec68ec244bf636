"""The live event stream (SSE) at unit level: the fan-out does no per-event work for a subscriber and
counts its drops exactly; streams are limited per session and in all; a stream ends with its session
(logout, revocation seen in the store, absolute expiry), and a client that does not read is cut.

Streams are served by calling the ASGI response in the test's loop with a channel of our own (httpx's
ASGI transport buffers whole responses, so it cannot hold a stream open)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from starlette.requests import Request

from amoskys.bus.fanout import Fanout
from amoskys.store.records import Record
from amoskys.web import passwords
from amoskys.web.auth import Principal
from amoskys.web.live import SSE_EVENTS_PER_SECOND, LiveStreams, SummaryCache
from amoskys.web.metrics import WebMetrics

from support import eventually
from web_harness import VIEWER_PASSWORD, Web

# ---------------------------------------------------------------------------------------- fan-out


class CountingBatch(Sequence[int]):
    """A batch that counts how many of its events were looked at."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.touched = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        got = self.items[index]
        self.touched += len(got) if isinstance(index, slice) else 1
        return got


def test_publishing_does_no_per_event_work_for_any_subscriber() -> None:
    fanout: Fanout[int] = Fanout()
    subs = [fanout.subscribe(f"sse:{i}", maxlen=100) for i in range(50)]  # none of them reads
    batches = [CountingBatch(list(range(n * 1000, n * 1000 + 1000))) for n in range(20)]
    for batch in batches:
        fanout.publish(batch)
    assert sum(b.touched for b in batches) == 0, "the fan-out looked at events nobody read"
    assert all(len(s) == 100 and s.dropped == 19_900 for s in subs)


async def test_reading_touches_only_the_events_read() -> None:
    fanout: Fanout[int] = Fanout()
    sub = fanout.subscribe("sse:x", maxlen=10)
    batches = [CountingBatch(list(range(n * 1000, n * 1000 + 1000))) for n in range(5)]
    for batch in batches:
        fanout.publish(batch)
    assert await sub.get_many(4) == [4990, 4991, 4992, 4993]
    assert sum(b.touched for b in batches) == 4


async def test_drops_are_counted_exactly_against_a_model() -> None:
    rng = random.Random(7)
    drops: dict[str, int] = {}
    fanout: Fanout[int] = Fanout(on_drop=lambda name, n: drops.__setitem__(name, drops.get(name, 0) + n))
    for maxlen in (1, 3, 17, 100):
        sub = fanout.subscribe(f"m{maxlen}", maxlen=maxlen)
        model: deque[int] = deque()
        dropped = 0
        counter = 0
        for _ in range(400):
            if rng.random() < 0.6:
                batch = list(range(counter, counter + rng.choice((1, 2, 5, maxlen, maxlen + 3, 250))))
                counter += len(batch)
                fanout.publish(batch)
                model.extend(batch)
                while len(model) > maxlen:
                    model.popleft()
                    dropped += 1
            elif model:
                limit = rng.randint(1, 40)
                want = [model.popleft() for _ in range(min(limit, len(model)))]
                assert await sub.get_many(limit) == want
            assert len(sub) == len(model)
            assert sub.dropped == dropped == drops.get(f"m{maxlen}", 0)
        sub.close()


async def test_closing_wakes_a_waiting_reader() -> None:
    fanout: Fanout[int] = Fanout()
    sub = fanout.subscribe("sse:x", maxlen=5)
    waiting = asyncio.create_task(sub.get_many())
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiting, 10) == []
    fanout.publish([1, 2])
    assert len(fanout) == 0 and len(sub) == 0


# ---------------------------------------------------------------------------------------- streams


class Channel:
    """One client of a stream: collects what is sent; `reading=False` is a client that never reads
    (each body chunk blocks, as a paused transport does); `leave()` disconnects."""

    def __init__(self, *, reading: bool = True) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reading = reading
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body") and not self.reading:
            await asyncio.Event().wait()
        self.messages.append(message)

    def leave(self) -> None:
        self.gone.set()

    @property
    def status(self) -> int:
        return next((m["status"] for m in self.messages if m["type"] == "http.response.start"), 0)

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> str:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        ).decode()

    @property
    def complete(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages)


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/stream",
        "raw_path": b"/api/v1/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"appliance.test"), (b"cookie", f"amoskys_session={token}".encode())],
        "client": ("192.0.2.10", 40000),
        "server": ("appliance.test", 80),
    }


async def _session(web: Web, user: str = "viewer", password: str = VIEWER_PASSWORD) -> str:
    result = await web.ctx.auth.login(user, password, "192.0.2.10")
    assert result.ok
    return result.token


async def _principal(web: Web, token: str) -> Principal:
    session = await web.ctx.store.state.active_session(passwords.token_hash(token))
    assert session is not None
    return Principal(
        user=session.user, role="viewer", session=session.id_hash, via="cookie", expires_ns=session.expires_ns
    )


class Streams:
    """Streams served by one LiveStreams, each as a task of the test."""

    def __init__(self, web: Web) -> None:
        self.live = LiveStreams(web.ctx)
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, token: str, *, reading: bool = True) -> tuple[Channel, asyncio.Task[None]]:
        channel = Channel(reading=reading)
        scope = _scope(token)
        response = await self.live.stream(Request(scope))
        task = asyncio.create_task(response(scope, channel.receive, channel.send))  # type: ignore[arg-type]
        self.tasks.append(task)
        await eventually(lambda: channel.status, what="the stream to answer")
        return channel, task

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def streams(web: Web):  # type: ignore[no-untyped-def]
    s = Streams(web)
    try:
        yield s
    finally:
        await s.close()


def _refused(web: Web, reason: str) -> float:
    return web.ctx.metrics.component(WebMetrics).sse_streams_refused.labels(reason)._value.get()


async def test_the_stream_past_the_session_limit_is_refused_naming_the_key(
    web: Web, streams: Streams
) -> None:
    token = await _session(web)
    limit = web.ctx.config.web.max_sse_streams_per_session
    assert limit == 8
    opened = [await streams.open(token) for _ in range(limit)]
    assert all(ch.status == 200 for ch, _ in opened)

    refused, _ = await streams.open(token)
    assert refused.status == 429
    assert int(refused.headers["retry-after"]) > 0
    body = json.loads(refused.body)
    assert body["key"] == "web.max_sse_streams_per_session" and "max_sse_streams_per_session" in body["error"]
    assert _refused(web, "max_sse_streams_per_session") == 1
    assert web.ctx.metrics.component(WebMetrics).sse_streams_open._value.get() == limit

    other, _ = await streams.open(await _session(web))  # another session has slots of its own
    assert other.status == 200

    first, task = opened[0]
    first.leave()
    await asyncio.wait_for(task, 10)
    again, _ = await streams.open(token)
    assert again.status == 200, "a closed stream did not give its slot back"


async def test_the_stream_past_the_appliance_limit_is_refused(web: Web, streams: Streams) -> None:
    streams.live.per_session_limit, streams.live.total_limit = 2, 3
    a, b = await _session(web), await _session(web)
    for token in (a, a, b):
        assert (await streams.open(token))[0].status == 200
    refused, _ = await streams.open(b)
    assert refused.status == 429
    assert json.loads(refused.body)["key"] == "web.max_sse_streams"
    assert _refused(web, "max_sse_streams") == 1 and _refused(web, "max_sse_streams_per_session") == 0


async def test_logout_ends_an_open_stream_at_once(web: Web, streams: Streams) -> None:
    token = await _session(web)
    before = len(web.ctx.bus.fanout)
    channel, task = await streams.open(token)
    await eventually(lambda: "retry:" in channel.body, what="the stream's first chunk")
    await web.ctx.auth.logout(await _principal(web, token), "192.0.2.10")
    await asyncio.wait_for(task, 10)
    assert channel.complete
    assert 'event: end\ndata: {"reason": "ended"}' in channel.body
    assert streams.live.total == 0 and len(web.ctx.bus.fanout) == before


@pytest.mark.parametrize("how", ["session", "user"])
async def test_a_revocation_only_the_store_knows_ends_the_stream(
    web: Web, streams: Streams, how: str
) -> None:
    """What the CLI does from another process: the store changes, no in-process notice."""
    streams.live.recheck_seconds = 0.05
    token = await _session(web)
    channel, task = await streams.open(token)
    await eventually(lambda: "retry:" in channel.body, what="the stream's first chunk")
    state = web.ctx.store.state
    if how == "session":
        await state.revoke_session(passwords.token_hash(token))
    else:
        await state.delete_user("viewer")
    await asyncio.wait_for(task, 10)
    assert '"reason": "revoked"' in channel.body


async def test_a_stream_ends_at_its_sessions_absolute_expiry(web: Web, streams: Streams) -> None:
    streams.live.recheck_seconds = 0.05
    token = await _session(web)
    principal = await _principal(web, token)
    channel, task = await streams.open(token)
    web.ctx.clock_ns = lambda: principal.expires_ns  # the clock reaches the session's end
    await asyncio.wait_for(task, 10)
    assert '"reason": "expired"' in channel.body


async def test_an_open_stream_keeps_its_session_from_idling_out(web: Web, streams: Streams) -> None:
    streams.live.recheck_seconds = 0.05
    token = await _session(web)
    digest = passwords.token_hash(token)
    await streams.open(token)
    later = web.ctx.clock_ns() + 3600 * 1_000_000_000
    web.ctx.clock_ns = lambda: later
    web.ctx.auth._clock = lambda: later  # the idle clock is Auth's
    await eventually(
        lambda: web.ctx.auth._last_seen.get(digest) == later, what="the stream to count as activity"
    )


async def test_a_client_that_does_not_read_is_cut_when_its_session_ends(web: Web, streams: Streams) -> None:
    streams.live.end_grace_seconds = 0.05
    token = await _session(web)
    before = len(web.ctx.bus.fanout)
    channel, task = await streams.open(token, reading=False)
    await web.ctx.auth.logout(await _principal(web, token), "192.0.2.10")
    await asyncio.wait_for(task, 10)
    assert not channel.complete  # cut, not finished: the server closes the connection
    assert streams.live.total == 0 and len(web.ctx.bus.fanout) == before


def _records(n: int, kind: str = "process") -> list[Record]:
    return [Record("box", f"id-{kind}-{i}", "boot", i, kind, i, b"") for i in range(n)]


def _sent_events(body: str) -> list[dict[str, Any]]:
    return [
        e
        for line in body.splitlines()
        if line.startswith("data: [")
        for e in json.loads(line.removeprefix("data: "))
    ]


async def test_a_stream_reads_at_most_its_budget_per_second(web: Web, streams: Streams) -> None:
    channel, _ = await streams.open(await _session(web))
    web.ctx.bus.fanout.publish(_records(3 * SSE_EVENTS_PER_SECOND // 2))  # fits in the stream's queue
    await eventually(
        lambda: len(_sent_events(channel.body)) >= SSE_EVENTS_PER_SECOND, what="the first second's events"
    )
    first = asyncio.get_running_loop().time()
    await eventually(
        lambda: len(_sent_events(channel.body)) > SSE_EVENTS_PER_SECOND, what="the next second's events"
    )
    assert asyncio.get_running_loop().time() - first >= 0.5, "the stream read past its budget"
    assert [e["event_id"] for e in _sent_events(channel.body) if e["source"] == "box"][:3] == [
        "id-process-0",
        "id-process-1",
        "id-process-2",
    ]


def test_each_summary_is_serialized_once_for_every_stream() -> None:
    cache = SummaryCache(size=3)
    records = _records(5)
    texts = [cache.text(r) for r in records[:2]]
    assert [cache.text(r) for r in records[:2]] == texts
    assert all(a is b for a, b in zip(texts, [cache.text(r) for r in records[:2]], strict=True))
    assert json.loads(texts[0]) == {
        "kind": "process",
        "source": "box",
        "origin": "",
        "synthetic": False,
        "event_id": "id-process-0",
        "ts_ns": 0,
    }
    for r in records[2:]:
        cache.text(r)
    assert len(cache._texts) == 3  # bounded: the oldest went
