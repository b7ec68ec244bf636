"""Exactly once through server crashes (amoskys/forwarders/nats.py): nats-server SIGKILLed with a full
in-flight window and data in the client's reconnect buffer, and down longer than the duplicate window."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats_harness import (
    Proxy,
    Running,
    Server,
    forwarding,
    msg_ids,
    nats_server,
    outbox,
    read_stream,
    records,
    stored_messages,
)

from amoskys.metrics import Metrics
from amoskys.store import Store

from support import eventually

MAX_IN_FLIGHT = 2048
WINDOW_BATCHES = MAX_IN_FLIGHT // 256


async def holds(server: Server, n: int) -> bool:
    return await stored_messages(server) == n


async def drained(run: Running, store: Store) -> bool:
    return run.forwarder.acked_seq == store.last_seq and run.forwarder.lag()[0] == 0


async def test_20000_events_exactly_once_through_five_sigkills(tmp_path: Path) -> None:
    """Five times: SIGKILL the server while the forwarder publishes, commit more events while it is
    down (the forwarder fills its whole window, into nats-py's reconnect buffer), restart it on the
    same port and store. What went onto the dead sockets is lost, what nats-py held is sent after
    the reconnect, acks of both are lost: every event must still be in the stream exactly once."""
    metrics = Metrics()
    n, before, during = 20_000, 1500, 2500
    events = records("agent-1", n, pad=500)
    async with nats_server(tmp_path / "nats") as server, outbox(tmp_path / "box.db", metrics) as store:
        async with forwarding(store, metrics, server.url, max_in_flight=MAX_IN_FLIGHT) as run:
            held = []
            at = 0
            for _ in range(5):
                await store.submit(events[at : at + before])
                at += before
                await eventually(
                    lambda a=at: run.forwarder.acked_seq > a - before + 200, within=30, what="publishing"
                )
                disconnects = run.sink.stats.disconnects
                server.kill()
                await eventually(lambda d=disconnects: run.sink.stats.disconnects > d, what="the crash seen")
                await store.submit(events[at : at + during])
                at += during
                await eventually(
                    lambda: (
                        run.forwarder.status()["in_flight"] == WINDOW_BATCHES
                        and run.sink.buffered_bytes > 10_000
                    ),
                    within=20,
                    what="a full window, partly in the reconnect buffer",
                )
                held.append(run.sink.buffered_bytes)
                await eventually(  # down longer than the ack timeout: the buffered publishes' acks are lost
                    lambda: run.sink.acks_pending == 0, within=10, what="every ack to time out"
                )
                await server.start()
            assert at == n
            await eventually(lambda: drained(run, store), within=60, what="every event acked")
            stats = run.sink.stats
        contents = await read_stream(server.url)
    assert len(contents.ids) == n, f"{len(contents.ids)} messages for {n} events"
    assert not contents.duplicates
    assert set(contents.ids) == msg_ids("agent-1", n)
    assert all(b > 10_000 for b in held)  # each crash left events in the reconnect buffer
    assert stats.disconnects >= 5 and stats.reconciliations >= 5
    assert stats.found > 0  # sent from the reconnect buffer, their acks lost: found, not sent again


async def test_acks_lost_and_server_down_past_the_duplicate_window_no_duplicate_no_gap(
    tmp_path: Path,
) -> None:
    """The server stores a window whose PubAcks never arrive (a proxy swallows them), then dies and
    stays down longer than the stream's duplicate window (2 s): after it is back, the forwarder must
    publish only what the stream lacks — sending the window again would store it twice."""
    metrics = Metrics()
    events = records("agent-1", 3000)
    async with nats_server(tmp_path / "nats") as server, outbox(tmp_path / "box.db", metrics) as store:
        proxy = Proxy(server.port)
        await proxy.start()
        try:
            async with forwarding(
                store, metrics, proxy.url, duplicate_window_seconds=2, max_in_flight=1024
            ) as run:
                await store.submit(events[:1000])
                await eventually(lambda: drained(run, store), within=20, what="the first 1000 acked")
                proxy.swallow = True
                await store.submit(events[1000:2000])
                await eventually(lambda: holds(server, 2000), within=20, what="the window stored")
                await eventually(
                    lambda: run.sink.stats.ack_timeouts > 0, within=20, what="the acks to time out"
                )
                server.kill()
                await proxy.stop_listening()
                await store.submit(events[2000:])  # more while it is down
                await asyncio.sleep(2.5)  # the scenario: down longer than the duplicate window
                proxy.swallow = False
                await server.start()
                await proxy.start()
                await eventually(lambda: drained(run, store), within=30, what="every event acked")
                stats = run.sink.stats
        finally:
            await proxy.close()
        contents = await read_stream(server.url)
    assert not contents.duplicates
    assert set(contents.ids) == msg_ids("agent-1", 3000) and len(contents.ids) == 3000
    assert stats.found >= 1000 - 256  # the stored window was read back, not sent again
