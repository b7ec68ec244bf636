"""Attack: an agent whose certificate still completes the TLS handshake tries to hold the bus.

Before the defence, revocation only refused signed batches: a revoked (or any enrolled) agent could
open `Health/Watch` streams until the bus's `max_concurrent_rpcs` was full, and every other agent was
answered RESOURCE_EXHAUSTED, which publishers retry forever. Now every bus method (the gRPC health
service included) checks the caller's certificate identity at call start: unknown or revoked →
PERMISSION_DENIED; one identity holds at most `[bus] max_calls_per_identity` calls (open streams
count), the rest get RESOURCE_EXHAUSTED with a retry hint; `amoskys agents revoke` returns only after
the running appliance ended the agent's open calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from amoskys.bus.client import PublisherIdentity
from amoskys.loadgen import SyntheticEvents
from amoskys.pki.signatures import GENESIS_DIGEST, batch_digest, sign_batch
from amoskys.proto import bus_pb2, bus_pb2_grpc

from support import RunningAppliance, amoskys, eventually

pytestmark = [pytest.mark.e2e]

#: The bus's whole call budget in the first test, smaller than the attack (the default is 1000).
MAX_CONCURRENT_RPCS = 64
#: The default of `[bus] max_calls_per_identity` (the tests must pass without configuring it).
PER_IDENTITY = 32
#: Streams the attacker opens: more than the whole budget.
ATTACK_STREAMS = 100
RETRY_HINT_KEY = "amoskys-retry-after-ms"


async def _enroll(data: Path, tmp: Path, name: str) -> PublisherIdentity:
    if not (data / "pki").is_dir():
        amoskys("certs", "init", "--data-dir", str(data))
    out = tmp / f"bundle-{name}"
    # the bus port is chosen at start; the tests dial app.bus_port
    amoskys(
        "agents",
        "enroll",
        name,
        "--out",
        str(out),
        "--data-dir",
        str(data),
        "--bus-address",
        "localhost:50051",
    )
    return await PublisherIdentity.load(out)


def _start(appliance_factory, tmp: Path, data: Path, config_text: str = "") -> RunningAppliance:  # type: ignore[no-untyped-def]
    config = tmp / "amoskys.toml"
    config.write_text(config_text)
    app = appliance_factory("--config", str(config), data_dir=data)
    app.wait_ready(timeout=30)
    return app


@dataclass
class Peer:
    """One agent's mTLS channels to the bus, and a signer for its batch chain."""

    identity: PublisherIdentity
    port: int
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    prev_digest: bytes = GENESIS_DIGEST

    def __post_init__(self) -> None:
        self.events = SyntheticEvents(self.identity.name)
        creds = grpc.ssl_channel_credentials(
            self.identity.ca_cert, self.identity.client_key, self.identity.client_cert
        )
        # a few connections, so a per-connection stream limit cannot stand in for the per-identity one
        self.channels = [
            grpc.aio.secure_channel(
                f"127.0.0.1:{self.port}", creds, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(4)
        ]

    def health(self, i: int = 0) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channels[i % len(self.channels)])

    def bus(self) -> bus_pb2_grpc.EventBusStub:
        return bus_pb2_grpc.EventBusStub(self.channels[0])

    def next_batch(self, n: int = 3) -> bus_pb2.SignedBatch:
        _, raws = self.events.make(n)
        events = bus_pb2.RawEventList(events=raws).SerializeToString()
        ident = self.identity
        batch = bus_pb2.SignedBatch(
            sender=ident.name,
            key_id=ident.key_id,
            events=events,
            prev_digest=self.prev_digest,
            signature=sign_batch(ident.key, ident.key_id, self.prev_digest, events),
        )
        self.prev_digest = batch_digest(ident.key_id, self.prev_digest, events)
        return batch

    async def publish_once(self, within: float = 15.0) -> bus_pb2.PublishAck:
        """One attempt, no retries: the ack, or the AioRpcError the bus answered."""
        return await self.bus().PublishBatch(self.next_batch(), timeout=within)

    async def open_watches(self, n: int) -> tuple[list[grpc.aio.UnaryStreamCall], list[grpc.aio.AioRpcError]]:
        """Open n Health/Watch streams at once: those that delivered their first message, and the refusals."""

        async def one(i: int) -> grpc.aio.UnaryStreamCall | grpc.aio.AioRpcError:
            call = self.health(i).Watch(health_pb2.HealthCheckRequest(service=""))
            try:
                first = await asyncio.wait_for(call.read(), 30)
            except grpc.aio.AioRpcError as err:
                return err
            assert first is not grpc.aio.EOF and first.status == health_pb2.HealthCheckResponse.SERVING
            return call

        results = await asyncio.gather(*(one(i) for i in range(n)))
        opened = [r for r in results if not isinstance(r, grpc.aio.AioRpcError)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        return opened, refused  # type: ignore[return-value]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


@asynccontextmanager
async def peers(app: RunningAppliance, *identities: PublisherIdentity) -> AsyncIterator[list[Peer]]:
    made = [Peer(ident, app.bus_port) for ident in identities]
    try:
        yield made
    finally:
        for p in made:
            await p.close()


async def _codes_within(calls: list[grpc.aio.UnaryStreamCall], seconds: float) -> Counter[grpc.StatusCode]:
    """The status each call ended with; fails when any is still open after `seconds`."""
    done, pending = await asyncio.wait([asyncio.ensure_future(c.code()) for c in calls], timeout=seconds)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} of {len(calls)} streams still open {seconds:g} s after revocation"
    return Counter(t.result() for t in done)


async def test_revoked_agent_loses_its_streams_and_cannot_crowd_out_others(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ident_a = await _enroll(data, tmp_path, "agent-a")
    ident_b = await _enroll(data, tmp_path, "agent-b")
    # the bus's whole call budget is smaller than the attack, so before the defence it locked b out
    app = _start(appliance_factory, tmp_path, data, f"[bus]\nmax_concurrent_rpcs = {MAX_CONCURRENT_RPCS}\n")
    async with peers(app, ident_a, ident_b) as (a, b):
        opened, refused = await a.open_watches(ATTACK_STREAMS)
        assert opened, "the attacker could not open a single stream before revocation"
        assert {e.code() for e in refused} <= {grpc.StatusCode.RESOURCE_EXHAUSTED}

        revoke = await asyncio.to_thread(amoskys, "agents", "revoke", "agent-a", "--data-dir", str(data))
        # by the time the command returns, the appliance has ended every open call of agent-a
        codes = await _codes_within(opened, 10.0)
        assert set(codes) == {grpc.StatusCode.PERMISSION_DENIED}, codes
        assert "confirmed" in revoke.stdout, revoke.stdout

        # agent-a keeps trying (streams and batches); each attempt is refused at once
        attempts: list[tuple[str, float]] = []
        stop = asyncio.Event()

        async def keep_trying() -> None:
            loop = asyncio.get_running_loop()
            i = 0
            while not stop.is_set():
                i += 1
                t0 = loop.time()
                try:
                    if i % 2:
                        call = a.health(i).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
                        await call.read()
                        outcome = "stream opened"
                    else:
                        ack = await a.publish_once(within=10)
                        outcome = f"ack {bus_pb2.AckStatus.Name(ack.status)}"
                except grpc.aio.AioRpcError as err:
                    outcome = err.code().name
                attempts.append((outcome, loop.time() - t0))

        attacker = asyncio.create_task(keep_trying())
        try:
            for _ in range(5):
                ack = await b.publish_once()
                assert ack.status == bus_pb2.OK, ack
                assert ack.accepted == 3
            opened_b, refused_b = await b.open_watches(8)
            assert len(opened_b) == 8, [e.code() for e in refused_b]
            for call in opened_b:
                call.cancel()
        finally:
            stop.set()
            await attacker
        assert len(attempts) >= 4, attempts
        assert {o for o, _ in attempts} == {"PERMISSION_DENIED"}, Counter(o for o, _ in attempts)
        assert max(t for _, t in attempts) < 5.0, attempts  # at call start, never a stream left hanging


async def test_agent_over_its_call_limit_gets_resource_exhausted_and_others_are_unaffected(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ident_a = await _enroll(data, tmp_path, "agent-a")
    ident_b = await _enroll(data, tmp_path, "agent-b")
    app = _start(appliance_factory, tmp_path, data)
    async with peers(app, ident_a, ident_b) as (a, b):
        opened, refused = await a.open_watches(ATTACK_STREAMS)
        assert len(opened) == PER_IDENTITY, (
            f"agent-a holds {len(opened)} streams; its limit is {PER_IDENTITY}"
        )
        assert len(refused) == ATTACK_STREAMS - PER_IDENTITY
        for err in refused:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            assert "max_calls_per_identity" in (err.details() or "")
            hint = dict(err.trailing_metadata() or ()).get(RETRY_HINT_KEY)
            assert hint is not None and int(hint) > 0, err.trailing_metadata()
        # a batch over the limit is refused the same way, before any work is done for it
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await a.publish_once()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # the other agent is unaffected: it opens its own streams and its batches are acked
        opened_b, refused_b = await b.open_watches(PER_IDENTITY)
        assert len(opened_b) == PER_IDENTITY, [e.code() for e in refused_b]
        for call in opened_b:
            call.cancel()
        for _ in range(3):
            ack = await b.publish_once()
            assert ack.status == bus_pb2.OK, ack

        # closing streams frees exactly that many places for agent-a
        for call in opened[:5]:
            call.cancel()
        again: list[grpc.aio.UnaryStreamCall] = []

        async def all_five_back() -> bool:  # the server sees the cancellations soon, not at once
            more, _ = await a.open_watches(5 - len(again))
            again.extend(more)
            return len(again) == 5

        await eventually(all_five_back, what="the 5 freed places to come back")
        extra, refused_again = await a.open_watches(1)
        assert not extra and refused_again[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_agents_revoke_returns_only_after_the_running_appliance_refuses_the_agent(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ident_a = await _enroll(data, tmp_path, "agent-a")
    app = _start(appliance_factory, tmp_path, data)
    async with peers(app, ident_a) as (a,):
        acks: list[int] = []
        done = asyncio.Event()

        async def publish_until_revoked() -> None:  # keeps the bus's view of agent-a fresh
            while not done.is_set():
                try:
                    acks.append((await a.publish_once(within=10)).status)
                except grpc.aio.AioRpcError:
                    return

        publisher = asyncio.create_task(publish_until_revoked())
        await eventually(lambda: acks, within=20, what="an ack for agent-a before revocation")
        revoke = await asyncio.to_thread(amoskys, "agents", "revoke", "agent-a", "--data-dir", str(data))
        done.set()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await a.publish_once()  # immediately after the command returned
        await publisher
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
        assert "revoked" in (info.value.details() or "")
        assert bus_pb2.OK in acks
        assert "confirmed" in revoke.stdout, revoke.stdout


async def test_agents_revoke_without_a_running_appliance_says_so_and_applies_at_next_start(
    appliance_factory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ident_a = await _enroll(data, tmp_path, "agent-a")
    revoke = amoskys("agents", "revoke", "agent-a", "--data-dir", str(data))
    assert "no appliance is running" in revoke.stdout and "next start" in revoke.stdout, revoke.stdout
    again = amoskys("agents", "revoke", "agent-a", "--data-dir", str(data), check=False)
    assert again.returncode == 1, again  # nothing left to act on
    app = _start(appliance_factory, tmp_path, data)
    async with peers(app, ident_a) as (a,):
        call = a.health().Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await a.publish_once()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
