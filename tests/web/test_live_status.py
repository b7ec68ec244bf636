"""The live pages' numbers over SSE: a stream asked for `status` topics gets each page's numbers (what its
/api/v1 twin answers) on its ticks, new ones as they change, and N streams cost the reads of one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request

from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2 as ev
from amoskys.store import Record
from amoskys.web.live import LiveStreams
from amoskys.web.ticker import TOPICS

from support import eventually
from web_harness import VIEWER_PASSWORD, Web


class Channel:
    """One client of a stream: collects what is sent; `leave()` disconnects."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return next((m["status"] for m in self.messages if m["type"] == "http.response.start"), 0)

    @property
    def body(self) -> str:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        ).decode()

    def statuses(self, topic: str) -> list[dict[str, Any]]:
        """The `data` of every status event of `topic` received so far, oldest first."""
        out = []
        for block in self.body.split("\n\n"):
            if block.startswith("event: status\ndata: "):
                sent = json.loads(block.split("data: ", 1)[1])
                if sent["topic"] == topic:
                    out.append(sent["data"])
        return out


def _scope(token: str, query: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/stream",
        "raw_path": b"/api/v1/stream",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"appliance.test"), (b"cookie", f"amoskys_session={token}".encode())],
        "client": ("192.0.2.10", 40000),
        "server": ("appliance.test", 80),
    }


async def _token(web: Web) -> str:
    result = await web.ctx.auth.login("viewer", VIEWER_PASSWORD, "192.0.2.10")
    assert result.ok
    return result.token


async def test_a_stream_carries_each_pages_numbers_and_their_changes(web: Web) -> None:
    live = LiveStreams(web.ctx)
    token = await _token(web)
    scope = _scope(token, "kinds=none&status=overview,collectors,agents,alerts")
    channel = Channel()
    task = asyncio.create_task((await live.stream(Request(scope)))(scope, channel.receive, channel.send))  # type: ignore[arg-type]
    try:
        await eventually(lambda: all(channel.statuses(t) for t in TOPICS), what="every topic's numbers")
        first = channel.statuses("overview")[0]
        stats = await web.ctx.store.stats()
        assert first["store"]["rows"] <= stats.rows and "bus" in first and "losses" in first
        assert [c["name"] for c in channel.statuses("collectors")[0]["items"]] == ["heartbeat"]
        assert channel.statuses("alerts")[0]["open"] == 0 and "items" in channel.statuses("agents")[0]
        assert '"kind"' not in channel.body  # kinds=none: numbers only, no event summaries

        stamper = EnvelopeStamper("sensor")
        records = [
            Record.from_envelope(stamper.stamp(ev.Envelope(heartbeat=ev.Heartbeat()))) for _ in range(50)
        ]
        await web.ctx.store.submit(records)
        rows = first["store"]["rows"]
        await eventually(
            lambda: channel.statuses("overview")[-1]["store"]["rows"] >= rows + 50,
            what="the overview's row count to move without a reload",
        )
    finally:
        channel.gone.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_streams_share_one_computation_per_topic(web: Web) -> None:
    live = LiveStreams(web.ctx)
    request = Request(_scope("", ""))
    answers = await asyncio.gather(*(live.ticker.text("overview", request) for _ in range(5)))
    assert live.ticker.computed == 1 and len({text for _, text in answers}) == 1
    await live.ticker.text("overview", request)  # within its interval: the same answer again
    assert live.ticker.computed == 1
    await live.ticker.text("overview", request, synthetic=True)  # counting synthetic events: its own
    assert live.ticker.computed == 2


async def test_an_unknown_status_topic_is_refused_naming_the_choices(web: Web) -> None:
    live = LiveStreams(web.ctx)
    scope = _scope(await _token(web), "status=overview,disks")
    channel = Channel()
    await (await live.stream(Request(scope)))(scope, channel.receive, channel.send)  # type: ignore[arg-type]
    assert channel.status == 400
    assert "disks" in channel.body and "overview" in channel.body
