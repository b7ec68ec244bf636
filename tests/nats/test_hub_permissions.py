"""The NATS permissions of packaging/nats/accounts.conf are the fleet's trust boundary: a box publishes
only under its own subjects (and its forwarder still works with no more), the hub reads through its
durable consumer and publishes nothing, and no box reads through the hub's consumer."""

from __future__ import annotations

import shutil
from pathlib import Path

import nats.errors
import pytest
from hub_harness import ROOT_DIR, STREAM, client, envelope, make_stream, nats_server, publish, running_hub
from nats_harness import caught_up, forwarding, outbox, read_stream, records

from amoskys.metrics import Metrics

from support import eventually

pytestmark = pytest.mark.timeout(60)

PASSWORDS = {
    "AMOSKYS_NATS_ADMIN_PASSWORD": "admin-secret",
    "AMOSKYS_NATS_HUB_PASSWORD": "hub-secret",
    "AMOSKYS_NATS_BOX1_PASSWORD": "box1-secret",
    "AMOSKYS_NATS_BOX2_PASSWORD": "box2-secret",
}
HUB_DURABLE = "amoskys-hub-central"  # the durable the sample's hub user may use


def url(port: int, user: str, password: str) -> str:
    return f"nats://{user}:{password}@127.0.0.1:{port}"


async def test_the_sample_users_fence_every_box_in_and_keep_the_hub_read_only(tmp_path: Path) -> None:
    shutil.copy(ROOT_DIR / "packaging" / "nats" / "accounts.conf", tmp_path / "accounts.conf")
    with nats_server(tmp_path, "include ./accounts.conf\n", PASSWORDS) as server:
        admin = url(server.port, "admin", "admin-secret")
        box1 = url(server.port, "box1", "box1-secret")
        hub_url = url(server.port, "hub-central", "hub-secret")
        await make_stream(admin)

        # box1: its own subjects only
        async with client(box1) as nc:
            js = nc.jetstream()
            await publish(js, "site1", "box1", envelope("box1", 0))  # a PubAck comes back
            with pytest.raises(nats.errors.TimeoutError):  # refused: no PubAck
                await js.publish(
                    "amoskys.site1.box2.box2.alert", envelope("box2", 0).SerializeToString(), timeout=1
                )
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(
                    "amoskys.site2.box1.box1.alert", envelope("box1", 1).SerializeToString(), timeout=1
                )

        # the forwarder, as box1, needs no more: it publishes and reads its own messages back
        metrics = Metrics()
        async with outbox(tmp_path / "box1.db", metrics) as store:
            await store.submit(records("box1", 200, start=10))
            async with forwarding(store, metrics, box1, box="box1") as run:
                await eventually(lambda: caught_up(run, store), within=20, what="box1 forwarded everything")
        assert (metrics.registry.get_sample_value("amoskys_nats_reconciliations_total") or 0) >= 1
        contents = await read_stream(admin, subject="amoskys.site1.box1.>")
        assert len(contents.ids) == 201 and not contents.duplicates
        async with client(admin) as nc:
            assert (await nc.jetstream().stream_info(STREAM)).state.messages == 201  # nothing of box2's

        # the hub, read-only: it consumes everything, acks it, and cannot publish an event
        async with running_hub(tmp_path, hub_url, durable=HUB_DURABLE, subjects=("amoskys.>",)) as hub:
            await eventually(
                lambda: hub.counter("amoskys_hub_messages_total", outcome="committed") == 201,
                within=20,
                what="the hub took all 201",
            )
            assert hub.hub.state == "consuming"
        async with client(hub_url) as nc:
            with pytest.raises(nats.errors.TimeoutError):
                await nc.jetstream().publish("amoskys.site1.box1.box1.alert", b"x", timeout=1)
        async with client(admin) as nc:
            info = await nc.jetstream().consumer_info(STREAM, HUB_DURABLE)
            assert info.num_pending == 0 and info.num_ack_pending == 0  # its acks were allowed
            assert (await nc.jetstream().stream_info(STREAM)).state.messages == 201

        # a box cannot read through the hub's durable consumer
        async with client(box1) as nc:
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(
                    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{HUB_DURABLE}", b'{"batch":1}', timeout=1
                )
            with pytest.raises(nats.errors.TimeoutError):
                await nc.jetstream().consumer_info(STREAM, HUB_DURABLE, timeout=1)
