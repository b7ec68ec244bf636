"""The hub ([sources.nats], amoskys.sources.nats) against a real nats-server and a real store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hub_harness import (
    HUB,
    STREAM,
    NatsServer,
    client,
    envelope,
    free_port,
    make_stream,
    nats_server,
    publish,
    running_hub,
)
from nats.js.errors import NotFoundError

from amoskys.config import BusConfig
from amoskys.proto import events_pb2 as ev
from amoskys.store.queries import sources
from amoskys.store.queries.reader import Reader

from support import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    with nats_server(tmp_path) as s:
        yield s


async def test_hub_stores_each_published_event_once_as_its_box(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        sent = []
        for box in ("box-a", "box-b"):
            for i in range(300):
                env = envelope(box if i % 2 else f"agent-{box}", i)
                await publish(js, "site1", box, env)
                sent.append((env.source, env.event_id))
        # the same events again (a forwarder re-sending): the stream's dedup drops them
        for box in ("box-a",):
            for i in range(50):
                await publish(js, "site1", box, envelope(box if i % 2 else f"agent-{box}", i))
        async with running_hub(tmp_path, server.url, batch=128) as hub:
            await eventually(
                lambda: hub.hub.lag == 0 and hub.counter("amoskys_hub_acks_total") > 0, what="drain"
            )
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 600,
                what="600 commits",
            )
            ids = await hub.ids()
            assert sorted(ids) == sorted(sent)
            origins = await hub.origins()
            assert {origins[pair] for pair in sent if pair[0].endswith("box-a")} == {"nats:box-a"}
            assert {origins[pair] for pair in sent if pair[0].endswith("box-b")} == {"nats:box-b"}
            # JetStream dropped the re-sent ones (Nats-Msg-Id within the duplicate window)
            assert (await js.stream_info(STREAM)).state.messages == 600
            info = await js.consumer_info(STREAM, f"amoskys-hub-{HUB}")
            assert info.config.ack_policy == "all"
            await eventually(lambda: _acked(js), what="every message acked")
            status = hub.hub.status()
            assert status["state"] == "consuming"
            assert set(status["boxes"]) == {"box-a", "box-b"}
            assert status["boxes"]["box-a"]["sources"] == ["agent-box-a", "box-a"]


async def _acked(js) -> bool:  # type: ignore[no-untyped-def]
    try:
        info = await js.consumer_info(STREAM, f"amoskys-hub-{HUB}")
    except NotFoundError:
        return False  # not made yet
    return info.num_ack_pending == 0 and info.num_pending == 0 and info.delivered.stream_seq > 0


async def test_hub_takes_only_its_subjects(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        await publish(js, "s", "box", envelope("box", 0, kind="flow"))
        await publish(js, "s", "box", envelope("box", 1, kind="alert"))
        await publish(js, "s", "box", envelope("box", 2, kind="host"))
        async with running_hub(tmp_path, server.url) as hub:
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 2, what="2"
            )
            assert sorted(e for _, e in await hub.ids()) == [envelope("box", i).event_id for i in (1, 2)]


async def test_retry_becomes_a_nak_with_the_hint_and_the_event_comes_back(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    # a quota of 5 events per box refilling at 5/s: the first batch of 10 (on a full bucket) empties it,
    # so the second, fetched right after it, is told RETRY with a hint of about a second
    bus = BusConfig(quota_events_per_second=5, quota_burst_events=5)
    async with client(server.url) as nc:
        js = nc.jetstream()
        for i in range(20):
            await publish(js, "s", "box", envelope("box", i))
        async with running_hub(tmp_path, server.url, bus=bus, batch=10) as hub:
            await eventually(lambda: hub.counter("amoskys_hub_naks_total") >= 10, what="a NAK")
            naked_at = time.monotonic()
            assert hub.counter("amoskys_hub_messages_total", outcome="committed") == 10
            assert hub.counter("amoskys_hub_messages_total", outcome="retried") == 10
            info = await js.consumer_info(STREAM, f"amoskys-hub-{HUB}")
            assert info.num_ack_pending == 10  # NAKed with a delay: still pending, not acked
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 20, what="20"
            )
            assert time.monotonic() - naked_at > 0.5  # redelivered after the hint, not at once
            assert sorted(e for _, e in await hub.ids()) == sorted(
                envelope("box", i).event_id for i in range(20)
            )
            await eventually(lambda: _acked(js), what="every message acked")


async def test_refused_messages_are_terminated_and_counted_and_the_rest_goes_on(
    server, tmp_path: Path
) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        await publish(js, "s", "box", envelope("box", 0))
        await publish(js, "s", "box", envelope("box", 1), data=b"\xff\xff not an envelope")
        await publish(js, "s", "box", envelope(HUB, 2))  # speaks as the hub itself
        await publish(js, "s", "box", envelope("box", 3))
        await js.publish("amoskys.s.box", envelope("box", 4).SerializeToString())  # not an event subject
        await publish(js, "s", "box", envelope("mallory", 5))  # a denied source ...
        await publish(js, "s", "evil-box", envelope("evil-box", 6))  # ... and a denied box
        await publish(js, "s", "box", envelope("box", 7))
        async with running_hub(
            tmp_path, server.url, subjects=("amoskys.>",), deny_sources=("Mallory", "evil-box")
        ) as hub:
            await eventually(lambda: _acked(js), what="every message acked or terminated")
            assert sorted(e for _, e in await hub.ids()) == [envelope("box", i).event_id for i in (0, 3, 7)]
            assert hub.counter("amoskys_hub_rejected_total", reason="malformed_envelope") == 1
            assert hub.counter("amoskys_hub_rejected_total", reason="reserved_source") == 1
            assert hub.counter("amoskys_hub_rejected_total", reason="bad_subject") == 1
            assert hub.counter("amoskys_hub_rejected_total", reason="denied_source") == 2
            assert hub.counter("amoskys_hub_messages_total", outcome="rejected") == 5
            # the box skipped source_seq 2..3 (2 and 3 are the refused ones), then 5..7: counted
            assert hub.hub.status()["boxes"]["box"]["sequence_gaps"] == 2 + 3


async def test_gaps_are_not_counted_for_kinds_the_hub_does_not_take(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        for i in (0, 5, 9):  # the numbers between are flows and process events, not subscribed
            await publish(js, "s", "box", envelope("box", i))
        async with running_hub(tmp_path, server.url) as hub:
            await eventually(lambda: _acked(js), what="every message acked")
            assert hub.counter("amoskys_hub_sequence_gap_events_total") == 0
            assert len(await hub.ids()) == 3


async def test_hub_is_degraded_while_nats_is_down_and_consumes_when_it_is_back(tmp_path: Path) -> None:
    server = NatsServer(free_port(), tmp_path / "jetstream")
    try:
        async with running_hub(tmp_path, server.url) as hub:
            # started before NATS: degraded, trying again
            await eventually(lambda: hub.hub.state == "degraded", what="degraded at start")
            assert hub.counter("amoskys_hub_degraded") == 1 and hub.counter("amoskys_hub_connected") == 0
            await asyncio.to_thread(server.start)
            await make_stream(server.url)  # the stream is missing at first: degraded too, until it exists
            await eventually(lambda: hub.hub.state == "consuming", within=40, what="consuming")
            assert hub.counter("amoskys_hub_connected") == 1
            async with client(server.url) as nc:
                await publish(nc.jetstream(), "s", "box", envelope("box", 0))
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 1, what="1"
            )
            await asyncio.to_thread(server.stop)  # SIGKILL
            await eventually(lambda: hub.hub.state == "degraded", what="degraded")
            assert hub.counter("amoskys_hub_degraded") == 1
            assert "NATS connection" in hub.hub.status()["reason"]
            await asyncio.to_thread(server.start)
            async with client(server.url) as nc:
                await publish(nc.jetstream(), "s", "box", envelope("box", 1))
                await eventually(
                    lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 2, what="2"
                )
            assert hub.hub.state == "consuming"
            assert hub.counter("amoskys_hub_degraded") == 0
            assert len(await hub.ids()) == 2
    finally:
        server.stop()


async def test_the_agents_page_lists_every_box_with_its_sources(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        await publish(js, "s", "box-a", envelope("box-a", 0, kind="heartbeat"))
        await publish(js, "s", "box-a", envelope("agent-1", 0, kind="heartbeat"))
        await publish(js, "s", "box-b", envelope("box-b", 0, kind="heartbeat"))
        async with running_hub(tmp_path, server.url):
            await eventually(lambda: _acked(js), what="every message acked")
            reader = Reader(tmp_path / "hub.db")
            await reader.open()
            try:
                names = await sources.sources(reader)
                assert await sources.nats_boxes(reader, names) == {
                    "box-a": ["agent-1", "box-a"],
                    "box-b": ["box-b"],
                }
                beats = await sources.latest_heartbeats(reader, ["agent-1"])
                assert beats["agent-1"]["body"]["version"] == "test"
            finally:
                await reader.close()


async def test_a_source_arriving_through_two_boxes_raises_one_alert(server, tmp_path: Path) -> None:
    await make_stream(server.url)
    async with client(server.url) as nc:
        js = nc.jetstream()
        await publish(js, "s", "box-a", envelope("roamer", 0))
        await publish(js, "s", "box-b", envelope("roamer", 1))
        await publish(js, "s", "box-b", envelope("roamer", 2))
        async with running_hub(tmp_path, server.url) as hub:
            await eventually(lambda: _acked(js), what="every message acked")

            async def alerts() -> list[ev.Envelope]:
                return [e.parse() for e in await hub.store.events(kind="alert") if e.source == HUB]

            found = await eventually(alerts, what="the hub's alert")
            assert [a.alert.rule for a in found] == ["hub.source_via_two_boxes"]
            assert dict(found[0].alert.attributes) == {
                "source": "roamer",
                "first_box": "box-a",
                "second_box": "box-b",
            }
