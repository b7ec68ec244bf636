"""A fleet: 20 boxes' NATS forwarders into one stream, a hub consuming it — every subscribed event
stored once at the hub; and a hub SIGKILLed mid-consumption loses and doubles nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from hub_harness import STREAM, client, envelope, make_stream, nats_server, running_hub
from nats.js import api
from nats_harness import caught_up, forwarding, outbox

from amoskys.metrics import Metrics
from amoskys.nats.subjects import MSG_ID_HEADER, event_subject, msg_id
from amoskys.store import Record

from support import amoskys, eventually, http_get, wait_for

BOXES = 20
SITE = "site1"


def box_events(i: int, n: int) -> list[Record]:
    """Box i's outbox: its own heartbeats and host metrics, an agent's alerts (relayed through the
    box's bus: origin the agent) and flows of both (which the hub does not take by default)."""
    box, agent = f"box{i:02d}", f"agent{i:02d}"
    out = []
    for j in range(n):
        kind = ("heartbeat", "host", "flow")[j % 3]
        out.append(Record.from_envelope(envelope(box, j, kind=kind)))
        out.append(Record.from_envelope(envelope(agent, j, kind="alert" if j % 2 else "flow"), origin=agent))
    return out


def wanted(records: list[Record]) -> set[tuple[str, str]]:
    return {(r.source, r.event_id) for r in records if r.kind != "flow"}


@contextlib.asynccontextmanager
async def fleet(tmp: Path, url: str, events: dict[int, list[Record]]) -> AsyncIterator[list[bool]]:
    """Every box's store with its events and its NATS forwarder running (separate forwarders, each over
    its own Store, in this one process); yields once all are caught up."""
    async with contextlib.AsyncExitStack() as stack:
        runs = []
        for i, records in events.items():
            metrics = Metrics()
            store = await stack.enter_async_context(outbox(tmp / f"box{i:02d}.db", metrics))
            await store.submit(records)
            run = await stack.enter_async_context(
                forwarding(store, metrics, url, box=f"box{i:02d}", max_in_flight=256)
            )
            runs.append((run, store))

        async def all_caught_up() -> bool:
            return all([await caught_up(run, store) for run, store in runs])

        await eventually(all_caught_up, within=30, what="every box forwarded everything")
        yield [True]


async def test_twenty_boxes_into_one_stream_and_a_hub_holds_every_subscribed_event_once(
    tmp_path: Path,
) -> None:
    with nats_server(tmp_path) as server:
        events = {i: box_events(i, 60) for i in range(BOXES)}
        expected = set().union(*(wanted(r) for r in events.values()))
        async with fleet(tmp_path, server.url, events):
            async with client(server.url) as nc:
                stream = await nc.jetstream().stream_info(STREAM)
                assert stream.state.messages == sum(len(r) for r in events.values())  # flows too
            async with running_hub(tmp_path, server.url, batch=200) as hub:
                await eventually(
                    lambda: len(expected) == hub.counter("amoskys_hub_messages_total", outcome="committed"),
                    within=30,
                    what="every subscribed event",
                )
                got = await hub.ids()
                assert len(got) == len(set(got)) == len(expected)
                assert set(got) == expected
                origins = await hub.origins()
                assert all(origins[(src, eid)] == f"nats:box{src[-2:]}" for src, eid in expected)
                status = hub.hub.status()
                assert len(status["boxes"]) == BOXES
                assert status["boxes"]["box07"]["sources"] == ["agent07", "box07"]
                assert hub.counter("amoskys_hub_rejected_total", reason="malformed_envelope") == 0
                # a hub forwarding its own store to NATS too never publishes what it took from there
                async with forwarding(hub.store, hub.metrics, server.url, box="central") as run:
                    await eventually(lambda: caught_up(run, hub.store), what="the hub's forwarder caught up")
                    # it published nothing: a PubAck, even one saying duplicate, would have raised this
                    assert run.sink.high_seq == 0
                async with client(server.url) as nc:
                    after = await nc.jetstream().stream_info(STREAM)
                    assert after.state.messages == stream.state.messages


def hub_rows(db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute("SELECT source, event_id FROM events WHERE origin LIKE 'nats:%'").fetchall()


HUB_CONFIG = """\
[appliance]
name = "central"
[collectors.host]
enabled = false
[collectors.process]
enabled = false
[collectors.flow]
enabled = false
[collectors.discovery]
enabled = false
[sources.nats]
enabled = true
servers = ["{url}"]
batch = 20
max_ack_pending = 500
ack_wait_seconds = {ack_wait}
subjects = ["amoskys.>"]
"""
DURABLE = "amoskys-hub-central"
ACK_WAIT = 5.0


@pytest.mark.e2e
def test_a_hub_killed_mid_consumption_loses_and_doubles_nothing(tmp_path: Path, appliance_factory) -> None:  # type: ignore[no-untyped-def]
    with nats_server(tmp_path) as server:
        expected = asyncio.run(_publish_fleet(server.url, per_box=300))
        # a hub that died holding 50 fetched messages: the next one may ack nothing until they are back
        # (ack wait), so it is surely killed holding unacked ones of its own
        asyncio.run(_die_holding(server.url, 50))
        config = tmp_path / "hub.toml"
        config.write_text(HUB_CONFIG.format(url=server.url, ack_wait=ACK_WAIT))
        data = tmp_path / "data"
        db = data / "events.db"
        hub = appliance_factory("--config", str(config), data_dir=data)
        hub.wait_ready()
        wait_for(lambda: len(hub_rows(db)) >= 300, timeout=30, what="300 taken")
        hub.proc.send_signal(signal.SIGKILL)
        hub.proc.wait(10)
        stored, pending = len(hub_rows(db)), asyncio.run(_ack_pending(server.url))
        assert stored < len(expected) and pending > 50, (stored, pending)
        again = appliance_factory("--config", str(config), data_dir=data)
        again.wait_ready()
        wait_for(lambda: len(hub_rows(db)) >= len(expected), timeout=40, what="every event stored")
        assert asyncio.run(_drained(server.url)), "messages left unacked"
        rows = hub_rows(db)
        assert len(rows) == len(set(rows)) == len(expected)
        assert set(rows) == expected
        # it acked nothing until what its predecessor had fetched came back and was committed
        assert "hub_acks_resumed" in again.log()
        status = json.loads(amoskys("status", "--json", "--data-dir", str(data)).stdout)
        (hub_status,) = status["appliance"]["sources"]
        assert hub_status["state"] == "consuming" and hub_status["lag_messages"] == 0
        assert len(hub_status["boxes"]) == BOXES
        assert "hub (nats): consuming" in amoskys("status", "--data-dir", str(data)).stdout
        status_code, body = http_get(again.web_url + "/metrics")
        assert status_code == 200
        metrics = body.decode()
        assert "amoskys_hub_connected 1.0" in metrics and "amoskys_hub_degraded 0.0" in metrics
        assert "amoskys_hub_lag_messages 0.0" in metrics


async def _die_holding(url: str, n: int) -> None:
    async with client(url) as nc:
        js = nc.jetstream()
        await js.add_consumer(
            STREAM,
            api.ConsumerConfig(
                name=DURABLE,
                durable_name=DURABLE,
                ack_policy=api.AckPolicy.ALL,
                ack_wait=ACK_WAIT,
                max_ack_pending=500,
                filter_subject="amoskys.>",
            ),
        )
        sub = await js.pull_subscribe_bind(durable=DURABLE, stream=STREAM)
        assert len(await sub.fetch(n, timeout=5)) == n  # and never acked


async def _ack_pending(url: str) -> int:
    async with client(url) as nc:
        return int((await nc.jetstream().consumer_info(STREAM, DURABLE)).num_ack_pending)


async def _publish_fleet(url: str, *, per_box: int) -> set[tuple[str, str]]:
    """Every box's events published with bare nats-py as its forwarder would (subject, payload,
    Nats-Msg-Id), acks awaited."""
    await make_stream(url)
    sent: set[tuple[str, str]] = set()
    async with client(url) as nc:
        js = nc.jetstream()
        for i in range(BOXES):
            box = f"box{i:02d}"
            futures = []
            for j in range(per_box):
                env = envelope(box if j % 2 else f"agent{i:02d}", j, kind="alert")
                futures.append(
                    await js.publish_async(
                        event_subject(SITE, box, env.source, "alert"),
                        env.SerializeToString(),
                        headers={MSG_ID_HEADER: msg_id(env.source, env.event_id)},
                    )
                )
                sent.add((env.source, env.event_id))
            await asyncio.wait_for(asyncio.gather(*futures), 20)
    return sent


async def _drained(url: str) -> bool:
    async with client(url) as nc:
        js = nc.jetstream()
        for _ in range(200):
            info = await js.consumer_info(STREAM, DURABLE)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return True
            await asyncio.sleep(0.05)
    return False
