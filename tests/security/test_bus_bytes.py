"""Attack: one agent fills the shared store (Hardening II, item 2).

Before the defence the per-publisher quota counted events, not bytes: one enrolled agent could send
4 MiB events, a handful of them pushed a small store above its high-water mark, and from then on every
other agent was answered RETRY. Against a real `amoskys run`: an event above `[bus] max_event_bytes`
is rejected on its own (its neighbours land), a publisher over its byte quota gets RETRY while another
agent is unaffected, and above the store's high water the heavy agent is refused while a light one is
still accepted.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import grpc
import pytest

from amoskys.bus.client import PublisherIdentity
from amoskys.events import uuid7
from amoskys.pki.signatures import GENESIS_DIGEST, batch_digest, sign_batch
from amoskys.proto import bus_pb2, bus_pb2_grpc
from amoskys.proto import events_pb2 as ev

from support import RunningAppliance, amoskys, http_get

pytestmark = [pytest.mark.e2e]

MIB = 1024 * 1024


class Agent:
    """One enrolled agent: its own envelopes, its batch chain, one attempt per call (no retries)."""

    def __init__(self, identity: PublisherIdentity, port: int, max_message_bytes: int) -> None:
        self.identity = identity
        self.boot = str(uuid.uuid4())
        self.seq = 0
        self.prev_digest = GENESIS_DIGEST
        creds = grpc.ssl_channel_credentials(identity.ca_cert, identity.client_key, identity.client_cert)
        self.channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            creds,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self.stub = bus_pb2_grpc.EventBusStub(self.channel)

    def event(self, size: int = 0) -> bytes:
        """An alert from this agent whose serialized envelope is about `size` bytes (small when 0)."""
        self.seq += 1
        env = ev.Envelope(
            event_id=uuid7(),
            source=self.identity.name,
            boot_id=self.boot,
            source_seq=self.seq,
            ts_ns=time.time_ns(),
            alert=ev.Alert(rule="bulk", summary=os.urandom(max(0, size - 200) // 2).hex()),
        )
        return env.SerializeToString()

    async def publish(self, raws: list[bytes]) -> bus_pb2.PublishAck:
        events = bus_pb2.RawEventList(events=raws).SerializeToString()
        ident = self.identity
        batch = bus_pb2.SignedBatch(
            sender=ident.name,
            key_id=ident.key_id,
            events=events,
            prev_digest=self.prev_digest,
            signature=sign_batch(ident.key, ident.key_id, self.prev_digest, events),
        )
        ack: bus_pb2.PublishAck = await self.stub.PublishBatch(batch, timeout=60)
        if (
            ack.status == bus_pb2.OK
        ):  # a refused batch is not part of the chain: the next one follows its parent
            self.prev_digest = batch_digest(ident.key_id, self.prev_digest, events)
        return ack

    async def close(self) -> None:
        await self.channel.close()


def _start(
    appliance_factory, tmp_path: Path, config_text: str, *names: str
) -> tuple[RunningAppliance, list[PublisherIdentity]]:  # type: ignore[no-untyped-def]
    data, config = tmp_path / "data", tmp_path / "amoskys.toml"
    config.write_text(config_text)
    amoskys("certs", "init", "--data-dir", str(data), "--config", str(config))
    identities = []
    for name in names:
        out = tmp_path / f"bundle-{name}"
        amoskys(
            "agents", "enroll", name, "--out", str(out), "--data-dir", str(data), "--config", str(config),
            "--bus-address", "localhost:50051",  # the bus port is chosen at start; tests dial app.bus_port
        )  # fmt: skip
        identities.append(PublisherIdentity.from_bundle(out))
    app = appliance_factory("--config", str(config), data_dir=data)
    app.wait_ready(timeout=60)
    return app, identities


def _metric(app: RunningAppliance, name: str, **labels: str) -> float:
    status, body = http_get(app.web_url + "/metrics", timeout=10)
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_event_above_max_event_bytes_is_rejected_alone(appliance_factory, tmp_path: Path) -> None:
    # the message limit is raised so the 4 MiB event reaches the bus; max_event_bytes stays at 1 MiB
    app, (ident,) = _start(
        appliance_factory, tmp_path, f"[bus]\nmax_message_bytes = {8 * MIB}\n", "agent-big"
    )

    async def attack() -> bus_pb2.PublishAck:
        agent = Agent(ident, app.bus_port, 8 * MIB)
        try:
            return await agent.publish([agent.event(), agent.event(4 * MIB), agent.event(1000)])
        finally:
            await agent.close()

    ack = asyncio.run(attack())
    assert ack.status == bus_pb2.OK, ack
    assert [(r.index, r.reason) for r in ack.rejected] == [(1, "event_too_large")]
    assert ack.accepted == 2
    assert _metric(app, "amoskys_bus_events_total", outcome="rejected", reason="event_too_large") == 1


def test_a_publisher_over_its_byte_quota_is_told_to_retry_and_others_are_not(
    appliance_factory, tmp_path: Path
) -> None:
    config = (
        "[bus]\nmax_message_bytes = 262144\nmax_event_bytes = 131072\n"
        "quota_bytes_per_second = 1024\nquota_burst_bytes = 262144\n"
    )
    app, (heavy_id, light_id) = _start(appliance_factory, tmp_path, config, "agent-heavy", "agent-light")

    async def attack() -> tuple[list[bus_pb2.PublishAck], bus_pb2.PublishAck]:
        heavy, light = Agent(heavy_id, app.bus_port, MIB), Agent(light_id, app.bus_port, MIB)
        try:
            # ~200 KB a batch, the bucket holds 256 KiB and refills 1 KiB/s: the second batch is over
            heavy_acks = [await heavy.publish([heavy.event(100_000), heavy.event(100_000)]) for _ in range(2)]
            return heavy_acks, await light.publish([light.event(), light.event()])
        finally:
            await heavy.close()
            await light.close()

    (first, second), light_ack = asyncio.run(attack())
    assert (first.status, first.accepted) == (bus_pb2.OK, 2)
    assert second.status == bus_pb2.RETRY, second
    assert second.backoff_hint_ms >= 60_000, "the hint says when the bucket holds the batch again"
    assert (light_ack.status, light_ack.accepted) == (bus_pb2.OK, 2)
    assert _metric(app, "amoskys_bus_batches_total", status="retry", reason="quota_bytes") == 1


def test_above_high_water_the_heavy_agent_is_refused_and_a_light_one_is_not(
    appliance_factory, tmp_path: Path
) -> None:
    config = "[store]\nhigh_water_mb = 4\nhard_cap_mb = 512\n"
    app, (heavy_id, light_id) = _start(appliance_factory, tmp_path, config, "agent-heavy", "agent-light")

    async def attack() -> tuple[bus_pb2.PublishAck, bus_pb2.PublishAck, int]:
        heavy, light = Agent(heavy_id, app.bus_port, 4 * MIB), Agent(light_id, app.bus_port, 4 * MIB)
        try:
            # the heavy agent fills the store (3 x ~900 KB a batch) until it is told to retry
            sent = 0
            deadline = time.monotonic() + 120
            while True:
                ack = await heavy.publish([heavy.event(900_000) for _ in range(3)])
                if ack.status == bus_pb2.RETRY and "high-water" in ack.message:
                    break
                assert ack.status in (bus_pb2.OK, bus_pb2.RETRY), ack  # a slow commit may say RETRY
                sent += ack.status == bus_pb2.OK
                assert time.monotonic() < deadline, f"the store never reached high water after {sent} batches"
            light_ack = await light.publish([light.event(), light.event()])
            heavy_again = await heavy.publish([heavy.event(900_000)])
            return light_ack, heavy_again, sent
        finally:
            await heavy.close()
            await light.close()

    light_ack, heavy_again, sent = asyncio.run(attack())
    assert sent >= 1
    assert _metric(app, "amoskys_store_space_state", state="high_water") == 1
    assert (light_ack.status, light_ack.accepted) == (bus_pb2.OK, 2), light_ack
    assert heavy_again.status == bus_pb2.RETRY and heavy_again.backoff_hint_ms > 0
    assert "fair share" in heavy_again.message
    assert _metric(app, "amoskys_bus_batches_total", status="retry", reason="store_high_water") >= 2
