"""The call gate over real mTLS: every method (the health service's too) admits only enrolled, unrevoked
identities, no identity holds more than its share of calls, and a revocation ends open streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from amoskys.bus.client import AccessDeniedError, PublisherIdentity, retry_after_seconds
from amoskys.bus.gate import RETRY_AFTER_KEY, RETRY_AFTER_MS, NotRevokedError, gated_handlers
from amoskys.config import StoreConfig
from amoskys.pki.enrolment import enroll_agent
from amoskys.proto import bus_pb2
from amoskys.retry import Backoff
from amoskys.store.access import appliance_state

from bus_harness import TRUST, BusEnv, events_for, running_env
from support import eventually

LIMIT = 4


@pytest.fixture
async def gated_env(tmp_path: Path) -> AsyncIterator[BusEnv]:
    """A bus allowing LIMIT calls per identity, whose identity cache never expires during a test (so
    only an explicit revoke, not the periodic re-check, can end a call)."""
    async with running_env(tmp_path, max_calls_per_identity=LIMIT, cache_seconds=600) as env:
        yield env


def _health(env: BusEnv, identity: PublisherIdentity) -> health_pb2_grpc.HealthStub:
    creds = grpc.ssl_channel_credentials(identity.ca_cert, identity.client_key, identity.client_cert)
    channel = grpc.aio.secure_channel(env.address, creds)
    env._channels.append(channel)
    return health_pb2_grpc.HealthStub(channel)


async def _watches(stub: health_pb2_grpc.HealthStub, n: int) -> list[grpc.aio.UnaryStreamCall]:
    """n Health/Watch streams, each open (its first message read)."""
    calls = [stub.Watch(health_pb2.HealthCheckRequest()) for _ in range(n)]
    for call in calls:
        first = await call.read()
        assert first is not grpc.aio.EOF and first.status == health_pb2.HealthCheckResponse.SERVING
    return calls


async def _watch_refused(stub: health_pb2_grpc.HealthStub) -> grpc.aio.AioRpcError:
    call = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    return info.value


async def _revoke_in_store(env: BusEnv, name: str) -> None:
    """As `amoskys agents revoke` records it: from another connection to the store."""
    async with appliance_state(env.store.path, StoreConfig()) as state:
        assert await state.revoke_identity(name)


def _stray(env: BusEnv, tmp_path: Path) -> PublisherIdentity:
    """A valid certificate of our CA whose identity was never recorded as enrolled."""
    out = tmp_path / "stray"
    enroll_agent(env.creds, name="stray", role="agent", trust_domain=TRUST, bus_address="", out_dir=out)
    return PublisherIdentity.from_bundle(out)


async def test_every_health_method_refuses_an_identity_that_is_not_enrolled(
    gated_env: BusEnv, tmp_path: Path
) -> None:
    stub = _health(gated_env, _stray(gated_env, tmp_path))
    for call in (
        stub.Check(health_pb2.HealthCheckRequest(), timeout=10),
        stub.List(health_pb2.HealthListRequest(), timeout=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'stray' is not enrolled" in (info.value.details() or "")
    assert (await _watch_refused(stub)).code() == grpc.StatusCode.PERMISSION_DENIED
    assert gated_env.counter("amoskys_bus_calls_refused_total", reason="not_enrolled") == 3


async def test_an_enrolled_identity_reaches_the_health_service_through_the_gate(gated_env: BusEnv) -> None:
    stub = _health(gated_env, await gated_env.enroll("agent-1"))
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="amoskys.v1.EventBus"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the servicer's own answer, not the gate's
        await stub.List(health_pb2.HealthListRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert gated_env.counter("amoskys_bus_calls_open") == 0


async def test_calls_over_the_identity_limit_are_refused_with_a_retry_hint(gated_env: BusEnv) -> None:
    greedy = await gated_env.enroll("greedy")
    other = await gated_env.enroll("other")
    stub = _health(gated_env, greedy)
    await _watches(stub, LIMIT)
    err = await _watch_refused(stub)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_calls_per_identity" in (err.details() or "")
    assert dict(err.trailing_metadata() or ())[RETRY_AFTER_KEY] == str(RETRY_AFTER_MS)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a batch is a call like any other
        await gated_env.stub(greedy).PublishBatch(bus_pb2.SignedBatch(sender="greedy"), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert gated_env.counter("amoskys_bus_calls_refused_total", reason="over_limit") == 2
    # another identity has its own share: streams, and a batch on top of them
    await _watches(_health(gated_env, other), LIMIT - 1)
    ack = await asyncio.wait_for(gated_env.client(other).publish_raw(events_for(other, 2)[1]), 10)
    assert ack.status == bus_pb2.OK
    assert gated_env.counter("amoskys_bus_calls_open") == 2 * LIMIT - 1
    assert gated_env.server.gate.open_calls("greedy") == LIMIT


async def test_revoke_ends_open_streams_before_it_returns(gated_env: BusEnv) -> None:
    agent = await gated_env.enroll("agent-1")
    stub = _health(gated_env, agent)
    calls = await _watches(stub, 3)
    await _revoke_in_store(gated_env, "agent-1")
    # the cache still holds agent-1 as enrolled (600 s): only the explicit revoke can act
    assert await gated_env.server.gate.revoke("agent-1") == 3
    assert gated_env.server.gate.open_calls("agent-1") == 0
    for call in calls:
        assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.PERMISSION_DENIED
        assert "'agent-1' is revoked" in (await call.details())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert gated_env.counter("amoskys_bus_calls_ended_total", reason="revoked") == 3
    assert gated_env.counter("amoskys_bus_calls_open") == 0


async def test_revoke_of_an_identity_the_store_still_admits_is_refused(gated_env: BusEnv) -> None:
    stub = _health(gated_env, await gated_env.enroll("agent-1"))
    calls = await _watches(stub, 2)
    with pytest.raises(NotRevokedError):
        await gated_env.server.gate.revoke("agent-1")
    assert gated_env.server.gate.open_calls("agent-1") == 2
    assert not any(call.done() for call in calls)


async def test_a_revocation_made_without_the_control_socket_still_ends_streams(bus_env: BusEnv) -> None:
    stub = _health(bus_env, await bus_env.enroll("agent-1"))
    (call,) = await _watches(stub, 1)
    await _revoke_in_store(bus_env, "agent-1")  # e.g. from the dashboard: nobody calls gate.revoke
    assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.PERMISSION_DENIED
    assert bus_env.counter("amoskys_bus_calls_ended_total", reason="revoked") == 1


async def test_client_treats_permission_denied_as_final(gated_env: BusEnv, tmp_path: Path) -> None:
    stray = _stray(gated_env, tmp_path)
    client = gated_env.client(stray)
    with pytest.raises(AccessDeniedError) as info:
        await asyncio.wait_for(client.publish_raw(events_for(stray, 1)[1]), 10)
    assert "not enrolled" in info.value.details
    assert client.stats.retries == 0


async def test_client_waits_as_long_as_resource_exhausted_asks(gated_env: BusEnv) -> None:
    agent = await gated_env.enroll("agent-1")
    calls = await _watches(_health(gated_env, agent), LIMIT)
    client = gated_env.client(agent, backoff=Backoff(base_seconds=0.001, cap_seconds=0.002))
    t0 = time.monotonic()
    publish = asyncio.create_task(client.publish_raw(events_for(agent, 1)[1]))
    await eventually(lambda: client.stats.retries >= 1, what="the client to be refused")
    calls[0].cancel()  # frees one place
    ack = await asyncio.wait_for(publish, 10)
    assert ack.status == bus_pb2.OK
    # its own backoff is ~1 ms: only the server's hint can have kept it waiting this long
    assert time.monotonic() - t0 >= RETRY_AFTER_MS / 1000


def test_retry_after_is_read_from_trailing_metadata() -> None:
    def err(*pairs: tuple[str, str]) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(*pairs), "busy"
        )

    assert retry_after_seconds(err((RETRY_AFTER_KEY, "1500"))) == 1.5
    assert retry_after_seconds(err()) == 0.0
    assert retry_after_seconds(err((RETRY_AFTER_KEY, "soon"))) == 0.0


def test_generic_handlers_are_gated_too(gated_env: BusEnv) -> None:
    async def check(request: object, context: object) -> object:
        return request

    inner = grpc.method_handlers_generic_handler(
        "test.Svc", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    (gated,) = gated_handlers(gated_env.server.gate, [inner])

    class Details(grpc.HandlerCallDetails):
        def __init__(self, method: str) -> None:
            self.method = method
            self.invocation_metadata = ()

    handler = gated.service(Details("/test.Svc/Check"))
    assert handler is not None and handler.unary_unary is not check
    assert handler.unary_unary.__wrapped__ is check  # type: ignore[union-attr]
    assert gated.service(Details("/test.Svc/Check")) is handler  # wrapped once
    assert gated.service(Details("/test.Svc/Nope")) is None
